"""Bulk actions over running journeys (Temporal visibility), the message log, forced resends and
the one-click unsubscribe page."""

from __future__ import annotations

from html import escape
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, ValidationError

from activities import tokens
from activities.mail import for_display
from activities.store import Outbox
from settings import Settings
from starter import bulk
from starter.service import NotFound, Rejected
from starter.views import ErrorBody, MessageView
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

    def token_owner(token: str) -> tuple[str, str] | HTMLResponse:
        """The address and message key a link names, or the page a browser gets for a bad link."""
        try:
            return tokens.verify(settings.signing_secret.get_secret_value(), token)
        except tokens.BadToken as err:
            return HTMLResponse(_page("Link not valid", f"<p>This unsubscribe link is not valid ({escape(str(err))}). "
                                      "Use the link in the latest email you received.</p>"), status_code=404)

    # A person's browser gets pages; what only a program could send (a control character in the
    # URL, a body over the limit) gets the API's JSON error, as everywhere else.
    bad_link = {404: {"description": "A link this service did not sign: an HTML page saying so",
                      "content": {"text/html": {"schema": {"type": "string"}}}},
                **{code: {"model": ErrorBody, "content": {"application/json": {}}} for code in (400, 413, 422, 503)}}

    @api.get("/v1/unsubscribe/{token}", response_class=HTMLResponse, tags=["unsubscribe"], responses=bad_link)
    async def unsubscribe_page(token: str) -> HTMLResponse:
        """A page with a button. A GET never unsubscribes: link scanners fetch every URL. An address
        that mixes scripts shows as punycode (`xn--da-6kc@example.com`)."""
        owner = token_owner(token)
        if isinstance(owner, HTMLResponse):
            return owner
        return HTMLResponse(_page("Unsubscribe", f"<p>Stop all emails to <b>{escape(for_display(owner[0]))}</b>?</p>"
                                  f'<form method="post"><button type="submit">Unsubscribe</button></form>'))

    @api.post("/v1/unsubscribe/{token}", response_class=HTMLResponse, tags=["unsubscribe"], responses=bad_link)
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        """RFC 8058 one-click: `List-Unsubscribe=One-Click` POSTs here; no cookie, no redirect."""
        owner = token_owner(token)
        if isinstance(owner, HTMLResponse):
            return owner
        email, key = owner
        await request.app.state.suppressions.add(email, "unsubscribe", f"one-click unsubscribe from {key}")
        return HTMLResponse(_page("Unsubscribed", f"<p><b>{escape(for_display(email))}</b> will receive no more emails.</p>"))

    return api


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title></head>"
            f"<body style='font-family:sans-serif;max-width:32em;margin:4em auto'><h1>{title}</h1>{body}</body></html>")
