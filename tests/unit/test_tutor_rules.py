"""Seed 004's tutor rescheduling pattern without Temporal: the models at the edge, the sliding windows
as pure functions, pinned examples at the boundaries, and properties over random reschedule
timelines run through the journey's own loop (`workflows.core.loop.run_plan`) and its own
`take` (`workflows/tutor/workflow.py`) on the fake clock of `journey_clock.py`.

The main property judges what the journey sends against an oracle that knows nothing of the rules
module: counting by brute force at every moment the count can change, an episode of a rule begins
where its count first reaches the threshold and ends where it falls below; one alert per episode,
at its beginning, keyed by that moment. The others: with reports arriving late and out of order,
some twice, no key is sent twice, an alert goes out only while what the journey was told reaches
the threshold, a timeline with its repeats sends what it sends without them, the state stays
bounded, and the plan is a pure function that changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from activities.render import Renderer
from tests.unit.journey_clock import FakeTemporal, shortfall, tell
from workflows.contracts import SendStatus
from workflows.core.events import fingerprint, fingerprinted
from workflows.core.fields import with_overrides
from workflows.core.steps import PlannedStep, StepKind
from workflows.core.timing import stamp_key, when
from workflows.tutor import rules
from workflows.tutor.models import (
    Close, Rescheduled, Tutor, TutorPolicy, TutorPolicyOverrides, TutorState, TutorStatus, tutor_event,
)
from workflows.tutor.workflow import take

UTC = timezone.utc
S, M, H, D = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TUTOR = "t-7"
LOOP_LIMIT = 2_000
PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def tutor(**fields) -> Tutor:
    return Tutor.model_validate({"tutor_id": TUTOR, "tutor": {"email": "tom@example.com", "name": "Tom"},
                                 "manager_email": "mia@example.com", **fields})


# --- the models at the edge -------------------------------------------------------------------


def test_seed_defaults_and_the_overrides_model():
    policy = TutorPolicy()
    assert (policy.supportive_threshold, policy.supportive_window) == (3, 7 * D)
    assert (policy.manager_threshold, policy.manager_window) == (6, 14 * D)
    assert set(TutorPolicyOverrides.model_fields) == {"supportive_threshold", "supportive_window",
                                                      "manager_threshold", "manager_window", "template_versions"}
    assert with_overrides(policy, tutor(policy={"manager_window": "P21D"}).policy).manager_window == 21 * D


@pytest.mark.parametrize("policy, field", [({"supportive_threshold": "3"}, "supportive_threshold"),
                                           ({"supportive_threshold": 0}, "supportive_threshold"),
                                           ({"manager_threshold": 3.0}, "manager_threshold"),
                                           ({"manager_window": "P367D"}, "manager_window"),
                                           ({"supportive_window": "PT0S"}, "supportive_window")])
def test_policy_bounds(policy, field):
    with pytest.raises(ValidationError) as caught:
        tutor(policy=policy)
    assert caught.value.errors()[0]["loc"] == ("policy", field)


def test_a_reschedule_without_at_counts_when_the_journey_takes_it_in_to_the_second():
    state = TutorState(tutor_id=TUTOR, status=TutorStatus.AWAITING_START)
    rules.start(state, tutor(), T0)
    event = tutor_event(kind="rescheduled", session_id="s-1")
    assert event.at is None  # nothing reads a clock at the edge: the journey's `now` is the default
    rules.apply_event(state, event, None, T0 + 5 * D + timedelta(microseconds=999_999))
    given = tutor_event(kind="rescheduled", session_id="s-2", at="2026-03-02T10:00:00.5+01:00")
    rules.apply_event(state, given, None, T0 + 5 * D)
    assert [(r.session_id, r.at) for r in state.reschedules] == [("s-2", T0), ("s-1", T0 + 5 * D)]
    with pytest.raises(ValidationError):
        tutor_event(kind="rescheduled", session_id="bad id")


def test_the_messages_render_with_what_the_workflow_gives_them():
    base = {"sender_name": "Followups", "postal_address": "1 Main St", "unsubscribe_url": "https://x.example/u",
            "tutor_name": "Tom", "tutor_email": "tom@example.com", "count": 3, "threshold": 3, "window": "7 days",
            "reschedules": [{"session_id": "s-1", "at": T0.isoformat()}], "support_url": "https://help.example/s",
            "time_zone": "Europe/Berlin"}
    supportive = Renderer().render("tutor_supportive", {**base, "name": "Tom"})
    assert "can we help" in supportive.subject and "Monday 02 March 2026, 10:00 CET" in supportive.text
    assert "https://help.example/s" in supportive.html
    manager = Renderer().render("tutor_manager_alert", {**base, "name": "Mia", "count": 6, "threshold": 6,
                                                        "window": "14 days", "support_url": None, "time_zone": None})
    assert manager.subject == "Rescheduling: Tom rescheduled 6 sessions in 14 days"


def test_key_formats():
    assert rules.supportive_key(TUTOR, T0 + 90 * S) == "tutor-t-7/supportive-20260302T090130Z"
    assert rules.manager_key(TUTOR, T0) == "tutor-t-7/manager-20260302T090000Z"


# --- the windows as pure functions --------------------------------------------------------------


def test_a_window_counts_what_is_newer_than_it_exactly():
    times = [T0, T0 + D]
    assert rules.count(times, 7 * D, T0 + 7 * D - S) == 2
    assert rules.count(times, 7 * D, T0 + 7 * D) == 1  # rescheduled exactly 7 days ago: no longer counted
    assert rules.count(times, 7 * D, T0 - S) == 0


@given(offsets=st.lists(st.integers(0, 40 * 24), min_size=1, max_size=12),
       threshold=st.integers(1, 6), window_hours=st.integers(1, 20 * 24), after=st.integers(0, 40 * 24))
@settings(max_examples=300, deadline=None, database=None)
def test_a_window_clears_when_the_oldest_reschedule_that_must_go_leaves_it(offsets, threshold, window_hours, after):
    """With m ≥ k counted at t and none after, the count falls below k when the (m − k + 1)-th oldest
    counted leaves: the oldest counted + window when exactly k count."""
    times, window = sorted(T0 + n * H for n in offsets), window_hours * H
    t = T0 + after * H
    known = [s for s in times if s <= t]
    counted = [s for s in known if s > t - window]
    if len(counted) < threshold:
        assert rules.clears(known, threshold, window, t) == t
        return
    expected = counted[len(counted) - threshold] + window
    assert rules.clears(known, threshold, window, t) == expected
    if len(counted) == threshold:
        assert expected == counted[0] + window
    assert rules.count(known, window, expected) < threshold  # (several may leave at once)
    assert rules.count(known, window, expected - S) >= threshold


# --- the journey on the fake clock ----------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    seq: int
    at: datetime
    rule: str
    key: str
    count: int
    known: tuple[datetime, ...]  # the reschedules the journey had been told of (applied), as of the send


@dataclass
class Trace:
    state: TutorState
    sent: list[Sent] = field(default_factory=list)
    outcomes: list[Any] = field(default_factory=list)
    pruned_ok: bool = True
    pure_ok: bool = True
    exhausted: bool = False


def play(policy: TutorPolicy, arrivals: list[tuple[datetime, Any]], close_at: datetime,
         send_time: timedelta = timedelta(0)) -> Trace:
    """The journey started at T0 with `policy`; each event arrives at its moment; closed at `close_at`."""
    state = TutorState(tutor_id=TUTOR, status=TutorStatus.AWAITING_START, policy=policy)
    trace = Trace(state)
    known: list[datetime] = []
    seq = iter(range(10**9))

    def handle(event: Any) -> bool:
        outcome = fingerprinted(state, event, rules.apply_event(state, event, policy, clock.now()))  # as the shell
        trace.outcomes.append((event, outcome))
        if isinstance(event, Rescheduled) and outcome.code == "applied":
            known.append(event.at.replace(microsecond=0))
        return outcome.applied

    async def send(rule: rules.Rule, key: str, step: PlannedStep, counted: int) -> SendStatus:
        trace.sent.append(Sent(next(seq), clock.now(), rule.name, key, counted, tuple(sorted(known))))
        await clock.activity(send_time)
        return SendStatus.SENT

    def plan() -> PlannedStep | None:
        before = state.model_dump()
        step = rules.next_step(state, policy, T0, clock.now())
        trace.pure_ok &= state.model_dump() == before and step == rules.next_step(state, policy, T0, clock.now())
        return step

    async def taking(step: PlannedStep) -> None:
        await take(state, step, policy, clock.now(), send)
        if step.kind == StepKind.EXPIRE:  # what no window can count is gone
            trace.pruned_ok &= all(r.at > clock.now() - policy.longest_window for r in state.reschedules)

    clock = FakeTemporal(T0, [(at, n, event) for n, (at, event) in enumerate(arrivals)]
                         + [(close_at, len(arrivals), Close(event_id="leaves"))], handle)
    rules.start(state, tutor(), T0)  # the start input: JourneyCore.begin
    clock.run(plan, taking, LOOP_LIMIT)
    trace.exhausted = clock.exhausted
    return trace


def alerts(trace: Trace) -> list[tuple[str, str, datetime]]:
    return [(s.rule, s.key, s.at) for s in trace.sent]


def in_order(*moments: datetime) -> list[tuple[datetime, Any]]:
    """Each reschedule reported as it happens (at = arrival), one session each."""
    return [(at, Rescheduled(session_id=f"s-{n}", at=at, event_id=f"e-{n}")) for n, at in enumerate(moments)]


def test_the_third_reschedule_a_second_inside_seven_days_alerts_the_tutor():
    third = T0 + 7 * D - S
    trace = play(TutorPolicy(), in_order(T0, T0 + 3 * D, third), close_at=T0 + 30 * D)
    assert alerts(trace) == [("supportive", f"tutor-{TUTOR}/supportive-{stamp_key(third)}", third)]
    assert trace.sent[0].count == 3


def test_the_third_reschedule_exactly_seven_days_after_the_first_does_not():
    trace = play(TutorPolicy(), in_order(T0, T0 + 3 * D, T0 + 7 * D), close_at=T0 + 30 * D)
    assert alerts(trace) == []
    assert trace.state.status == TutorStatus.CLOSED and not trace.exhausted


def test_one_alert_per_episode_and_again_only_after_the_window_cleared():
    # 0, 1d, 2d: alert at 2d. 3d, 6d keep the count ≥ 3 → no second alert. The count falls to 2 at
    # 9d (2d leaves: 3d, 6d remain... and 8d? none) → cleared; 10d, 11d bring it back: a new episode.
    moments = [T0, T0 + D, T0 + 2 * D, T0 + 3 * D, T0 + 6 * D, T0 + 10 * D, T0 + 11 * D]
    trace = play(TutorPolicy(manager_threshold=100), in_order(*moments), close_at=T0 + 40 * D)
    assert alerts(trace) == [("supportive", rules.supportive_key(TUTOR, T0 + 2 * D), T0 + 2 * D),
                             ("supportive", rules.supportive_key(TUTOR, T0 + 11 * D), T0 + 11 * D)]


def test_six_in_fourteen_days_tells_the_manager_once():
    moments = [T0 + n * 2 * D for n in range(6)] + [T0 + 12 * D + H]  # 0..10d every 2 days, then one more
    trace = play(TutorPolicy(), in_order(*moments), close_at=T0 + 60 * D)
    manager = [a for a in alerts(trace) if a[0] == "manager"]
    assert manager == [("manager", rules.manager_key(TUTOR, T0 + 10 * D), T0 + 10 * D)]
    assert [a[0] for a in alerts(trace)].count("supportive") >= 1


def test_a_late_report_counts_at_its_own_time_and_a_future_one_is_refused():
    state = TutorState(tutor_id=TUTOR, status=TutorStatus.AWAITING_START)
    rules.start(state, tutor(), T0)
    now = T0 + 10 * D
    for n in range(3):
        rules.apply_event(state, Rescheduled(session_id=f"s-{n}", at=T0 + 5 * D + n * H), TutorPolicy(), now)
    step = rules.next_step(state, TutorPolicy(), T0, now)
    # reported late, but the three are still inside 7 days: the alert is due now, keyed by the third
    assert step.kind == StepKind.CHECKIN and step.at == now and step.not_after == T0 + 12 * D
    assert f"crossed {when(T0 + 5 * D + 2 * H)}" in step.label
    future = rules.apply_event(state, Rescheduled(session_id="s-9", at=now + 6 * M), TutorPolicy(), now)
    assert (future.code, future.field) == ("invalid", "at")
    old = rules.apply_event(state, Rescheduled(session_id="s-8", at=now - 15 * D), TutorPolicy(), now)
    assert old.applied and "counts in none" in old.reason and len(state.reschedules) == 3


def test_a_retry_is_a_duplicate_and_an_event_id_names_one_reschedule():
    state = TutorState(tutor_id=TUTOR, status=TutorStatus.AWAITING_START)
    rules.start(state, tutor(), T0)
    first = rules.apply_event(state, Rescheduled(session_id="s-1", event_id="crm-1"), None, T0)
    first = state.events[-1] = first.model_copy(update={"fingerprint": fingerprint(
        Rescheduled(session_id="s-1", event_id="crm-1"))})  # what the shell records (core/events.fingerprinted)
    retry = rules.apply_event(state, Rescheduled(session_id="s-1", event_id="crm-1"), None, T0 + H)
    assert (first.code, retry.code) == ("applied", "duplicate") and len(state.reschedules) == 1
    other = rules.apply_event(state, Rescheduled(session_id="s-2", event_id="crm-1"), None, T0 + H)
    assert (other.code, other.field) == ("conflict", "event_id")
    again = rules.apply_event(state, Rescheduled(session_id="s-1", at=T0), None, T0 + H)  # no id, same second
    assert again.code == "no_change" and state.reschedules_total == 1


# --- properties -----------------------------------------------------------------------------------

UNIT = 12 * H  # reschedules and windows on a 12 h grid, a second either side: the boundaries get hit
JITTER = st.sampled_from([-S, timedelta(0), timedelta(0), S])


@st.composite
def policies(draw: st.DrawFn) -> TutorPolicy:
    return TutorPolicy(supportive_threshold=draw(st.integers(1, 4)), supportive_window=draw(st.integers(1, 16)) * UNIT,
                       manager_threshold=draw(st.integers(1, 7)), manager_window=draw(st.integers(1, 30)) * UNIT)


@st.composite
def moments(draw: st.DrawFn) -> list[datetime]:
    offsets = draw(st.lists(st.integers(0, 60), min_size=1, max_size=16))
    return sorted(max(T0, T0 + n * UNIT + draw(JITTER)) for n in offsets)


def oracle(times: list[datetime], threshold: int, window: timedelta) -> list[datetime]:
    """Where each episode begins, by brute force: the count at every moment it can change."""
    def counted(t: datetime) -> int:
        return sum(1 for s in times if t - window < s <= t)

    began, inside = [], False
    for moment in sorted(set(times) | {s + window for s in times}):
        if counted(moment) >= threshold and not inside:
            began.append(moment)
        inside = counted(moment) >= threshold
    return began


def expected(policy: TutorPolicy, times: list[datetime]) -> list[tuple[str, str, datetime]]:
    found = []
    for rule in rules.alert_rules(policy):
        found += [(rule.name, rule.key(TUTOR, at), at) for at in oracle(times, rule.threshold, rule.window)]
    return sorted(found, key=lambda a: (a[2], a[0] != "supportive"))


@PROPERTY
@given(policy=policies(), times=moments())
@example(policy=TutorPolicy(), times=[T0, T0 + 3 * D, T0 + 7 * D - S])
@example(policy=TutorPolicy(), times=[T0, T0 + 3 * D, T0 + 7 * D])
def test_alerts_are_exactly_the_episodes_of_the_sliding_windows(policy, times):
    trace = play(policy, in_order(*times), close_at=times[-1] + 70 * UNIT)
    tell([f"{a[0]} alert" for a in alerts(trace)] + (["several episodes"] if len(trace.sent) > 2 else []))
    assert not trace.exhausted and trace.pure_ok and trace.pruned_ok
    assert alerts(trace) == expected(policy, times)


@st.composite
def late_timelines(draw: st.DrawFn) -> tuple[TutorPolicy, list[tuple[datetime, Any]], timedelta]:
    """Reports arriving late (backdated, out of order), some delivered twice: the same event again, or
    its event_id reused with another time (a conflict, refused)."""
    policy = draw(policies())
    arrivals = []
    for n, at in enumerate(draw(moments())):
        arrive = at + draw(st.sampled_from([timedelta(0), timedelta(0), H, UNIT, 5 * UNIT]))
        event = Rescheduled(session_id=f"s-{n}", at=at, event_id=f"e-{n}" if draw(st.booleans()) else None)
        arrivals.append((arrive, event))
        if event.event_id and draw(st.integers(0, 2)) == 0:
            arrivals.append((arrive + draw(st.sampled_from([timedelta(0), H])),
                             event.model_copy(update={"at": event.at + S})))  # its id reused: refused
        elif draw(st.integers(0, 3)) == 0:
            arrivals.append((arrive + H, event))
    send_time = draw(st.sampled_from([timedelta(0), M, UNIT]))
    return policy, sorted(arrivals, key=lambda a: a[0]), send_time


def _first_of_each(arrivals: list[tuple[datetime, Any]]) -> list[tuple[datetime, Any]]:
    seen, kept = set(), []
    for at, event in arrivals:
        identity = event.event_id or (event.session_id, event.at)
        if identity not in seen:
            seen.add(identity)
            kept.append((at, event))
    return kept


@PROPERTY
@given(timeline=late_timelines())
def test_late_and_repeated_reports_alert_once_per_key_while_the_count_is_reached(timeline):
    policy, arrivals, send_time = timeline
    close_at = max(at for at, _ in arrivals) + 70 * UNIT
    trace = play(policy, arrivals, close_at, send_time)
    once = play(policy, _first_of_each(arrivals), close_at, send_time)
    tell([f"{s.rule} alert" for s in trace.sent] + [f"{o.code}" for _, o in trace.outcomes])
    assert not trace.exhausted and trace.pure_ok and trace.pruned_ok
    assert alerts(trace) == alerts(once)  # a retry changes nothing
    keys = [s.key for s in trace.sent]
    assert len(keys) == len(set(keys))
    for sent in trace.sent:  # an alert goes out only while what the journey was told reaches its threshold
        rule = next(r for r in rules.alert_rules(policy) if r.name == sent.rule)
        assert rules.count(sent.known, rule.window, sent.at) >= rule.threshold
        assert sent.count >= rule.threshold


def test_the_properties_meet_what_they_are_about():
    """Not vacuous: the drawn timelines alert, alert more than once, and see duplicates."""
    def labels(drawn: Any) -> list[str]:
        policy, times = drawn
        trace = play(policy, in_order(*times), close_at=times[-1] + 70 * UNIT)
        return [f"{a[0]} alert" for a in alerts(trace)] + (["several"] if len(trace.sent) > 2 else [])

    assert shortfall(st.tuples(policies(), moments()), labels,
                     {"supportive alert": 60, "manager alert": 60, "several": 30}, examples=100, samples=3) == {}
