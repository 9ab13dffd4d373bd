"""The tutor rescheduling journey's contract: the tutor, events, policy and live state.

One journey per tutor lives for years: it keeps only the reschedules that still count in a window
(the longest one), plus one record per alert rule of the episode it last alerted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from workflows.contracts import Recipient
from workflows.core.send import TemplatePinning
from workflows.core.events import JourneyEvent, event_maker
from workflows.core.fields import (
    EmailAddress, EntityId, Moment, PersonName, PositiveDuration, ShortText, Strict, WebUrl, overrides_of,
)
from workflows.core.steps import EventOutcome, PlannedStep, Skip

MAX_WINDOW = timedelta(days=366)  # a window keeps every reschedule inside it in the state: a year at most


def _at_most_a_year(value: timedelta) -> timedelta:
    if value > MAX_WINDOW:
        raise ValueError(f"a window is at most {MAX_WINDOW.days} days (P{MAX_WINDOW.days}D)")
    return value


Threshold = Annotated[int, Field(strict=True, ge=1, le=1000)]  # a JSON integer: reschedules in the window
Window = Annotated[PositiveDuration, AfterValidator(_at_most_a_year)]


class TutorPolicy(TemplatePinning):
    """Seed 004: ≥ 3 reschedules in 7 days → one supportive email to the tutor; ≥ 6 in 14 days → the
    manager is told. Each alert once per episode: not again until the count in its window falls
    below its threshold (the window clears)."""

    supportive_threshold: Threshold = 3
    supportive_window: Window = timedelta(days=7)
    manager_threshold: Threshold = 6
    manager_window: Window = timedelta(days=14)
    hold_early_events_for: PositiveDuration = timedelta(hours=24)

    @property
    def longest_window(self) -> timedelta:
        return max(self.supportive_window, self.manager_window)


TutorPolicyOverrides = overrides_of(TutorPolicy)


class Tutor(Strict):
    """What `POST /v1/tutors` carries."""

    tutor_id: EntityId
    tutor: Recipient
    manager_email: EmailAddress
    manager_name: PersonName | None = None
    support_url: WebUrl | None = Field(None, description="where the supportive email offers scheduling help")
    policy: TutorPolicyOverrides = TutorPolicyOverrides()  # type: ignore[valid-type]


class TutorStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    WATCHING = "watching"
    CLOSED = "closed"  # the tutor left
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"  # an early event's start never came


TUTOR_CLOSED = frozenset({TutorStatus.CLOSED, TutorStatus.CANCELLED, TutorStatus.ABANDONED})


class Rescheduled(JourneyEvent):
    """One of the tutor's sessions was rescheduled: it counts in every window it falls in."""

    kind: Literal["rescheduled"] = "rescheduled"
    session_id: EntityId
    at: Moment | None = Field(None, description="when it was rescheduled, counted to the second (default: the "
                                                "moment the journey takes the event in)")

    def stamp(self) -> str:
        return f"{self.session_id}@{self.at.isoformat() if self.at else ''}"


class Close(JourneyEvent):
    """The tutor left: the journey ends, nothing more is sent."""

    kind: Literal["close"] = "close"
    reason: ShortText | None = None


class Cancel(JourneyEvent):
    """Stop watching this tutor (what bulk cancel sends): the journey ends, nothing more is sent."""

    kind: Literal["cancel"] = "cancel"
    reason: ShortText | None = None


TutorEvent = Annotated[Rescheduled | Close | Cancel, Field(discriminator="kind")]
tutor_event = event_maker(TutorEvent)

RuleName = Literal["supportive", "manager"]


class Reschedule(Strict):
    at: datetime  # to the second
    session_id: str


class OpenAlert(Strict):
    """An alert rule's episode that was alerted and has not cleared: no second alert until it does."""

    crossed_at: datetime  # the reschedule that brought the count to the threshold: the episode's key
    key: str
    checked_at: datetime  # the count was still at the threshold or above from crossed_at up to here


class SentAlert(Strict):
    rule: RuleName
    key: str
    at: datetime
    count: int  # reschedules in the rule's window when it went out
    delivered: bool


class TutorState(BaseModel):
    tutor_id: str
    status: TutorStatus
    tutor_email: str | None = None
    manager_email: str | None = None
    # Every reschedule that can still count in a window, oldest first; older ones are dropped.
    reschedules: list[Reschedule] = []
    reschedules_total: int = 0  # every reschedule ever counted, dropped ones included
    counts: dict[str, int] = {}  # rule → reschedules in its window at `counted_at`
    counted_at: datetime | None = None
    supportive: OpenAlert | None = None
    manager: OpenAlert | None = None
    alerts: list[SentAlert] = []  # the latest alerts (ALERT_LOG), newest last
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = Field([], description="what the backend's webhooks were told: journey.started's and each later stage, the journey's own facts, ended")
    events: list[EventOutcome] = []
    policy: TutorPolicy = TutorPolicy()


class TutorInput(Strict):
    tutor_id: EntityId
    tutor: Tutor | None = None
    policy: TutorPolicy = TutorPolicy()
    state: TutorState | None = None
    awaiting_since: datetime | None = None
