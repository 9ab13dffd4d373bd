"""Seeds 002–004's rules without Temporal: the appointment, lead and class-session journeys.
Example tests for the defaults, and property tests over random start times, policies and event
timelines, run through each workflow's own code on the fake clock of `journey_clock.py` (the same
idea as `test_interview_rules.py`): the loop is `workflows.core.loop.run_plan`, each step is taken
by `workflows/<kind>/workflow.py: take` (and a session's fan-out by `fan_out_in_chunks`). What the
tests provide is what a workflow gets from Temporal and the send activity:

    workflow                                here
    --------------------------------------  ------------------------------------------------------
    `__init__` with a start input           `clock.receive(start)` before the loop
    `book` / `begin` signal                 a timed delivery; only the first one starts the journey
    `event` signal                          a timed delivery: `rules.apply_event`; an applied one
                                            (or the first start) wakes the loop, as `JourneyCore`
    `core.send.send` (one message, or one   `Clock.send`: each outcome is the next of the journey's
    chunk of `asyncio.gather`)              cycle; the send takes `send_time` on the workflow clock
                                            and a signal that arrives meanwhile is handled at its
                                            moment, before the workflow sees the result; a skip, a
                                            suppression or a permanent refusal calls `on_skip` →
                                            `record_skip`
    `SessionJourney._fan_out`               `fan_out_in_chunks` with the roster in the state,
                                            `chunk` at a time (FAN_OUT_CHUNK in the workflow;
                                            smaller here, so that a roster of 3 does what one of
                                            60 does)

Every delivery, step and send gets a global sequence number, so "after" means "later in the
journey's own order", not just "at a later time". The properties judge the trace against facts
read off the timeline itself (the time the last applied reschedule asked for, who the last
add/remove left on the roster, who gave feedback), not against the state the rules keep. Each
example is labelled (`hypothesis.event`), and a test per journey requires that what the properties
are about (a cancel during a send, a reminder sent, a skip) really happens in what they draw.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.unit.journey_clock import FakeTemporal, shortfall, tell
from workflows.appointment import rules as appointment_rules
from workflows.appointment.workflow import take as appointment_take
from workflows.lead import rules as lead_rules
from workflows.lead.workflow import take as lead_take
from workflows.session import rules as session_rules
from workflows.core.fields import with_overrides
from workflows.appointment.models import APPOINTMENT_CLOSED, AppointmentEvent, AppointmentPolicy, AppointmentState, AppointmentStatus, Booking, appointment_event
from workflows.contracts import Recipient, SendStatus
from workflows.core.steps import EventOutcome, PlannedStep, StepKind
from workflows.lead.models import LEAD_CLOSED, Lead, LeadEvent, LeadPolicy, LeadPolicyOverrides, LeadState, LeadStatus, LeadStep, lead_event as make_lead_event
from workflows.session.models import Attendee, ClassSession, SESSION_CLOSED, SessionEvent, SessionPolicy, SessionState, SessionStatus, Tutor, session_event as make_session_event
from workflows.session.workflow import FAN_OUT_CHUNK, fan_out_in_chunks
from workflows.session.workflow import take as session_take

UTC = timezone.utc
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
STEP = timedelta(minutes=15)  # the grain of random durations: coarse enough to hit the boundaries
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LOOP_LIMIT = 300  # far above any journey here: ≤ 12 events (+ retries) and a few dozen steps

PROPERTY = settings(max_examples=120, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# --- the shared clock: what every journey's `run` loop does -----------------------------------

SENT, DRY_RUN, SKIPPED, SUPPRESSED, REFUSED = "sent", "dry_run", "skipped", "suppressed", "refused"
"""Send-step outcomes. SKIPPED: the activity returned SKIPPED (too late at the send step).
SUPPRESSED: it returned SKIPPED because the address is suppressed (unsubscribe, hard bounce).
REFUSED: a permanent refusal raised to the workflow; `core.send.send` returns FAILED."""
STATUS = {SENT: SendStatus.SENT, DRY_RUN: SendStatus.DRY_RUN, SKIPPED: SendStatus.SKIPPED,
          SUPPRESSED: SendStatus.SKIPPED, REFUSED: SendStatus.FAILED}
SKIP_REASONS = {SKIPPED: "too late: reached the send step after not_after",
                SUPPRESSED: f"{lead_rules.SUPPRESSED_PREFIX} (unsubscribe)",  # the activity's wording
                REFUSED: "delivery failed: 550 mailbox unavailable"}


@dataclass(frozen=True)
class Timed:
    at: datetime
    event: Any  # an event model (the `event` signal)


@dataclass(frozen=True)
class Delivery:
    seq: int
    at: datetime
    event: Any  # an event, or the start payload (Booking / Lead / ClassSession)
    outcome: EventOutcome | None
    status_before: Any
    during_send: bool = False  # handled while a send step was in flight


@dataclass(frozen=True)
class Taken:
    seq: int
    at: datetime
    step: PlannedStep


@dataclass(frozen=True)
class Send:
    seq: int
    at: datetime
    step: PlannedStep
    key: str
    outcome: str
    name: str = ""  # session: the fan-out (`reminder-15m-…`, `cancelled`, `feedback`, …)
    attendee: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class DuplicateCheck:
    event: Any
    first: EventOutcome
    once: dict
    twice: dict


@dataclass
class Trace:
    state: Any
    sends: list[Send] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    steps: list[Taken] = field(default_factory=list)
    duplicate_checks: list[DuplicateCheck] = field(default_factory=list)
    closed_seq: int | None = None
    exhausted: bool = False
    policy: Any = None  # the policy the journey ran with (a start input may override it)

    def applied(self, *kinds: str) -> list[Delivery]:
        return [d for d in self.deliveries
                if getattr(d.event, "kind", None) in kinds and d.outcome is not None and d.outcome.applied]

    def sends_of(self, *kinds: StepKind) -> list[Send]:
        return [s for s in self.sends if s.step.kind in kinds]

    def started_seq(self, start_type: type) -> int | None:
        return next((d.seq for d in self.deliveries if isinstance(d.event, start_type)), None)


def twice(apply: Callable[[Any, Any], EventOutcome], state: Any, event: Any) -> DuplicateCheck:
    """Apply `event` to two copies of the state: once, and twice in a row."""
    once, again = state.model_copy(deep=True), state.model_copy(deep=True)
    first = apply(once, event)
    apply(again, event)
    apply(again, event)
    return DuplicateCheck(event, first, once.model_dump(), again.model_dump())


def timeline(events: tuple[Timed, ...], start: Any, start_at: datetime | None, started_at: datetime) -> list:
    """What will arrive while the journey runs: the events, and the start signal if it comes late."""
    pending = [(timed.at, i, timed.event) for i, timed in enumerate(events)]
    if start is not None and start_at is not None and start_at != started_at:
        pending.append((start_at, -1, start))  # a start signal sent with an event goes first
    return pending


class Clock:
    """What Temporal and the send activity are to a journey, on the fake clock: the journey's own
    loop runs on it (`run`), and its sends take `send_time` while events keep arriving (`send`)."""

    def __init__(self, trace: Trace, started_at: datetime, pending: list, deliver: Callable[[Any], Any],
                 on_skip: Callable[[str, str], None], outcomes: tuple[str, ...], send_time: timedelta,
                 closed: frozenset) -> None:
        """`deliver(item)` → the rules' outcome of an event, or for a start whether it was the first."""
        self.trace, self.closed = trace, closed
        self.temporal = FakeTemporal(started_at, pending, self.receive)
        self.deliver, self.on_skip, self.send_time = deliver, on_skip, send_time
        self.outcomes = itertools.cycle(outcomes)
        self.seq = itertools.count()

    @property
    def now(self) -> datetime:
        return self.temporal.now()

    def tick(self) -> int:
        return next(self.seq)

    def receive(self, item: Any) -> bool:
        """A signal handler runs; True when it changed the journey (the loop then plans again)."""
        before = self.trace.state.status
        outcome = self.deliver(item)
        start = isinstance(outcome, bool)
        self.trace.deliveries.append(Delivery(self.tick(), self.now, item, None if start else outcome, before,
                                              self.temporal.in_flight))
        self._note_close()
        return outcome if start else outcome.applied

    def run(self, plan: Callable[[], PlannedStep | None], take: Callable[[PlannedStep], Awaitable[None]]) -> None:
        async def taking(step: PlannedStep) -> None:
            self.trace.steps.append(Taken(self.tick(), self.now, step))
            await take(step)
            self._note_close()

        self.temporal.run(plan, taking, LOOP_LIMIT)
        self.trace.exhausted = self.temporal.exhausted

    async def send(self, step: PlannedStep, messages: list[tuple[str, dict]]) -> list[SendStatus]:
        """`core.send.send` for one message, or for one chunk of them in flight together."""
        sends = [Send(self.tick(), self.now, step, key, next(self.outcomes), **facts) for key, facts in messages]
        self.trace.sends.extend(sends)
        await self.temporal.activity(self.send_time)
        for s in sends:
            if s.outcome in SKIP_REASONS:
                self.on_skip(s.key, SKIP_REASONS[s.outcome])
        return [STATUS[s.outcome] for s in sends]

    def _note_close(self) -> None:
        if self.trace.closed_seq is None and self.trace.state.status in self.closed:
            self.trace.closed_seq = self.tick()


def happened(trace: Trace, sent_as: Callable[[Send], str]) -> list[str]:
    """What happened in a journey, in the words `hypothesis.event` and the coverage tests use."""
    said = [f"closed {trace.state.status.value}"]
    said += [f"{sent_as(s)} sent" if s.outcome in (SENT, DRY_RUN) else f"{sent_as(s)}: send step {s.outcome}"
             for s in trace.sends]
    for d in trace.deliveries:
        if d.outcome is None:  # a start
            continue
        what = f"{d.event.kind} {'applied' if d.outcome.applied else d.outcome.code}"
        said += [what, f"{what} during a send"] if d.during_send else [what]
        if d.during_send and trace.closed_seq == d.seq + 1:
            said.append("closed by an event during a send")
    return said


