"""A declared journey's contract: the pinned definition (its policy), the start, the events and
the live state. One workflow, `DeclaredJourney`, runs every definition."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from workflows.contracts import Phone, Recipient
from workflows.core.events import JourneyEvent
from workflows.core.fields import EntityId, GroupName, Moment, PositiveDuration, Strict
from workflows.core.steps import EventOutcome, PlannedStep, Skip
from workflows.declared.definition import Definition, JourneyName, Name

ROSTER_LIMIT = 500  # members in one journey's input; a bigger audience is a campaign
CONTEXT_LIMIT = 16_384  # bytes of JSON: the context travels in history with the start


class DeclaredPolicy(Strict):
    """What a running journey keeps: its definition, the version it started with."""

    name: JourneyName
    version: int = Field(..., ge=1)
    definition: Definition
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


class Member(Strict):
    member_id: EntityId
    recipient: Recipient
    phone: Phone | None = None


def _distinct_members(value: list[Member] | None) -> list[Member] | None:
    if value is not None and len({m.member_id for m in value}) != len(value):
        raise ValueError("two members have the same member_id")
    return value


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _strings(value: Any) -> Any:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _small_context(value: dict[str, Any]) -> dict[str, Any]:
    for text in _strings(value):
        if (found := _CONTROL.search(text)) is not None:
            raise ValueError(f"the context holds a control character (U+{ord(found.group()):04X}): "
                             "only tab and line breaks are allowed")
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > CONTEXT_LIMIT:
        raise ValueError(f"the context is {size} bytes of JSON; at most {CONTEXT_LIMIT}")
    for key in value:
        if not key.isidentifier() or key.startswith("_"):
            raise ValueError(f"context key {key!r} is not a template variable name (letters, digits, _)")
    return value


class NoOverrides(Strict):
    """A declared journey's timing lives in its definition: a start overrides nothing."""


NO_OVERRIDES = NoOverrides()


class DeclaredStart(Strict):
    """What `POST /v1/journeys/{name}` carries."""

    id: EntityId
    recipient: Recipient | None = Field(None, description="who gets the steps (a journey without a roster)")
    phone: Phone | None = Field(None, description="the recipient's E.164 number, for the webhook channel")
    roster: Annotated[list[Member] | None, Field(None, min_length=1, max_length=ROSTER_LIMIT),
                      AfterValidator(_distinct_members)] = None
    anchors: dict[Name, Moment] = Field({}, max_length=10)
    context: Annotated[dict[str, Any], AfterValidator(_small_context)] = Field(
        {}, description="what the templates render, beside name, anchors and step")
    group: GroupName | None = Field(None, description="e.g. the course: bulk actions and the Web UI select by it")

    @property
    def policy(self) -> NoOverrides:
        return NO_OVERRIDES


class DeclaredEvent(JourneyEvent):
    """`POST /v1/journeys/{name}/{id}/events/{kind}`: the kind comes from the path."""

    kind: Name
    at: Moment | None = Field(None, description="for an event that sets an anchor: the anchor's new moment")
    member_id: EntityId | None = Field(None, description="for an event that lets one member go")

    def stamp(self) -> str:
        return f"{self.at.isoformat() if self.at else ''}|{self.member_id or ''}"


class DeclaredStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    ACTIVE = "active"
    COMPLETED = "completed"  # every step is done (sent or skipped) and nothing can move them any more
    EXITED = "exited"  # an exit event of the definition ended it
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


DECLARED_CLOSED = frozenset({DeclaredStatus.COMPLETED, DeclaredStatus.EXITED, DeclaredStatus.CANCELLED,
                             DeclaredStatus.ABANDONED})


class DeclaredState(BaseModel):
    id: str
    status: DeclaredStatus
    journey: str = ""
    version: int = 0
    anchors: dict[str, datetime] = {}
    members: list[str] = []  # member ids of the roster, in order
    exited_members: dict[str, str] = {}  # member id → the event that let them go
    done: list[str] = []  # `{step}-{stamp}` of every step taken at that moment (sent or skipped)
    delivered: int = 0  # messages delivered (their keys: GET /v1/messages?journey=…&entity_id=…)
    ended_by: str | None = None
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = Field([], description="what the backend's webhooks were told: journey.started's and each later stage, the journey's own facts, ended")
    events: list[EventOutcome] = []
    policy: DeclaredPolicy


class DeclaredInput(Strict):
    id: EntityId
    policy: DeclaredPolicy
    start: DeclaredStart | None = None
    state: DeclaredState | None = None
    awaiting_since: datetime | None = None
