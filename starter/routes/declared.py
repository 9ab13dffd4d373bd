"""Declared journeys over HTTP: `PUT|GET /v1/journey-definitions/{name}` (JSON or YAML, each save a
new immutable version) and `POST|GET /v1/journeys/{name}/{id}`, `POST …/events/{event}` for the
journeys of a definition."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Body, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from activities.announcements import JourneyRecipients
from activities.definitions import Version
import observability
from starter.declared import Declared
from starter.service import Answer, NotFound
from starter.views import ErrorBody, MessageView
from workflows.core.fields import EntityId, EventId, Moment
from workflows.core.steps import EventOutcome
from workflows.declared.definition import Definition, JourneyName, Name
from workflows.declared.models import DeclaredEvent, DeclaredStart, DeclaredState, DeclaredStatus

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
TAGS = ["journey definitions"]


class VersionSummary(BaseModel):
    version: int
    digest: str
    source: str = Field(description="builtin (shipped with Followups) or api")
    created_at: datetime


class DefinitionView(VersionSummary):
    name: str
    created: bool | None = Field(None, description="a save: true when it made a new version")
    definition: Definition

    @classmethod
    def of(cls, version: Version, created: bool | None = None) -> DefinitionView:
        return cls(name=version.name, version=version.version, digest=version.digest, source=version.source,
                   created_at=version.created_at, created=created, definition=version.definition)


class DefinitionHistory(BaseModel):
    name: str
    latest: DefinitionView
    versions: list[VersionSummary]


class DefinitionList(BaseModel):
    definitions: list[DefinitionView] = Field(description="the latest version of each definition")


class DeclaredView(BaseModel):
    id: str
    journey: str
    workflow_id: str
    created: bool | None = Field(None, description="a start: true when this call started the journey")
    accepted: bool = Field(False, description="no worker answered in time: recorded, applied once later")
    event: EventOutcome | None = None
    created_by_event: str | None = None
    state: DeclaredState | None = Field(None, description="null when no worker answered in time")
    messages: list[MessageView] = []


class EventBody(BaseModel):
    """An event's fields; which ones it needs depends on what the definition says the event does."""

    model_config = ConfigDict(extra="forbid")
    event_id: EventId | None = None
    at: Moment | None = Field(None, description="an event that sets an anchor: its new moment (default: now)")
    member_id: EntityId | None = Field(None, description="an event that lets a member go: who")


