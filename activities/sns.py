"""Amazon SES events through SNS: the SNS signature checked over the string AWS documents for each
message type, with the signing certificate fetched from an SNS host only and kept, then SES's
notifications normalised into `ProviderEvent`s (the other providers are in activities.providers).

What a message must pass, in order (each failure a `Forged`, a 401, before anything is fetched
where it can be):
- its TopicArn is one of FOLLOWUPS_SES_TOPIC_ARNS;
- its Timestamp is less than an hour old (and not ahead of now by more than a few minutes): SNS
  keeps the Timestamp of the publish across its retries, and an HTTP/S delivery policy retries for
  an hour at most, so anything older is a replay of a captured message;
- its SigningCertURL (and a confirmation's SubscribeURL) is https on `sns.<region>.amazonaws.com`
  (`.amazonaws.com.cn` for the cn- regions) with a region-shaped label, in the TopicArn's region:
  a looser `sns.<anything>.amazonaws.com` would also take S3 bucket hosts such as
  `sns.s3.amazonaws.com`, where whoever owns the bucket `sns` could serve a certificate;
- the certificate fetched from there names `sns.amazonaws.com` (what AWS's SNS signing
  certificates carry; or the SNS host itself), in its subject CN or a SAN DNS name, and is valid
  now. It is not chained to a CA: the https fetch from an AWS-run SNS host is what vouches for it,
  so the host rule above is the one that matters, the name a second check;
- the signature verifies over the string AWS documents for the message type.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from activities.bounces import ProviderEvent, failure_event
from activities.providers import Forged, ProviderUnavailable, _address, _at, _bracketed, _text

# sns.<region>.amazonaws.com, the region shaped as AWS's are (us-east-1, ap-southeast-4, us-gov-west-1,
# cn-northwest-1): two letters, one to three words, a number. That leaves out the S3 hosts that
# the bucket `sns` would have (sns.s3.amazonaws.com, sns.s3-us-west-2…, sns.s3-accelerate…).
_SNS_URL = re.compile(r"https://(sns\.(?P<region>[a-z]{2}(?:-[a-z]+){1,3}-[0-9]{1,2})\.amazonaws\.com(?P<cn>\.cn)?)"
                      r"(/[^\s\\@#]*)?")
_TOPIC_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:sns:(?P<region>[a-z0-9-]+):[0-9]{12}:[A-Za-z0-9_.-]+")
SIGNER = "sns.amazonaws.com"  # the name AWS's SNS signing certificates carry (subject CN and SAN)
MAX_AGE = timedelta(hours=1)  # SNS retries an HTTP/S delivery for an hour at most, Timestamp unchanged
MAX_AHEAD = timedelta(minutes=5)  # clock skew: a Timestamp this far ahead of ours is still taken
_SIGNED = {"Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
           "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
           "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")}
# SignatureVersion 2 (RSA with SHA256) is what topics should use (`aws sns set-topic-attributes
# --attribute-name SignatureVersion --attribute-value 2`). Version 1 (RSA with SHA1) is still
# accepted, deliberately: it is what SNS signs with for every topic that was not switched, AWS's
# default, so refusing it would refuse most SES setups as they are. SHA1's weakness is collisions,
# which an attacker cannot use here: SNS signs what it publishes, not text the attacker chose with
# a twin in mind. Nothing else is accepted.
_SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def sns_region(url: Any, suffix: str = "") -> str | None:
    """The region of `url` if it is https on an SNS host (sns.<region>.amazonaws.com, .com.cn for the
    cn- regions only), with no user, port or tricks, and its path ends in `suffix`; else None."""
    if not isinstance(url, str) or (match := _SNS_URL.fullmatch(url)) is None:
        return None
    if bool(match["cn"]) != match["region"].startswith("cn-"):
        return None
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    if parsed.host != match[1] or parsed.port is not None or parsed.userinfo or not parsed.path.endswith(suffix):
        return None
    return match["region"]


def sns_url(url: Any, suffix: str = "") -> bool:
    """Whether `url` is https on an SNS host, with no user, port or tricks, and its path ends in `suffix`."""
    return sns_region(url, suffix) is not None


def topic_region(topic_arn: Any) -> str | None:
    """The region of an SNS topic ARN (arn:aws:sns:us-east-1:123456789012:name)."""
    match = _TOPIC_ARN.fullmatch(topic_arn) if isinstance(topic_arn, str) else None
    return match["region"] if match else None


def fresh(timestamp: Any, now: datetime) -> None:
    """Refuse an SNS message whose Timestamp is over MAX_AGE old or over MAX_AHEAD ahead of `now`."""
    try:
        sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00")) if isinstance(timestamp, str) else None
    except ValueError:
        sent = None
    if sent is None or sent.tzinfo is None:
        raise Forged(f"the SNS Timestamp {timestamp!r} is not an ISO 8601 time with its zone")
    if now - sent > MAX_AGE:
        raise Forged(f"stale SNS message: its Timestamp {timestamp} is more than {MAX_AGE.seconds // 3600} hour old "
                     "(SNS retries for an hour at most: a replay)")
    if sent - now > MAX_AHEAD:
        raise Forged(f"the SNS Timestamp {timestamp} is more than {MAX_AHEAD.seconds // 60} minutes in the future")


def names(certificate: x509.Certificate) -> set[str]:
    """The host names a certificate is for: its subject CNs and SAN DNS names, lower case."""
    found = {str(a.value).lower() for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found.update(name.lower() for name in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    return found


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

    async def public_key(self, url: str, region: str | None = None) -> rsa.RSAPublicKey:
        """The key of the certificate at `url`, an SNS host (of `region` when given)."""
        at = sns_region(url, ".pem")
        if at is None:
            raise Forged(f"SigningCertURL {url!r} is not an https .pem URL on an SNS host (sns.<region>.amazonaws.com)")
        if region is not None and at != region:
            raise Forged(f"SigningCertURL {url!r} is on SNS in {at}, not in the topic's region {region}")
        certificate = self._certificates.get(url)
        if certificate is None:
            try:
                response = await self._http().get(url)
                response.raise_for_status()
                certificate = x509.load_pem_x509_certificate(response.content)
            except (httpx.HTTPError, ValueError) as err:
                raise ProviderUnavailable(f"the SNS signing certificate could not be fetched: {err}") from err
            if not names(certificate) & {SIGNER, httpx.URL(url).host}:
                raise Forged(f"the certificate at {url!r} is not SNS's: it names {sorted(names(certificate))}, "
                             f"not {SIGNER}")
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

    async def confirm(self, subscribe_url: str, region: str | None = None) -> None:
        """Confirm a subscription: a GET of its SubscribeURL, which must be on an SNS host (of `region`)."""
        at = sns_region(subscribe_url)
        if at is None or (region is not None and at != region):
            raise Forged(f"SubscribeURL {subscribe_url!r} is not an https URL on an SNS host"
                         + (f" in the topic's region {region}" if region else ""))
        try:
            (await self._http().get(subscribe_url)).raise_for_status()
        except httpx.HTTPError as err:
            raise ProviderUnavailable(f"SNS did not take the subscription confirmation: {err}") from err


class Ses:
    def __init__(self, topic_arns: list[str], sns: Sns) -> None:
        self.topic_arns = frozenset(topic_arns)
        self.sns = sns

    async def verify(self, body: bytes, now: datetime | None = None) -> dict[str, str]:
        """The SNS message in `body`, once its topic is one we accept, it is fresh, and its signature
        verifies with a certificate from SNS in the topic's region."""
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
        region = topic_region(message["TopicArn"])
        if region is None:
            raise Forged(f"TopicArn {message['TopicArn']!r} is not an SNS topic ARN")
        fresh(message["Timestamp"], now or datetime.now(timezone.utc))
        key = await self.sns.public_key(message["SigningCertURL"], region)
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
