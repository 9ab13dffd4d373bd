"""`POST /v1/{kinds}`, `GET /v1/{kinds}/{id}` and `POST /v1/{kinds}/{id}/{event}` for every kind
in the registry. Each route is built with its kind's own models, so the OpenAPI document shows
each request and response schema; the endpoints share one implementation."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

import observability
from starter.service import Answer, Journeys
from starter.views import BODIES, VIEWS, ErrorBody, MessageView
from workflows.core.fields import EntityId
from workflows.registry import KINDS, EventRoute, JourneyKind

AfterStart = Callable[[Request, Any], Awaitable[None]]


def _param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _endpoint(signature: list[inspect.Parameter], run: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """An endpoint whose signature FastAPI reads (path parameters named after the kind's id field)."""
    async def endpoint(**kwargs: Any) -> Any:
        return await run(**kwargs)
    endpoint.__signature__ = inspect.Signature([_param("request", Request), *signature])  # type: ignore[attr-defined]
    return endpoint


def journeys_of(request: Request, kind: JourneyKind) -> Journeys:
    return request.app.state.journeys[kind.name]


async def view(request: Request, kind: JourneyKind, entity_id: str, answer: Answer) -> Any:
    rows = await request.app.state.outbox.list(journey=kind.name, entity_id=entity_id)
    return VIEWS[kind.name](**{kind.id_field: entity_id}, workflow_id=kind.workflow_id(entity_id),
                            state=answer.state, created=answer.created, event=answer.event, accepted=answer.accepted,
                            created_by_event=answer.created_by_event,
                            messages=[MessageView.of(r) for r in rows])


def _respond(body: Any, status: int) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def router(authed: list, after_start: dict[str, AfterStart]) -> APIRouter:
    api = APIRouter(dependencies=authed)
    for kind in KINDS.values():
        _kind_routes(api, kind, after_start.get(kind.name))
    return api


def _kind_routes(api: APIRouter, kind: JourneyKind, after_start: AfterStart | None) -> None:
    View, tags, base = VIEWS[kind.name], [kind.tag or kind.plural], f"/v1/{kind.plural}"
    entity = _param(kind.id_field, Annotated[EntityId, Path()])

    async def start(request: Request, start: Any) -> Any:
        answer = await journeys_of(request, kind).start(start)
        if after_start is not None:
            await after_start(request, start)
        body = await view(request, kind, kind.entity_id(start), answer)
        return _respond(body, 202 if answer.accepted else 201 if answer.created else 200)

    api.add_api_route(
        base, _endpoint([_param("start", Annotated[kind.start_model, Body()])], start), methods=["POST"],
        status_code=201, response_model=View, tags=tags, name=f"start_{kind.name}",
        responses={200: {"model": View, "description": "that id already had a journey with this start: nothing "
                                                      "changed"},
                   409: {"model": ErrorBody, "description": "that id's journey was started with another body (a start never "
                                        "changes a journey: `field` names the first difference)"},
                   202: {"model": View, "description": "no worker answered in time: recorded, applied later"}},
        summary=f"Start a {kind.name} journey",
        description=f"{kind.description}\n\n201 when started; 200 when that id already had a journey started "
                    "with the same fields (a safe retry), or one that has ended (its final state); 409 when the "
                    "journey was started with different fields; 202 when no worker answered in time (the start is "
                    "recorded and will be applied). A start or event for a time that has passed (`scheduled_at`, "
                    "`starts_at`) is refused (422); a start back-dated with `invited_at` or `started_at` is "
                    "accepted and plans from then (a step already past its grace is skipped, never sent late). "
                    "Times must lie in 2000-2199 (UTC) and durations be at most 1,830 days.")

    async def show(request: Request, **path: Any) -> Any:
        entity_id = path[kind.id_field]
        return await view(request, kind, entity_id, Answer(state=await journeys_of(request, kind).state(entity_id)))

    api.add_api_route(f"{base}/{{{kind.id_field}}}", _endpoint([entity], show), methods=["GET"], response_model=View,
                      tags=tags, name=f"show_{kind.name}", summary=f"A {kind.name} journey: live state and messages")
    for route in kind.events:
        _event_route(api, kind, route, entity)


def _event_route(api: APIRouter, kind: JourneyKind, route: EventRoute, entity: inspect.Parameter) -> None:
    body_model = BODIES[(kind.name, route.kind)]
    model = kind.event_models[route.kind]
    # a check across fields (e.g. `attendee` or `attendees`) makes a body necessary even if no one field is
    required = (any(info.is_required() for info in body_model.model_fields.values())
                or bool(model.__pydantic_decorators__.model_validators))
    body = _param("body", Annotated[body_model, Body()] if required else Annotated[body_model | None, Body()],
                  inspect.Parameter.empty if required else None)
    extra = [_param(name, Annotated[EntityId, Path()]) for name in route.path_params]

    async def steer(request: Request, body: Any = None, **path: Any) -> Any:
        entity_id = path.pop(kind.id_field)
        fields = {**(body.model_dump(exclude_unset=True) if body is not None else {}), **path, "kind": route.kind}
        try:
            event = kind.event(fields)
        except ValidationError as err:  # the event's own checks across fields (the body has each field's)
            raise RequestValidationError(err.errors()) from err
        answer = await observability.counted_event(request, kind.name, route.kind,
                                                   journeys_of(request, kind).send_event(entity_id, event))
        return _respond(await view(request, kind, entity_id, answer), 202 if answer.accepted else 200)

    api.add_api_route(
        f"/v1/{kind.plural}/{{{kind.id_field}}}/{route.path}", _endpoint([entity, *extra, body], steer),
        methods=[route.method], response_model=VIEWS[kind.name], tags=[kind.tag or kind.plural],
        responses={202: {"model": VIEWS[kind.name],
                         "description": "no worker answered in time: recorded, applied once later"}},
        name=f"{kind.name}_{route.kind}", summary=(model.__doc__ or route.kind).strip().splitlines()[0],
        description="200 with the outcome and the new plan; 422 when the journey's rules refuse the event (it "
                    "changes nothing), 409 when the journey has ended, 202 when no worker answered in time (the "
                    "event is recorded and will be applied once: send an `event_id` to retry safely).")