class _NoAliases(yaml.SafeLoader):
    """YAML without `&anchor`/`*alias`: an alias bomb a few KB long would expand to gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def yaml_to_json(raw: bytes) -> bytes:
    """A YAML body as the JSON the route reads; ValueError with the line when it is not YAML."""
    try:
        data = yaml.load(raw.decode(), Loader=_NoAliases)  # noqa: S506 (a SafeLoader)
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"the body is not YAML{where}: {getattr(err, 'problem', None) or err}") from err
    return json.dumps(data, default=str).encode()


class YamlBodies:
    """`Content-Type: application/yaml` on the definition routes: the body becomes JSON before the
    route reads it, so JSON and YAML are validated by the same model with the same errors."""

    def __init__(self, app: ASGIApp, prefix: str = "/v1/journey-definitions/") -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
        if not scope.get("path", "").startswith(self.prefix) or kind not in YAML_TYPES:
            await self.app(scope, receive, send)
            return
        raw, more = b"", True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            body = yaml_to_json(raw)
        except ValueError as err:
            problem = ErrorBody(error="ValidationError", detail=[{"field": "body", "reason": str(err)}], field="body")
            await JSONResponse(problem.model_dump(), status_code=422)(scope, receive, send)
            return
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"]
                                      if k not in (b"content-type", b"content-length")]
                 + [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def router(authed: list) -> APIRouter:
    api = APIRouter(dependencies=authed)

    def declared(request: Request) -> Declared:
        return request.app.state.declared

    @api.put("/v1/journey-definitions/{name}", tags=TAGS, status_code=201, response_model=DefinitionView,
             openapi_extra={"requestBody": {"content": {"application/yaml": {"schema": {"type": "string"}}}}},
             responses={200: {"model": DefinitionView, "description": "the same body as the latest version"}})
    async def save_definition(name: Annotated[JourneyName, Path()], body: Annotated[Definition, Body()],
                              request: Request) -> Any:
        """Save a definition (JSON, or YAML with `Content-Type: application/yaml`) as a new version;
        journeys already running keep the version they started with. 422 lists every problem with its
        field (unknown anchor, steps out of order, unknown template…)."""
        service = declared(request)
        service.check_name(name)
        try:
            definition = service.validate(name, body.model_dump())
        except ValidationError as err:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in err.errors()]) from err
        version, created = await service.definitions.save(name, definition)
        return JSONResponse(DefinitionView.of(version, created).model_dump(mode="json"), status_code=201 if created else 200)

    @api.get("/v1/journey-definitions", tags=TAGS)
    async def list_definitions(request: Request) -> DefinitionList:
        """Every definition, at its latest version."""
        return DefinitionList(definitions=[DefinitionView.of(v) for v in await declared(request).definitions.names()])

    @api.get("/v1/journey-definitions/{name}", tags=TAGS)
    async def show_definition(name: Annotated[JourneyName, Path()], request: Request) -> DefinitionHistory:
        """The latest version and the list of every version."""
        service = declared(request)
        latest = await service.latest(name)
        return DefinitionHistory(name=name, latest=DefinitionView.of(latest), versions=[
            VersionSummary(version=v.version, digest=v.digest, source=v.source, created_at=v.created_at)
            for v in await service.definitions.versions(name)])

    @api.get("/v1/journey-definitions/{name}/versions/{version}", tags=TAGS)
    async def show_version(name: Annotated[JourneyName, Path()],
                           version: Annotated[int, Path(ge=1, le=2_000_000_000)], request: Request) -> DefinitionView:
        found = await declared(request).definitions.version(name, version)
        if found is None:
            raise NotFound(f"{name} has no version {version}", field="version")
        return DefinitionView.of(found)

    async def view(request: Request, name: str, entity_id: str, answer: Answer) -> DeclaredView:
        rows = await request.app.state.outbox.list(journey=name, entity_id=entity_id)
        return DeclaredView(id=entity_id, journey=name, workflow_id=f"{name}-{entity_id}", state=answer.state,
                            created=answer.created, event=answer.event, accepted=answer.accepted,
                            created_by_event=answer.created_by_event, messages=[MessageView.of(r) for r in rows])

    def respond(body: DeclaredView, status: int) -> JSONResponse:
        return JSONResponse(body.model_dump(mode="json"), status_code=status)

    @api.post("/v1/journeys/{name}", tags=["journeys"], status_code=201, response_model=DeclaredView,
              responses={200: {"model": DeclaredView, "description": "that id already had this journey: nothing changed"},
                         202: {"model": DeclaredView, "description": "no worker answered in time: recorded, applied later"},
                         409: {"model": ErrorBody, "description": "that id's journey was started with another body"}})
    async def start_journey(name: Annotated[JourneyName, Path()], start: Annotated[DeclaredStart, Body()],
                            request: Request) -> Any:
        """Start a journey of a saved definition, at its latest version (which the journey keeps)."""
        journeys = await declared(request).journeys(name)
        answer = await journeys.start(start)
        recipients = [start.recipient] if start.recipient else [member.recipient for member in start.roster or []]
        await JourneyRecipients(request.app.state.pool).record(name, start.id, start.group, recipients)
        return respond(await view(request, name, start.id, answer),
                       202 if answer.accepted else 201 if answer.created else 200)

    @api.get("/v1/journeys/{name}/{id}", tags=["journeys"])
    async def show_journey(name: Annotated[JourneyName, Path()], id: Annotated[EntityId, Path()],
                           request: Request) -> DeclaredView:
        """A journey's live state (with the version it runs) and its messages."""
        journeys = await declared(request).journeys(name)
        return await view(request, name, id, Answer(state=await journeys.state(id)))

    @api.post("/v1/journeys/{name}/{id}/events/{event}", tags=["journeys"], response_model=DeclaredView,
              responses={202: {"model": DeclaredView, "description": "no worker answered in time: applied once later"}})
    async def journey_event(name: Annotated[JourneyName, Path()], id: Annotated[EntityId, Path()],
                            event: Annotated[Name, Path()], request: Request,
                            body: Annotated[EventBody | None, Body()] = None) -> Any:
        """An event of the definition (or `cancel`): 200 with the outcome and the new plan, 422 when the
        journey refuses it (unknown event, a member exit without member_id…), 409 when it has ended."""
        journeys = await declared(request).journeys(name)
        fields = body.model_dump(exclude_unset=True) if body is not None else {}
        answer = await observability.counted_event(
            request, name, event, journeys.send_event(id, journeys.stamped(DeclaredEvent(kind=event, **fields))))
        if answer.event is not None and answer.event.applied and answer.state is not None \
                and answer.state.status in (DeclaredStatus.EXITED, DeclaredStatus.CANCELLED):
            await JourneyRecipients(request.app.state.pool).ended(name, id, event)  # off the course's enrolled list
        return respond(await view(request, name, id, answer), 202 if answer.accepted else 200)

    return api