def exercised(strategy: st.SearchStrategy, labels: Callable[[Any], list[str]], at_least: dict[str, int]) -> dict:
    """The labels of `at_least` too few drawn journeys carry (see `shortfall`): without these
    bounds, a simulator that did nothing would let every property pass."""
    return shortfall(strategy, labels, at_least)


# --- building journeys ------------------------------------------------------------------------

START_TIMES = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC))
START_MODES = st.sampled_from(["input", "input", "input", "late", "never"])  # how the journey's start arrives
LATE_START = st.integers(0, 60).map(lambda n: n * STEP)
SEND_TIMES = st.sampled_from([STEP, M, 2 * STEP, timedelta(0)])  # a slow send: retries, an outage
NEAR = st.integers(-2, 6).map(lambda n: n * 5 * M)  # from just before a moment to just after it
DURING = st.integers(1, 6).map(lambda n: n * 5 * M)  # after a send went out: while it is in flight, if slow
OUTCOMES = st.lists(st.sampled_from([SENT, SENT, SENT, DRY_RUN, SKIPPED, REFUSED]), min_size=1, max_size=5)
PERSON = Recipient(email="pat@example.com", name="Pat")


@functools.cache  # strategies are built once: drawing is what a property's budget is for
def durations(low: int, high: int) -> st.SearchStrategy[timedelta]:
    return st.integers(low, high).map(lambda n: n * STEP)


def offsets(high: int) -> st.SearchStrategy[list[timedelta]]:
    return st.lists(durations(1, high), min_size=1, max_size=3, unique=True)


def draw_events(draw: st.DrawFn, started_at: datetime, make: Callable[[st.DrawFn, str | None], Any],
                latest: int, near: list[datetime], most: int = 8, sends: list[datetime] = (),
                racing: Callable[[st.DrawFn, str | None], Any] | None = None) -> tuple[Timed, ...]:
    """1 to `most` events (a quiet journey has its own properties), half of them with an event_id,
    some retried at once; each at a random moment, or a few minutes around one that matters (`near`:
    a start, a step's moment), where it races a step or a send in flight. In every other journey one
    more (`racing`, else `make`) comes in a few minutes after a send goes out (`sends`: the moments
    of the sends, the first first), while that send is in flight if it is slow."""
    events: list[Timed] = []
    if sends and draw(st.booleans()):
        moment = sends[0] if draw(st.booleans()) else sends[draw(st.integers(0, len(sends) - 1))]
        event_id = "racing" if draw(st.booleans()) else None
        events.append(Timed(max(started_at, moment + draw(DURING)), (racing or make)(draw, event_id)))
    for i in range(draw(st.integers(1, most))):
        if draw(st.integers(0, 2)) == 0:
            at = started_at + draw(durations(0, latest))
        else:
            at = max(started_at, near[draw(st.integers(0, len(near) - 1))] + draw(NEAR))
        events.append(Timed(at, make(draw, f"ev-{i}" if draw(st.booleans()) else None)))
        if draw(st.integers(0, 4)) == 0:  # at-least-once delivery: the same event again
            events.append(events[-1])
    return tuple(sorted(events, key=lambda timed: timed.at))


def strip(dump: dict, *fields: str) -> dict:
    return {k: v for k, v in dump.items() if k not in fields}


# ==============================================================================================
# Appointments (seed 002): workflows/appointment.py + appointment_rules.py
# ==============================================================================================

APPOINTMENT = "7"


@dataclass(frozen=True)
class AppointmentJourney:
    policy: AppointmentPolicy
    started_at: datetime
    booking: Booking | None
    book_at: datetime | None  # == started_at: in the start input; later: the `book` signal; None: never
    events: tuple[Timed, ...] = ()
    outcomes: tuple[str, ...] = (SENT,)
    send_time: timedelta = timedelta(0)


def simulate_appointment(j: AppointmentJourney, check_duplicates: bool = False) -> Trace:
    rules = appointment_rules
    state = AppointmentState(appointment_id=APPOINTMENT, status=AppointmentStatus.AWAITING_START, policy=j.policy)
    trace = Trace(state)
    policy, booking = j.policy, None

    def deliver(item: Any) -> EventOutcome | bool:
        nonlocal policy, booking
        if isinstance(item, Booking):  # `book` → `JourneyCore.begin`, only the first time
            if booking is not None:
                return False
            booking = item
            policy = state.policy = with_overrides(policy, item.policy)
            rules.start(state, item, clock.now)
            return True
        apply = lambda s, e: rules.apply_event(s, e, policy, clock.now)  # noqa: E731
        if check_duplicates:
            trace.duplicate_checks.append(twice(apply, state, item))
        return apply(state, item)

    async def send(key: str, template: str, step: PlannedStep) -> SendStatus:  # `_send`
        return (await clock.send(step, [(key, {})]))[0]

    clock = Clock(trace, j.started_at, timeline(j.events, j.booking, j.book_at, j.started_at), deliver,
                  lambda key, reason: rules.record_skip(state, key, reason, clock.now), j.outcomes, j.send_time,
                  APPOINTMENT_CLOSED)
    if j.booking is not None and j.book_at == j.started_at:
        clock.receive(j.booking)
    clock.run(lambda: rules.next_step(state, policy, j.started_at, clock.now),
              lambda step: appointment_take(state, step, clock.now, booking is not None, send))
    trace.policy = policy  # the one the journey ran with (the booking may override it)
    tell(appointment_labels(trace))
    return trace


def appointment_labels(trace: Trace) -> list[str]:
    said = happened(trace, lambda s: s.step.kind.value)
    said += ["reminder skipped: beyond the grace" for skip in trace.state.skips if "beyond the grace" in skip.reason]
    return said


def appointment_time(trace: Trace, seq: int) -> datetime | None:
    """Where the appointment stands by `seq`, read off the timeline: the time the last applied
    reschedule asked for (one held before the booking wins over the booking's), else the booking's."""
    time = None
    for d in trace.deliveries:
        if d.seq > seq:
            break
        if isinstance(d.event, Booking) and time is None:
            time = d.event.scheduled_at
        elif getattr(d.event, "kind", None) == "reschedule" and d.outcome.applied:
            time = d.event.scheduled_at
    return time


def booking(scheduled_at: datetime, confirmed: bool = False) -> Booking:
    return Booking(appointment_id=APPOINTMENT, patient=PERSON, scheduled_at=scheduled_at, doctor="Dr Ada",
                   confirmed=confirmed)


def appt_event(kind: str, at: datetime, scheduled_at: datetime | None = None, event_id: str | None = None,
               notify: bool | None = None) -> Timed:
    return Timed(at, appointment_event(kind=kind, scheduled_at=scheduled_at, event_id=event_id, notify=notify))


def appointment(scheduled_at: datetime, *events: Timed, policy: AppointmentPolicy = AppointmentPolicy(),
                started_at: datetime = T0, **fields) -> AppointmentJourney:
    return AppointmentJourney(policy=policy, started_at=started_at, booking=booking(scheduled_at),
                              book_at=started_at, events=events, **fields)


appointment_policies = st.builds(
    AppointmentPolicy,
    reminder_offsets=offsets(100),
    reminder_grace=durations(1, 8),  # a zero grace is refused (see test_appointment_grace_zero_…)
    cancellation_notice=st.booleans(),
    hold_early_events_for=durations(1, 100),
)


NOTIFY = st.sampled_from([None, True, False])
APPOINTMENT_EVENT_KINDS = st.sampled_from(["confirm", "reschedule", "reschedule", "cancel", "complete",
                                          "resend_reminder", "resend_reminder"])
RACING_A_REMINDER = st.sampled_from(["cancel", "complete", "reschedule", "resend_reminder"])  # during its send


def draw_appointment_event(draw: st.DrawFn, started_at: datetime, event_id: str | None,
                           kinds: st.SearchStrategy[str] = APPOINTMENT_EVENT_KINDS) -> AppointmentEvent:
    kind = draw(kinds)
    return appointment_event(
        kind=kind, event_id=event_id,
        scheduled_at=started_at + draw(durations(-8, 400)) if kind == "reschedule" else None,
        notify=draw(NOTIFY) if kind == "cancel" else None,
    )


@st.composite
def appointment_journeys(draw: st.DrawFn) -> AppointmentJourney:
    started_at, policy = draw(START_TIMES), draw(appointment_policies)
    mode = draw(START_MODES)
    book_at = {"input": started_at, "late": started_at + draw(LATE_START), "never": None}[mode]
    scheduled_at = (book_at or started_at) + draw(durations(-8, 300))
    near = [started_at, book_at or started_at, scheduled_at] + [scheduled_at - o for o in policy.reminder_offsets]
    events = draw_events(draw, started_at, lambda d, event_id: draw_appointment_event(d, started_at, event_id), 400,
                         near, sends=[scheduled_at - o for o in policy.reminder_offsets],
                         racing=lambda d, event_id: draw_appointment_event(d, started_at, event_id, RACING_A_REMINDER))
    return AppointmentJourney(policy=policy, started_at=started_at, booking=booking(scheduled_at, draw(st.booleans())),
                              book_at=book_at, events=events, outcomes=tuple(draw(OUTCOMES)),
                              send_time=draw(SEND_TIMES))


# Boundary journeys, always tried by the properties they name.
BOOKED_JUST_AFTER_THE_TIME = appointment(  # the 15 min reminder is due 20 min ago, well within a 1 h grace
    T0 + H, started_at=T0 + H + 5 * M, policy=AppointmentPolicy(reminder_offsets=[15 * M], reminder_grace=H))


