"""Provider event webhooks: each provider's own authentication, then its events normalised into
`ProviderEvent`s (activities.bounces applies them).

- Amazon SES through SNS (activities.sns): the SNS signature (version 2 SHA256 with RSA; version 1
  SHA1 too, AWS's default) over the string AWS documents for each message type, with the certificate
  fetched from `SigningCertURL` only if that is https on an SNS host of the topic's region
  (sns.<region>.amazonaws.com) and naming sns.amazonaws.com; the topic must be one we were told to
  accept (anyone can subscribe our URL to a topic of their own, and SNS signs that too), and the
  message's Timestamp less than an hour old.
- SendGrid: ECDSA P-256 over timestamp + raw body with the Event Webhook's verification key; a
  timestamp more than 15 minutes off is refused (a captured request replayed).
- Mailgun: HMAC-SHA256 of timestamp + token with the webhook signing key, inside the body; a
  timestamp more than 15 minutes off, or a token used before, is refused (the token is claimed
  before anything is recorded, so of two requests with one token only one gets through).
- Postmark: no signature exists; basic auth (over HTTPS), compared in constant time.
Which message an event is about: our Message-ID where the provider echoes it (SES original headers,
SendGrid `smtp-id`, Mailgun `message-id`) and our key from X-Followups-Key (SES headers) or a
`followups_key` custom argument (SendGrid custom args, Mailgun user-variables, Postmark Metadata).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from email.utils import parseaddr
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from activities.bounces import ProviderEvent, failure_event

KEY_FIELD = "followups_key"  # the custom argument / metadata name that carries messages.key


class Forged(Exception):
    """The request is not provably from the provider: refused (401) before anything is read.
    `field` names what was wrong when that is not the signature itself (a stale timestamp)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _stale(timestamp: str, now: datetime, max_age: timedelta) -> bool:
    """Whether epoch-seconds `timestamp` is not a time within `max_age` of `now`, either way."""
    sent = _at(timestamp) if timestamp.isdigit() else None
    return sent is None or abs(now - sent) > max_age


class ProviderUnavailable(Exception):
    """What the check needs from the provider (the SNS certificate) could not be had: try later."""


def _at(value: Any) -> datetime | None:
    """A provider's time: ISO 8601 text or epoch seconds."""
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
            return datetime.fromtimestamp(float(value), timezone.utc)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _address(value: Any) -> str | None:
    address = parseaddr(value)[1].strip().lower() if isinstance(value, str) else ""
    return address if "@" in address else None


def _bracketed(message_id: Any) -> str | None:
    if not isinstance(message_id, str) or not message_id.strip():
        return None
    value = message_id.strip()
    return value if value.startswith("<") else f"<{value}>"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _text(*parts: Any) -> str | None:
    return " ".join(str(part) for part in parts if part not in (None, "")) or None


# --- SendGrid -----------------------------------------------------------------------------------


