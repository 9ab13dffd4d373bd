"""What the API answers: one error shape, message rows, and one view model per journey kind
(derived from the registry, so each kind keeps its own typed schema in the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from workflows.core.steps import EventOutcome
from workflows.registry import KINDS, EventRoute, JourneyKind


class ErrorBody(BaseModel):
    error: str
    detail: Any
    field: str | None = None


class MessageView(BaseModel):
    key: str
    journey: str
    entity_id: str
    template: str
    recipient: str
    status: str
    subject: str | None
    reason: str | None
    attempts: int
    message_id: str
    due_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    channel: str = "email"
    category: str = Field(description="the category its template declares (preferences apply per category)")
    template_version: int | None = Field(None, description="the saved version it rendered; null: the file default")
    variant: str | None = Field(None, description="the A/B variant it got, if its version has variants")
    lifecycle: str = Field("queued", description="queued → sent → delivered → opened → clicked; soft_bounced, "
                                                 "bounced, complained, failed. Only moves forward; human events only")

    @classmethod
    def of(cls, row: Any) -> MessageView:
        return cls(**{name: row[name] for name in cls.model_fields})


class MessageEventView(BaseModel):
    kind: str
    at: datetime
    machine: bool = Field(description="an open by an image proxy or Apple Mail Privacy Protection, a click by a "
                                      "link scanner: kept, reported apart, moves no lifecycle")
    reason: str | None
    provider: str | None

    @classmethod
    def of(cls, row: Any) -> MessageEventView:
        return cls(**{name: row[name] for name in cls.model_fields})


class MessageDetailView(MessageView):
    events: list[MessageEventView]


class JourneyView(BaseModel):
    """The fields every kind's view has; `{kind}_id` and a typed `state` are added per kind."""

    workflow_id: str
    created: bool | None = Field(None, description="a start: true when this call started the journey")
    accepted: bool = Field(False, description="no worker answered in time: the input is durably recorded and "
                                              "will be applied once; state and event are then null")
    event: EventOutcome | None = None
    created_by_event: str | None = Field(None, description="the id had no journey: this event created one, which "
                                                           "waits for its start (policy `hold_early_events_for`) "
                                                           "or has already ended (an early cancel)")
    messages: list[MessageView] = []


def _view(kind: JourneyKind) -> type[JourneyView]:
    name = "".join(part.capitalize() for part in kind.name.split("_")) + "View"
    return create_model(name, __base__=JourneyView, **{
        kind.id_field: (str, ...),
        "state": (kind.state_model | None, Field(None, description="null when no worker answered in time")),
    })


def _body(kind: JourneyKind, route: EventRoute) -> type[BaseModel]:
    """An event's request body: its fields but `kind` and those the path carries."""
    model = kind.event_models[route.kind]
    fields = {name: (info.annotation, info) for name, info in model.model_fields.items()
              if name != "kind" and name not in route.path_params}
    name = "".join(part.capitalize() for part in f"{kind.name}_{route.kind}".split("_")) + "Body"
    body = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
    body.__doc__ = model.__doc__
    return body


VIEWS: dict[str, type[JourneyView]] = {name: _view(kind) for name, kind in KINDS.items()}
BODIES: dict[tuple[str, str], type[BaseModel]] = {
    (name, route.kind): _body(kind, route) for name, kind in KINDS.items() for route in kind.events}