# --- appointments: examples -------------------------------------------------------------------


def test_appointment_seed_defaults():
    policy = AppointmentPolicy()
    assert policy.reminder_offsets == [H] and policy.reminder_grace == 10 * M
    assert policy.cancellation_notice is True and policy.hold_early_events_for == 24 * H


def test_appointment_one_reminder_an_hour_before_then_completed():
    at = T0 + 2 * D
    trace = simulate_appointment(appointment(at))
    assert [(s.key, s.at) for s in trace.sends] == [(f"appointment-7/reminder-1h-{at:%Y%m%dT%H%M%SZ}", at - H)]
    assert trace.state.status == AppointmentStatus.COMPLETED and trace.steps[-1].at == at
    assert trace.state.reminders_sent == [trace.sends[0].key]


def test_appointment_several_offsets_each_once_earliest_first():
    at = T0 + 3 * D
    trace = simulate_appointment(appointment(at, policy=AppointmentPolicy(reminder_offsets=[H, D])))
    assert [(s.key.split("/")[1][:12], s.at) for s in trace.sends] == [("reminder-1d-", at - D),
                                                                       ("reminder-1h-", at - H)]


def test_appointment_rescheduled_after_the_reminder_reminds_only_for_the_new_time():
    first, second = T0 + 2 * D, T0 + 3 * D
    trace = simulate_appointment(appointment(first, appt_event("reschedule", first - 30 * M, second)))
    assert [s.at for s in trace.sends] == [first - H, second - H]
    assert [s.key[-16:] for s in trace.sends] == [f"{first:%Y%m%dT%H%M%SZ}", f"{second:%Y%m%dT%H%M%SZ}"]


def test_appointment_rescheduled_back_is_not_reminded_twice():
    first, second = T0 + 2 * D, T0 + 3 * D
    trace = simulate_appointment(appointment(first, appt_event("reschedule", first - 30 * M, second),
                                             appt_event("reschedule", first - 20 * M, first)))
    assert [s.at for s in trace.sends] == [first - H]
    assert trace.state.status == AppointmentStatus.COMPLETED and trace.steps[-1].at == first


def test_appointment_cancel_sends_one_notice_and_nothing_else():
    at = T0 + 2 * D
    trace = simulate_appointment(appointment(at, appt_event("cancel", T0 + H), appt_event("cancel", T0 + 2 * H)))
    assert [(s.key, s.at) for s in trace.sends] == [("appointment-7/cancellation", T0 + H)]
    assert trace.state.status == AppointmentStatus.CANCELLED and trace.state.notice_sent


@pytest.mark.parametrize("policy_notice, event_notify", [(True, False), (False, None)])
def test_appointment_cancel_without_a_notice(policy_notice, event_notify):
    trace = simulate_appointment(appointment(T0 + 2 * D, appt_event("cancel", T0 + H, notify=event_notify),
                                             policy=AppointmentPolicy(cancellation_notice=policy_notice)))
    assert trace.sends == [] and trace.state.status == AppointmentStatus.CANCELLED


def test_appointment_cancelled_before_the_booking_sends_no_notice():
    j = replace(appointment(T0 + 2 * D, appt_event("cancel", T0 + H)), book_at=T0 + 2 * H)
    trace = simulate_appointment(j)
    assert trace.sends == [] and trace.state.status == AppointmentStatus.CANCELLED


def test_appointment_booked_inside_the_hour_reminds_at_once_within_the_grace_else_skips():
    at = T0 + 2 * D
    within = simulate_appointment(appointment(at, started_at=at - 55 * M))
    assert [s.at for s in within.sends] == [at - 55 * M]
    beyond = simulate_appointment(appointment(at, started_at=at - 50 * M))  # 10 min late: not_after is exclusive
    assert beyond.sends == [] and [s.step for s in beyond.state.skips] == [appointment_rules.reminder_key("7", at, H)]
    assert beyond.state.status == AppointmentStatus.COMPLETED


def test_appointment_forced_resend_only_before_the_appointment():
    at = T0 + 2 * D
    trace = simulate_appointment(appointment(at, appt_event("resend_reminder", T0 + H, event_id="r1"),
                                             appt_event("resend_reminder", T0 + 2 * H, event_id="r1"),
                                             appt_event("resend_reminder", T0 + 3 * H)))
    assert [(s.key, s.at) for s in trace.sends[:2]] == [("appointment-7/reminder-resend-1", T0 + H),
                                                        ("appointment-7/reminder-resend-2", T0 + 3 * H)]
    assert len(trace.sends) == 3  # and the reminder an hour before
    at_the_time = simulate_appointment(appointment(at, appt_event("resend_reminder", at)))  # a tie: the event first
    assert [s.at for s in at_the_time.sends] == [at - H] and at_the_time.state.resends_requested == 1
    moved_then = simulate_appointment(appointment(at, appt_event("resend_reminder", at),
                                                  appt_event("reschedule", at, at + H)))  # ahead again: it goes out
    assert [s.key.split("/")[1][:11] for s in moved_then.sends] == ["reminder-1h", "reminder-re", "reminder-1h"]


def test_appointment_complete_early_stops_everything():
    trace = simulate_appointment(appointment(T0 + 2 * D, appt_event("complete", T0 + H)))
    assert trace.sends == [] and trace.state.status == AppointmentStatus.COMPLETED


def test_appointment_reschedule_into_the_past_is_rejected():
    trace = simulate_appointment(appointment(T0 + 2 * D, appt_event("reschedule", T0 + H, T0 + H)))
    assert trace.deliveries[1].outcome.applied is False and len(trace.sends) == 1


def test_appointment_never_booked_is_abandoned_after_the_hold():
    j = AppointmentJourney(policy=AppointmentPolicy(), started_at=T0, booking=None, book_at=None,
                           events=(appt_event("confirm", T0 + H),))
    trace = simulate_appointment(j)
    assert trace.sends == [] and trace.state.status == AppointmentStatus.ABANDONED and trace.steps[-1].at == T0 + D


def test_appointment_grace_zero_is_refused():
    """Regression (fixed in ee26af6): a zero grace used to be accepted, and then no reminder could
    ever go out (`remind_before` gives not_after == at, and `too_late` is exclusive)."""
    with pytest.raises(ValidationError, match="reminder_grace"):
        AppointmentPolicy(reminder_grace=timedelta(0))
    at = T0 + 2 * D  # a grace of a second still lets the reminder out on time
    trace = simulate_appointment(appointment(at, policy=AppointmentPolicy(reminder_grace=timedelta(seconds=1))))
    assert [s.at for s in trace.sends] == [at - H]


# --- appointments: properties -----------------------------------------------------------------


@PROPERTY
@given(appointment_journeys())
def test_appointment_always_terminates_closed(j: AppointmentJourney):
    trace = simulate_appointment(j)
    assert not trace.exhausted and trace.state.status in APPOINTMENT_CLOSED and trace.closed_seq is not None
    times = {j.booking.scheduled_at} | {d.event.scheduled_at for d in trace.applied("reschedule")}
    resends = len(trace.applied("resend_reminder"))
    assert len(trace.steps) <= len(j.policy.reminder_offsets) * len(times) + resends + 2  # + notice + the end


@PROPERTY
@given(appointment_journeys())
def test_appointment_never_a_reminder_after_cancel_or_complete(j: AppointmentJourney):
    trace = simulate_appointment(j)
    for ended in trace.applied("cancel", "complete"):
        assert all(s.seq < ended.seq for s in trace.sends_of(StepKind.REMINDER, StepKind.RESEND))
    assert all(s.seq < trace.closed_seq for s in trace.sends if s.step.kind != StepKind.NOTICE)


@PROPERTY
@given(appointment_journeys())
@example(BOOKED_JUST_AFTER_THE_TIME)
@example(appointment(T0 + 2 * D, appt_event("resend_reminder", T0 + 2 * D)))  # a tie: the request comes first
def test_appointment_never_a_reminder_at_or_after_the_appointment(j: AppointmentJourney):
    trace = simulate_appointment(j)
    for s in trace.sends_of(StepKind.REMINDER, StepKind.RESEND):
        assert s.at < appointment_time(trace, s.seq)


@PROPERTY
@given(appointment_journeys())
def test_appointment_reminder_never_early_and_less_than_the_grace_late(j: AppointmentJourney):
    for s in simulate_appointment(j).sends_of(StepKind.REMINDER):
        assert s.step.at <= s.at < s.step.at + j.policy.reminder_grace  # not_after is exclusive


@PROPERTY
@given(appointment_journeys())
def test_appointment_reminder_only_for_the_current_time(j: AppointmentJourney):
    """A reschedule never lets a reminder for the old time go out after it."""
    trace = simulate_appointment(j)
    for s in trace.sends_of(StepKind.REMINDER):
        time = appointment_time(trace, s.seq)
        assert time - s.step.at in j.policy.reminder_offsets
        assert s.key == appointment_rules.reminder_key(APPOINTMENT, time, time - s.step.at)


@PROPERTY
@given(appointment_journeys())
def test_appointment_at_most_one_reminder_per_offset_and_time(j: AppointmentJourney):
    trace = simulate_appointment(j)
    reminded = Counter((s.step.at, appointment_time(trace, s.seq)) for s in trace.sends_of(StepKind.REMINDER))
    assert all(count == 1 for count in reminded.values())
    assert len({s.key for s in trace.sends}) == len(trace.sends)  # one key per business step


