"""The one send step every journey uses.

claim the business key in PostgreSQL (once) → skip suppressed or too-late → render → stamp
Message-ID and one-click unsubscribe → deliver over SMTP → record sent / failed / skipped.
The webhook channel POSTs the rendered text instead; the in_app channel stores it as a
notification, marked sent in the same transaction. A recipient under 13 with a parent address
(seed 004, COPPA) makes each message two: the recipient's and the parent's copy `{key}/parent`,
each its own row through the same steps (`parent_copy: instead` records the recipient's row as
skipped and sends only the copy).

A second run of the same key never sends a second email: a finished key returns its recorded
result. The one window SMTP cannot close (RFC 1047): the process dies after the server accepted
the message and before `finish` committed; the next attempt then delivers again, with the same
Message-ID. `Claim.interrupted` marks those retries and the crash test measures how often.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Iterable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import aiosmtplib
import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import windows
from activities.bounces import BounceHandling, failure_event
from activities.lifecycle import Lifecycle
from activities.mail import DeliveryRefused, Envelope, NoSmtputf8, SmtpTransport, Unbuildable, build, message_id
from activities.onboarding import OneTimeSecrets
from activities.channels import OtherChannels
from activities.outgoing import PARENT_COPY_OF, Platform, Sender, parent_copy, parent_of
from activities.preferences import email_hash
from activities.render import Renderer, RenderTimeout, TemplateProblem
from activities.store import Notifications, Outbox, storable
from activities.template_store import Resolved
from activities.tracking import TrackingStore
from activities.webhook import WebhookTransport
from workflows.contracts import (
    RECORDED_REQUEST, SEND_MESSAGE, DeliveryFailure, SendRequest, SendResult, SendStatus,
)
from workflows.core.steps import too_late

T = TypeVar("T")
SEND_LEASE = timedelta(seconds=30)  # = the send activity's start-to-close timeout
RECORD_RETRY_PAUSES = (0.1, 0.25, 0.5, 1, 2, 4, 8)  # ≈ 16 s of a 30 s attempt
async def sent_in_batch(sends: Iterable[Awaitable[T]], in_flight: int) -> list[T]:
    """A batch's sends (a roster chunk, an announcement's, a digest's or a campaign's range), `in_flight`
    at a time. Every one runs to its end; then the first exception, if any, is raised: a transient
    failure, so the batch is retried and finds the messages that went out recorded as done."""
    gate = asyncio.Semaphore(in_flight)

    async def limited(send: Awaitable[T]) -> T:
        async with gate:
            return await send

    outcomes = await asyncio.gather(*(limited(send) for send in sends), return_exceptions=True)
    if errors := [outcome for outcome in outcomes if isinstance(outcome, BaseException)]:
        raise errors[0]
    return outcomes  # type: ignore[return-value]  (no exception among them)


def _retryable(outcome: SendResult | BaseException) -> bool:
    return isinstance(outcome, BaseException) and not (isinstance(outcome, ApplicationError) and outcome.non_retryable)


class SendActivities(OtherChannels):
    def __init__(self, outbox: Outbox, renderer: Renderer,
                 transport: SmtpTransport, sender: Sender, platform: Platform, dry_run: bool = False,
                 webhook: WebhookTransport | None = None, notifications: Notifications | None = None) -> None:
        self.templates, self.gate, self.tracker, self.dkim = (platform.templates, platform.gate, platform.tracker,
                                                              platform.dkim)
        self.tracking = TrackingStore(outbox.pool)
        self.lifecycle = Lifecycle(outbox.pool)
        self.bounces = BounceHandling(outbox.pool)
        self.webhook = webhook
        self.notifications = notifications or Notifications(outbox.pool)
        self.secrets = OneTimeSecrets(outbox.pool)  # SendRequest.secret_ref: onboarding's temporary passwords
        self.unrecorded: dict[str, dict] = {}  # deliveries PostgreSQL was away for, written on the next call
        self.outbox = outbox
        self.renderer = renderer
        self.transport = transport
        self.sender = sender
        self.dry_run = dry_run

    @activity.defn(name=SEND_MESSAGE)
    async def send_message(self, request: SendRequest) -> SendResult:
        if self.unrecorded:
            await self._flush_unrecorded()
        copy = parent_copy(request)
        if request.skip_reason is not None:  # the journey dropped it while it waited
            own = await self._send(request, skip=request.skip_reason)
            if copy is not None:
                await self._send(copy, skip=request.skip_reason)
            return own
        if copy is None:
            return await self._send(request)
        if request.recipient.parent_copy == "instead":
            await self._send(request, skip=f"under 13: sent to the parent instead, as {copy.key}")
            return await self._send(copy)
        # Both, each on its own row; one's failure never holds back the other. A retry after a
        # transient failure finds the row that went through finished and sends only the other.
        own, theirs = await self._attempt(request), await self._attempt(copy)
        for outcome in (own, theirs):
            if _retryable(outcome):
                raise outcome  # type: ignore[misc]
        if isinstance(own, BaseException):
            raise own  # for good: the journey records it
        if isinstance(theirs, BaseException):  # recorded as failed on the copy's row; the journey's own went out
            activity.logger.warning("%s: the parent's copy failed for good: %s", copy.key, theirs)
        return own

    async def send_counted(self, request: SendRequest) -> SendResult:
        """The send step for one message of a batch (a roster chunk, an announcement, a digest): a
        failure no retry can fix comes back as a FAILED result, its row already recorded failed, so
        the batch counts it and goes on; anything else is raised, and the batch is retried. A batch
        cannot wait for one recipient: its messages ignore quiet hours, and a frequency cap drops them."""
        try:
            return await self.send_message(request.model_copy(update={"deferrable": False}))
        except ApplicationError as err:
            if err.type not in DeliveryFailure.ALL:
                raise
            return SendResult(key=request.key, status=SendStatus.FAILED, reason=f"delivery failed: {err.message}")

    async def _attempt(self, request: SendRequest) -> SendResult | Exception:
        try:
            return await self._send(request)
        except Exception as err:  # noqa: BLE001 (sorted by the caller: retried or recorded)
            return err

    async def _send(self, request: SendRequest, skip: str | None = None) -> SendResult:
        """One message on its own row. `skip`: record it as skipped for this reason, send nothing."""
        email = str(request.recipient.email).lower()
        try:  # first: the row is stored with the category its template declares (frequency caps count by it)
            template: Resolved | TemplateProblem = await self.templates.resolve(
                request.template, as_of=request.templates_as_of, recipient=email, variant=request.variant)
        except TemplateProblem as err:
            template = err
        fields = dict(
            key=request.key, journey=request.journey, entity_id=request.entity_id, template=request.template,
            recipient=email, recipient_name=request.recipient.name,
            category=template.category if isinstance(template, Resolved) else str(request.category),
            context=request.context, message_id=message_id(request.key, self.sender.domain),
            due_at=request.due_at, lease=SEND_LEASE, channel=request.channel, phone=request.phone,
            parent=parent_of(request.recipient), recipient_hash=email_hash(email),
            parent_hash=email_hash(str(request.recipient.parent_email)) if request.recipient.parent_email else None,
        )
        try:
            claim = await self.outbox.claim(**fields)
        except (asyncpg.DataError, UnicodeEncodeError) as err:  # a NUL byte, a lone surrogate: never storable
            await self._record_unstorable(fields, err)
            raise ApplicationError(f"{request.key}: the message cannot be stored: {err}",
                                   type=DeliveryFailure.UNSTORABLE, non_retryable=True) from err
        if claim.action == "erased":  # GDPR: nothing about them is stored again, not even this message
            return SendResult(key=request.key, status=SendStatus.SKIPPED, reason="recipient erased")
        row = claim.row
        assert row is not None
        if claim.action == "done":
            return SendResult(key=request.key, status=SendStatus(row["status"]), reason=row["reason"],
                              message_id=row["message_id"], already_done=True)
        if claim.action == "busy":
            raise ApplicationError(f"{request.key} is being sent by another attempt", type="SendInFlight")
        if claim.interrupted:
            activity.logger.warning("%s: an earlier attempt stopped mid-send; sending again", request.key)

        def done(status: SendStatus, reason: str | None = None) -> SendResult:
            return SendResult(key=request.key, status=status, reason=reason, message_id=row["message_id"])

        if skip is None and request.channel == "webhook" and PARENT_COPY_OF in request.context:
            skip = "a parent's copy cannot go by webhook: the parent has no phone number here"
        if skip is not None:
            await self.outbox.finish(request.key, "skipped", reason=skip)
            return done(SendStatus.SKIPPED, skip)
        now = datetime.now(timezone.utc)
        if too_late(request.not_after, now):
            reason = f"too late: due by {request.not_after.isoformat()}, reached the send step at {now.isoformat()}"
            await self.outbox.finish(request.key, "skipped", reason=reason)
            return done(SendStatus.SKIPPED, reason)
        if isinstance(template, TemplateProblem):
            raise await self._failed_for_good(request.key, DeliveryFailure.TEMPLATE, str(template),
                                              str(template)) from template
        kept = dict(category=template.category, template_version=template.version, variant=template.variant)
        verdict = await self.gate.verdict(
            email=email, category=template.category, channel=request.channel, zone=request.recipient.time_zone,
            now=max(now, request.asked_at or now), not_after=request.not_after, deferrable=request.deferrable,
            key=request.key)
        match verdict.plan:
            case windows.Skip(why=why):
                await self.outbox.finish(request.key, "skipped", reason=why, **kept)
                return done(SendStatus.SKIPPED, why)
            case windows.Defer(until=until, why=why):
                await self.outbox.release(request.key, f"deferred: {why}")
                await self.lifecycle.record(kind="deferred", key=request.key, reason=why,
                                            detail={"until": until.isoformat()})
                return SendResult(key=request.key, status=SendStatus.DEFERRED, reason=why, retry_at=until,
                                  message_id=row["message_id"])
        note = verdict.plan.note if isinstance(verdict.plan, windows.Send) else None  # sent despite quiet hours: why

        unsubscribe_url = self.sender.unsubscribe_url(email, request.key)
        context = {
            **request.context,
            "recipient_name": request.recipient.name,
            "time_zone": request.recipient.time_zone or request.context.get("time_zone"),
            "sender_name": self.sender.name,
            "postal_address": self.sender.postal_address,
            "unsubscribe_url": unsubscribe_url,
            "preferences_url": self.sender.preferences_url(email),
            "channel": request.channel,
        }
        try:
            if request.secret_ref is not None and request.channel == "email":  # in the render only, never stored
                context = {**context, **await self.secrets.reveal(request.secret_ref)}
            rendered = await self.templates.render(template, context)  # a saved version: in the render sandbox
        except TemplateProblem as err:
            raise await self._failed_for_good(request.key, DeliveryFailure.TEMPLATE, str(err), str(err), **kept) from err
        except RenderTimeout as err:  # a busy machine or a dead sandbox, not the template: the next attempt
            await self.outbox.release(request.key, f"transient: {err}")
            raise ApplicationError(f"{request.key}: {err}", type="RenderTimeout") from err
        if self.dry_run:
            await self.outbox.finish(request.key, "dry_run", subject=rendered.subject, reason="dry run: not delivered",
                                     **kept)
            return done(SendStatus.DRY_RUN, "dry run: not delivered")
        if request.channel == "webhook":
            return await self._post(request, rendered, claim.interrupted, done, kept)
        if request.channel == "in_app":
            return await self._notify(request, email, rendered, done, kept)
        if self.tracker is not None:
            instrumented = self.tracker.instrument(rendered.html, request.key)
            if instrumented.links:
                await self.tracking.save_links(request.key, instrumented.links)
            rendered = dataclasses.replace(rendered, html=instrumented.html)

        envelope = Envelope(self.sender.email, self.sender.name, email, request.recipient.name,
                            row["message_id"], unsubscribe_url, request.key)
        delivered: list[str] = []

        async def accepted(reply: str) -> None:
            delivered.append(reply)
            await self._record_sent(request.key, subject=rendered.subject, smtp_response=reply,
                                    reason="sent again after an interrupted attempt" if claim.interrupted else note,
                                    **kept)

        try:
            outgoing = build(envelope, rendered, self.dkim)
        except Unbuildable as err:
            raise await self._failed_for_good(request.key, DeliveryFailure.UNBUILDABLE, str(err), f"{request.key}: {err}",
                                              rendered.subject, **kept) from err
        try:
            await self.transport.deliver(outgoing, accepted)
        except NoSmtputf8 as err:
            raise await self._failed_for_good(request.key, DeliveryFailure.ADDRESS, str(err), f"{request.key}: {err}",
                                              rendered.subject, **kept) from err
        except DeliveryRefused as err:
            refusal = err.refusal
            if not refusal.permanent:
                await self.outbox.release(request.key, f"soft refusal: {refusal}")
                raise ApplicationError(f"soft refusal: {refusal}", type="SoftRefusal") from err
            failure = await self._failed_for_good(
                request.key, DeliveryFailure.REFUSED, str(refusal),
                f"{request.key}: the server refused the message permanently: {refusal}", rendered.subject, **kept)
            # The same rules as a bounce reported later: 5.1.x suppresses, 5.7.x (the sender's setup) never
            await self.bounces.apply(failure_event("smtp", request.key, email, str(refusal), "permanent",
                                                   key=request.key))
            raise failure from err
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            if delivered:  # the server said 250 and only closing the connection failed: it is sent, never again
                activity.logger.warning("%s: delivered, then %s: %s", request.key, type(err).__name__, err)
                return done(SendStatus.SENT)
            await self.outbox.release(request.key, f"transient: {type(err).__name__}: {err}")
            raise  # retried with backoff by the activity's retry policy
        if request.secret_ref is not None:  # sent: the one-time secret is used up (the journey deletes it too)
            await self.secrets.forget(request.secret_ref)
        return done(SendStatus.SENT)

    async def _failed_for_good(self, key: str, failure: str, reason: str, message: str,
                               subject: str | None = None, **kept) -> ApplicationError:
        """Record the message as failed with `reason`; the error to raise, of a type the workflow
        knows (DeliveryFailure): not retried, the journey notes the skip and goes on."""
        await self.outbox.finish(key, "failed", subject=subject, reason=reason, **kept)
        return ApplicationError(message, type=failure, non_retryable=True)

    async def _record_unstorable(self, fields: dict, err: Exception) -> None:
        """Keep a row for a request PostgreSQL cannot hold, with what could not be stored replaced
        by U+FFFD, so the message shows as failed with its reason instead of not at all."""
        try:
            claim = await self.outbox.claim(**storable(fields))
            if claim.action == "send":
                await self.outbox.finish(fields["key"], "failed", reason=f"cannot be stored as sent: {err}")
        except (asyncpg.DataError, UnicodeEncodeError) as again:  # a key that cannot be stored: nothing can be kept
            activity.logger.error("%r: not recorded (%s)", fields["key"], again)

    async def _record_sent(self, key: str, **fields) -> None:
        """Record a delivery the server accepted. PostgreSQL may be away for a moment: retry for
        most of the activity's timeout; if it stays away, keep the record in memory and return, so
        the workflow (whose history now holds SENT) never asks for the message again."""
        for pause in RECORD_RETRY_PAUSES:
            try:
                await self.outbox.finish(key, "sent", **fields)
                return
            except Exception as err:  # noqa: BLE001 (asyncpg raises OSError, PostgresError, InterfaceError…)
                activity.logger.warning("%s: delivered, recording it failed (%s); retrying in %ss", key, err, pause)
                await asyncio.sleep(pause)
        self.unrecorded[key] = fields

    async def _flush_unrecorded(self) -> None:
        for key, fields in list(self.unrecorded.items()):
            try:
                await self.outbox.finish(key, "sent", **fields)
            except Exception:  # noqa: BLE001 (still away: try again on the next send)
                return
            self.unrecorded.pop(key, None)

    @activity.defn(name=RECORDED_REQUEST)
    async def recorded_request(self, key: str) -> SendRequest | None:
        """The request a message was first sent with, for a forced resend under a new key (to a
        recipient under 13, the parent's copy follows again)."""
        row = await self.outbox.get(key)
        if row is None:
            return None
        parent = json.loads(row["parent"]) if row["parent"] else None
        under_13 = {} if parent is None else {"under_13": True, "parent_email": parent["email"],
                                              "parent_name": parent["name"], "parent_copy": parent["copy"]}
        return SendRequest(
            key=key, journey=row["journey"], entity_id=row["entity_id"], template=row["template"],
            recipient={"email": row["recipient"], "name": row["recipient_name"] or row["recipient"], **under_13},
            context=json.loads(row["context"]), category=row["category"],
            due_at=row["due_at"] or row["created_at"], channel=row["channel"], phone=row["phone"],
        )
