"""Seeds 003 and 004 for class sessions as pure functions: reminders before the class to whoever
is on the roster at that moment, a recording notice, a feedback reminder 24–48 h after the end to
whoever gave none, and a check-in after a tutor's first session whose negative answer escalates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from workflows.core.events import no_change, record_outcome, record_skip, screen_event
from workflows.core.steps import EventOutcome, PlannedStep, StepKind, too_late, unreachable, waiting_for_start
from workflows.core.timing import offset_label, remind_before, stamp_key, when
from workflows.session.models import (
    SESSION_CLOSED,
    AddAttendee,
    Cancel,
    CheckinAnswer,
    ClassSession,
    Complete,
    Feedback,
    RecordingAvailable,
    RemoveAttendee,
    Reschedule,
    RosterChange,
    SessionEvent,
    SessionPolicy,
    SessionState,
    SessionStatus,
)

__all__ = ["apply_event", "fan_out_halted", "key", "members", "next_step", "passed_over", "record_skip",
           "reminder_step", "roster_change", "roster_outcome", "screen_roster_event", "start"]

ROSTER_EVENTS = (AddAttendee, RemoveAttendee, Feedback)  # with the roster in the database: applied by an activity


def in_database(state: SessionState) -> bool:
    return state.roster_store == "database"


def members(state: SessionState) -> int:
    """On the roster now (with the database: stored, or still to store from the start)."""
    return state.roster_size + len(state.roster_pending) if in_database(state) else len(state.roster)


def fan_out_halted(state: SessionState, step: PlannedStep, starts_at: datetime | None, now: datetime,
                   stops_when_closed: Callable[[], bool] = lambda: True) -> str | None:
    """Why the rest of a fan-out is skipped before its next chunk, or None to go on: a reminder
    whose class was cancelled or moved since the fan-out began (`starts_at`), anything but the
    cancellation notice once the session is closed, or a step past its deadline.
    `stops_when_closed()` is asked only when the closed rule would apply (the workflow's patch)."""
    stale = step.kind == StepKind.REMINDER and (state.status != SessionStatus.SCHEDULED
                                                 or state.starts_at != starts_at)
    closed = step.kind != StepKind.NOTICE and state.status in SESSION_CLOSED and stops_when_closed()
    if stale:
        return "the class was cancelled or moved during the fan-out"
    if closed:
        return f"the session was {state.status} during the fan-out"
    return "too late for this step" if too_late(step.not_after, now) else None


def passed_over(state: SessionState, step: PlannedStep, attendee_id: str) -> str | None:
    """Why one attendee of a fan-out is skipped: removed from the roster, or gave feedback, since
    the fan-out began (the cancellation notice still goes to everyone it was meant for)."""
    if step.kind != StepKind.NOTICE and all(a.attendee_id != attendee_id for a in state.roster):
        return "removed from the roster"
    if step.kind == StepKind.FEEDBACK and attendee_id in state.feedback_from:
        return "feedback received meanwhile"
    return None


def reminder_step(starts_at: datetime, offset: timedelta) -> str:
    """One reminder per offset and class time: a reschedule gets new ones, a reschedule back does not."""
    return f"reminder-{offset_label(offset)}-{stamp_key(starts_at)}"


def key(session_id: str, step: str, attendee_id: str | None = None, channel: str | None = None) -> str:
    """`session-7/reminder-24h-20261201T090000Z/ann/email`: one idempotency key per attendee and channel."""
    parts = [f"session-{session_id}", step] + ([attendee_id, channel] if attendee_id else [])
    return "/".join(part for part in parts if part)


def next_step(state: SessionState, policy: SessionPolicy, awaiting_since: datetime,
              now: datetime) -> PlannedStep | None:
    if state.roster_pending:
        return PlannedStep(kind=StepKind.ROSTER, at=now,
                           label=f"store the start's roster of {len(state.roster_pending)} attendee(s), now")
    if state.notice_pending:
        return PlannedStep(kind=StepKind.NOTICE, at=now, label="cancellation notice to the roster, now")
    if state.escalation_pending:
        return PlannedStep(kind=StepKind.ESCALATE, at=now, label="escalate the tutor's check-in answer, now")
    if state.status in SESSION_CLOSED:
        return None
    if state.status == SessionStatus.AWAITING_START:
        return waiting_for_start(awaiting_since, policy.hold_early_events_for, "session")
    assert state.starts_at is not None and state.ends_at is not None
    if state.status == SessionStatus.SCHEDULED:
        for offset in policy.reminder_offsets:
            if reminder_step(state.starts_at, offset) not in state.steps_done:
                at, not_after = remind_before(state.starts_at, offset, policy.reminder_grace)
                return PlannedStep(kind=StepKind.REMINDER, at=at, not_after=not_after,
                                   label=f"reminder {offset_label(offset)} before {when(state.starts_at)} "
                                         f"to {members(state)} attendee(s), due {when(at)}")
        return PlannedStep(kind=StepKind.END, at=state.ends_at, label=f"class ends at {when(state.ends_at)}")
    # ENDED
    if state.recording_pending:
        return PlannedStep(kind=StepKind.RECORDING, at=now, label="recording notice to the roster, now")
    candidates = []
    if state.first_session and "checkin" not in state.steps_done:
        at = state.ends_at + policy.checkin_after
        candidates.append(PlannedStep(kind=StepKind.CHECKIN, at=at, label=f"tutor check-in due {when(at)}"))
    if "feedback" not in state.steps_done:
        at = state.ends_at + policy.feedback_after
        candidates.append(PlannedStep(kind=StepKind.FEEDBACK, at=at, not_after=at + policy.feedback_window,
                                      label=f"feedback reminder to who gave none, due {when(at)}"))
    closes = state.ends_at + policy.stay_open_for
    candidates.append(PlannedStep(kind=StepKind.COMPLETE, at=closes, label=f"closes at {when(closes)}"))
    return min(candidates, key=lambda step: step.at)


def start(state: SessionState, session: ClassSession, now: datetime | None = None) -> None:
    state.title, state.course, state.tutor_email = session.title, session.course, str(session.tutor.email)
    state.first_session = session.tutor.first_session
    if state.status != SessionStatus.AWAITING_START:
        return
    if state.starts_at is None:  # a reschedule held before the start wins over the start's time
        state.starts_at, state.ends_at = session.starts_at, session.ends_at
    if in_database(state):  # the loop stores it; events held before the start win over it there
        state.roster_pending = list(session.attendees)
        state.status = SessionStatus.SCHEDULED
        return
    held = {attendee.attendee_id for attendee in state.roster}
    state.roster = [a for a in session.attendees if a.attendee_id not in held] + state.roster
    state.roster = [a for a in state.roster if a.attendee_id not in state.removed_early]
    state.status = SessionStatus.SCHEDULED


def apply_event(state: SessionState, event: SessionEvent, policy: SessionPolicy | None, now: datetime,
                checkin_must_be_asked: bool = True) -> EventOutcome:
    """Twice the same event = once; an invalid one changes nothing. (`checkin_must_be_asked=False`
    is the rule journeys begun before it replay with: any check-in answer after the end counted.)"""
    if (screened := screen_event(state, event, SESSION_CLOSED)) is not None:
        return screened

    def outcome(applied: bool, reason: str | None = None, field: str | None = None) -> EventOutcome:
        return record_outcome(state, event.dedupe_key(), applied, reason, field=field)

    before_end = state.status in (SessionStatus.AWAITING_START, SessionStatus.SCHEDULED)
    assert not (in_database(state) and isinstance(event, ROSTER_EVENTS)), "the workflow applies these by activity"
    match event:
        case AddAttendee():
            if not before_end:
                return outcome(False, "the class is over: nobody can join it", "attendee")
            joining = [a for a in event.members() if a not in state.roster]
            if not joining:
                return no_change(state, event, "already on the roster")
            ids = {a.attendee_id for a in joining}
            state.roster = [a for a in state.roster if a.attendee_id not in ids] + joining
            state.removed_early = [i for i in state.removed_early if i not in ids]
            return outcome(True)
        case RemoveAttendee(attendee_id=attendee_id):
            if state.status == SessionStatus.AWAITING_START:  # the start's own roster must not bring them back
                if attendee_id in state.removed_early:
                    return no_change(state, event, "already removed")
                state.removed_early.append(attendee_id)
                state.roster = [a for a in state.roster if a.attendee_id != attendee_id]
                return outcome(True)
            if not any(a.attendee_id == attendee_id for a in state.roster):
                return no_change(state, event, "not on the roster")
            state.roster = [a for a in state.roster if a.attendee_id != attendee_id]
            return outcome(True)
        case Reschedule():
            if not before_end:
                return outcome(False, "the class is over: it cannot move", "starts_at")
            if event.starts_at <= now:
                return outcome(False, "starts_at is in the past", "starts_at")
            if (event.starts_at, event.ends_at) == (state.starts_at, state.ends_at):
                return no_change(state, event, "already at that time")
            state.starts_at, state.ends_at = event.starts_at, event.ends_at
            return outcome(True)
        case Cancel():
            if not before_end:
                return outcome(False, "the class is over: it cannot be cancelled")
            state.notice_pending = event.notify and state.status == SessionStatus.SCHEDULED and members(state) > 0
            state.status = SessionStatus.CANCELLED
            return outcome(True, event.reason)
        case RecordingAvailable():
            if state.status == SessionStatus.AWAITING_START or (state.starts_at and now < state.starts_at):
                return outcome(False, "the class has not started: there is no recording yet", "recording_url")
            if state.recording_url is not None:
                return no_change(state, event, "the recording was already announced")
            state.recording_url, state.recording_pending = event.recording_url, True
            return outcome(True)
        case Feedback(attendee_id=attendee_id):
            if attendee_id in state.feedback_from:
                return no_change(state, event, "feedback already received")
            state.feedback_from.append(attendee_id)
            return outcome(True)
        case CheckinAnswer():
            if state.status != SessionStatus.ENDED:
                return outcome(False, "there is no check-in before the class is over")
            if state.checkin_answer is not None:
                return no_change(state, event, "the check-in was already answered")
            if checkin_must_be_asked and "checkin" not in state.steps_done:
                return outcome(False, "no check-in was asked: a tutor's first session gets one, 2 h after its end")
            state.checkin_answer, state.checkin_comment = event.ok, event.comment
            state.escalation_pending = event.ok is False
            return outcome(True, "escalated to the manager" if event.ok is False else None)
        case Complete():
            state.status = SessionStatus.COMPLETED
            return outcome(True, event.reason)
        case _:
            unreachable(event)


def screen_roster_event(state: SessionState, event: SessionEvent, now: datetime) -> EventOutcome | None:
    """With the roster in the database: a roster event's outcome when it is a duplicate or refused
    (recorded like any other); None when the roster activity should apply it."""
    if (screened := screen_event(state, event, SESSION_CLOSED)) is not None:
        return screened
    if isinstance(event, AddAttendee) and state.status not in (SessionStatus.AWAITING_START, SessionStatus.SCHEDULED):
        return record_outcome(state, event.dedupe_key(), False, "the class is over: nobody can join it",
                              field="attendee")
    return None


def roster_change(state: SessionState, event: SessionEvent) -> RosterChange:
    match event:
        case AddAttendee():
            return RosterChange(session_id=state.session_id, add=event.members())
        case RemoveAttendee(attendee_id=attendee_id):
            return RosterChange(session_id=state.session_id, remove=[attendee_id])
        case Feedback(attendee_id=attendee_id):
            return RosterChange(session_id=state.session_id, feedback=[attendee_id])
        case _:
            unreachable(event)


def roster_outcome(state: SessionState, event: SessionEvent, changed: int) -> EventOutcome:
    """The outcome once the roster activity has reported how many rows it changed."""
    held = isinstance(event, RemoveAttendee) and (state.status == SessionStatus.AWAITING_START or any(
        a.attendee_id == event.attendee_id for a in state.roster_pending))
    if changed or held:  # a removal before the start's roster is stored always sticks
        return record_outcome(state, event.dedupe_key(), True)
    why = {AddAttendee: "already on the roster", RemoveAttendee: "not on the roster",
           Feedback: "feedback already received"}[type(event)]
    return no_change(state, event, why)