@PROPERTY
@given(appointment_journeys())
@example(appointment(T0 + 2 * D, appt_event("reschedule", T0 + 2 * D - H + 10 * M, T0 + 3 * D), send_time=STEP))
def test_appointment_the_time_it_completes_at_was_reminded_at_every_offset_or_skipped(j: AppointmentJourney):
    """Liveness, where a reschedule lands during a reminder's send: only what went out is kept as
    reminded, so every reminder of the time it ends up at went out or was skipped with a reason."""
    trace = simulate_appointment(j)
    delivered = {s.key for s in trace.sends_of(StepKind.REMINDER) if s.outcome in (SENT, DRY_RUN)}
    assert set(trace.state.reminders_sent) <= delivered
    if trace.state.status == AppointmentStatus.COMPLETED and not trace.applied("complete"):
        time = trace.state.scheduled_at
        asked = {s.key for s in trace.sends} | {skip.step for skip in trace.state.skips}
        assert {appointment_rules.reminder_key(APPOINTMENT, time, o) for o in trace.policy.reminder_offsets} <= asked


@PROPERTY
@given(appointment_journeys())
def test_appointment_cancellation_notice_once_if_booked_and_notify(j: AppointmentJourney):
    trace = simulate_appointment(j)
    booked = trace.started_seq(Booking)
    owed = [d for d in trace.applied("cancel") if booked is not None and booked < d.seq
            and (j.policy.cancellation_notice if d.event.notify is None else d.event.notify)]
    notices = trace.sends_of(StepKind.NOTICE)
    assert len(notices) == len(owed) <= 1
    for notice, cancel in zip(notices, owed):
        assert notice.seq > cancel.seq and notice.key == appointment_rules.notice_key(APPOINTMENT)


@PROPERTY
@given(appointment_journeys())
def test_appointment_forced_resends_numbered_one_per_request_before_the_time(j: AppointmentJourney):
    trace = simulate_appointment(j)
    resends, requests = trace.sends_of(StepKind.RESEND), trace.applied("resend_reminder")
    assert [s.key for s in resends] == [appointment_rules.resend_key(APPOINTMENT, n + 1) for n in range(len(resends))]
    for s in resends:
        assert sum(d.seq < s.seq for d in requests) >= s.step.number
    if j.send_time == timedelta(0):  # sent the moment they come in, if the journey goes on and the time is ahead
        ends = trace.applied("cancel", "complete")
        assert {s.at for s in resends} <= {d.at for d in requests}
        for t in sorted({d.at for d in requests}):
            settled = max(d.seq for d in trace.deliveries if d.at == t)  # everything that came in at t
            if not any(e.at == t for e in ends) and appointment_time(trace, settled) > t:
                assert sum(s.at <= t for s in resends) == sum(d.at <= t for d in requests)


@PROPERTY
@given(st.builds(AppointmentPolicy, reminder_offsets=offsets(100), reminder_grace=durations(1, 8)),
       START_TIMES, durations(0, 300))
def test_appointment_booked_in_time_reminds_at_every_offset_then_completes(policy, started_at, lead_time):
    at = started_at + max(policy.reminder_offsets) + lead_time
    trace = simulate_appointment(appointment(at, policy=policy, started_at=started_at))
    assert [s.at for s in trace.sends] == [at - offset for offset in policy.reminder_offsets]
    assert trace.state.status == AppointmentStatus.COMPLETED and trace.steps[-1].at == at


@PROPERTY
@given(appointment_journeys())
def test_appointment_a_duplicate_event_gives_the_same_state_as_once(j: AppointmentJourney):
    trace = simulate_appointment(j, check_duplicates=True)
    for check in trace.duplicate_checks:
        if check.event.event_id and check.first.applied:
            assert check.twice == check.once  # the whole state, the outcome log included
        elif check.event.event_id or check.event.kind != "resend_reminder":  # without an id: a new request
            assert strip(check.twice, "events") == strip(check.once, "events")


@PROPERTY
@given(appointment_journeys())
def test_appointment_every_event_delivered_twice_changes_nothing(j: AppointmentJourney):
    doubled = tuple(e for timed in j.events
                    for e in ((timed,) if timed.event.kind == "resend_reminder" and not timed.event.event_id
                              else (timed, timed)))
    once, again = simulate_appointment(j), simulate_appointment(replace(j, events=doubled))
    assert [(s.at, s.key, s.outcome) for s in again.sends] == [(s.at, s.key, s.outcome) for s in once.sends]
    assert again.state.model_dump(exclude={"events"}) == once.state.model_dump(exclude={"events"})


def test_appointment_journeys_drawn_exercise_what_the_properties_are_about():
    """Seen when this was written: 66-79 reminders sent, 9-12 appointments closed by an event that
    came in during a send, 7-12 forced resends requested during one."""
    assert exercised(appointment_journeys(), lambda j: appointment_labels(simulate_appointment(j)), {
        "reminder sent": 22, "reminder skipped: beyond the grace": 15, "reminder: send step skipped": 5,
        "notice sent": 7, "resend sent": 18, "cancel applied": 33, "complete applied": 24, "reschedule applied": 20,
        "closed by an event during a send": 3, "resend_reminder applied during a send": 2, "closed abandoned": 10,
    }) == {}


# ==============================================================================================
# Leads (seed 003): workflows/lead.py + lead_rules.py
# ==============================================================================================

LEAD = "9"
ENDS_IN = {"converted": LeadStatus.CONVERTED, "replied": LeadStatus.REPLIED, "cancel": LeadStatus.CANCELLED}


@dataclass(frozen=True)
class LeadJourney:
    policy: LeadPolicy
    started_at: datetime
    lead: Lead | None
    begin_at: datetime | None  # == started_at: in the start input; later: the `begin` signal; None: never
    events: tuple[Timed, ...] = ()
    outcomes: tuple[str, ...] = (SENT,)
    send_time: timedelta = timedelta(0)


def simulate_lead(j: LeadJourney, check_duplicates: bool = False) -> Trace:
    rules = lead_rules
    state = LeadState(lead_id=LEAD, status=LeadStatus.AWAITING_START, policy=j.policy)
    trace = Trace(state)
    policy, lead = j.policy, None

    def deliver(item: Any) -> EventOutcome | bool:
        nonlocal policy, lead
        if isinstance(item, Lead):  # `begin` → `JourneyCore.begin`, only the first time
            if lead is not None:
                return False
            lead = item
            policy = state.policy = with_overrides(policy, item.policy)
            rules.start(state, item, clock.now)
            return True
        if check_duplicates:
            trace.duplicate_checks.append(twice(rules.apply_event, state, item))
        return rules.apply_event(state, item)

    async def send(key: str, step: PlannedStep) -> SendStatus:  # `_send`
        return (await clock.send(step, [(key, {})]))[0]

    clock = Clock(trace, j.started_at, timeline(j.events, j.lead, j.begin_at, j.started_at), deliver,
                  lambda key, reason: rules.record_skip(state, key, reason, clock.now), j.outcomes, j.send_time,
                  LEAD_CLOSED)
    if j.lead is not None and j.begin_at == j.started_at:
        clock.receive(j.lead)
    clock.run(lambda: rules.next_step(state, policy, j.started_at, clock.now),
              lambda step: lead_take(state, step, clock.now, send))
    trace.policy = policy  # the one the journey ran with (the start input may override the steps)
    tell(lead_labels(trace))
    return trace


def lead_labels(trace: Trace) -> list[str]:
    said = happened(trace, lambda s: "email")
    said += ["email skipped: beyond the grace" for skip in trace.state.skips if "beyond the grace" in skip.reason]
    return said


def make_lead(started_at: datetime | None = None, steps: list[LeadStep] | None = None) -> Lead:
    return Lead(lead_id=LEAD, contact=PERSON, campaign="spring", started_at=started_at,
                policy=LeadPolicyOverrides(steps=steps))


def lead_event(kind: str, at: datetime, event_id: str | None = None, reference: str | None = None) -> Timed:
    return Timed(at, make_lead_event(kind=kind, event_id=event_id, reference=reference))


def nurture(*events: Timed, policy: LeadPolicy = LeadPolicy(), started_at: datetime = T0, lead: Lead | None = None,
            **fields) -> LeadJourney:
    return LeadJourney(policy=policy, started_at=started_at, lead=lead or make_lead(), begin_at=started_at,
                       events=events, **fields)


lead_steps = st.lists(durations(0, 400), min_size=1, max_size=4, unique=True).map(
    lambda afters: [LeadStep(after=after, template=f"lead_step_{n}") for n, after in enumerate(sorted(afters))])
lead_policies = st.builds(LeadPolicy, steps=lead_steps, step_grace=durations(1, 40),
                          hold_early_events_for=durations(1, 100))


LEAD_EVENT_KINDS = st.sampled_from(sorted(ENDS_IN))
REFERENCES = st.sampled_from([None, "o-1"])
LEAD_OUTCOMES = st.lists(st.sampled_from([SENT, SENT, DRY_RUN, SKIPPED, SUPPRESSED, SUPPRESSED, REFUSED]),
                         min_size=1, max_size=5)


@st.composite
def lead_journeys(draw: st.DrawFn) -> LeadJourney:
    started_at, policy = draw(START_TIMES), draw(lead_policies)
    mode = draw(START_MODES)
    begin_at = {"input": started_at, "late": started_at + draw(LATE_START), "never": None}[mode]
    day_0 = draw(st.one_of(st.none(), durations(0, 100)))
    day_0 = None if day_0 is None else (begin_at or started_at) - day_0  # None: when it begins; else in the past
    lead = make_lead(day_0, draw(st.one_of(st.none(), lead_steps)))  # the start input may bring its own steps
    sends = [(day_0 or begin_at or started_at) + step.after for step in lead.policy.steps or policy.steps]
    near = [started_at] + sends

    def event(d: st.DrawFn, event_id: str | None) -> LeadEvent:
        return make_lead_event(kind=d(LEAD_EVENT_KINDS), event_id=event_id, reference=d(REFERENCES))

    return LeadJourney(policy=policy, started_at=started_at, lead=lead, begin_at=begin_at,
                       events=draw_events(draw, started_at, event, 500, near, most=4, sends=sends),
                       outcomes=tuple(draw(LEAD_OUTCOMES)),
                       send_time=draw(SEND_TIMES))


