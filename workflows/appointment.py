"""The appointment journey (seed 002): one workflow per appointment, id `appointment-{id}`.

Reminders at scheduled_at − each policy offset (default 1 h), only while the appointment is
scheduled or confirmed, never later than the grace; reschedule re-plans; cancel stops (and sends
a cancellation notice unless told not to); complete ends; a forced resend sends the reminder now.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import appointment_rules as rules
    from workflows.blocks import run_plan, send, too_late, when, with_overrides
    from workflows.models import (
        AppointmentEvent,
        AppointmentInput,
        AppointmentState,
        AppointmentStatus,
        Booking,
        PlannedStep,
        SendRequest,
        SendStatus,
        StepKind,
    )
    from workflows.search import publish


def workflow_id(appointment_id: str) -> str:
    return f"appointment-{appointment_id}"


@workflow.defn
class AppointmentJourney:
    @workflow.init
    def __init__(self, journey: AppointmentInput) -> None:
        self.policy = journey.policy
        self.booking: Booking | None = None
        self.state = AppointmentState(appointment_id=journey.appointment_id,
                                      status=AppointmentStatus.AWAITING_START, policy=journey.policy)
        self.awaiting_since = workflow.now()
        self.revision = 0
        if journey.booking is not None:
            self._start(journey.booking)

    @workflow.run
    async def run(self, journey: AppointmentInput) -> AppointmentState:
        await run_plan(self)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.signal
    def book(self, booking: Booking) -> None:
        if self.booking is None:
            self._start(booking)

    @workflow.signal
    def event(self, event: AppointmentEvent) -> None:
        outcome = rules.apply_event(self.state, event, self.policy, workflow.now())
        if outcome.applied:
            self.revision += 1

    @workflow.query
    def state_query(self) -> AppointmentState:
        return self.state

    def _start(self, booking: Booking) -> None:
        self.booking = booking
        self.policy = self.state.policy = with_overrides(self.policy, booking.policy)
        rules.start(self.state, booking, workflow.now())
        self.revision += 1

    def _plan(self) -> PlannedStep | None:
        step = rules.next_step(self.state, self.policy, self.awaiting_since, workflow.now())
        self._show(step)
        return step

    async def _take(self, step: PlannedStep) -> None:
        now = workflow.now()
        if step.kind == StepKind.ABANDON:
            self.state.status = AppointmentStatus.ABANDONED
        elif step.kind == StepKind.COMPLETE:
            self.state.status = AppointmentStatus.COMPLETED
        elif step.kind == StepKind.NOTICE:
            self.state.notice_pending = False
            if self.booking is not None:
                status = await self._send(rules.notice_key(self.state.appointment_id), "appointment_cancelled", step)
                self.state.notice_sent = status in (SendStatus.SENT, SendStatus.DRY_RUN)
        elif step.kind == StepKind.RESEND:
            self.state.resends_sent = step.number
            await self._send(rules.resend_key(self.state.appointment_id, step.number), "appointment_reminder", step)
        else:
            assert self.state.scheduled_at is not None
            offset = self.state.scheduled_at - step.at
            key = rules.reminder_key(self.state.appointment_id, self.state.scheduled_at, offset)
            if too_late(step.not_after, now):
                rules.record_skip(self.state, key, f"reminder moment passed {now - step.at} ago, beyond the grace", now)
                return
            if await self._send(key, "appointment_reminder", step) in (SendStatus.SENT, SendStatus.DRY_RUN):
                self.state.reminders_sent.append(key)

    async def _send(self, key: str, template: str, step: PlannedStep) -> SendStatus:
        booking = self.booking
        assert booking is not None
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
        return await send(request, lambda k, reason: rules.record_skip(self.state, k, reason, workflow.now()))

    def _show(self, step: PlannedStep | None) -> None:
        self.state.next_step = step
        publish(journey="appointment", entity_id=self.state.appointment_id, stage=self.state.status.value,
                next_action_at=step.at if step else None, recipient=self.state.patient_email)
        lines = [f"**Appointment {self.state.appointment_id}** — {self.state.status.value}"]
        if self.state.scheduled_at:
            lines.append(f"at {when(self.state.scheduled_at)}")
        lines.append(f"reminders sent: {len(self.state.reminders_sent)}")
        lines.append(f"next: {step.label}" if step else "next: nothing, the journey has ended")
        for skip in self.state.skips[-3:]:
            lines.append(f"skipped {skip.step}: {skip.reason}")
        workflow.set_current_details("\n\n".join(lines))
