"""Bounces and provider events coming in (issue 10): `POST /v1/inbound/dsn` takes a raw bounce
message (what a mailbox forwarder posts, API key), and `POST /v1/webhooks/{ses,sendgrid,mailgun,
postmark}` take each provider's events under the provider's own authentication (no API key).

A request that is not provably from the provider is a 401 and changes nothing. Each event is kept
once per provider id (a provider's retry changes nothing twice) and its suppression rule applied
(activities/bounces.py). A newly suppressed address also ends the recipient's running journeys by
a bulk cancel (search attribute `Recipient`) after the answer: the suppression itself already
stops every send, so that may lag behind without harm.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from pydantic import BaseModel, Field

from activities.bounces import BounceHandling, Outcome
from activities.dsn import AutoReply, NotABounce, read_bounce
from activities.providers import Forged, Mailgun, Postmark, ProviderUnavailable, SendGrid, WebhookTokens
from activities.sns import Ses, Sns, topic_region
from settings import Settings
from starter import bulk
from starter.service import NotFound, Rejected, ServiceError, Unavailable

log = logging.getLogger(__name__)
# One per process: SNS signing certificates are fetched once per URL and kept here. Tests give it
# an HTTP client serving a certificate of their own (this is the only way to reach "AWS" offline).
SNS = Sns()
_SELECTABLE = re.compile(r"[^'\s\\]+@[^'\s\\]+")  # what a visibility query may carry (starter.bulk)
_JSON = {"application/json": {"schema": {"type": "object"}}}


class Unauthorized(ServiceError):
    status_code = 401


class InboundEventView(BaseModel):
    email: str | None
    kind: str = Field(description="bounced (hard), soft_bounced, failed (a 5.7.x policy block: the sender's "
                                  "problem, never suppresses), deferred (delayed, still retried), complained…")
    code: str | None = Field(None, description="the RFC 3463 status, e.g. 5.1.1")
    reason: str | None


class InboundView(BaseModel):
    result: str = Field(description='"recorded", or "ignored: auto-reply"')
    events: list[InboundEventView] = []
    recorded: int = 0
    duplicates: int = Field(0, description="events already recorded (the same report posted again)")
    suppressed: list[str] = Field([], description="addresses this report newly suppressed")
    message_id: str | None = Field(None, description="the Message-ID of our message the bounce returns")


class WebhookView(BaseModel):
    result: str = Field(description='"recorded", "subscription confirmed" (SNS)…')
    received: int = Field(0, description="events in the request that concern an address")
    recorded: int = 0
    duplicates: int = Field(0, description="events already recorded (the provider delivered them before)")
    suppressed: int = Field(0, description="addresses newly suppressed")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _read(normalise: Any, payload: Any) -> list:
    """The events of a verified payload; one not shaped as the provider documents is a 422."""
    try:
        return normalise(payload)
    except (AttributeError, TypeError, KeyError, ValueError) as err:
        raise Rejected(f"the events could not be read: {type(err).__name__}: {err}", field="body") from err


async def end_journeys(client: Any, settings: Settings, emails: list[str]) -> None:
    """Cancel every running journey whose recipient is one of `emails` (after the answer went out)."""
    for email in emails:
        if not _SELECTABLE.fullmatch(email):
            log.warning("not ending the journeys of %r: the address cannot go into a visibility query", email)
            continue
        try:
            report = await bulk.act(client, settings, bulk.Selector(recipient=email),
                                    bulk.cancel_event("the recipient's address is suppressed (bounce or complaint)"))
            log.info("suppressed %s: %d running journeys matched, %d ended", email, report.matched, report.changed)
        except Exception:  # Temporal unreachable: the suppression already stops every send
            log.exception("could not end the running journeys of suppressed %s", email)


def router(authed: list, settings: Settings, sns: Sns | None = None) -> APIRouter:
    api = APIRouter()
    ses = Ses(settings.ses_topic_arns, sns or SNS) if settings.ses_topic_arns else None
    sendgrid = SendGrid(settings.sendgrid_webhook_public_key) if settings.sendgrid_webhook_public_key else None
    mailgun_key = settings.mailgun_webhook_signing_key
    mailgun = Mailgun(mailgun_key.get_secret_value()) if mailgun_key else None
    postmark_password = settings.postmark_webhook_password
    postmark = (Postmark(settings.postmark_webhook_username, postmark_password.get_secret_value())
                if settings.postmark_webhook_username and postmark_password else None)

    def configured(provider: Any, name: str, setting: str) -> Any:
        if provider is None:
            raise NotFound(f"the {name} webhook is off: set {setting}", field=setting)
        return provider

    async def apply(request: Request, background: BackgroundTasks, events: list) -> Outcome:
        outcome = await BounceHandling(request.app.state.pool).apply_all(events)
        if outcome.suppressed:
            background.add_task(end_journeys, request.app.state.client, settings, outcome.suppressed)
        return outcome

    def view(events: list, outcome: Outcome) -> WebhookView:
        return WebhookView(result="recorded", received=len(events), recorded=outcome.recorded,
                           duplicates=outcome.duplicates, suppressed=len(outcome.suppressed))

    @api.post("/v1/inbound/dsn", dependencies=authed, tags=["bounces"], openapi_extra={"requestBody": {
        "required": True, "content": {"message/rfc822": {"schema": {"type": "string"}},
                                      "text/plain": {"schema": {"type": "string"}}}}})
    async def inbound_dsn(request: Request, background: BackgroundTasks) -> InboundView:
        """A bounce message as received (RFC 3464 delivery status notification, or a format
        flufl.bounce knows): records each failed recipient, suppresses hard bounces (and the third
        soft bounce in 30 days). An auto-reply is ignored; anything else that is not a bounce is a 422."""
        try:
            bounce = read_bounce(await request.body())
        except AutoReply:
            return InboundView(result="ignored: auto-reply")
        except NotABounce as err:
            raise Rejected(f"not a bounce: {err}", field="body") from err
        events = bounce.events()
        outcome = await apply(request, background, events)
        return InboundView(result="recorded", recorded=outcome.recorded, duplicates=outcome.duplicates,
                           suppressed=outcome.suppressed, message_id=bounce.message_id,
                           events=[InboundEventView(email=e.email, kind=e.kind, code=e.code, reason=e.reason)
                                   for e in events])

    @api.post("/v1/webhooks/ses", tags=["webhooks"], openapi_extra={"requestBody": {"content": _JSON}})
    async def ses_webhook(request: Request, background: BackgroundTasks) -> WebhookView:
        """Amazon SES notifications through SNS (bounce, complaint, delivery, delivery delay), signed
        by SNS; a subscription to one of FOLLOWUPS_SES_TOPIC_ARNS is confirmed once it verifies."""
        provider = configured(ses, "SES", "FOLLOWUPS_SES_TOPIC_ARNS")
        try:
            message = await provider.verify(await request.body())
            if message["Type"] == "SubscriptionConfirmation":
                await provider.sns.confirm(message["SubscribeURL"], topic_region(message["TopicArn"]))
                return WebhookView(result="subscription confirmed")
        except Forged as err:
            raise Unauthorized(str(err), field=err.field or "Signature") from err
        except ProviderUnavailable as err:
            raise Unavailable(str(err)) from err
        if message["Type"] != "Notification":
            return WebhookView(result="ignored: unsubscribe confirmation")
        events = _read(provider.events, message)
        return view(events, await apply(request, background, events))

    @api.post("/v1/webhooks/sendgrid", tags=["webhooks"], openapi_extra={"requestBody": {
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}})
    async def sendgrid_webhook(request: Request, background: BackgroundTasks) -> WebhookView:
        """SendGrid's Event Webhook, signed (ECDSA) with the key in FOLLOWUPS_SENDGRID_WEBHOOK_PUBLIC_KEY;
        a timestamp more than 15 minutes from now is refused."""
        provider = configured(sendgrid, "SendGrid", "FOLLOWUPS_SENDGRID_WEBHOOK_PUBLIC_KEY")
        raw = await request.body()
        try:
            provider.verify(raw, request.headers.get("X-Twilio-Email-Event-Webhook-Signature"),
                            request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"), datetime.now(timezone.utc))
        except Forged as err:
            raise Unauthorized(str(err), field=err.field or "X-Twilio-Email-Event-Webhook-Signature") from err
        batch = _json(raw)
        if not isinstance(batch, list) or not all(isinstance(item, dict) for item in batch):
            raise Rejected("the body is not a JSON array of events", field="body")
        events = _read(provider.events, batch)
        return view(events, await apply(request, background, events))

    @api.post("/v1/webhooks/mailgun", tags=["webhooks"], openapi_extra={"requestBody": {"content": _JSON}})
    async def mailgun_webhook(request: Request, background: BackgroundTasks) -> WebhookView:
        """Mailgun webhooks, signed (HMAC) with FOLLOWUPS_MAILGUN_WEBHOOK_SIGNING_KEY; a stale timestamp
        (over 15 minutes) or a token seen before is refused."""
        provider = configured(mailgun, "Mailgun", "FOLLOWUPS_MAILGUN_WEBHOOK_SIGNING_KEY")
        payload = _json(await request.body())
        tokens = WebhookTokens(request.app.state.pool)
        try:
            token = provider.verify(payload, datetime.now(timezone.utc))
        except Forged as err:
            raise Unauthorized(str(err), field=err.field or "signature") from err
        events = _read(provider.events, payload)
        # The token is taken first (an insert that only one request can win), then the events kept:
        # of two concurrent posts with one token, the second is refused here. If keeping the events
        # fails, the token is given back so that Mailgun's retry of the same post is taken.
        if not await tokens.claim("mailgun", token):
            raise Unauthorized("this token was used before: a replayed request", field="signature.token")
        try:
            outcome = await apply(request, background, events)
        except BaseException:
            await tokens.release("mailgun", token)
            raise
        return view(events, outcome)

    @api.post("/v1/webhooks/postmark", tags=["webhooks"], openapi_extra={"requestBody": {"content": _JSON}})
    async def postmark_webhook(request: Request, background: BackgroundTasks) -> WebhookView:
        """Postmark's bounce, spam complaint and delivery webhooks, behind basic auth
        (FOLLOWUPS_POSTMARK_WEBHOOK_USERNAME / _PASSWORD; use HTTPS)."""
        provider = configured(postmark, "Postmark", "FOLLOWUPS_POSTMARK_WEBHOOK_PASSWORD")
        try:
            provider.verify(request.headers.get("Authorization"))
        except Forged as err:
            raise Unauthorized(str(err), field="authorization") from err
        record = _json(await request.body())
        if not isinstance(record, dict):
            raise Rejected("the body is not a JSON object", field="body")
        events = _read(provider.events, record)
        return view(events, await apply(request, background, events))

    return api