def ended_by(trace: Trace) -> Delivery | None:
    """The event that ended the lead, if one did: the first applied converted / replied / cancel."""
    return next(iter(trace.applied(*ENDS_IN)), None)


# --- leads: examples --------------------------------------------------------------------------


def test_lead_seed_defaults():
    policy = LeadPolicy()
    assert [(s.after, s.template) for s in policy.steps] == [
        (timedelta(0), "lead_welcome"), (3 * D, "lead_still_interested"), (7 * D, "lead_final_offer")]
    assert policy.step_grace == D and policy.hold_early_events_for == 24 * H


def test_lead_no_answer_gets_day_0_3_and_7_then_finishes():
    trace = simulate_lead(nurture())
    assert [(s.key, s.at - T0) for s in trace.sends] == [
        ("lead-9/step-1", 0 * D), ("lead-9/step-2", 3 * D), ("lead-9/step-3", 7 * D)]
    assert trace.state.status == LeadStatus.FINISHED and trace.state.steps_done == 3


def test_lead_converted_before_day_3_gets_only_the_day_0_email():
    conversion = lead_event("converted", T0 + 2 * D, "conv-1", "order-991")
    trace = simulate_lead(nurture(conversion, conversion))
    assert [s.key for s in trace.sends] == ["lead-9/step-1"]
    assert trace.state.status == LeadStatus.CONVERTED and trace.state.conversion_reference == "order-991"
    assert [e.event for e in trace.state.events] == ["conv-1"]


def test_lead_conversion_between_day_3_and_day_7():
    trace = simulate_lead(nurture(lead_event("converted", T0 + 5 * D)))
    assert [s.key for s in trace.sends] == ["lead-9/step-1", "lead-9/step-2"]


def test_lead_a_reply_at_the_moment_of_a_step_wins_over_it():
    trace = simulate_lead(nurture(lead_event("replied", T0 + 3 * D)))
    assert [s.key for s in trace.sends] == ["lead-9/step-1"] and trace.state.status == LeadStatus.REPLIED


def test_lead_unsubscribed_after_day_0_stops_at_the_next_step():
    trace = simulate_lead(nurture(outcomes=(SENT, SUPPRESSED)))
    assert [(s.key, s.outcome) for s in trace.sends] == [("lead-9/step-1", SENT), ("lead-9/step-2", SUPPRESSED)]
    assert trace.state.status == LeadStatus.SUPPRESSED and [s.step for s in trace.state.skips] == ["lead-9/step-2"]


def test_lead_custom_steps_from_the_start_input():
    steps = [LeadStep(after=timedelta(0), template="lead_welcome"), LeadStep(after=H, template="lead_final_offer")]
    trace = simulate_lead(nurture(lead=make_lead(steps=steps)))
    assert [(s.key, s.at - T0) for s in trace.sends] == [("lead-9/step-1", 0 * H), ("lead-9/step-2", 1 * H)]


def test_lead_imported_with_a_past_day_0_skips_what_is_too_late_without_a_burst():
    trace = simulate_lead(nurture(lead=make_lead(started_at=T0 - 3 * D - 2 * H)))
    assert [(s.key, s.at) for s in trace.sends] == [("lead-9/step-2", T0), ("lead-9/step-3", T0 + 4 * D - 2 * H)]
    assert [s.step for s in trace.state.skips] == ["lead-9/step-1"]


def test_lead_never_begun_is_abandoned_and_an_early_conversion_is_kept():
    gone = simulate_lead(LeadJourney(policy=LeadPolicy(), started_at=T0, lead=None, begin_at=None))
    assert gone.state.status == LeadStatus.ABANDONED and gone.steps[-1].at == T0 + 24 * H
    early = simulate_lead(replace(nurture(lead_event("converted", T0 + H)), begin_at=T0 + 2 * H))
    assert early.sends == [] and early.state.status == LeadStatus.CONVERTED


def test_lead_a_conversion_during_a_suppressed_send_stays_a_conversion():
    """Regression (fixed in ee26af6: `record_skip` only suppresses a lead still nurturing): day 0 goes
    out at T0, the send step takes 15 min, the conversion arrives 5 min in, and the address had been
    unsubscribed, so the send step reports a suppression skip."""
    trace = simulate_lead(nurture(lead_event("converted", T0 + 5 * M, reference="order-1"),
                                  outcomes=(SUPPRESSED,), send_time=STEP))
    assert trace.state.status == LeadStatus.CONVERTED


# --- leads: properties ------------------------------------------------------------------------


@PROPERTY
@given(lead_journeys())
def test_lead_always_terminates_closed(j: LeadJourney):
    trace = simulate_lead(j)
    assert not trace.exhausted and trace.state.status in LEAD_CLOSED and trace.closed_seq is not None
    assert len(trace.steps) <= len(trace.policy.steps) + 1


@PROPERTY
@given(lead_journeys())
@example(nurture(lead=make_lead(started_at=T0 - D - 12 * H)))  # imported with day 0 a day and a half ago
def test_lead_emails_in_order_each_at_its_day_never_early_never_past_the_grace(j: LeadJourney):
    trace = simulate_lead(j)
    emails = trace.sends_of(StepKind.STEP)
    numbers = [s.step.number for s in emails]
    assert numbers == sorted(set(numbers)) and len(numbers) <= len(trace.policy.steps)
    assert [s.key for s in emails] == [lead_rules.step_key(LEAD, n) for n in numbers]
    for s in emails:
        due = trace.state.started_at + trace.policy.steps[s.step.number - 1].after
        assert s.step.at == due and due <= s.at < due + trace.policy.step_grace


@PROPERTY
@given(lead_journeys())
def test_lead_nothing_after_a_conversion_reply_cancel_or_suppression(j: LeadJourney):
    trace = simulate_lead(j)
    end = ended_by(trace)
    if end is not None:
        assert all(s.seq < end.seq and s.at < end.at for s in trace.sends)  # an event at a step's moment wins
    suppressed = [s.seq for s in trace.sends if s.outcome == SUPPRESSED]
    assert all(s.seq <= suppressed[0] for s in trace.sends) if suppressed else True
    assert all(s.seq < trace.closed_seq for s in trace.sends)


@PROPERTY
@given(lead_journeys())
def test_lead_ends_in_the_status_of_what_ended_it(j: LeadJourney):
    trace = simulate_lead(j)
    end = ended_by(trace)
    if end is not None:
        assert trace.state.status == ENDS_IN[end.event.kind]
        assert trace.state.conversion_reference == (end.event.reference if end.event.kind == "converted" else None)
    elif any(s.outcome == SUPPRESSED for s in trace.sends):
        assert trace.state.status == LeadStatus.SUPPRESSED
    elif trace.started_seq(Lead) is None:
        assert trace.state.status == LeadStatus.ABANDONED
    else:
        assert trace.state.status == LeadStatus.FINISHED and trace.state.steps_done == len(trace.policy.steps)


@PROPERTY
@given(lead_policies, START_TIMES)
def test_lead_undisturbed_sends_every_step_on_its_day_and_finishes(policy: LeadPolicy, started_at: datetime):
    trace = simulate_lead(nurture(policy=policy, started_at=started_at, lead=make_lead()))
    assert [s.at for s in trace.sends] == [started_at + step.after for step in policy.steps]
    assert trace.state.status == LeadStatus.FINISHED and trace.state.sent == [s.key for s in trace.sends]


@PROPERTY
@given(lead_journeys())
def test_lead_a_duplicate_event_gives_the_same_state_as_once(j: LeadJourney):
    trace = simulate_lead(j, check_duplicates=True)
    for check in trace.duplicate_checks:
        if check.first.applied:
            assert check.twice == check.once
        else:
            assert strip(check.twice, "events") == strip(check.once, "events")


@PROPERTY
@given(lead_journeys())
def test_lead_every_event_delivered_twice_changes_nothing(j: LeadJourney):
    once = simulate_lead(j)
    again = simulate_lead(replace(j, events=tuple(e for timed in j.events for e in (timed, timed))))
    assert [(s.at, s.key, s.outcome) for s in again.sends] == [(s.at, s.key, s.outcome) for s in once.sends]
    assert again.state.model_dump(exclude={"events"}) == once.state.model_dump(exclude={"events"})


def test_lead_journeys_drawn_exercise_what_the_properties_are_about():
    """Seen when this was written: 26-32 emails sent, 12-14 suppressed, 7-15 leads closed by an
    event that came in during a send."""
    assert exercised(lead_journeys(), lambda j: lead_labels(simulate_lead(j)), {
        "email sent": 8, "email: send step suppressed": 4, "email skipped: beyond the grace": 1,
        "converted applied": 25, "replied applied": 16, "cancel applied": 33, "closed finished": 3,
        "closed suppressed": 2, "closed abandoned": 5, "closed by an event during a send": 2,
    }) == {}


# ==============================================================================================
# Class sessions (seeds 003/004): workflows/session.py + session_rules.py
# ==============================================================================================

SESSION = "5"
CHANNELS = (("email",), ("webhook",), ("email", "webhook"))
PEOPLE = ("ann", "bob", "cy")
ATTENDEES = {(name, channels): Attendee(attendee_id=name, name=name.capitalize(), email=f"{name}@example.com",
                                        phone="+4915112345678", channels=list(channels))
             for name in PEOPLE for channels in CHANNELS}
TUTOR = Tutor(name="Tom", email="tom@example.com")
FIRST_SESSION = {"tutor": Tutor(name="Tom", email="tom@example.com", first_session=True)}
MANAGER = "boss@example.com"


