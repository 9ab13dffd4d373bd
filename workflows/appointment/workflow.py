"""The appointment journey (seed 002): one workflow per appointment, id `appointment-{id}`.

Reminders at scheduled_at − each policy offset (default 1 h), only while the appointment is
scheduled or confirmed, never later than the grace; reschedule re-plans; cancel stops (and sends
a cancellation notice unless told not to); complete ends; a forced resend sends the reminder now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from temporalio import workflow

from workflows.appointment import rules
from workflows.appointment.models import (
    AppointmentEvent,
    AppointmentInput,
    AppointmentState,
    AppointmentStatus,
    Booking,
)
from workflows.contracts import SendRequest, SendStatus
from workflows.core.send import send
from workflows.core.shell import JourneyCore, Reply
from workflows.core.steps import PlannedStep, StepKind, too_late, unreachable
from workflows.core.timing import when


def workflow_id(appointment_id: str) -> str:
    return f"appointment-{appointment_id}"


async def take(state: AppointmentState, step: PlannedStep, now: datetime, booked: bool,
               send: Callable[[str, str, PlannedStep], Awaitable[SendStatus]]) -> None:
    """Take the step the loop woke for at `now`; `send(key, template, step)` is the send step (the
    rules' tests pass one on a fake clock, with events arriving while it runs)."""
    match step.kind:
        case StepKind.ABANDON:
            state.status = AppointmentStatus.ABANDONED
        case StepKind.COMPLETE:
            state.status = AppointmentStatus.COMPLETED
        case StepKind.NOTICE:
            state.notice_pending = False
            if booked:
                status = await send(rules.notice_key(state.appointment_id), "appointment_cancelled", step)
                state.notice_sent = status.delivered
        case StepKind.RESEND:
            state.resends_sent = step.number
            await send(rules.resend_key(state.appointment_id, step.number), "appointment_reminder", step)
        case StepKind.REMINDER:
            assert state.scheduled_at is not None
            offset = state.scheduled_at - step.at
            key = rules.reminder_key(state.appointment_id, state.scheduled_at, offset)
            if too_late(step.not_after, now):
                rules.record_skip(state, key, f"reminder moment passed {now - step.at} ago, beyond the grace", now)
                return
            if (await send(key, "appointment_reminder", step)).delivered:
                state.reminders_sent.append(key)
        case _:
            unreachable(step)


@workflow.defn
class AppointmentJourney:
    @workflow.init
    def __init__(self, journey: AppointmentInput) -> None:
        state = AppointmentState(appointment_id=journey.appointment_id, status=AppointmentStatus.AWAITING_START,
                                 policy=journey.policy)
        self.core = JourneyCore("appointment", journey.appointment_id, rules, journey.policy, state,
                                journey.booking, journey.state, journey.awaiting_since,
                                details=self._details, recipient=lambda: self.state.patient_email)

    @property
    def state(self) -> AppointmentState:
        return self.core.state

    @workflow.run
    async def run(self, journey: AppointmentInput) -> AppointmentState:
        await self.core.run(self._take, self._carry)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.update
    def start_journey(self, booking: Booking) -> Reply[AppointmentState]:
        return self.core.started(booking)

    @workflow.update
    def apply_event(self, event: AppointmentEvent) -> Reply[AppointmentState]:
        return self.core.applied(event)

    @apply_event.validator
    def _screen(self, event: AppointmentEvent) -> None:
        self.core.screen(event)

    @workflow.signal
    def book(self, booking: Booking) -> None:
        """The start as a signal: the durable fallback when no worker answers an update in time."""
        self.core.begin(booking)

    @workflow.signal
    def event(self, event: AppointmentEvent) -> None:
        self.core.apply(event)

    @workflow.query
    def state_query(self) -> AppointmentState:
        return self.state

    async def _take(self, step: PlannedStep) -> None:
        await take(self.state, step, workflow.now(), self.core.start is not None, self._send)

    async def _send(self, key: str, template: str, step: PlannedStep) -> SendStatus:
        booking = self.core.start
        assert isinstance(booking, Booking)
        request = SendRequest(
            key=key, journey="appointment", entity_id=self.state.appointment_id, template=template,
            recipient=booking.patient,
            context={
                "patient_name": booking.patient.name,
                "doctor": booking.doctor,
                "clinic": booking.clinic,
                "location": booking.location,
                "scheduled_at": self.state.scheduled_at.isoformat() if self.state.scheduled_at else None,
                "time_zone": booking.patient.time_zone,
            },
            due_at=step.at, not_after=step.not_after,
        )
        return await send(request, lambda k, reason: rules.record_skip(self.state, k, reason, workflow.now()), self.core.waiting())

    def _carry(self) -> AppointmentInput:
        return AppointmentInput(appointment_id=self.state.appointment_id, booking=self.core.start,
                                policy=self.core.policy, state=self.state, awaiting_since=self.core.awaiting_since)

    def _details(self) -> list[str]:
        state = self.state
        lines = [f"**Appointment {state.appointment_id}** — {state.status.value}"]
        if state.scheduled_at:
            lines.append(f"at {when(state.scheduled_at)}")
        lines.append(f"reminders sent: {len(state.reminders_sent)}")
        return lines
