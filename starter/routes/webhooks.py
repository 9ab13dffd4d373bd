"""Event webhooks (issue 14): the backend registers endpoints and is told what happened, each event
signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The
catalogue is in the OpenAPI document's `webhooks` section, one typed payload per event type."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, Field, create_model
from temporalio.service import RPCError, RPCStatusCode

from activities.event_webhooks import EVENT_TYPES, Endpoints, usable_secret, wake
from settings import Settings
from starter.service import NotFound
from workflows.core.fields import ShortText, WebUrl
from workflows.webhooks import workflow_id

EventType = Literal[tuple(EVENT_TYPES)]  # type: ignore[valid-type]
EndpointId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def _whsec(value: str) -> str:
    if problem := usable_secret(value):
        raise ValueError(problem)
    return value


Secret = Annotated[str, Field(pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$", max_length=200), AfterValidator(_whsec)]


class EndpointBody(BaseModel):
    url: WebUrl = Field(description="where events are POSTed (HTTPS in production)")
    event_types: list[EventType] = Field([], max_length=len(EVENT_TYPES),  # type: ignore[valid-type]
                                         description="the types it wants; empty: every type")
    description: ShortText = ""
    secret: Secret | None = Field(None, description="whsec_… (base64, ≥ 24 bytes); left out: one is made")
    model_config = {"extra": "forbid"}


class EndpointView(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    created_at: datetime
    workflow_id: str = Field(description="its delivery workflow in the Temporal Web UI")

    @classmethod
    def of(cls, row: Any) -> EndpointView:
        return cls(id=row["id"], url=row["url"], description=row["description"], event_types=row["event_types"],
                   created_at=row["created_at"], workflow_id=workflow_id(row["id"]))


class CreatedEndpoint(EndpointView):
    secret: str = Field(description="the signing secret: keep it in the receiver's settings")


class EndpointSecret(BaseModel):
    secret: str


class DeliveryView(BaseModel):
    id: int
    event_id: str = Field(description="the webhook-id header: the same on every attempt")
    type: str
    journey_key: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    next_attempt_at: datetime | None = Field(description="when a pending one goes next")
    last_status: int | None = Field(description="the receiver's last HTTP status; null: no answer")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    occurred_at: datetime

    @classmethod
    def of(cls, row: Any) -> DeliveryView:
        return cls(id=row["id"], event_id=row["event_id"], type=row["type"], journey_key=row["journey_key"],
                   status=row["status"], attempts=row["attempts"],
                   next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
                   last_status=row["last_status"], last_error=row["last_error"], created_at=row["created_at"],
                   delivered_at=row["delivered_at"], occurred_at=row["occurred_at"])


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryView]
    next_after: int | None = Field(description="pass as `after` for the next page; null: the last page")


class EventTypeView(BaseModel):
    type: str
    description: str


# --- the catalogue, as the OpenAPI document's `webhooks` ----------------------------------------

class JourneyData(BaseModel):
    journey: str = Field(description="the journey's kind: interview, appointment, payment, lead…")
    entity_id: str
    workflow_id: str
    stage: str
    previous_stage: str | None = Field(None, description="journey.stage_changed: the stage it left")
    outcome: str | None = Field(None, description="journey.ended: its last stage (completed, expired, cancelled…)")


class MessageData(BaseModel):
    key: str = Field(description="the message's idempotency key")
    journey: str
    entity_id: str
    template: str
    recipient: str
    channel: str
    category: str | None
    variant: str | None
    status: Literal["sent", "skipped", "failed"]
    reason: str | None = Field(description="why it was skipped or failed (or a note on a send)")
    due_at: datetime | None
    sent_at: datetime | None


class MessageActivityData(BaseModel):
    key: str | None = Field(description="the message, when the event names one (an unsubscribe may not)")
    journey: str | None
    entity_id: str | None
    template: str | None
    recipient: str
    at: datetime
    reason: str | None
    bounce: Literal["hard", "soft"] | None = Field(description="message.bounced: which kind")
    provider: str | None = Field(description="who reported it: ses, sendgrid, mailgun, postmark, smtp, tracking…")
    detail: dict[str, Any] | None


DATA_OF: dict[str, type[BaseModel]] = {
    **dict.fromkeys(("journey.started", "journey.stage_changed", "journey.ended", "lead.converted",
                     "checkin.negative"), JourneyData),
    **dict.fromkeys(("message.sent", "message.skipped", "message.failed", "payment.reminded"), MessageData),
    **dict.fromkeys(("message.delivered", "message.bounced", "message.complained", "message.opened",
                     "message.clicked", "recipient.unsubscribed"), MessageActivityData),
}
assert DATA_OF.keys() == EVENT_TYPES.keys(), "every event type has its payload"


def describe(webhooks: APIRouter) -> None:
    """One OpenAPI webhook per event type: what our POST to an endpoint carries."""
    for event_type, description in EVENT_TYPES.items():
        payload = create_model(f"Event_{event_type.replace('.', '_')}", __doc__=description,
                               type=(Literal[event_type], ...), timestamp=(datetime, ...),
                               data=(DATA_OF[event_type], ...))

        async def receive(body: Any) -> None:  # documentation only: the receiver is the backend's
            """Answer 2xx once kept; anything else is retried for about a day."""

        receive.__annotations__ = {"body": payload, "return": None}
        webhooks.add_api_route(event_type, receive, methods=["POST"], summary=description,
                               description=f"{description}. Headers: webhook-id (dedupe on it), webhook-timestamp, "
                                           "webhook-signature (Standard Webhooks, HMAC-SHA256 with the endpoint's secret).")


def router(authed: list, settings: Settings) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=["webhooks"])

    def endpoints(request: Request) -> Endpoints:
        return Endpoints(request.app.state.pool)

    async def found(request: Request, endpoint_id: str) -> Any:
        row = await endpoints(request).get(endpoint_id)
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}", field="endpoint_id")
        return row

    @api.get("/v1/webhook-event-types")
    async def event_types() -> list[EventTypeView]:
        """The catalogue: every type an endpoint can ask for (their payloads: the document's `webhooks`)."""
        return [EventTypeView(type=name, description=text) for name, text in EVENT_TYPES.items()]

    @api.post("/v1/webhook-endpoints", status_code=201)
    async def create_endpoint(body: EndpointBody, request: Request) -> CreatedEndpoint:
        """Register an endpoint. Its secret is in this answer (and `GET …/secret`): the receiver
        verifies every delivery with it. Events that happen from now on are delivered to it."""
        row = await endpoints(request).create(body.url, list(body.event_types), body.description, body.secret)
        return CreatedEndpoint(**EndpointView.of(row).model_dump(), secret=row["secret"])

    @api.get("/v1/webhook-endpoints")
    async def list_endpoints(request: Request) -> list[EndpointView]:
        return [EndpointView.of(row) for row in await endpoints(request).list()]

    @api.get("/v1/webhook-endpoints/{endpoint_id}")
    async def get_endpoint(endpoint_id: EndpointId, request: Request) -> EndpointView:
        return EndpointView.of(await found(request, endpoint_id))

    @api.get("/v1/webhook-endpoints/{endpoint_id}/secret")
    async def endpoint_secret(endpoint_id: EndpointId, request: Request) -> EndpointSecret:
        return EndpointSecret(secret=(await found(request, endpoint_id))["secret"])

    @api.delete("/v1/webhook-endpoints/{endpoint_id}", status_code=204)
    async def delete_endpoint(endpoint_id: EndpointId, request: Request) -> Response:
        """Stop delivering to it: what was pending is cancelled, and its workflow ends."""
        if not await endpoints(request).delete(endpoint_id):
            raise NotFound(f"no webhook endpoint {endpoint_id!r}", field="endpoint_id")
        try:
            await request.app.state.client.get_workflow_handle(workflow_id(endpoint_id)).signal("wake")
        except RPCError as err:  # never woken: nothing runs for it
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
        return Response(status_code=204)

    @api.get("/v1/webhook-endpoints/{endpoint_id}/deliveries")
    async def deliveries(endpoint_id: EndpointId, request: Request,
                         status: Literal["pending", "delivered", "failed", "cancelled"] | None = None,
                         after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> DeliveryPage:
        """Its deliveries, oldest first: what each attempt got back, and when a pending one goes next."""
        await found(request, endpoint_id)
        rows = await endpoints(request).deliveries(endpoint_id, status, after, limit)
        return DeliveryPage(deliveries=[DeliveryView.of(row) for row in rows],
                            next_after=rows[-1]["id"] if len(rows) == limit else None)

    @api.post("/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry")
    async def retry(endpoint_id: EndpointId, delivery_id: Annotated[int, Path(ge=1, le=2**62)],
                    request: Request) -> DeliveryView:
        """Deliver it again now (a failed one after its retries were spent, or a delivered one a
        receiver lost); a cancelled one cannot be."""
        await found(request, endpoint_id)
        if not await endpoints(request).retry(endpoint_id, delivery_id):
            raise NotFound(f"no delivery {delivery_id} of {endpoint_id!r} that can be sent again", field="delivery_id")
        await wake(request.app.state.client, endpoint_id, settings.webhook_queue)
        rows = await endpoints(request).deliveries(endpoint_id, None, delivery_id - 1, 1)
        return DeliveryView.of(rows[0])

    return api