@dataclass(frozen=True)
class SessionJourney:
    policy: SessionPolicy
    started_at: datetime
    session: ClassSession | None
    begin_at: datetime | None  # == started_at: in the start input; later: the `begin` signal; None: never
    events: tuple[Timed, ...] = ()
    outcomes: tuple[str, ...] = (SENT,)
    send_time: timedelta = timedelta(0)
    chunk: int = FAN_OUT_CHUNK


def simulate_session(j: SessionJourney, check_duplicates: bool = False) -> Trace:
    rules = session_rules
    state = SessionState(session_id=SESSION, status=SessionStatus.AWAITING_START, policy=j.policy)
    trace = Trace(state)
    policy, session = j.policy, None

    def deliver(item: Any) -> EventOutcome | bool:
        nonlocal policy, session
        if isinstance(item, ClassSession):  # `begin` → `JourneyCore.begin`, only the first time
            if session is not None:
                return False
            session = item
            policy = state.policy = with_overrides(policy, item.policy)
            rules.start(state, item)
            return True
        apply = lambda s, e: rules.apply_event(s, e, None, clock.now)  # noqa: E731
        if check_duplicates:
            trace.duplicate_checks.append(twice(apply, state, item))
        return apply(state, item)

    async def send_chunk(name: str, step: PlannedStep, chunk: list[tuple[Attendee, str]]) -> None:
        if not chunk:  # `asyncio.gather()` of nothing: no time passes, no signal comes in
            return
        keys = [rules.key(SESSION, name, a.attendee_id, channel) for a, channel in chunk]  # `_send_to`, together
        facts = [{"name": name, "attendee": a.attendee_id, "channel": channel} for a, channel in chunk]
        for key, status in zip(keys, await clock.send(step, list(zip(keys, facts)))):
            if status.delivered:
                state.sent.append(key)

    async def fan_out(name: str, template: str, step: PlannedStep, attendees: list[Attendee],
                      without_feedback: bool) -> None:  # `_fan_out` with the roster in the state
        await fan_out_in_chunks(state, name, step, attendees, lambda chunk: send_chunk(name, step, chunk),
                                lambda: clock.now, j.chunk)

    async def send_one(name: str, template: str, step: PlannedStep, recipient: Recipient) -> None:  # `_send_one`
        key = rules.key(SESSION, name)
        if (await clock.send(step, [(key, {"name": name})]))[0].delivered:
            state.sent.append(key)

    async def store_roster() -> None:
        raise AssertionError("the roster is in the state here: nothing to store")

    clock = Clock(trace, j.started_at, timeline(j.events, j.session, j.begin_at, j.started_at), deliver,
                  lambda key, reason: rules.record_skip(state, key, reason, clock.now), j.outcomes, j.send_time,
                  SESSION_CLOSED)
    if j.session is not None and j.begin_at == j.started_at:
        clock.receive(j.session)
    clock.run(lambda: rules.next_step(state, policy, j.started_at, clock.now),
              lambda step: session_take(state, step, session, lambda: clock.now, fan_out, send_one, store_roster))
    tell(session_labels(trace))
    return trace


SESSION_SKIPS = {  # a skip's reason → its label (the first that matches)
    "cancelled or moved during the fan-out": "fan-out halted: the class was cancelled or moved",
    "during the fan-out": "fan-out halted: the session closed", "too late for this step": "fan-out halted: too late",
    "removed from the roster": "passed over: removed meanwhile", "feedback received": "passed over: feedback meanwhile",
    "no manager_email": "escalation skipped: no manager", "": "send step skipped or refused",
}


def session_labels(trace: Trace) -> list[str]:
    said = happened(trace, lambda s: s.step.kind.value)
    said += [next(label for part, label in SESSION_SKIPS.items() if part in skip.reason) for skip in trace.state.skips]
    return said


# --- facts read off a session's timeline --------------------------------------------------------


def session_events(trace: Trace, seq: int, *kinds: str) -> list[Delivery]:
    return [d for d in trace.applied(*kinds) if d.seq < seq]


def class_time(trace: Trace, j: SessionJourney, seq: int) -> tuple[datetime, datetime]:
    """(starts_at, ends_at) by `seq`: the last applied reschedule's, else the session's."""
    moved = session_events(trace, seq, "reschedule")
    return (moved[-1].event.starts_at, moved[-1].event.ends_at) if moved else (j.session.starts_at, j.session.ends_at)


def roster_at(trace: Trace, j: SessionJourney, seq: int) -> dict[str, Attendee]:
    """Who is on the roster by `seq`: the session's attendees, then every applied add / remove in
    order (one held before the session arrived included: the last word about someone wins), except
    that nobody joins a class that is over."""
    roster = {a.attendee_id: a for a in j.session.attendees}
    ended = next((t.seq for t in trace.steps if t.step.kind == StepKind.END), seq)
    for d in session_events(trace, seq, "add_attendee", "remove_attendee"):
        if d.event.kind == "add_attendee" and d.seq < ended:
            roster[d.event.attendee.attendee_id] = d.event.attendee
        else:
            roster.pop(d.event.attendee_id, None)
    return roster


# --- building sessions ------------------------------------------------------------------------


def make_session(starts_at: datetime, attendees: list[Attendee], length: timedelta = H, tutor: Tutor = TUTOR,
                 manager_email: str | None = MANAGER) -> ClassSession:
    return ClassSession(session_id=SESSION, title="Algebra 1", starts_at=starts_at, ends_at=starts_at + length,
                        tutor=tutor, manager_email=manager_email, attendees=attendees)


def person(name: str, *channels: str) -> Attendee:
    return ATTENDEES[(name, channels or ("email",))]


def session_event(kind: str, at: datetime, **fields) -> Timed:
    return Timed(at, make_session_event(kind=kind, **fields))


def class_session(starts_at: datetime, attendees: list[Attendee], *events: Timed,
                  policy: SessionPolicy = SessionPolicy(), started_at: datetime = T0, session: dict | None = None,
                  **fields) -> SessionJourney:
    return SessionJourney(policy=policy, started_at=started_at,
                          session=make_session(starts_at, attendees, **(session or {})), begin_at=started_at,
                          events=events, **fields)


session_policies = st.builds(
    SessionPolicy,
    reminder_offsets=offsets(100),
    reminder_grace=durations(1, 4),
    feedback_after=durations(1, 150),
    feedback_window=durations(1, 100),
    checkin_after=durations(1, 20),
    stay_open_for=durations(4, 300),
    hold_early_events_for=durations(1, 100),
)
PICK_PERSON, PICK_CHANNELS = st.sampled_from(PEOPLE), st.sampled_from(CHANNELS)
attendee_lists = st.lists(st.tuples(PICK_PERSON, PICK_CHANNELS), min_size=1, max_size=3,
                          unique_by=lambda pair: pair[0]).map(lambda pairs: [ATTENDEES[pair] for pair in pairs])
EVENT_KINDS = ("add_attendee", "add_attendee", "remove_attendee", "remove_attendee", "reschedule", "cancel",
               "recording_available", "feedback", "feedback", "checkin_answer", "checkin_answer", "complete")
ROSTER_CHURN = ("add_attendee", "remove_attendee", "remove_attendee", "feedback", "reschedule")
FAN_OUT_CHANGES = ("cancel", "reschedule", "remove_attendee", "feedback", "complete")  # checked between chunks
HELD_EVENTS = st.sampled_from(["input", "late", "late"])  # the session arrives after some events
MANAGERS, CHUNKS = st.sampled_from([MANAGER, None]), st.sampled_from([1, 2, 3, FAN_OUT_CHUNK])


def draw_session_event(draw: st.DrawFn, started_at: datetime, event_id: str | None,
                       kinds: tuple[str, ...]) -> SessionEvent:
    kind = draw(st.sampled_from(kinds))
    fields: dict[str, Any] = {}
    if kind == "add_attendee":
        fields["attendee"] = ATTENDEES[(draw(PICK_PERSON), draw(PICK_CHANNELS))]
    elif kind in ("remove_attendee", "feedback"):
        fields["attendee_id"] = draw(PICK_PERSON)
    elif kind == "reschedule":
        fields["starts_at"] = started_at + draw(durations(-4, 300))
        fields["ends_at"] = fields["starts_at"] + draw(durations(1, 8))
    elif kind == "cancel":
        fields["notify"] = draw(st.booleans())
    elif kind == "recording_available":
        fields["recording_url"] = "https://lms.example.com/rec/5"
    elif kind == "checkin_answer":
        fields["ok"] = draw(st.booleans())
    return make_session_event(kind=kind, event_id=event_id, **fields)


@st.composite
def session_journeys(draw: st.DrawFn, kinds: tuple[str, ...] = EVENT_KINDS, modes=START_MODES) -> SessionJourney:
    started_at, policy = draw(START_TIMES), draw(session_policies)
    mode = draw(modes)
    begin_at = {"input": started_at, "late": started_at + draw(LATE_START), "never": None}[mode]
    starts_at = (begin_at or started_at) + draw(durations(-4, 200))
    tutor = Tutor(name="Tom", email="tom@example.com", first_session=draw(st.booleans()))
    session = make_session(starts_at, list(draw(attendee_lists)), draw(durations(1, 8)), tutor,
                           draw(MANAGERS))
    ends_at = session.ends_at
    near = ([started_at, begin_at or started_at, starts_at, ends_at, ends_at + policy.checkin_after,
             ends_at + policy.feedback_after] + [starts_at - offset for offset in policy.reminder_offsets])
    sends = [starts_at - offset for offset in policy.reminder_offsets] + [ends_at + policy.feedback_after]
    racing = tuple(kind for kind in kinds if kind in FAN_OUT_CHANGES) or kinds
    events = draw_events(draw, started_at, lambda d, event_id: draw_session_event(d, started_at, event_id, kinds),
                         500, near, most=10, sends=sends,
                         racing=lambda d, event_id: draw_session_event(d, started_at, event_id, racing))
    return SessionJourney(policy=policy, started_at=started_at, session=session, begin_at=begin_at,
                          events=events, outcomes=tuple(draw(OUTCOMES)), send_time=draw(SEND_TIMES),
                          chunk=draw(CHUNKS))


