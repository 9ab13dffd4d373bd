"""The send step's channels other than SMTP: the webhook (SMS/WhatsApp bridges) and in_app. Same
outbox, keys and rules; SendActivities gets these methods from here (its `outbox`, `webhook`,
`notifications`, `_failed_for_good` and `_record_sent`)."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from activities.webhook import WebhookRefused, WebhookTransient
from workflows.contracts import DeliveryFailure, SendRequest, SendResult, SendStatus


class OtherChannels:
    outbox: Any
    webhook: Any
    notifications: Any
    _failed_for_good: Any
    _record_sent: Any

    async def _post(self, request: SendRequest, rendered, interrupted: bool, done, kept: dict) -> SendResult:
        """The webhook channel: the rendered text as a signed JSON POST; same outbox, same rules."""
        if self.webhook is None:
            reason = "no webhook configured (FOLLOWUPS_WEBHOOK_URL)"
            await self.outbox.finish(request.key, "skipped", subject=rendered.subject, reason=reason, **kept)
            return done(SendStatus.SKIPPED, reason)
        payload = {
            "key": request.key, "journey": request.journey, "entity_id": request.entity_id,
            "template": request.template, "to": {"name": request.recipient.name, "phone": request.phone,
                                                 "email": str(request.recipient.email)},
            "subject": rendered.subject, "text": rendered.text, "context": request.context,
        }
        try:
            reply = await self.webhook.deliver(request.key, payload)
        except WebhookRefused as err:
            raise await self._failed_for_good(request.key, DeliveryFailure.REFUSED, str(err), f"{request.key}: {err}",
                                              rendered.subject, **kept) from err
        except (WebhookTransient, httpx.HTTPError) as err:
            await self.outbox.release(request.key, f"transient: {type(err).__name__}: {err}")
            raise
        await self._record_sent(request.key, subject=rendered.subject, smtp_response=reply,
                                reason="sent again after an interrupted attempt" if interrupted else None, **kept)
        return done(SendStatus.SENT)

    async def _notify(self, request: SendRequest, email: str, rendered, done, kept: dict) -> SendResult:
        """The in_app channel: the rendered subject and text as a notification for the recipient's
        address; same outbox, same rules. Stored and recorded sent in one transaction, so an
        interrupted attempt has stored nothing and the next one stores it once."""
        try:
            await self.notifications.deliver(
                key=request.key, recipient=email, journey=request.journey, entity_id=request.entity_id,
                template=request.template, title=rendered.subject, body=rendered.text, **kept)
        except Exception as err:  # noqa: BLE001 (PostgreSQL away: let the next attempt store it at once)
            with contextlib.suppress(Exception):
                await self.outbox.release(request.key, f"transient: {type(err).__name__}: {err}")
            raise
        return done(SendStatus.SENT)
