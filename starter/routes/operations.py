"""Bulk actions over running journeys (Temporal visibility), the message log and forced resends.
(The one-click unsubscribe pages live with the preferences: starter/routes/preferences.py.)"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, ValidationError

from activities.lifecycle import Lifecycle
from activities.store import Outbox
from settings import Settings
from starter import bulk
from starter.service import NotFound, Rejected
from starter.views import MessageDetailView, MessageEventView, MessageView
from workflows.core.fields import ShortText
from workflows.registry import KINDS
from workflows.resend import ResendMessage
from workflows.resend import workflow_id as resend_workflow_id

JourneyName = Literal[tuple(KINDS)]  # type: ignore[valid-type]

GroupName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$")]


class BulkFilter(BaseModel):
    """Which running journeys: at least one of journey, group, recipient."""

    journey: JourneyName | None = None
    group: GroupName | None = Field(None, description="a session's course or a lead's campaign")
    recipient: Annotated[str, Field(max_length=320, pattern=r"^[^'\s]+@[^'\s]+$")] | None = Field(
        None, description="the journey's recipient (a session's tutor)")
    stage: Annotated[str, Field(max_length=32, pattern=r"^[a-z_]+$")] | None = None
    model_config = {"extra": "forbid"}

    def selector(self) -> bulk.Selector:
        if not (self.journey or self.group or self.recipient):
            raise Rejected("give at least one of journey, group, recipient: a bulk action never means everything",
                           field="journey")
        return bulk.Selector(self.journey, self.group, self.recipient, self.stage)


class BulkCancelBody(BulkFilter):
    reason: ShortText | None = None
    request_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = Field(
        None, description="send the same id again to retry safely: each journey applies it once")


class BulkSignalBody(BulkCancelBody):
    event: dict[str, Any] = Field(description="an event of the `journey` kind, e.g. {\"kind\": \"replied\"}")


class BulkView(BaseModel):
    query: str
    request_id: str
    matched: int
    changed: int
    unchanged: int
    problems: list[str]


class ResendView(BaseModel):
    original_key: str
    new_key: str
    workflow_id: str




def router(authed: list, settings: Settings) -> APIRouter:
    api = APIRouter()
    # --- bulk ---------------------------------------------------------------------------------

    @api.post("/v1/bulk/cancel", dependencies=authed, tags=["bulk"])
    async def bulk_cancel(body: BulkCancelBody, request: Request) -> BulkView:
        """Cancel every running journey that matches (Temporal visibility): how many matched, how many changed."""
        report = await bulk.act(request.app.state.client, settings, body.selector(), bulk.cancel_event(body.reason),
                                body.request_id)
        return BulkView(**vars(report))

    @api.post("/v1/bulk/signal", dependencies=authed, tags=["bulk"])
    async def bulk_signal(body: BulkSignalBody, request: Request) -> BulkView:
        """Send one event to every running journey of one kind that matches, e.g. remove an attendee
        who hard-bounced from every session of a course."""
        if body.journey is None:
            raise Rejected("a bulk signal needs `journey`: events differ between kinds", field="journey")
        kind = KINDS[body.journey]
        try:
            if body.event.get("kind") not in kind.event_models:
                raise Rejected(f"{body.journey} has no event {body.event.get('kind')!r}: one of "
                               f"{', '.join(kind.event_models)}", field="event.kind")
            kind.event({**body.event, "event_id": "bulk-check"})
        except ValidationError as err:
            problem = err.errors()[0]
            where = ".".join(["event", *map(str, problem["loc"])]) if problem["loc"] else "event"
            raise Rejected(problem["msg"], field=where) from err
        if "event_id" in body.event:
            raise Rejected("event_id is set per journey by the bulk action; use request_id", field="event.event_id")

        def make(kind, event_id: str):
            return kind.event({**body.event, "event_id": event_id})

        report = await bulk.act(request.app.state.client, settings, body.selector(), make, body.request_id)
        return BulkView(**vars(report))

    @api.get("/v1/messages", dependencies=authed, tags=["messages"])
    async def list_messages(
        request: Request,
        journey: Annotated[str | None, Query(max_length=64)] = None,
        entity_id: Annotated[str | None, Query(max_length=128)] = None,
        status: Literal["queued", "sending", "sent", "skipped", "failed", "dry_run"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[MessageView]:
        rows = await request.app.state.outbox.list(journey=journey, entity_id=entity_id, status=status, limit=limit)
        return [MessageView.of(r) for r in rows]

    @api.get("/v1/messages/{key:path}", dependencies=authed, tags=["messages"])
    async def message(key: Annotated[str, Path(max_length=512)], request: Request) -> MessageDetailView:
        """One message and every event of its life after the send step (deliveries, opens and clicks,
        machine ones flagged, bounces, complaints, deferrals), in the order they happened."""
        row = await request.app.state.outbox.get(key)
        if row is None:
            raise NotFound(f"no message {key!r}", field="key")
        events = await Lifecycle(request.app.state.pool).events(key)
        return MessageDetailView(**MessageView.of(row).model_dump(), events=[MessageEventView.of(e) for e in events])

    @api.post("/v1/messages/{key:path}/resend", dependencies=authed, tags=["messages"], status_code=202)
    async def resend(key: str, request: Request) -> ResendView:
        """Force one step out again, under a new key `{key}/resend-{n}`; the original stays as it was."""
        outbox: Outbox = request.app.state.outbox
        if await outbox.get(key) is None:
            raise NotFound(f"no message {key!r}", field="key")
        new_key = f"{key}/resend-{await outbox.count_resends(key) + 1}"
        await request.app.state.client.start_workflow(
            ResendMessage.run, args=[key, new_key], id=resend_workflow_id(new_key),
            task_queue=settings.temporal_task_queue, static_summary=f"Forced resend of {key}",
        )
        return ResendView(original_key=key, new_key=new_key, workflow_id=resend_workflow_id(new_key))

    return api

