"""The lead nurture journey's contract: the lead, events, policy and live state."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from workflows.contracts import Recipient
from workflows.core.send import TemplatePinning
from workflows.core.events import JourneyEvent, event_maker
from workflows.core.fields import (
    EntityId, GroupName, Moment, NonNegativeDuration, PositiveDuration, ShortText, Strict, WebUrl, overrides_of,
)
from workflows.core.steps import EventOutcome, PlannedStep, Skip

TemplateName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class LeadStep(Strict):
    after: NonNegativeDuration  # from the lead's start (day 0 = 0)
    template: TemplateName


def _lead_steps(value: list[LeadStep]) -> list[LeadStep]:
    afters = [step.after for step in value]
    if afters != sorted(afters) or len(set(afters)) != len(afters):
        raise ValueError("steps must be in increasing order of `after`, each at a different time")
    return value


LeadSteps = Annotated[list[LeadStep], Field(min_length=1, max_length=20), AfterValidator(_lead_steps)]
DEFAULT_LEAD_STEPS = [
    LeadStep(after=timedelta(0), template="lead_welcome"),
    LeadStep(after=timedelta(days=3), template="lead_still_interested"),
    LeadStep(after=timedelta(days=7), template="lead_final_offer"),
]


class LeadPolicy(TemplatePinning):
    """Seed 003: day 0 first email, day 3 "still interested?", day 7 final offer."""

    steps: LeadSteps = DEFAULT_LEAD_STEPS
    step_grace: PositiveDuration = timedelta(days=1)  # a step more than this late is skipped, not sent
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


LeadPolicyOverrides = overrides_of(LeadPolicy)


class Lead(Strict):
    """What `POST /v1/leads` (or one CSV row) carries."""

    lead_id: EntityId
    contact: Recipient
    campaign: GroupName
    company: ShortText | None = None
    offer_url: WebUrl | None = None
    started_at: Moment | None = None  # day 0; default: when the journey starts
    policy: LeadPolicyOverrides = LeadPolicyOverrides()  # type: ignore[valid-type]


class LeadStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    NURTURING = "nurturing"
    CONVERTED = "converted"
    REPLIED = "replied"
    SUPPRESSED = "suppressed"  # unsubscribed or hard-bounced: nothing more can be sent
    FINISHED = "finished"  # every step went out
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


LEAD_CLOSED = frozenset({LeadStatus.CONVERTED, LeadStatus.REPLIED, LeadStatus.SUPPRESSED, LeadStatus.FINISHED,
                         LeadStatus.CANCELLED, LeadStatus.ABANDONED})


class Converted(JourneyEvent):
    """The lead bought / signed: nothing more is sent."""

    kind: Literal["converted"] = "converted"
    reference: ShortText | None = Field(None, description="e.g. the order or contract id")


class Replied(JourneyEvent):
    """The lead answered: a person takes over, nothing more is sent."""

    kind: Literal["replied"] = "replied"


class Cancel(JourneyEvent):
    kind: Literal["cancel"] = "cancel"


LeadEvent = Annotated[Converted | Replied | Cancel, Field(discriminator="kind")]
lead_event = event_maker(LeadEvent)


class LeadState(BaseModel):
    lead_id: str
    status: LeadStatus
    campaign: str | None = None
    contact_email: str | None = None
    started_at: datetime | None = None
    steps_done: int = 0  # sent or skipped
    sent: list[str] = []
    conversion_reference: str | None = None
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = Field([], description="what the backend's webhooks were told: journey.started's and each later stage, the journey's own facts, ended")
    events: list[EventOutcome] = []
    policy: LeadPolicy = LeadPolicy()


class LeadInput(Strict):
    lead_id: EntityId
    lead: Lead | None = None
    policy: LeadPolicy = LeadPolicy()
    state: LeadState | None = None
    awaiting_since: datetime | None = None