# --- sessions: examples -----------------------------------------------------------------------


def by_attendee(trace: Trace) -> dict[str, list[str]]:
    got: dict[str, list[str]] = {}
    for s in trace.sends:
        step = s.name.rsplit("-", 1)[0]  # reminder-1d-20260304T090000Z → reminder-1d
        got.setdefault(s.attendee or s.name, []).append(step + (f"/{s.channel}" if s.channel else ""))
    return got


def test_session_seed_defaults():
    policy = SessionPolicy()
    assert policy.reminder_offsets == [24 * H, 15 * M] and policy.reminder_grace == 10 * M
    assert (policy.feedback_after, policy.feedback_window, policy.checkin_after, policy.stay_open_for) == (
        24 * H, 24 * H, 2 * H, 7 * D)


def test_session_reminds_everyone_on_every_channel_then_asks_for_feedback_and_closes():
    starts = T0 + 2 * D
    trace = simulate_session(class_session(starts, [person("ann", "email", "webhook"), person("bob")]))
    assert [(s.key, s.at) for s in trace.sends] == [
        (f"session-5/reminder-1d-{starts:%Y%m%dT%H%M%SZ}/ann/email", starts - D),
        (f"session-5/reminder-1d-{starts:%Y%m%dT%H%M%SZ}/ann/webhook", starts - D),
        (f"session-5/reminder-1d-{starts:%Y%m%dT%H%M%SZ}/bob/email", starts - D),
        (f"session-5/reminder-15m-{starts:%Y%m%dT%H%M%SZ}/ann/email", starts - 15 * M),
        (f"session-5/reminder-15m-{starts:%Y%m%dT%H%M%SZ}/ann/webhook", starts - 15 * M),
        (f"session-5/reminder-15m-{starts:%Y%m%dT%H%M%SZ}/bob/email", starts - 15 * M),
        ("session-5/feedback/ann/email", starts + H + D),
        ("session-5/feedback/ann/webhook", starts + H + D),
        ("session-5/feedback/bob/email", starts + H + D),
    ]
    assert trace.state.status == SessionStatus.COMPLETED and trace.steps[-1].at == starts + H + 7 * D


def test_session_roster_changes_between_reminders():
    starts = T0 + 2 * D
    trace = simulate_session(class_session(starts, [person("ann"), person("bob")],
                                           session_event("add_attendee", T0 + 28 * H, attendee=person("cy")),
                                           session_event("remove_attendee", T0 + 28 * H, attendee_id="bob"),
                                           session_event("complete", starts + H)))
    assert by_attendee(trace) == {"ann": ["reminder-1d/email", "reminder-15m/email"], "bob": ["reminder-1d/email"],
                                  "cy": ["reminder-15m/email"]}


def test_session_reschedule_after_the_24h_reminder_replans_both():
    starts, moved = T0 + 2 * D, T0 + 4 * D
    trace = simulate_session(class_session(starts, [person("ann")],
                                           session_event("reschedule", T0 + 25 * H, starts_at=moved, ends_at=moved + H),
                                           session_event("complete", moved + H)))
    assert [s.at for s in trace.sends] == [starts - D, moved - D, moved - 15 * M]


def test_session_cancel_during_a_fan_out_stops_the_reminder_and_notifies_everyone_once():
    starts = T0 + 2 * D
    roster = [person(name) for name in PEOPLE]
    trace = simulate_session(class_session(starts, roster, session_event("cancel", starts - D + M), chunk=2,
                                           send_time=2 * M))
    assert by_attendee(trace) == {"ann": ["reminder-1d/email", "cancelled/email"],
                                  "bob": ["reminder-1d/email", "cancelled/email"],
                                  "cy": ["cancelled/email"]}
    assert [(s.step, s.reason) for s in trace.state.skips] == [
        (f"session-5/reminder-1d-{starts:%Y%m%dT%H%M%SZ}/cy/email",
         "the class was cancelled or moved during the fan-out")]


def test_session_cancel_without_notify_or_before_the_start_tells_nobody():
    starts = T0 + 2 * D
    quiet = simulate_session(class_session(starts, [person("ann")], session_event("cancel", T0 + H, notify=False)))
    early = simulate_session(replace(class_session(starts, [person("ann")], session_event("cancel", T0 + H)),
                                     begin_at=T0 + 2 * H))
    assert quiet.sends == early.sends == []
    assert quiet.state.status == early.state.status == SessionStatus.CANCELLED


def test_session_recording_feedback_checkin_and_escalation_for_a_first_session():
    starts = T0 + H
    end = starts + H
    trace = simulate_session(class_session(
        starts, [person("ann"), person("bob")],
        session_event("recording_available", end + 30 * M, recording_url="https://lms.example.com/rec/5"),
        session_event("recording_available", end + 31 * M, recording_url="https://lms.example.com/rec/5"),
        session_event("feedback", end + 40 * M, attendee_id="ann"),
        session_event("checkin_answer", end + 2 * H + 5 * M, ok=False, comment="they could not hear me"),
        session_event("checkin_answer", end + 2 * H + 6 * M, ok=False),
        policy=SessionPolicy(reminder_offsets=[15 * M]), session=FIRST_SESSION,
    ))
    after_the_class = [(s.key.removeprefix("session-5/"), s.at - end) for s in trace.sends
                       if s.step.kind != StepKind.REMINDER]
    assert after_the_class == [
        ("recording/ann/email", 30 * M), ("recording/bob/email", 30 * M), ("checkin", 2 * H),
        ("escalation", 2 * H + 5 * M), ("feedback/bob/email", 24 * H)]
    assert trace.state.status == SessionStatus.COMPLETED


def test_session_a_positive_answer_is_not_escalated_and_nobody_joins_after_the_end():
    starts = T0 + H
    trace = simulate_session(class_session(
        starts, [person("ann")], session_event("checkin_answer", starts + 3 * H + 5 * M, ok=True),
        session_event("add_attendee", starts + 3 * H + 5 * M, attendee=person("bob")), session=FIRST_SESSION))
    assert [s.name for s in trace.sends if not s.name.startswith("reminder")] == ["checkin", "feedback"]
    assert [(d.event.kind, d.outcome.applied) for d in trace.deliveries[1:]] == [("checkin_answer", True),
                                                                                ("add_attendee", False)]


def test_session_negative_answer_without_a_manager_is_skipped_with_a_reason():
    starts = T0 + H
    trace = simulate_session(class_session(starts, [], session_event("checkin_answer", starts + 3 * H + M, ok=False),
                                           session={**FIRST_SESSION, "manager_email": None}))
    assert [s.name for s in trace.sends] == ["checkin"]
    assert [s.step for s in trace.state.skips] == ["session-5/escalation"]


def test_session_a_checkin_answer_where_none_was_asked_is_refused():
    starts = T0 + H
    for session, at in (({}, starts + 3 * H + M), (FIRST_SESSION, starts + 2 * H)):  # not a first one; not yet asked
        trace = simulate_session(class_session(starts, [], session_event("checkin_answer", at, ok=False),
                                               session=session))
        [answer] = trace.deliveries[1:]
        assert not answer.outcome.applied and "no check-in was asked" in answer.outcome.reason
        assert "escalation" not in [s.name for s in trace.sends] and trace.state.checkin_answer is None


def test_session_feedback_later_than_its_window_is_skipped():
    starts = T0 + H
    j = class_session(starts, [person("ann")], policy=SessionPolicy(reminder_offsets=[15 * M], feedback_window=10 * M))
    trace = simulate_session(j)
    assert [s.name for s in trace.sends] == [f"reminder-15m-{starts:%Y%m%dT%H%M%SZ}", "feedback"]
    late = simulate_session(replace(j, started_at=starts + H + D + 10 * M))  # started 10 min into the window: its end
    assert late.sends == [] and [s.step for s in late.state.skips][-1] == "session-5/feedback/ann/email"


def test_session_added_then_removed_before_the_start_stays_removed():
    """Regression (fixed in ee26af6): a remove before the start, of someone only an earlier add had
    put on the roster, was forgotten, and `start` put the session's own entry back."""
    starts = T0 + 2 * D
    j = replace(class_session(starts, [person("ann")],
                              session_event("add_attendee", T0, attendee=person("ann")),
                              session_event("remove_attendee", T0, attendee_id="ann")),
                begin_at=T0 + STEP)
    assert simulate_session(j).sends == []


def test_session_removed_during_a_fan_out_gets_nothing_more():
    """Regression (fixed in ee26af6): `_fan_out` froze its targets when it began and re-checked only
    cancel / move between chunks, so a removal meanwhile did not stop that attendee's later chunk."""
    starts = T0 + 2 * D
    j = class_session(starts, [person("ann"), person("bob")],
                      session_event("remove_attendee", starts - D + M, attendee_id="bob"), chunk=1, send_time=2 * M)
    trace = simulate_session(j)
    assert [s.attendee for s in trace.sends if s.name.startswith("reminder-1d")] == ["ann"]


def test_session_feedback_given_during_the_fan_out_gets_no_feedback_reminder():
    """Regression (fixed in ee26af6), the feedback side of the frozen fan-out."""
    starts = T0 + H
    j = class_session(starts, [person("ann"), person("bob")],
                      session_event("feedback", starts + H + D + M, attendee_id="bob"),
                      policy=SessionPolicy(reminder_offsets=[15 * M]), chunk=1, send_time=2 * M)
    trace = simulate_session(j)
    assert [s.attendee for s in trace.sends_of(StepKind.FEEDBACK)] == ["ann"]
    assert trace.state.skips[-1].step == "session-5/feedback/bob/email"


