"""The appointment journey's contract: start input (the booking), events, policy and live state."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from workflows.contracts import Recipient
from workflows.core.send import TemplatePinning
from workflows.core.events import JourneyEvent, event_maker
from workflows.core.fields import (
    EntityId, Flag, Moment, PersonName, PositiveDuration, ReminderOffsets, ShortText, Strict, overrides_of,
)
from workflows.core.steps import EventOutcome, PlannedStep, Skip


class AppointmentPolicy(TemplatePinning):
    """Seed 002: one reminder an hour before, only while scheduled or confirmed."""

    reminder_offsets: ReminderOffsets = [timedelta(hours=1)]
    reminder_grace: PositiveDuration = timedelta(minutes=10)
    cancellation_notice: Flag = True
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


AppointmentPolicyOverrides = overrides_of(AppointmentPolicy)


class Booking(Strict):
    """What `POST /v1/appointments` carries."""

    appointment_id: EntityId
    patient: Recipient
    scheduled_at: Moment
    doctor: PersonName
    clinic: PersonName | None = None
    location: ShortText | None = None
    confirmed: Flag = False
    policy: AppointmentPolicyOverrides = AppointmentPolicyOverrides()  # type: ignore[valid-type]


class AppointmentStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    SCHEDULED = "scheduled"
    CONFIRMED = "confirmed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


APPOINTMENT_CLOSED = frozenset({AppointmentStatus.COMPLETED, AppointmentStatus.CANCELLED, AppointmentStatus.ABANDONED})


class Confirm(JourneyEvent):
    """The patient confirmed: reminders go on as planned."""

    kind: Literal["confirm"] = "confirm"


class Reschedule(JourneyEvent):
    """Move the appointment: every pending reminder is re-planned for the new time."""

    kind: Literal["reschedule"] = "reschedule"
    scheduled_at: Moment

    def stamp(self) -> str:
        return self.scheduled_at.isoformat()


class Cancel(JourneyEvent):
    """Stop every reminder; send the cancellation notice unless `notify` is false."""

    kind: Literal["cancel"] = "cancel"
    reason: ShortText | None = None
    notify: Flag | None = Field(None, description="send the cancellation notice (default: the policy's)")


class Complete(JourneyEvent):
    kind: Literal["complete"] = "complete"
    reason: ShortText | None = None


class ResendReminder(JourneyEvent):
    """Send the reminder again now, under a new key (the patient lost it)."""

    kind: Literal["resend_reminder"] = "resend_reminder"


AppointmentEvent = Annotated[Confirm | Reschedule | Cancel | Complete | ResendReminder, Field(discriminator="kind")]
appointment_event = event_maker(AppointmentEvent)


class AppointmentState(BaseModel):
    appointment_id: str
    status: AppointmentStatus
    patient_email: str | None = None
    scheduled_at: datetime | None = None
    confirmed: bool = False
    reminders_sent: list[str] = []
    resends_requested: int = 0
    resends_sent: int = 0
    notice_pending: bool = False
    notice_sent: bool = False
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = Field([], description="what the backend's webhooks were told: journey.started's and each later stage, the journey's own facts, ended")
    events: list[EventOutcome] = []
    policy: AppointmentPolicy = AppointmentPolicy()


class AppointmentInput(Strict):
    appointment_id: EntityId
    booking: Booking | None = None
    policy: AppointmentPolicy = AppointmentPolicy()
    state: AppointmentState | None = None
    awaiting_since: datetime | None = None
