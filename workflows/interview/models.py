"""The interview journey's contract: start input, events, policy and live state."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from workflows.contracts import Recipient
from workflows.core.send import TemplatePinning
from workflows.core.events import JourneyEvent, event_maker
from workflows.core.fields import Count, EntityId, Moment, PositiveDuration, ShortText, Strict, WebUrl, overrides_of
from workflows.core.steps import EventOutcome, PlannedStep, Skip


class InterviewPolicy(TemplatePinning):
    """Seed 000's timings; every field but the hold can be overridden per start."""

    followup_after: PositiveDuration = timedelta(hours=48)
    followup_interval: PositiveDuration = timedelta(hours=24)
    max_followups: Annotated[Count, Field(ge=0, le=20)] = 3
    reminder_before: PositiveDuration = timedelta(hours=24)
    reminder_grace: PositiveDuration = timedelta(hours=2)
    expire_after: PositiveDuration = timedelta(days=14)
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


InterviewPolicyOverrides = overrides_of(InterviewPolicy)


class Invitation(Strict):
    """What `POST /v1/interviews` carries: everything the journey needs to run."""

    interview_id: EntityId
    candidate: Recipient
    invited_at: Moment | None = None  # default: when the API received it
    slot_selection_url: WebUrl
    scheduled_at: Moment | None = None
    policy: InterviewPolicyOverrides = InterviewPolicyOverrides()  # type: ignore[valid-type]

    @field_validator("scheduled_at")
    @classmethod
    def _scheduled_after_invite(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        invited_at = info.data.get("invited_at")
        if value is not None and invited_at is not None and value <= invited_at:
            raise ValueError("scheduled_at must be after invited_at")
        return value


class InterviewStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    PENDING = "pending"
    SCHEDULED = "scheduled"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    ABANDONED = "abandoned"


CLOSED_STATUSES = frozenset(
    {InterviewStatus.COMPLETED, InterviewStatus.CANCELLED, InterviewStatus.EXPIRED, InterviewStatus.ABANDONED}
)


class _Timed(JourneyEvent):
    scheduled_at: Moment

    def stamp(self) -> str:
        return self.scheduled_at.isoformat()


class Confirm(_Timed):
    """The candidate picked a time: follow-ups stop, a reminder is planned."""

    kind: Literal["confirm"] = "confirm"


class Reschedule(_Timed):
    """Move the interview: the journey re-plans in place."""

    kind: Literal["reschedule"] = "reschedule"


class Cancel(JourneyEvent):
    """Stop everything; nothing more is sent."""

    kind: Literal["cancel"] = "cancel"
    reason: ShortText | None = None


class Complete(JourneyEvent):
    """The interview took place (or is otherwise over)."""

    kind: Literal["complete"] = "complete"
    reason: ShortText | None = None


InterviewEvent = Annotated[Confirm | Reschedule | Cancel | Complete, Field(discriminator="kind")]
interview_event = event_maker(InterviewEvent)


class InterviewState(BaseModel):
    """Live state, returned by the `state` query and by `GET /v1/interviews/{id}`."""

    interview_id: str
    status: InterviewStatus
    candidate_email: str | None = None
    invited_at: datetime | None = None
    scheduled_at: datetime | None = None
    followups_sent: int = 0
    last_sent_at: datetime | None = None
    reminders_sent: list[str] = []  # idempotency keys of reminders delivered
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = Field([], description="what the backend's webhooks were told: journey.started's and each later stage, the journey's own facts, ended")
    events: list[EventOutcome] = []
    policy: InterviewPolicy = InterviewPolicy()


class InterviewInput(Strict):
    """The workflow input. `invitation` is None when an event arrived before the start; `state`
    is set when a run continued as new."""

    interview_id: EntityId
    invitation: Invitation | None = None
    policy: InterviewPolicy = InterviewPolicy()
    state: InterviewState | None = None
    awaiting_since: datetime | None = None
