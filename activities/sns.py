"""Amazon SES events through SNS: the SNS signature checked over the string AWS documents for each
message type, with the signing certificate fetched from an SNS host only and kept, then SES's
notifications normalised into `ProviderEvent`s (the other providers are in activities.providers)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timezone
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from activities.bounces import ProviderEvent, failure_event
from activities.providers import Forged, ProviderUnavailable, _address, _at, _bracketed, _text

_SNS_URL = re.compile(r"https://(sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?)(/[^\s\\@#]*)?")
_SIGNED = {"Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
           "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
           "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")}
_SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def sns_url(url: Any, suffix: str = "") -> bool:
    """Whether `url` is https on an SNS host, with no user, port or tricks, and its path ends in `suffix`."""
    if not isinstance(url, str) or (match := _SNS_URL.fullmatch(url)) is None:
        return False
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.host == match[1] and parsed.port is None and not parsed.userinfo and parsed.path.endswith(suffix)


def string_to_sign(message: dict[str, str]) -> bytes:
    """The text SNS signs: name and value lines of its type's fields, in order (Subject only if sent)."""
    return "".join(f"{name}\n{message[name]}\n" for name in _SIGNED[message["Type"]] if name in message).encode()


class Sns:
    """SNS's signing certificates (fetched once per URL and kept) and subscription confirmations.
    `client` is the HTTP client used for both (tests pass one serving a certificate of their own)."""

    def __init__(self, client: httpx.AsyncClient | None = None, keep: int = 16) -> None:
        self.client = client
        self.keep = keep
        self._certificates: dict[str, x509.Certificate] = {}

    def _http(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        return self.client

    async def public_key(self, url: str) -> rsa.RSAPublicKey:
        if not sns_url(url, ".pem"):
            raise Forged(f"SigningCertURL {url!r} is not an https .pem URL on an SNS host (sns.<region>.amazonaws.com)")
        certificate = self._certificates.get(url)
        if certificate is None:
            try:
                response = await self._http().get(url)
                response.raise_for_status()
                certificate = x509.load_pem_x509_certificate(response.content)
            except (httpx.HTTPError, ValueError) as err:
                raise ProviderUnavailable(f"the SNS signing certificate could not be fetched: {err}") from err
            if len(self._certificates) >= self.keep:
                self._certificates.pop(next(iter(self._certificates)))
            self._certificates[url] = certificate
        now = datetime.now(timezone.utc)
        key = certificate.public_key()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise Forged("the SNS signing certificate is not valid now")
        if not isinstance(key, rsa.RSAPublicKey):
            raise Forged("the SNS signing certificate does not hold an RSA key")
        return key

    async def confirm(self, subscribe_url: str) -> None:
        """Confirm a subscription: a GET of its SubscribeURL, which must be on an SNS host."""
        if not sns_url(subscribe_url):
            raise Forged(f"SubscribeURL {subscribe_url!r} is not an https URL on an SNS host")
        try:
            (await self._http().get(subscribe_url)).raise_for_status()
        except httpx.HTTPError as err:
            raise ProviderUnavailable(f"SNS did not take the subscription confirmation: {err}") from err


class Ses:
    def __init__(self, topic_arns: list[str], sns: Sns) -> None:
        self.topic_arns = frozenset(topic_arns)
        self.sns = sns

    async def verify(self, body: bytes) -> dict[str, str]:
        """The SNS message in `body`, once its topic is one we accept and its signature verifies."""
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise Forged("the body is not an SNS message (JSON)") from err
        if not isinstance(message, dict) or not all(isinstance(v, str) for v in message.values()):
            raise Forged("the body is not an SNS message (an object of strings)")
        fields = _SIGNED.get(message.get("Type", ""))
        if fields is None:
            raise Forged(f"unknown SNS message Type {message.get('Type')!r}")
        if message.get("TopicArn") not in self.topic_arns:
            raise Forged(f"TopicArn {message.get('TopicArn')!r} is not one of FOLLOWUPS_SES_TOPIC_ARNS")
        missing = [name for name in (*fields, "Signature", "SigningCertURL") if name != "Subject" and name not in message]
        algorithm = _SIGNATURE_HASHES.get(message.get("SignatureVersion", ""))
        if missing or algorithm is None:
            raise Forged(f"unsigned SNS message: missing {', '.join(missing) or 'a SignatureVersion of 1 or 2'}")
        key = await self.sns.public_key(message["SigningCertURL"])
        try:
            key.verify(base64.b64decode(message["Signature"], validate=True), string_to_sign(message),
                       padding.PKCS1v15(), algorithm())
        except (InvalidSignature, binascii.Error, ValueError) as err:
            raise Forged("the SNS signature does not verify") from err
        return message

    def events(self, message: dict[str, str]) -> list[ProviderEvent]:
        """The events of a verified Notification (anything else published to the topic: none)."""
        try:
            note = json.loads(message["Message"])
        except ValueError:
            return []
        if not isinstance(note, dict):
            return []
        kind, mail = note.get("notificationType") or note.get("eventType"), note.get("mail") or {}
        headers = {str(h.get("name", "")).lower(): h.get("value") for h in mail.get("headers") or [] if isinstance(h, dict)}
        tie = dict(message_id=_bracketed(headers.get("message-id")), key=headers.get("x-followups-key") or None)
        sns_id = message["MessageId"]
        events: list[ProviderEvent] = []
        if kind == "Bounce":
            bounce = note.get("bounce") or {}
            verdict = {"Permanent": "permanent", "Transient": "temporary"}.get(bounce.get("bounceType"))
            for recipient in bounce.get("bouncedRecipients") or []:
                if email := _address(recipient.get("emailAddress")):
                    events.append(failure_event(
                        "ses", f"{bounce.get('feedbackId') or sns_id}/{email}", email,
                        _text(recipient.get("status"), recipient.get("diagnosticCode")), verdict,
                        at=_at(bounce.get("timestamp")), detail={"bounce_type": bounce.get("bounceType"),
                                                                  "bounce_subtype": bounce.get("bounceSubType")}, **tie))
        elif kind == "DeliveryDelay":
            delay = note.get("deliveryDelay") or {}
            for recipient in delay.get("delayedRecipients") or []:
                if email := _address(recipient.get("emailAddress")):
                    events.append(failure_event("ses", f"{sns_id}/{email}", email, _text(
                        recipient.get("status"), recipient.get("diagnosticCode"), delay.get("delayType")),
                        delayed=True, at=_at(delay.get("timestamp")), **tie))
        elif kind == "Complaint":
            complaint = note.get("complaint") or {}
            reason = f"complaint ({complaint.get('complaintFeedbackType') or 'no feedback type'})"
            for recipient in complaint.get("complainedRecipients") or []:
                if email := _address(recipient.get("emailAddress")):
                    events.append(ProviderEvent("ses", f"{complaint.get('feedbackId') or sns_id}/{email}", "complained",
                                                email, at=_at(complaint.get("timestamp")), reason=reason,
                                                detail={"user_agent": complaint.get("userAgent")}, **tie))
        elif kind == "Delivery":
            delivery = note.get("delivery") or {}
            for recipient in delivery.get("recipients") or []:
                if email := _address(recipient):
                    events.append(ProviderEvent("ses", f"{sns_id}/{email}", "delivered", email, reason=delivery.get(
                        "smtpResponse"), at=_at(delivery.get("timestamp")), **tie))
        return events
