"""Seed 002's rules as pure functions: reminders before the appointment (default one, 1 h before),
only while it is scheduled or confirmed; a reschedule re-plans, a cancel stops (with an optional
notice), and a forced resend sends the reminder again under a new key."""

from __future__ import annotations

from datetime import datetime, timedelta

from workflows.appointment.models import (
    APPOINTMENT_CLOSED,
    AppointmentEvent,
    AppointmentPolicy,
    AppointmentState,
    AppointmentStatus,
    Booking,
    Cancel,
    Complete,
    Confirm,
    Reschedule,
    ResendReminder,
)
from workflows.core.events import no_change, record_outcome, record_skip, screen_event
from workflows.core.steps import EventOutcome, PlannedStep, StepKind, unreachable, waiting_for_start
from workflows.core.timing import offset_label, remind_before, stamp_key, when

__all__ = ["apply_event", "next_step", "notice_key", "record_skip", "reminder_key", "resend_key", "start"]


def reminder_key(appointment_id: str, scheduled_at: datetime, offset: timedelta) -> str:
    return f"appointment-{appointment_id}/reminder-{offset_label(offset)}-{stamp_key(scheduled_at)}"


def resend_key(appointment_id: str, number: int) -> str:
    return f"appointment-{appointment_id}/reminder-resend-{number}"


def notice_key(appointment_id: str) -> str:
    return f"appointment-{appointment_id}/cancellation"


def handled(state: AppointmentState, key: str) -> bool:
    return key in state.reminders_sent or any(skip.step == key for skip in state.skips)


def next_step(state: AppointmentState, policy: AppointmentPolicy, awaiting_since: datetime,
              now: datetime) -> PlannedStep | None:
    if state.notice_pending:
        return PlannedStep(kind=StepKind.NOTICE, at=now, label="cancellation notice, now")
    if state.status in APPOINTMENT_CLOSED:
        return None
    if state.status == AppointmentStatus.AWAITING_START:
        return waiting_for_start(awaiting_since, policy.hold_early_events_for, "booking")
    assert state.scheduled_at is not None
    if state.resends_sent < state.resends_requested and now < state.scheduled_at:
        number = state.resends_sent + 1
        return PlannedStep(kind=StepKind.RESEND, at=now, number=number, not_after=state.scheduled_at,
                           label=f"forced resend {number} of the reminder, now")
    for offset in policy.reminder_offsets:
        key = reminder_key(state.appointment_id, state.scheduled_at, offset)
        if not handled(state, key):
            at, not_after = remind_before(state.scheduled_at, offset, policy.reminder_grace)
            return PlannedStep(kind=StepKind.REMINDER, at=at, not_after=not_after,
                               label=f"reminder {offset_label(offset)} before {when(state.scheduled_at)}, due {when(at)}")
    return PlannedStep(kind=StepKind.COMPLETE, at=state.scheduled_at,
                       label=f"appointment at {when(state.scheduled_at)}")


def start(state: AppointmentState, booking: Booking, now: datetime) -> None:
    state.patient_email = str(booking.patient.email)
    if state.status != AppointmentStatus.AWAITING_START:
        return
    if state.scheduled_at is None:
        state.scheduled_at = booking.scheduled_at
    state.confirmed = state.confirmed or booking.confirmed
    state.status = AppointmentStatus.CONFIRMED if state.confirmed else AppointmentStatus.SCHEDULED


def apply_event(state: AppointmentState, event: AppointmentEvent, policy: AppointmentPolicy,
                now: datetime) -> EventOutcome:
    if (screened := screen_event(state, event, APPOINTMENT_CLOSED)) is not None:
        return screened

    def outcome(applied: bool, reason: str | None = None, field: str | None = None) -> EventOutcome:
        return record_outcome(state, event.dedupe_key(), applied, reason, field=field)

    match event:
        case Reschedule():
            if event.scheduled_at <= now:
                return outcome(False, "scheduled_at is in the past", "scheduled_at")
            if event.scheduled_at == state.scheduled_at:
                return no_change(state, event, "already scheduled at that time")
            state.scheduled_at = event.scheduled_at
            return outcome(True)
        case Confirm():
            state.confirmed = True
            if state.status != AppointmentStatus.AWAITING_START:
                state.status = AppointmentStatus.CONFIRMED
            return outcome(True)
        case ResendReminder():
            if state.status == AppointmentStatus.AWAITING_START:
                return outcome(False, "the appointment has not been booked yet")
            state.resends_requested += 1
            return outcome(True)
        case Cancel():
            was_booked = state.status != AppointmentStatus.AWAITING_START
            state.status = AppointmentStatus.CANCELLED
            notify = policy.cancellation_notice if event.notify is None else event.notify
            state.notice_pending = notify and was_booked
            return outcome(True, event.reason)
        case Complete():
            state.status = AppointmentStatus.COMPLETED
            return outcome(True, event.reason)
        case _:
            unreachable(event)