class SendGrid:
    MAX_AGE = timedelta(minutes=15)

    def __init__(self, public_key: str) -> None:
        try:
            key = serialization.load_der_public_key(base64.b64decode(public_key, validate=True))
        except (ValueError, binascii.Error) as err:
            raise ValueError("FOLLOWUPS_SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER public key") from err
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("FOLLOWUPS_SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 key")
        self.key = key

    def verify(self, body: bytes, signature: str | None, timestamp: str | None, now: datetime | None = None) -> None:
        """Refuse a request whose signature does not verify, or whose (signed) timestamp is more than
        MAX_AGE from `now`: SendGrid signs each post as it sends it, so an old one is a replay."""
        if not signature or not timestamp:
            raise Forged("missing X-Twilio-Email-Event-Webhook-Signature or X-Twilio-Email-Event-Webhook-Timestamp")
        try:
            self.key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body,
                            ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError) as err:
            raise Forged("the signature does not verify with FOLLOWUPS_SENDGRID_WEBHOOK_PUBLIC_KEY") from err
        if _stale(timestamp, now or datetime.now(timezone.utc), self.MAX_AGE):
            raise Forged(f"stale X-Twilio-Email-Event-Webhook-Timestamp {timestamp}: more than "
                         f"{self.MAX_AGE.seconds // 60} minutes from now (a replayed request)",
                         field="X-Twilio-Email-Event-Webhook-Timestamp")

    @staticmethod
    def events(batch: list[dict[str, Any]]) -> list[ProviderEvent]:
        events = []
        for item in batch:
            email, event_id, name = _address(item.get("email")), item.get("sg_event_id"), item.get("event")
            if not email or not isinstance(event_id, str):
                continue
            tie: dict[str, Any] = dict(message_id=_bracketed(item.get("smtp-id")), key=item.get(KEY_FIELD) or None,
                                       at=_at(item.get("timestamp")))
            said = _text(item.get("status"), item.get("reason") or item.get("response"))
            if name == "bounce":
                verdict = "permanent" if item.get("type", "bounce") == "bounce" else None  # "blocked": the code decides
                events.append(failure_event("sendgrid", event_id, email, said, verdict, detail={
                    "type": item.get("type"), "bounce_classification": item.get("bounce_classification")}, **tie))
            elif name == "deferred":
                events.append(failure_event("sendgrid", event_id, email, said, delayed=True, **tie))
            elif name in ("delivered", "spamreport", "open", "click", "dropped", "unsubscribe", "group_unsubscribe"):
                kind = {"spamreport": "complained", "open": "opened", "click": "clicked", "dropped": "failed",
                        "unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed"}.get(name, name)
                reason = f"dropped by SendGrid: {item.get('reason')}" if name == "dropped" else item.get("response")
                events.append(ProviderEvent("sendgrid", event_id, kind, email, reason=reason,
                                            machine=item.get("sg_machine_open") is True,
                                            detail={"url": item["url"]} if item.get("url") else {}, **tie))
        return events


# --- Mailgun ------------------------------------------------------------------------------------


class Mailgun:
    MAX_AGE = timedelta(minutes=15)

    def __init__(self, signing_key: str) -> None:
        self.signing_key = signing_key.encode()

    def verify(self, payload: Any, now: datetime) -> str:
        """The token of a request whose signature verifies and whose timestamp is fresh."""
        signature = payload.get("signature") if isinstance(payload, dict) else None
        if not isinstance(signature, dict) or not all(isinstance(signature.get(name), (str, int))
                                                       for name in ("timestamp", "token", "signature")):
            raise Forged("missing signature object {timestamp, token, signature} in the body")
        timestamp, token = str(signature["timestamp"]), str(signature["token"])
        expected = hmac.new(self.signing_key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(signature["signature"])):
            raise Forged("the signature does not verify with FOLLOWUPS_MAILGUN_WEBHOOK_SIGNING_KEY")
        if _stale(timestamp, now, self.MAX_AGE):
            raise Forged(f"stale timestamp {timestamp}: more than {self.MAX_AGE.seconds // 60} minutes from now",
                         field="signature.timestamp")
        return token

    @staticmethod
    def events(payload: dict[str, Any]) -> list[ProviderEvent]:
        data = payload.get("event-data")
        if not isinstance(data, dict) or not (email := _address(data.get("recipient"))) or not data.get("id"):
            return []
        name, event_id = data.get("event"), str(data["id"])
        headers = (data.get("message") or {}).get("headers") or {}
        tie: dict[str, Any] = dict(message_id=_bracketed(headers.get("message-id")),
                                   key=(data.get("user-variables") or {}).get(KEY_FIELD) or None, at=_at(data.get("timestamp")))
        if name == "failed":
            status = data.get("delivery-status") or {}
            said = _text(status.get("enhanced-code"), status.get("code"), status.get("message"),
                         status.get("description"), data.get("reason"))
            temporary = data.get("severity") == "temporary"  # Mailgun retries: a delay, not a bounce yet
            return [failure_event("mailgun", event_id, email, said, None if temporary else "permanent",
                                  delayed=temporary, detail={"reason": data.get("reason")}, **tie)]
        kind = {"delivered": "delivered", "complained": "complained", "opened": "opened", "clicked": "clicked",
                "unsubscribed": "unsubscribed"}.get(name)
        return [ProviderEvent("mailgun", event_id, kind, email, **tie)] if kind else []  # type: ignore[arg-type]