# --- sessions: properties ---------------------------------------------------------------------

FANNED_OUT = (StepKind.REMINDER, StepKind.NOTICE, StepKind.RECORDING, StepKind.FEEDBACK)


@PROPERTY
@given(session_journeys())
def test_session_always_terminates_closed(j: SessionJourney):
    trace = simulate_session(j)
    assert not trace.exhausted and trace.state.status in SESSION_CLOSED and trace.closed_seq is not None
    times = 1 + len(trace.applied("reschedule"))
    # reminders per offset and time, END, recording, feedback, check-in, escalation, notice, close
    assert len(trace.steps) <= len(j.policy.reminder_offsets) * times + 7


@PROPERTY
@given(st.one_of(session_journeys(), session_journeys(ROSTER_CHURN, HELD_EVENTS)))
def test_session_sends_only_to_attendees_on_the_roster_then(j: SessionJourney):
    """Added after a reminder's moment → only the later ones; removed → nothing after the removal."""
    trace = simulate_session(j)
    for s in trace.sends_of(*FANNED_OUT):
        roster = roster_at(trace, j, s.seq)
        assert s.attendee in roster


@PROPERTY
@given(session_journeys())
def test_session_reminder_only_for_the_current_time_before_it_and_within_the_grace(j: SessionJourney):
    trace = simulate_session(j)
    for ended in trace.applied("cancel", "complete"):
        assert all(s.seq < ended.seq for s in trace.sends_of(StepKind.REMINDER))
    for s in trace.sends_of(StepKind.REMINDER):
        starts_at, _ = class_time(trace, j, s.seq)
        offset = starts_at - s.step.at
        assert offset in j.policy.reminder_offsets and s.name == session_rules.reminder_step(starts_at, offset)
        assert s.step.at <= s.at < min(s.step.at + j.policy.reminder_grace, starts_at)


@PROPERTY
@given(session_journeys())
def test_session_every_message_at_most_once(j: SessionJourney):
    """One reminder per offset, class time, attendee and channel; one notice, recording and feedback
    message per attendee and channel; one check-in, one escalation."""
    keys = Counter(s.key for s in simulate_session(j).sends)
    assert all(count == 1 for count in keys.values())


@PROPERTY
@given(session_journeys())
@example(class_session(T0 + H, [person("ann", "email", "webhook")], session_event("cancel", T0 + H + 30 * M)))
def test_session_cancel_notice_once_to_the_roster_only_if_cancelled_while_scheduled_with_notify(j: SessionJourney):
    trace = simulate_session(j)
    owed = [d for d in trace.applied("cancel") if d.event.notify and d.status_before == SessionStatus.SCHEDULED]
    notices = trace.sends_of(StepKind.NOTICE)
    if not owed:
        assert notices == []
        return
    [cancel] = owed
    roster = roster_at(trace, j, cancel.seq + 1).values()
    expected = {(a.attendee_id, channel) for a in roster for channel in a.channels}
    assert sorted((s.attendee, s.channel) for s in notices) == sorted(expected)
    assert all(s.seq > cancel.seq and s.name == "cancelled" for s in notices)


@PROPERTY
@given(st.one_of(session_journeys(), session_journeys(ROSTER_CHURN)))
def test_session_feedback_reminder_only_to_who_gave_none_inside_the_window(j: SessionJourney):
    trace = simulate_session(j)
    for s in trace.sends_of(StepKind.FEEDBACK):
        gave = {d.event.attendee_id for d in session_events(trace, s.seq, "feedback")}
        _, ends_at = class_time(trace, j, s.seq)
        assert s.attendee not in gave and s.name == "feedback"
        assert ends_at + j.policy.feedback_after <= s.at < ends_at + j.policy.feedback_after + j.policy.feedback_window


@PROPERTY
@given(session_journeys())
def test_session_recording_notice_only_after_the_recording_and_the_end(j: SessionJourney):
    trace = simulate_session(j)
    announced = [d.seq for d in trace.applied("recording_available")]
    ended = [t.seq for t in trace.steps if t.step.kind == StepKind.END]
    for s in trace.sends_of(StepKind.RECORDING):
        assert announced and ended and s.seq > max(announced[0], ended[0]) and s.name == "recording"


@PROPERTY
@given(session_journeys())
@example(class_session(T0 + H, [], session_event("checkin_answer", T0 + 3 * H, ok=True), session=FIRST_SESSION))
def test_session_checkin_only_for_a_first_session_escalation_only_after_a_negative_answer(j: SessionJourney):
    trace = simulate_session(j)
    checkins = [s for s in trace.sends if s.name == "checkin"]
    assert len(checkins) <= 1 and (not checkins or j.session.tutor.first_session)
    for s in checkins:
        assert s.at >= class_time(trace, j, s.seq)[1] + j.policy.checkin_after
    answers = trace.applied("checkin_answer")  # the first one counts: a later one is "already answered"
    assert not answers or j.session.tutor.first_session  # no check-in asked, no answer taken
    negative = answers[:1] if answers and answers[0].event.ok is False else []
    escalations = [s for s in trace.sends if s.name == "escalation"]
    skipped = [s for s in trace.state.skips  # no manager to escalate to
               if s.step == session_rules.key(SESSION, "escalation") and "manager" in s.reason]
    assert len(escalations) + len(skipped) == (1 if negative else 0)
    assert all(s.seq > negative[0].seq for s in escalations)
    assert bool(escalations) == bool(negative and j.session.manager_email)


FEEDBACK_CUT_SHORT_BY_COMPLETE = class_session(  # the session is completed while bob's chunk is in flight
    T0 + H, [person("ann"), person("bob")], session_event("complete", T0 + 2 * H + D + M),
    policy=SessionPolicy(reminder_offsets=[15 * M]), chunk=1, send_time=2 * M)


@PROPERTY
@given(session_journeys())
@example(FEEDBACK_CUT_SHORT_BY_COMPLETE)
def test_session_nothing_after_it_closed_but_what_was_owed(j: SessionJourney):
    trace = simulate_session(j)
    for s in trace.sends:
        assert s.seq < trace.closed_seq or s.step.kind in (StepKind.NOTICE, StepKind.ESCALATE)


@PROPERTY
@given(st.builds(SessionPolicy, reminder_offsets=offsets(100), reminder_grace=durations(1, 4)),
       START_TIMES, durations(0, 200), attendee_lists)
def test_session_undisturbed_reminds_everyone_at_every_offset(policy, started_at, lead_time, attendees):
    starts = started_at + max(policy.reminder_offsets) + lead_time
    trace = simulate_session(class_session(starts, list(attendees), policy=policy, started_at=started_at))
    expected = [(starts - offset, a.attendee_id, channel)
                for offset in policy.reminder_offsets for a in attendees for channel in a.channels]
    assert [(s.at, s.attendee, s.channel) for s in trace.sends_of(StepKind.REMINDER)] == expected
    assert trace.state.status == SessionStatus.COMPLETED


@PROPERTY
@given(session_journeys())
def test_session_a_duplicate_event_gives_the_same_state_as_once(j: SessionJourney):
    trace = simulate_session(j, check_duplicates=True)
    for check in trace.duplicate_checks:
        if check.event.event_id and check.first.applied:
            assert check.twice == check.once
        else:
            assert strip(check.twice, "events") == strip(check.once, "events")


@PROPERTY
@given(session_journeys())
def test_session_every_event_delivered_twice_changes_nothing(j: SessionJourney):
    once = simulate_session(j)
    again = simulate_session(replace(j, events=tuple(e for timed in j.events for e in (timed, timed))))
    assert [(s.at, s.key, s.outcome) for s in again.sends] == [(s.at, s.key, s.outcome) for s in once.sends]
    assert again.state.model_dump(exclude={"events"}) == once.state.model_dump(exclude={"events"})


def test_session_journeys_drawn_exercise_what_the_properties_are_about():
    """Seen when this was written: 115-138 reminder fan-outs, 7-11 sessions closed by an event that
    came in during a send, 12 removals during one. A fan-out halted or an attendee passed over
    between chunks is rarer in a draw (1-4): the regression examples above pin those."""
    assert exercised(session_journeys(), lambda j: session_labels(simulate_session(j)), {
        "reminder sent": 38, "feedback sent": 33, "notice sent": 4, "recording sent": 4, "checkin sent": 5,
        "send step skipped or refused": 17, "fan-out halted: too late": 29, "closed by an event during a send": 2,
        "remove_attendee applied during a send": 4, "feedback applied during a send": 2,
        "complete applied during a send": 2,
    }) == {}


@PROPERTY
@given(st.lists(st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=400)), min_size=2,
                max_size=10, unique=True))
def test_distinct_offsets_never_share_a_key(many):
    from workflows.core.timing import offset_label

    assert len({offset_label(o) for o in many}) == len(many)
    assert offset_label(timedelta(days=1, hours=2)) == "1d2h" and offset_label(timedelta(seconds=90.25)) == "1m30s250ms"


def test_the_event_log_keeps_the_last_thousand_outcomes_and_recognises_redeliveries_within_them():
    from workflows.core.events import EVENT_LOG
    from workflows.session.models import Feedback

    state = SessionState(session_id="big", status=SessionStatus.SCHEDULED)
    for n in range(EVENT_LOG + 500):
        session_rules.apply_event(state, Feedback(attendee_id=f"a{n}", event_id=f"fb-{n}"), None, T0)
    assert len(state.events) == EVENT_LOG and state.events[-1].event == f"fb-{EVENT_LOG + 499}"
    again = session_rules.apply_event(state, Feedback(attendee_id="a1400", event_id="fb-1400"), None, T0)
    assert again.code == "duplicate"
