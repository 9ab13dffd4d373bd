"""Seed 002 on the time-skipping server: reminders before appointments, with the real send step."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import WorkflowIDConflictPolicy

from tests.workflow.conftest import Driver, driver_fixture
from workflows.appointment.workflow import AppointmentJourney
from workflows.appointment.models import APPOINTMENT_CLOSED, AppointmentEvent, AppointmentInput, AppointmentStatus, Booking, appointment_event
from workflows.contracts import Recipient

H = timedelta(hours=1)
M = timedelta(minutes=1)


class Appointment(Driver):
    journey = AppointmentJourney
    closed = APPOINTMENT_CLOSED
    prefix = "appointment"

    def booking(self, scheduled_in: timedelta, **fields) -> Booking:
        assert self.anchor is not None
        return Booking(appointment_id=self.entity_id,
                       patient=Recipient(email=f"p-{self.entity_id}@example.com", name="Pat", time_zone="America/New_York"),
                       scheduled_at=self.anchor + scheduled_in, doctor="Dr. Ada Byron", clinic="Isercom Clinic", **fields)

    async def book(self, scheduled_in: timedelta, **fields) -> None:
        self.anchor = await self.now()
        await self.client.start_workflow(
            AppointmentJourney.run, AppointmentInput(appointment_id=self.entity_id), id=self.workflow_id,
            task_queue=self.settings.temporal_task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="book", start_signal_args=[self.booking(scheduled_in, **fields)],
        )

    async def event(self, kind: str, **fields) -> None:
        await self.signal(appointment_event(kind=kind, **fields))


appointment = driver_fixture(Appointment)


async def test_one_reminder_an_hour_before_then_completed(appointment):
    await appointment.book(30 * H)
    final = await appointment.result()
    assert final.status == AppointmentStatus.COMPLETED
    assert [(key.split("-")[0], offset) for key, offset in await appointment.sent()] == [("reminder", 29 * H)]


async def test_several_offsets_each_once(appointment):
    await appointment.book(30 * H, policy={"reminder_offsets": ["PT15M", "P1D", "PT1H"]})
    await appointment.result()
    assert [offset for _, offset in await appointment.sent()] == [6 * H, 29 * H, 30 * H - 15 * M]


async def test_confirmed_then_rescheduled_reminds_only_for_the_new_time(appointment):
    await appointment.book(10 * H)
    await appointment.event("confirm")
    await appointment.at(5 * H)
    await appointment.event("reschedule", scheduled_at=appointment.anchor + 20 * H)
    state = await appointment.state()
    assert state.status == AppointmentStatus.CONFIRMED and state.next_step.at == appointment.anchor + 19 * H
    await appointment.result()
    assert [offset for _, offset in await appointment.sent()] == [19 * H]


async def test_cancel_sends_one_notice_and_nothing_else(appointment):
    await appointment.book(10 * H)
    await appointment.at(2 * H)
    await appointment.event("cancel", reason="doctor ill")
    await appointment.event("cancel", reason="doctor ill")
    final = await appointment.result()
    assert final.status == AppointmentStatus.CANCELLED and final.notice_sent
    assert [key for key, _ in await appointment.sent()] == ["cancellation"]


async def test_cancel_without_notice(appointment):
    await appointment.book(10 * H)
    await appointment.event("cancel", notify=False)
    final = await appointment.result()
    assert final.status == AppointmentStatus.CANCELLED and not final.notice_sent
    assert await appointment.sent() == []


async def test_booked_inside_the_hour_reminds_at_once_within_grace_else_skips(appointment):
    await appointment.book(55 * M)  # reminder due 5 min ago: inside the 10 min grace
    await appointment.result()
    assert len(await appointment.sent()) == 1


async def test_booked_too_late_for_a_reminder(appointment):
    await appointment.book(20 * M)
    final = await appointment.result()
    assert await appointment.sent() == []
    assert len(final.skips) == 1 and "beyond the grace" in final.skips[0].reason


async def test_forced_resend_sends_the_reminder_again_under_a_new_key(appointment):
    await appointment.book(3 * H)
    await appointment.at(2 * H + 5 * M)  # the 1 h reminder went out
    await appointment.event("resend_reminder", event_id="resend-a")
    await appointment.event("resend_reminder", event_id="resend-a")  # the same request twice: once
    final = await appointment.result()
    keys = [key for key, _ in await appointment.sent()]
    assert len(keys) == 2 and keys[1] == "reminder-resend-1"
    assert final.resends_sent == 1


async def test_complete_early_stops_everything(appointment):
    await appointment.book(10 * H)
    await appointment.event("complete")
    final = await appointment.result()
    assert final.status == AppointmentStatus.COMPLETED and await appointment.sent() == []


async def test_reschedule_into_the_past_is_rejected(appointment):
    await appointment.book(10 * H)
    await appointment.at(1 * H)
    await appointment.event("reschedule", scheduled_at=appointment.anchor)
    state = await appointment.state()
    assert state.scheduled_at == appointment.anchor + 10 * H
    assert state.events[-1].applied is False and "past" in state.events[-1].reason
