"""Seed 000's rules without Temporal: example tests for the defaults, and property tests over random
timelines run through the workflow's own code: `workflows.core.loop.run_plan` and
`workflows.interview.workflow.take`, on the fake clock of `journey_clock.py`.

What the test provides is what the workflow gets from Temporal and the send activity:

* the invitation in the start input, or later as the `invite` signal (only the first one counts),
  and every event at its moment, with `apply_event`; an applied event (or the first invitation)
  moves the revision, so a sleeping wait wakes and plans again, as `JourneyCore` does;
* the send step (`core.send.send`) is modelled by an outcome and takes `seconds_per_send` on the
  workflow clock, so events arrive while it is in flight: a returned SKIPPED and a raised permanent
  refusal call `on_skip(key, reason)`, which records a skip under the message key.

Every send step the journey asks for is recorded in the trace (whatever the outcome), with a global
sequence number so "after" means "later in the journey's own order", not just "at a later time".
Each example is labelled (`hypothesis.event`: a cancel during a send, a reminder sent, …) and
`test_journeys_drawn_exercise_what_the_properties_are_about` requires that they really occur.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.unit.journey_clock import FakeTemporal, shortfall, tell
from workflows.interview import rules
from workflows.interview.workflow import take
from workflows.contracts import Recipient, SendStatus
from workflows.core.steps import EventOutcome, PlannedStep, StepKind
from workflows.interview.models import CLOSED_STATUSES, InterviewEvent, InterviewPolicy, InterviewState, InterviewStatus, Invitation, interview_event

UTC = timezone.utc
H = timedelta(hours=1)
D = timedelta(days=1)
STEP = timedelta(minutes=30)  # the grain of random durations: coarse enough to hit the boundaries
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LOOP_LIMIT = 200  # far above any real journey here: ≤ 5 follow-ups + ≤ 12 events + a few steps

PROPERTY = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# --- the simulator ----------------------------------------------------------------------------

SENT, DRY_RUN, SKIPPED, REFUSED, FAILED_REPLAY = "sent", "dry_run", "skipped", "refused", "failed_replay"
"""Send-step outcomes. SKIPPED: the activity returned SKIPPED (suppressed, too late): on_skip.
REFUSED: a permanent refusal raised to the workflow: on_skip, FAILED. FAILED_REPLAY: the activity
found its key already finished as `failed` and returned SendResult(status=FAILED): on_skip."""
STATUS = {SENT: SendStatus.SENT, DRY_RUN: SendStatus.DRY_RUN, SKIPPED: SendStatus.SKIPPED,
          REFUSED: SendStatus.FAILED, FAILED_REPLAY: SendStatus.FAILED}


@dataclass(frozen=True)
class Timed:
    at: datetime
    event: InterviewEvent


@dataclass(frozen=True)
class Journey:
    policy: InterviewPolicy
    started_at: datetime  # workflow start = awaiting_since
    invitation: Invitation | None
    invite_at: datetime | None  # == started_at: in the start input; later: the `invite` signal; None: never
    events: tuple[Timed, ...] = ()
    outcomes: tuple[str, ...] = (SENT,)  # cycled over the send steps
    seconds_per_send: int = 0  # how long one send step takes on the workflow clock


@dataclass(frozen=True)
class Send:
    seq: int
    at: datetime  # when the send step began (the step was taken)
    kind: StepKind
    key: str
    number: int
    step_at: datetime
    not_after: datetime | None
    scheduled_at: datetime | None
    status_before: InterviewStatus
    outcome: str
    done_at: datetime  # when the workflow saw its result


@dataclass(frozen=True)
class Delivery:
    seq: int
    at: datetime
    event: InterviewEvent | None  # None: the invitation
    outcome: EventOutcome | None
    status_after: InterviewStatus
    during_send: bool = False  # handled while a send step was in flight


@dataclass(frozen=True)
class DuplicateCheck:
    event: InterviewEvent
    first: EventOutcome
    once: dict
    twice: dict


@dataclass
class Trace:
    journey: Journey
    state: InterviewState
    sends: list[Send] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    steps: list[tuple[int, datetime, PlannedStep]] = field(default_factory=list)
    duplicate_checks: list[DuplicateCheck] = field(default_factory=list)
    closed_seq: int | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    exhausted: bool = False

    def followups(self) -> list[Send]:
        return [s for s in self.sends if s.kind == StepKind.FOLLOWUP]

    def reminders(self) -> list[Send]:
        return [s for s in self.sends if s.kind == StepKind.REMINDER]

    def applied(self, *kinds: str) -> list[Delivery]:
        return [d for d in self.deliveries
                if d.event is not None and d.event.kind in kinds and d.outcome is not None and d.outcome.applied]


def simulate(journey: Journey, check_duplicates: bool = False) -> Trace:
    policy = journey.policy
    state = InterviewState(interview_id="42", status=InterviewStatus.AWAITING_START, policy=policy)
    trace = Trace(journey=journey, state=state)
    seq = itertools.count()
    outcomes = itertools.cycle(journey.outcomes)
    send_time = timedelta(seconds=journey.seconds_per_send)

    arrivals: list[tuple[datetime, int, InterviewEvent | None]] = [
        (timed.at, i, timed.event) for i, timed in enumerate(journey.events)
    ]
    invited = journey.invitation is not None and journey.invite_at == journey.started_at
    if invited:
        rules.start(state, journey.invitation, journey.started_at)
    elif journey.invitation is not None and journey.invite_at is not None:
        arrivals.append((journey.invite_at, -1, None))

    def note_close(by: str) -> None:
        if trace.closed_seq is None and state.status in CLOSED_STATUSES:
            trace.closed_seq, trace.closed_at, trace.closed_by = next(seq), clock.now(), by

    def handle(event: InterviewEvent | None) -> bool:  # the `invite` / `event` signal: True if it changed the journey
        nonlocal invited
        now = clock.now()
        if event is None:  # only the first invitation counts
            first = not invited
            if first:
                invited = True
                assert journey.invitation is not None
                rules.start(state, journey.invitation, now)
            trace.deliveries.append(Delivery(next(seq), now, None, None, state.status, clock.in_flight))
            return first
        if check_duplicates:
            once, twice = state.model_copy(deep=True), state.model_copy(deep=True)
            first = rules.apply_event(once, event, policy, now)
            rules.apply_event(twice, event, policy, now)
            rules.apply_event(twice, event, policy, now)
            trace.duplicate_checks.append(DuplicateCheck(event, first, once.model_dump(), twice.model_dump()))
        outcome = rules.apply_event(state, event, policy, now)
        trace.deliveries.append(Delivery(next(seq), now, event, outcome, state.status, clock.in_flight))
        note_close(f"event:{event.kind}")
        return outcome.applied

    async def send(key: str, template: str, step: PlannedStep) -> SendStatus:  # `_send` → `core.send.send`
        outcome, began = next(outcomes), clock.now()
        trace.sends.append(Send(next(seq), began, step.kind, key, step.number, step.at, step.not_after,
                                state.scheduled_at, state.status, outcome, began + send_time))
        await clock.activity(send_time)
        if outcome in (SKIPPED, REFUSED, FAILED_REPLAY):
            rules.record_skip(state, key, f"send step: {outcome}", clock.now())
        return STATUS[outcome]

    async def taking(step: PlannedStep) -> None:  # `InterviewJourney._take`
        trace.steps.append((next(seq), clock.now(), step))
        await take(state, step, clock.now(), send)
        note_close(f"step:{step.kind.value}")

    clock = FakeTemporal(journey.started_at, arrivals, handle)
    clock.run(lambda: rules.next_step(state, policy, journey.started_at, clock.now()), taking, LOOP_LIMIT)
    trace.exhausted = clock.exhausted
    tell(labels(trace))
    return trace


SENT_AS = {StepKind.FOLLOWUP: "follow-up", StepKind.REMINDER: "reminder"}


def labels(trace: Trace) -> list[str]:
    """What happened in a journey, in the words `hypothesis.event` and the coverage test use."""
    said = [f"closed {trace.state.status.value}"]
    for s in trace.sends:
        said.append(f"{SENT_AS[s.kind]} sent" if s.outcome in (SENT, DRY_RUN) else "send step skipped or refused")
    for skip in trace.state.skips:
        if "expired before" in skip.reason:
            said.append("follow-up skipped: the interview expired")
        elif "beyond the grace" in skip.reason:
            said.append("reminder skipped: beyond the grace")
    for d in trace.deliveries:
        if d.event is None:
            said.append("invitation after the start")
            continue
        what = f"{d.event.kind} {'applied' if d.outcome.applied else d.outcome.code}"
        said += [what, f"{what} during a send"] if d.during_send else [what]
        if d.during_send and trace.closed_by == f"event:{d.event.kind}" and trace.closed_at == d.at:
            said.append("closed by an event during a send")
        if d.during_send and d.outcome.applied and d.event.kind in ("confirm", "reschedule"):
            said.append("interview time set during a send")
    return said


# --- building journeys ------------------------------------------------------------------------


def invitation(invited_at: datetime | None = T0, scheduled_at: datetime | None = None) -> Invitation:
    return Invitation(
        interview_id="42",
        candidate=Recipient(email="ann@example.com", name="Ann"),
        invited_at=invited_at,
        slot_selection_url="https://jobs.example.com/slots/42",
        scheduled_at=scheduled_at,
    )


def event(kind: str, at: datetime, scheduled_at: datetime | None = None, event_id: str | None = None) -> Timed:
    return Timed(at, interview_event(kind=kind, scheduled_at=scheduled_at, event_id=event_id))


def journey(*events: Timed, policy: InterviewPolicy = InterviewPolicy(), started_at: datetime = T0,
            invited_at: datetime | None = T0, scheduled_at: datetime | None = None, **fields) -> Journey:
    return Journey(policy=policy, started_at=started_at, invitation=invitation(invited_at, scheduled_at),
                   invite_at=started_at, events=tuple(events), **fields)


def durations(low: int, high: int) -> st.SearchStrategy[timedelta]:
    return st.integers(low, high).map(lambda n: n * STEP)


policies = st.builds(
    InterviewPolicy,
    followup_after=durations(1, 200),
    followup_interval=durations(1, 120),
    max_followups=st.integers(0, 5),
    reminder_before=durations(1, 120),
    reminder_grace=durations(1, 100),  # a zero grace is refused: no timer fires exactly on time
    expire_after=durations(1, 800),
    hold_early_events_for=durations(1, 100),
)


START_TIMES = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC))
INVITE_MODES = st.sampled_from(["input", "input", "input", "late", "never"])
LATE_INVITE = durations(0, 200)
INVITED_BEFORE = st.one_of(st.none(), durations(0, 400))
SCHEDULED_AFTER = st.one_of(st.none(), st.none(), durations(-60, 800))
EVENT_AT = durations(0, 1200)
NEAR = st.integers(-1, 8).map(lambda n: n * timedelta(minutes=5))  # from just before a moment to just after it
DURING = st.integers(1, 8).map(lambda n: n * timedelta(minutes=5))  # after a moment: during its send, if that is slow
RACING_KINDS = st.sampled_from(["cancel", "complete", "confirm", "reschedule"])
EVENT_KINDS = st.sampled_from(["confirm", "confirm", "reschedule", "reschedule", "cancel", "complete"])
EVENT_SCHEDULED_AT = durations(-100, 1200)
OUTCOMES = st.lists(st.sampled_from([SENT, SENT, DRY_RUN, SKIPPED, REFUSED]), min_size=1, max_size=5)
# A send step takes time (retries, a slow server): events on the 30-minute grid land inside it, or on its end.
SECONDS_PER_SEND = st.sampled_from([45 * 60, 20 * 60, 30 * 60, 3 * 3600, 1, 0])


@st.composite
def journeys(draw: st.DrawFn) -> Journey:
    started_at = draw(START_TIMES)
    policy = draw(policies)
    mode = draw(INVITE_MODES)
    invite_at = {"input": started_at, "late": started_at + draw(LATE_INVITE), "never": None}[mode]
    received = invite_at or started_at
    before = draw(INVITED_BEFORE)
    invited_at = None if before is None else received - before  # None: the workflow's clock at the start
    after = draw(SCHEDULED_AFTER)
    scheduled_at = None if after is None else received + after
    if scheduled_at is not None and invited_at is not None and scheduled_at <= invited_at:
        scheduled_at = invited_at + STEP  # Invitation requires it; the interview may still be past by the start
    # the moments of the steps, the first send first: an event a few minutes around one races the
    # step, or its send in flight
    anchor = invited_at or received
    followups = [anchor + policy.followup_after + n * policy.followup_interval for n in range(policy.max_followups)]
    near = followups + [anchor + policy.expire_after]
    if scheduled_at is not None:
        near = [scheduled_at - policy.reminder_before, scheduled_at] + near
    events: list[Timed] = []
    if near and draw(st.booleans()):  # one that comes in while the first send step is likely in flight
        kind = draw(RACING_KINDS)
        when_ = started_at + draw(EVENT_SCHEDULED_AT) if kind in ("confirm", "reschedule") else None
        event_id = "racing" if draw(st.booleans()) else None
        events.append(event(kind, max(started_at, near[0] + draw(DURING)), when_, event_id))
    for i in range(draw(st.integers(0, 6))):
        kind = draw(EVENT_KINDS)
        if draw(st.integers(0, 2)) == 0:
            at = started_at + draw(EVENT_AT)
        else:
            moment = near[0] if draw(st.booleans()) else near[draw(st.integers(0, len(near) - 1))]
            at = max(started_at, moment + draw(NEAR))
        when_ = started_at + draw(EVENT_SCHEDULED_AT) if kind in ("confirm", "reschedule") else None
        if when_ is not None:
            near += [when_ - policy.reminder_before, when_]
        events.append(event(kind, at, when_, f"ev-{i}" if draw(st.booleans()) else None))
        if draw(st.integers(0, 4)) == 0:  # an immediate retry of the same event
            events.append(events[-1])
    events.sort(key=lambda timed: timed.at)
    return Journey(policy=policy, started_at=started_at, invitation=invitation(invited_at, scheduled_at),
                   invite_at=invite_at, events=tuple(events), outcomes=tuple(draw(OUTCOMES)),
                   seconds_per_send=draw(SECONDS_PER_SEND))


# Boundary journeys used as explicit examples (they must always be tried).
REMIND_AT_THE_INTERVIEW = journey(
    policy=InterviewPolicy(reminder_before=H, reminder_grace=2 * H),
    started_at=T0 + 10 * H, invited_at=T0, scheduled_at=T0 + 10 * H,
)
FOLLOWUP_AT_THE_EXPIRY = journey(started_at=T0 + 14 * D, invited_at=T0)
RESCHEDULED_DURING_THE_REMINDER = journey(  # its send step takes 30 min; the new time is two days later
    event("reschedule", T0 + 6 * D + 10 * timedelta(minutes=1), T0 + 9 * D), scheduled_at=T0 + 7 * D,
    seconds_per_send=30 * 60,
)
REMIND_AFTER_A_PAST_INTERVIEW = journey(  # started 1 h after the interview, well within a 5 h grace
    policy=InterviewPolicy(reminder_before=H, reminder_grace=5 * H),
    started_at=T0 + 11 * H, invited_at=T0, scheduled_at=T0 + 10 * H,
)


# --- example tests: seed 000's defaults -------------------------------------------------------


def test_seed_defaults():
    policy = InterviewPolicy()
    assert policy.followup_after == 48 * H
    assert policy.followup_interval == 24 * H
    assert policy.max_followups == 3
    assert policy.reminder_before == 24 * H
    assert policy.reminder_grace == 2 * H
    assert policy.expire_after == 14 * D


def test_unanswered_gets_followups_at_48_72_96_hours_then_expires_at_14_days():
    trace = simulate(journey())
    assert [(s.number, s.at - T0) for s in trace.sends] == [(1, 48 * H), (2, 72 * H), (3, 96 * H)]
    assert [s.key for s in trace.sends] == [f"interview-42/followup-{n}" for n in (1, 2, 3)]
    assert trace.state.status == InterviewStatus.EXPIRED
    assert trace.closed_by == "step:expire" and trace.closed_at == T0 + 14 * D
    assert trace.state.followups_sent == 3 and trace.state.last_sent_at == T0 + 96 * H


def test_first_plan_is_followup_one_at_48_hours_bounded_by_the_expiry():
    state = InterviewState(interview_id="42", status=InterviewStatus.AWAITING_START)
    rules.start(state, invitation(), T0)
    step = rules.next_step(state, InterviewPolicy(), T0)
    assert state.status == InterviewStatus.PENDING
    assert (step.kind, step.at, step.number, step.not_after) == (StepKind.FOLLOWUP, T0 + 48 * H, 1, T0 + 14 * D)


def test_after_the_last_followup_the_plan_is_the_expiry():
    state = InterviewState(interview_id="42", status=InterviewStatus.PENDING, invited_at=T0,
                           followups_sent=3, last_sent_at=T0 + 96 * H)
    step = rules.next_step(state, InterviewPolicy(), T0)
    assert (step.kind, step.at) == (StepKind.EXPIRE, T0 + 14 * D)


def test_a_worker_that_was_down_does_not_fire_a_burst():
    trace = simulate(journey(started_at=T0 + 100 * H))  # woke up 52 h after follow-up 1 was due
    assert [s.at - T0 for s in trace.sends] == [100 * H, 124 * H, 148 * H]


def test_scheduled_gets_one_reminder_24_hours_before_then_completes():
    interview_at = T0 + 7 * D
    trace = simulate(journey(scheduled_at=interview_at))
    assert [(s.kind, s.at) for s in trace.sends] == [(StepKind.REMINDER, interview_at - 24 * H)]
    assert trace.sends[0].key == f"interview-42/reminder-{interview_at.strftime('%Y%m%dT%H%M%SZ')}"
    assert trace.state.status == InterviewStatus.COMPLETED and trace.closed_at == interview_at
    assert trace.state.reminders_sent == [trace.sends[0].key]


def test_confirm_after_the_first_followup_stops_followups_and_reminds_the_day_before():
    interview_at = T0 + 200 * H
    trace = simulate(journey(event("confirm", T0 + 60 * H, interview_at)))
    assert [(s.kind, s.at - T0) for s in trace.sends] == [(StepKind.FOLLOWUP, 48 * H), (StepKind.REMINDER, 176 * H)]
    assert trace.state.status == InterviewStatus.COMPLETED


def test_reminder_late_within_the_grace_is_sent_at_once():
    interview_at = T0 + 7 * D
    trace = simulate(journey(scheduled_at=interview_at, started_at=interview_at - 23 * H))
    assert [(s.kind, s.at) for s in trace.sends] == [(StepKind.REMINDER, interview_at - 23 * H)]


def test_reminder_later_than_the_grace_is_skipped_with_a_reason():
    interview_at = T0 + 7 * D
    trace = simulate(journey(scheduled_at=interview_at, started_at=interview_at - 21 * H - timedelta(seconds=1)))
    assert trace.sends == []
    assert [s.step for s in trace.state.skips] == [rules.reminder_key("42", interview_at)]
    assert trace.state.status == InterviewStatus.COMPLETED


def test_a_past_interview_gets_no_reminder_and_completes():
    trace = simulate(journey(invited_at=T0 - 10 * D, scheduled_at=T0 - 3 * D))
    assert trace.sends == []
    assert trace.state.status == InterviewStatus.COMPLETED and trace.closed_at == T0


def test_confirm_into_the_past_is_rejected():
    trace = simulate(journey(event("confirm", T0 + 10 * H, T0 + 5 * H)))
    assert trace.deliveries[0].outcome.applied is False
    assert trace.state.status == InterviewStatus.EXPIRED and len(trace.followups()) == 3


def test_cancel_sends_nothing_more():
    trace = simulate(journey(event("cancel", T0 + 50 * H)))
    assert [s.number for s in trace.sends] == [1]
    assert trace.state.status == InterviewStatus.CANCELLED and trace.closed_at == T0 + 50 * H
    assert rules.next_step(trace.state, InterviewPolicy(), T0) is None


def test_an_event_after_the_end_is_rejected_and_changes_nothing():
    state = InterviewState(interview_id="42", status=InterviewStatus.CANCELLED, invited_at=T0)
    outcome = rules.apply_event(state, interview_event(kind="confirm", scheduled_at=T0 + 9 * D), None, T0 + H)
    assert outcome.applied is False and state.status == InterviewStatus.CANCELLED and state.scheduled_at is None


def test_reschedule_after_the_reminder_reminds_again_for_the_new_time_only_once_per_time():
    first, second = T0 + 100 * H, T0 + 110 * H
    trace = simulate(journey(
        event("confirm", T0 + 10 * H, first, "c1"),
        event("reschedule", T0 + 80 * H, second, "r1"),  # after the reminder for `first` (at 76 h)
        event("reschedule", T0 + 90 * H, first, "r2"),  # back: that time was already reminded
    ))
    assert [(s.kind, s.at - T0) for s in trace.sends] == [(StepKind.REMINDER, 76 * H), (StepKind.REMINDER, 86 * H)]
    assert trace.state.scheduled_at == first and trace.closed_at == first


def test_events_before_the_invitation_are_held_and_keep_their_effect():
    interview_at = T0 + 5 * D
    trace = simulate(Journey(policy=InterviewPolicy(), started_at=T0, invitation=invitation(T0 + H),
                             invite_at=T0 + 2 * H, events=(event("confirm", T0, interview_at),)))
    assert trace.deliveries[0].outcome.applied and trace.deliveries[0].status_after == InterviewStatus.AWAITING_START
    assert [(s.kind, s.at) for s in trace.sends] == [(StepKind.REMINDER, interview_at - 24 * H)]
    assert trace.state.status == InterviewStatus.COMPLETED


def test_without_an_invitation_the_journey_is_abandoned_after_the_hold():
    trace = simulate(Journey(policy=InterviewPolicy(), started_at=T0, invitation=None, invite_at=None,
                             events=(event("confirm", T0 + H, T0 + 5 * D),)))
    assert trace.sends == [] and trace.state.status == InterviewStatus.ABANDONED
    assert trace.closed_at == T0 + 24 * H


def test_the_same_event_twice_applies_once():
    state = InterviewState(interview_id="42", status=InterviewStatus.PENDING, invited_at=T0)
    confirm = interview_event(kind="confirm", scheduled_at=T0 + 5 * D, event_id="abc")
    assert rules.apply_event(state, confirm, None, T0 + H).applied is True
    before = state.model_dump()
    second = rules.apply_event(state, confirm, None, T0 + 2 * H)
    assert second.applied is False and "duplicate" in second.reason
    assert state.model_dump() == before


def test_reschedule_back_without_event_id_is_a_new_event():
    first, second = T0 + 100 * H, T0 + 150 * H
    trace = simulate(journey(
        event("confirm", T0 + 10 * H, T0 + 120 * H),
        event("reschedule", T0 + 20 * H, first),
        event("reschedule", T0 + 30 * H, second),
        event("reschedule", T0 + 40 * H, first),  # the candidate moves back: a new request, no event_id
    ))
    assert trace.state.scheduled_at == first


def test_a_late_retry_of_a_noop_confirm_does_not_undo_a_reschedule():
    first, second = T0 + 100 * H, T0 + 150 * H
    confirm = event("confirm", T0 + 10 * H, first, "confirm-1")
    trace = simulate(journey(
        confirm,  # the invitation already has that time: rejected as a no-op
        event("reschedule", T0 + 20 * H, second, "resched-1"),
        replace(confirm, at=T0 + 30 * H),  # at-least-once delivery: the same confirm again
        scheduled_at=first,
    ))
    assert trace.state.scheduled_at == second


def test_a_reminder_whose_send_step_returns_failed_is_not_sent_again():
    interview_at = T0 + 7 * D
    trace = simulate(journey(scheduled_at=interview_at, outcomes=(FAILED_REPLAY,), seconds_per_send=1))
    assert len(trace.reminders()) == 1


def test_no_reminder_at_the_interview_moment():
    trace = simulate(REMIND_AT_THE_INTERVIEW)
    assert trace.reminders() == []


def test_no_followup_at_the_expiry_moment():
    trace = simulate(FOLLOWUP_AT_THE_EXPIRY)
    assert trace.followups() == []
    assert trace.state.status == InterviewStatus.EXPIRED


# --- properties -------------------------------------------------------------------------------


@PROPERTY
@given(journeys())
def test_the_simulation_always_terminates_in_bounded_steps(j: Journey):
    trace = simulate(j)
    assert not trace.exhausted
    assert trace.state.status in CLOSED_STATUSES
    assert trace.closed_seq is not None
    # each step either sends a follow-up (≤ max), reminds or skips once per scheduled time, or ends
    distinct_times = len({d.event.scheduled_at for d in trace.applied("confirm", "reschedule")}) + 1
    assert len(trace.steps) <= j.policy.max_followups + distinct_times + 1


@PROPERTY
@given(journeys())
def test_never_a_send_after_cancel_or_complete(j: Journey):
    trace = simulate(j)
    for ended in trace.applied("cancel", "complete"):
        assert all(s.seq < ended.seq for s in trace.sends)
        assert ended.status_after in (InterviewStatus.CANCELLED, InterviewStatus.COMPLETED)


@PROPERTY
@given(journeys())
def test_no_send_at_all_after_the_journey_closed(j: Journey):
    trace = simulate(j)
    assert trace.closed_seq is not None
    assert all(s.seq < trace.closed_seq for s in trace.sends)
    assert all(s.at <= trace.closed_at for s in trace.sends)
    assert all(s.status_before in (InterviewStatus.PENDING, InterviewStatus.SCHEDULED) for s in trace.sends)


@PROPERTY
@given(journeys())
@example(REMIND_AFTER_A_PAST_INTERVIEW)
def test_never_a_reminder_after_the_interview_or_before_its_moment(j: Journey):
    for s in simulate(j).reminders():
        assert s.scheduled_at is not None and s.status_before == InterviewStatus.SCHEDULED
        assert s.at <= s.scheduled_at
        assert s.at >= s.scheduled_at - j.policy.reminder_before


@PROPERTY
@given(journeys())
@example(REMIND_AT_THE_INTERVIEW)
def test_never_a_reminder_at_or_after_the_interview(j: Journey):
    for s in simulate(j).reminders():
        assert s.at < s.scheduled_at


@PROPERTY
@given(journeys())
def test_no_reminder_later_than_its_moment_plus_grace(j: Journey):
    for s in simulate(j).reminders():
        assert s.at <= s.scheduled_at - j.policy.reminder_before + j.policy.reminder_grace


@PROPERTY
@given(journeys())
def test_at_most_one_reminder_per_scheduled_time(j: Journey):
    trace = simulate(j)
    per_time = Counter(s.scheduled_at for s in trace.reminders())
    assert all(count == 1 for count in per_time.values())
    assert len(set(trace.state.reminders_sent)) == len(trace.state.reminders_sent)


@PROPERTY
@given(journeys())
@example(RESCHEDULED_DURING_THE_REMINDER)
def test_the_interview_time_it_completes_at_was_reminded_or_skipped_with_a_reason(j: Journey):
    """Liveness, where a reschedule lands during a reminder's send: the journey keeps as reminded
    only what went out, so the time it ends up at is reminded (or skipped with a reason) too."""
    trace = simulate(j)
    delivered = {s.key for s in trace.reminders() if s.outcome in (SENT, DRY_RUN)}
    assert set(trace.state.reminders_sent) <= delivered
    if trace.closed_by == "step:complete":
        key = rules.reminder_key(trace.state.interview_id, trace.state.scheduled_at)
        assert key in {s.key for s in trace.reminders()} | {skip.step for skip in trace.state.skips}


@PROPERTY
@given(journeys())
def test_followups_are_spaced_by_the_interval_and_never_early(j: Journey):
    trace = simulate(j)
    followups = trace.followups()
    for earlier, later in zip(followups, followups[1:]):
        assert later.at - earlier.at >= j.policy.followup_interval
    for s in followups:
        assert s.at >= trace.state.invited_at + j.policy.followup_after + (s.number - 1) * j.policy.followup_interval


@PROPERTY
@given(journeys())
def test_at_most_max_followups_numbered_in_order(j: Journey):
    trace = simulate(j)
    numbers = [s.number for s in trace.followups()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) <= j.policy.max_followups
    assert len({s.key for s in trace.followups()}) == len(numbers)


@PROPERTY
@given(journeys())
def test_no_followup_after_confirm_or_reschedule(j: Journey):
    trace = simulate(j)
    for scheduled in trace.applied("confirm", "reschedule"):
        assert all(s.seq < scheduled.seq for s in trace.followups())
    assert all(s.status_before == InterviewStatus.PENDING and s.scheduled_at is None for s in trace.followups())


@PROPERTY
@given(journeys())
def test_followups_no_later_than_the_expiry_and_the_end_on_time(j: Journey):
    trace = simulate(j)
    if trace.state.invited_at is None:
        return
    expires_at = trace.state.invited_at + j.policy.expire_after
    assert all(s.at <= expires_at for s in trace.followups())
    # the journey wakes for its last step at max(step.at, the moment of the last thing that happened:
    # an event, or a send step's end)
    last_activity = max([j.started_at] + [d.at for d in trace.deliveries if d.seq < trace.closed_seq]
                        + [s.done_at for s in trace.sends])
    if trace.state.status == InterviewStatus.EXPIRED:
        assert trace.closed_at == max(expires_at, last_activity)
        assert not trace.applied("confirm", "reschedule")
    if trace.closed_by == "step:complete":
        assert trace.closed_at == max(trace.state.scheduled_at, last_activity)


@PROPERTY
@given(journeys())
@example(FOLLOWUP_AT_THE_EXPIRY)
def test_followups_strictly_before_the_expiry(j: Journey):
    trace = simulate(j)
    if trace.state.invited_at is not None:
        assert all(s.at < trace.state.invited_at + j.policy.expire_after for s in trace.followups())


@PROPERTY
@given(journeys())
def test_a_duplicate_event_gives_the_same_state_as_once(j: Journey):
    trace = simulate(j, check_duplicates=True)
    assert len(trace.duplicate_checks) == len([d for d in trace.deliveries if d.event is not None])
    for check in trace.duplicate_checks:
        if check.first.applied:
            assert check.twice == check.once  # the whole state, the outcome log included
        else:  # a rejected event changes nothing but the outcome log, which notes each rejection
            strip = lambda dump: {k: v for k, v in dump.items() if k != "events"}  # noqa: E731
            assert strip(check.twice) == strip(check.once)


@PROPERTY
@given(journeys())
def test_every_event_delivered_twice_at_once_changes_nothing(j: Journey):
    doubled = replace(j, events=tuple(e for timed in j.events for e in (timed, timed)))
    once, twice = simulate(j), simulate(doubled)
    strip = lambda s: (s.at, s.kind, s.key, s.outcome)  # noqa: E731
    assert [strip(s) for s in twice.sends] == [strip(s) for s in once.sends]
    ignore = {"events", "skips"}
    assert twice.state.model_dump(exclude=ignore) == once.state.model_dump(exclude=ignore)
    assert [(s.step, s.at) for s in twice.state.skips] == [(s.step, s.at) for s in once.state.skips]


# --- what the properties are about really happens ---------------------------------------------

# Per 300 journeys drawn: the same 300 on every run of a given suite, though which ones depends on
# Hypothesis (its version, and the constants it mines from the modules loaded), so each bound is a
# third or less of what such samples show. Most properties say "for every send…" or "for every
# applied cancel…", and would pass on journeys where nothing happens. Seen when this was written:
# 15-25 follow-ups and 31-48 reminders sent, 8-16 journeys closed by an event that came in during a
# send (6-7 by a cancel). Rarer ones are pinned by examples: a follow-up skipped at the expiry
# (FOLLOWUP_AT_THE_EXPIRY), a reschedule during a reminder's send (RESCHEDULED_DURING_THE_REMINDER).
AT_LEAST = {
    "follow-up sent": 6, "reminder sent": 12, "send step skipped or refused": 8,
    "reminder skipped: beyond the grace": 4, "cancel applied": 20, "complete applied": 15, "confirm applied": 15,
    "reschedule applied": 20, "closed by an event during a send": 3, "cancel applied during a send": 2,
    "cancel duplicate": 4, "confirm invalid": 10, "invitation after the start": 3,
    "closed expired": 15, "closed completed": 35, "closed cancelled": 17, "closed abandoned": 25,
}


def test_journeys_drawn_exercise_what_the_properties_are_about():
    assert shortfall(journeys(), lambda j: labels(simulate(j)), AT_LEAST) == {}
