"""Seed 000's rules as pure functions of (state, policy, now): what the interview journey does next,
and how an event changes it. The workflow only waits for the planned step or an event; the tests
check these rules over random timelines without Temporal.
"""

from __future__ import annotations

from datetime import datetime

from workflows.core.events import no_change, record_outcome, record_skip, screen_event
from workflows.core.steps import EventOutcome, PlannedStep, StepKind, unreachable, waiting_for_start
from workflows.core.timing import followup_due, remind_before, stamp_key, when
from workflows.interview.models import (
    CLOSED_STATUSES,
    Cancel,
    Complete,
    Confirm,
    InterviewEvent,
    InterviewPolicy,
    InterviewState,
    InterviewStatus,
    Invitation,
    Reschedule,
)

__all__ = ["apply_event", "followup_key", "next_step", "record_skip", "reminder_key", "start"]


def reminder_key(interview_id: str, scheduled_at: datetime) -> str:
    """One reminder per interview time: a reschedule gets a new one, a reschedule back does not."""
    return f"interview-{interview_id}/reminder-{stamp_key(scheduled_at)}"


def followup_key(interview_id: str, number: int) -> str:
    return f"interview-{interview_id}/followup-{number}"


def next_step(state: InterviewState, policy: InterviewPolicy, awaiting_since: datetime,
              now: datetime | None = None) -> PlannedStep | None:
    """The one step the journey waits for next; None once it has ended."""
    if state.status in CLOSED_STATUSES:
        return None
    if state.status == InterviewStatus.AWAITING_START:
        return waiting_for_start(awaiting_since, policy.hold_early_events_for, "start")
    assert state.invited_at is not None
    if state.status == InterviewStatus.PENDING:
        expires_at = state.invited_at + policy.expire_after
        number = state.followups_sent + 1
        if state.followups_sent < policy.max_followups:
            due = followup_due(
                state.invited_at,
                policy.followup_after,
                policy.followup_interval,
                state.followups_sent,
                state.last_sent_at,
            )
            if due < expires_at:
                return PlannedStep(
                    kind=StepKind.FOLLOWUP,
                    at=due,
                    number=number,
                    not_after=expires_at,
                    label=f"follow-up {number} of {policy.max_followups} due {when(due)}",
                )
        return PlannedStep(kind=StepKind.EXPIRE, at=expires_at, label=f"expires unanswered at {when(expires_at)}")
    # SCHEDULED
    assert state.scheduled_at is not None
    key = reminder_key(state.interview_id, state.scheduled_at)
    if key not in state.reminders_sent and not any(skip.step == key for skip in state.skips):
        at, not_after = remind_before(state.scheduled_at, policy.reminder_before, policy.reminder_grace)
        return PlannedStep(
            kind=StepKind.REMINDER,
            at=at,
            not_after=not_after,
            label=f"reminder for the interview at {when(state.scheduled_at)} due {when(at)}",
        )
    return PlannedStep(
        kind=StepKind.COMPLETE, at=state.scheduled_at, label=f"interview at {when(state.scheduled_at)}"
    )


def start(state: InterviewState, invitation: Invitation, now: datetime) -> None:
    """Apply the invitation (invited now unless it says when); events held before it (a confirm,
    a cancel) keep their effect."""
    state.candidate_email = str(invitation.candidate.email)
    state.invited_at = invitation.invited_at or now
    if state.status != InterviewStatus.AWAITING_START:
        return
    if invitation.scheduled_at and state.scheduled_at is None:
        state.scheduled_at = invitation.scheduled_at
    state.status = InterviewStatus.SCHEDULED if state.scheduled_at else InterviewStatus.PENDING


def apply_event(state: InterviewState, event: InterviewEvent, policy: InterviewPolicy | None,
                now: datetime) -> EventOutcome:
    """Change the state for one event. Twice the same event = once; an invalid one changes nothing.
    Only an `event_id` identifies a delivery: without one, moving back to an earlier time is a new
    request, and a repeat is caught by the state itself (already at that time, already cancelled)."""
    if (screened := screen_event(state, event, CLOSED_STATUSES)) is not None:
        return screened

    def outcome(applied: bool, reason: str | None = None, field: str | None = None) -> EventOutcome:
        return record_outcome(state, event.dedupe_key(), applied, reason, field=field)

    match event:
        case Confirm() | Reschedule():
            if state.invited_at and event.scheduled_at <= state.invited_at:
                return outcome(False, "scheduled_at is before invited_at", "scheduled_at")
            if event.scheduled_at <= now:
                return outcome(False, "scheduled_at is in the past", "scheduled_at")
            if state.scheduled_at == event.scheduled_at:
                return no_change(state, event, "already scheduled at that time")
            state.scheduled_at = event.scheduled_at
            if state.status != InterviewStatus.AWAITING_START:
                state.status = InterviewStatus.SCHEDULED
            return outcome(True)
        case Cancel():
            state.status = InterviewStatus.CANCELLED
            return outcome(True, event.reason)
        case Complete():
            state.status = InterviewStatus.COMPLETED
            return outcome(True, event.reason)
        case _:
            unreachable(event)
