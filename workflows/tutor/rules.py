"""Seed 004's rescheduling pattern as pure functions of (reschedule times, policy, now).

A window W counts, at moment t, the reschedules in (t − W, t]: one rescheduled exactly W before t
no longer counts. Each alert rule (threshold k in window W) has episodes: a run of moments during
which the count is k or more. An episode begins at the reschedule that brings the count to k (its
"crossing", which names the alert's idempotency key) and clears at the first moment the count is
below k again: the oldest counted reschedule + W when exactly k count. Each episode is alerted
once, when it begins (or, for one begun before the journey could send, at once while it lasts);
after it clears, the next crossing is a new episode. Times count to the second.

The state keeps only reschedules that can still count (newer than the longest window, and what an
alerted episode still needs to tell when it clears), so a tutor's journey stays small for years.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from workflows.core.events import no_change, record_outcome, record_skip, screen_event
from workflows.core.steps import EventOutcome, PlannedStep, StepKind, unreachable, waiting_for_start
from workflows.core.timing import offset_label, stamp_key, when
from workflows.tutor.models import (
    TUTOR_CLOSED, Cancel, Close, OpenAlert, Rescheduled, Reschedule, RuleName, SentAlert, Tutor, TutorEvent,
    TutorPolicy, TutorState, TutorStatus,
)

__all__ = ["apply_event", "manager_key", "next_step", "record_skip", "settle", "start", "supportive_key"]

ENDED_BY = {"close": TutorStatus.CLOSED.value, "cancel": TutorStatus.CANCELLED.value}
MAX_SKEW = timedelta(minutes=5)  # an `at` later than now by more than this is refused: not a reschedule yet
IDLE = timedelta(days=365)  # nothing counts and nothing is open: wake once a year only to plan again
ALERT_LOG = 50  # the latest alerts the state lists


def supportive_key(tutor_id: str, crossed_at: datetime) -> str:
    return f"tutor-{tutor_id}/supportive-{stamp_key(crossed_at)}"


def manager_key(tutor_id: str, crossed_at: datetime) -> str:
    return f"tutor-{tutor_id}/manager-{stamp_key(crossed_at)}"


@dataclass(frozen=True)
class Rule:
    name: RuleName
    threshold: int
    window: timedelta
    step: StepKind  # CHECKIN: the supportive email to the tutor; ESCALATE: the manager is told

    def key(self, tutor_id: str, crossed_at: datetime) -> str:
        return (supportive_key if self.name == "supportive" else manager_key)(tutor_id, crossed_at)


def alert_rules(policy: TutorPolicy) -> tuple[Rule, Rule]:
    return (Rule("supportive", policy.supportive_threshold, policy.supportive_window, StepKind.CHECKIN),
            Rule("manager", policy.manager_threshold, policy.manager_window, StepKind.ESCALATE))


def rule_for(step: PlannedStep, policy: TutorPolicy) -> Rule:
    return next(rule for rule in alert_rules(policy) if rule.step == step.kind)


def window_text(window: timedelta) -> str:
    """`7 days`, `1 day`, `36h`: how a window reads in labels and messages."""
    if window % timedelta(days=1) == timedelta(0):
        days = window // timedelta(days=1)
        return f"{days} day" if days == 1 else f"{days} days"
    return offset_label(window)


# --- sliding windows: pure functions of sorted reschedule times ----------------------------------

def count(times: Sequence[datetime], window: timedelta, t: datetime) -> int:
    """Reschedules in (t − window, t]."""
    return bisect_right(times, t) - bisect_right(times, t - window)


def reaches(times: Sequence[datetime], threshold: int, window: timedelta, since: datetime) -> datetime | None:
    """The first moment ≥ `since` at which `threshold` or more count (the count rises only at a reschedule)."""
    if count(times, window, since) >= threshold:
        return since
    return next((t for t in times if t > since and count(times, window, t) >= threshold), None)


def clears(times: Sequence[datetime], threshold: int, window: timedelta, since: datetime) -> datetime:
    """The first moment ≥ `since` at which fewer than `threshold` count (the count falls only when a
    reschedule leaves the window: at its time + window)."""
    if count(times, window, since) < threshold:
        return since
    for t in times:
        if t + window > since and count(times, window, t + window) < threshold:
            return t + window
    raise AssertionError("unreachable: every reschedule leaves the window")  # threshold ≥ 1


def crossing(times: Sequence[datetime], threshold: int, window: timedelta, t: datetime) -> datetime:
    """The reschedule that began the episode `t` is in (the count is `threshold` or more at `t`):
    the start of the run of such moments that reaches `t`."""
    moments = sorted({m for m in times if m <= t} | {m + window for m in times if m + window <= t})
    began = None
    for moment in moments:
        if count(times, window, moment) >= threshold:
            began = moment if began is None else began
        else:
            began = None
    assert began is not None, "crossing() is asked only about a moment inside an episode"
    return began


def _times(state: TutorState) -> list[datetime]:
    return [r.at for r in state.reschedules]


# --- the plan -----------------------------------------------------------------------------------

def next_step(state: TutorState, policy: TutorPolicy, awaiting_since: datetime, now: datetime) -> PlannedStep | None:
    """The earliest of: an alert whose episode is under way and not alerted (at once, or at a
    reschedule dated a little ahead), the moment an alerted episode clears, the moment the oldest
    kept reschedule leaves the longest window; or, with none of them, an idle wake far ahead."""
    if state.status in TUTOR_CLOSED:
        return None
    if state.status == TutorStatus.AWAITING_START:
        return waiting_for_start(awaiting_since, policy.hold_early_events_for, "tutor")
    times = _times(state)
    steps: list[PlannedStep] = []
    for rule in alert_rules(policy):
        alerted = getattr(state, rule.name)
        if alerted is not None:
            at = clears(times, rule.threshold, rule.window, alerted.checked_at)
            steps.append(PlannedStep(kind=StepKind.EXPIRE, at=at,
                                     label=f"the {rule.name} alert re-arms: fewer than {rule.threshold} in "
                                           f"{window_text(rule.window)} from {when(at)}"))
            continue
        at = reaches(times, rule.threshold, rule.window, now)
        if at is not None:
            crossed = crossing(times, rule.threshold, rule.window, at)
            who = "supportive email to the tutor" if rule.name == "supportive" else "the manager is told"
            steps.append(PlannedStep(
                kind=rule.step, at=at, not_after=clears(times, rule.threshold, rule.window, at),
                label=f"{who}: {count(times, rule.window, at)} reschedules in {window_text(rule.window)} "
                      f"(threshold {rule.threshold}, crossed {when(crossed)}), due {when(at)}"))
    if times:
        oldest = times[0] + policy.longest_window
        steps.append(PlannedStep(kind=StepKind.EXPIRE, at=oldest,
                                 label=f"the reschedule of {when(times[0])} leaves every window, {when(oldest)}"))
    if not steps:
        return PlannedStep(kind=StepKind.EXPIRE, at=now + IDLE, label="no reschedule counts: waiting for one")
    # A tie goes to an alert: it is sent before what the same moment clears.
    return min(steps, key=lambda step: (step.at, step.kind == StepKind.EXPIRE))


# --- what changes the state -----------------------------------------------------------------------

def start(state: TutorState, tutor: Tutor, now: datetime) -> None:
    """Apply the start; reschedules held before it keep counting."""
    state.tutor_email, state.manager_email = str(tutor.tutor.email), str(tutor.manager_email)
    if state.status == TutorStatus.AWAITING_START:
        state.status = TutorStatus.WATCHING
    recount(state, state.policy, now)


def settle(state: TutorState, policy: TutorPolicy, now: datetime) -> None:
    """Time passed up to `now`: re-arm each alert whose episode has cleared, note that the others
    still run, drop what no window can count any more."""
    times = _times(state)
    for rule in alert_rules(policy):
        alerted = getattr(state, rule.name)
        if alerted is None:
            continue
        if clears(times, rule.threshold, rule.window, alerted.checked_at) <= now:
            setattr(state, rule.name, None)
        else:
            setattr(state, rule.name, alerted.model_copy(update={"checked_at": max(now, alerted.checked_at)}))
    # What can still count: reschedules inside the longest window of now, and inside each open
    # episode's window of the moment it was last seen running (its clearing is computed from there).
    keep_after = now - policy.longest_window
    for rule in alert_rules(policy):
        if (alerted := getattr(state, rule.name)) is not None:
            keep_after = min(keep_after, alerted.checked_at - rule.window)
    state.reschedules = [r for r in state.reschedules if r.at > keep_after]
    recount(state, policy, now)


def recount(state: TutorState, policy: TutorPolicy, now: datetime) -> None:
    times = _times(state)
    state.counts = {rule.name: count(times, rule.window, now) for rule in alert_rules(policy)}
    state.counted_at = now


def open_alert(state: TutorState, rule: Rule, at: datetime) -> tuple[str, int]:
    """The alert planned at `at` is being taken: its episode is marked alerted before anything is
    sent, so an event arriving during the send cannot plan it twice. → (its key, the count)."""
    times = _times(state)
    crossed = crossing(times, rule.threshold, rule.window, at)
    key = rule.key(state.tutor_id, crossed)
    setattr(state, rule.name, OpenAlert(crossed_at=crossed, key=key, checked_at=at))
    return key, count(times, rule.window, at)


def alerted_before(state: TutorState, key: str) -> bool:
    """Whether the episode of `key` was alerted already: a reschedule reported late (dated before a
    window cleared) can join a new run of reschedules to an episode alerted before."""
    return any(alert.key == key for alert in state.alerts)


def record_alert(state: TutorState, rule: Rule, key: str, now: datetime, counted: int, delivered: bool) -> None:
    state.alerts.append(SentAlert(rule=rule.name, key=key, at=now, count=counted, delivered=delivered))
    del state.alerts[:-ALERT_LOG]


def counted_reschedules(state: TutorState, window: timedelta, at: datetime) -> list[Reschedule]:
    """The reschedules a message about the window ending at `at` lists, oldest first."""
    return [r for r in state.reschedules if at - window < r.at <= at]


def apply_event(state: TutorState, event: TutorEvent, policy: TutorPolicy | None, now: datetime) -> EventOutcome:
    """Twice the same event = once (the same event_id, or the same session rescheduled at the same
    second); after the journey ended only a repeat of what ended it is a (harmless) duplicate. A
    reschedule without `at` counts at `now`: the moment the journey takes it in (the update's, or
    the signal's when no worker answered the API in time)."""
    if (screened := screen_event(state, event, TUTOR_CLOSED, ENDED_BY)) is not None:
        return screened
    policy = policy or state.policy
    match event:
        case Rescheduled():
            return _rescheduled(state, event, policy, now)
        case Close() | Cancel():
            state.status = TutorStatus.CLOSED if isinstance(event, Close) else TutorStatus.CANCELLED
            return record_outcome(state, event.dedupe_key(), True, event.reason)
        case _:
            unreachable(event)


def _rescheduled(state: TutorState, event: Rescheduled, policy: TutorPolicy, now: datetime) -> EventOutcome:
    at = (event.at or now).astimezone(timezone.utc).replace(microsecond=0)
    if at > now + MAX_SKEW:
        return record_outcome(state, event.dedupe_key(), False, f"at ({when(at)}) is in the future: send a "
                                                               "reschedule once it has happened", field="at")
    reschedule = Reschedule(at=at, session_id=event.session_id)
    if reschedule in state.reschedules:
        return no_change(state, event, f"session {event.session_id} rescheduled at {when(at)} is counted already")
    state.reschedules = sorted([*state.reschedules, reschedule], key=lambda r: r.at)
    state.reschedules_total += 1
    settle(state, policy, now)
    if reschedule in state.reschedules:
        counts = ", ".join(f"{state.counts[rule.name]} in {window_text(rule.window)}" for rule in alert_rules(policy))
        reason = f"session {event.session_id} at {when(at)}: {counts}"
    else:
        reason = f"session {event.session_id} at {when(at)} is older than every window: it counts in none"
    return record_outcome(state, event.dedupe_key(), True, reason)