class WebhookTokens:
    """Tokens already used by a provider whose signature covers no body (Mailgun): replays.
    A token is claimed (inserted) before its request's events are recorded: the primary key lets
    one of two concurrent requests with the same token have it, the other waits for that insert
    and then finds it taken. A look first and an insert after would let both through."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def claim(self, provider: str, token: str) -> bool:
        """Take `token` for this request: False if it was taken before (a replay)."""
        async with self.pool.acquire() as conn, conn.transaction():
            # rows past any timestamp's 15 minutes either way; another request's prune keeps its own
            await conn.execute("DELETE FROM webhook_tokens WHERE (provider, token) IN (SELECT provider, token FROM "
                               "webhook_tokens WHERE seen_at < now() - interval '1 hour' FOR UPDATE SKIP LOCKED)")
            return bool(await conn.fetchval(
                "INSERT INTO webhook_tokens (provider, token) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                provider, token))

    async def release(self, provider: str, token: str) -> None:
        """Give a claimed token back when its request failed before its events were kept, so that the
        provider's retry of the very same request is taken."""
        await self.pool.execute("DELETE FROM webhook_tokens WHERE provider = $1 AND token = $2", provider, token)


# --- Postmark -----------------------------------------------------------------------------------

# Postmark's bounce types → what they are for the address (the others, like AutoResponder, are not
# bounces); by name, or by TypeCode when the name is missing.
_POSTMARK_TYPES = {"HardBounce": "permanent", "BadEmailAddress": "permanent", "SoftBounce": "temporary",
                   "DnsError": "temporary", "Unknown": "temporary", "Transient": "delayed", "SpamNotification": "policy",
                   "Blocked": "policy", "DMARCPolicy": "policy", "SpamComplaint": "complaint"}
_POSTMARK_CODES = {1: "HardBounce", 100000: "BadEmailAddress", 4096: "SoftBounce", 256: "DnsError", 2048: "Unknown",
                   2: "Transient", 512: "SpamNotification", 100006: "Blocked", 100009: "DMARCPolicy",
                   100001: "SpamComplaint"}


class Postmark:
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username.encode(), password.encode()

    def verify(self, authorization: str | None) -> None:
        scheme, _, encoded = (authorization or "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError) as err:
            raise Forged("missing basic auth: set the webhook URL as https://user:password@…") from err
        same_user = hmac.compare_digest(user, self.username)
        if not (hmac.compare_digest(password, self.password) & same_user) or scheme.lower() != "basic":
            raise Forged("wrong basic auth for the Postmark webhook")

    @staticmethod
    def events(record: dict[str, Any]) -> list[ProviderEvent]:
        kind, metadata = record.get("RecordType"), record.get("Metadata") or {}
        tie: dict[str, Any] = dict(key=metadata.get(KEY_FIELD) if isinstance(metadata, dict) else None)
        if kind in ("Bounce", "SpamComplaint") and (email := _address(record.get("Email"))) and record.get("ID"):
            event_id, said = str(record["ID"]), _text(record.get("Details"), record.get("Description"))
            what = _POSTMARK_TYPES.get(record.get("Type") or _POSTMARK_CODES.get(_int(record.get("TypeCode")), ""))
            at = _at(record.get("BouncedAt"))
            detail = {"type": record.get("Type"), "type_code": record.get("TypeCode")}
            if what == "complaint" or kind == "SpamComplaint":
                return [ProviderEvent("postmark", event_id, "complained", email, at=at, reason="spam complaint",
                                      detail=detail, **tie)]
            if what in ("permanent", "temporary", "delayed"):
                verdict = "permanent" if what == "permanent" else None
                return [failure_event("postmark", event_id, email, said, verdict, delayed=what == "delayed", at=at,
                                      detail=detail, **tie)]
            if what == "policy":  # a block or DMARC refusal: the sender's problem, whatever code is quoted
                return [failure_event("postmark", event_id, email, said or record.get("Type"), bounce_class="policy",
                                      at=at, detail=detail, **tie)]
            return []  # AutoResponder, Subscribe, ChallengeVerification…: not a bounce
        if kind == "Delivery" and (email := _address(record.get("Recipient"))):
            return [ProviderEvent("postmark", f"delivery/{record.get('MessageID')}/{email}", "delivered", email,
                                  at=_at(record.get("DeliveredAt")), reason=record.get("Details"), **tie)]
        return []
