"""Building and delivering one email over SMTP, and classifying what the server answered."""

from __future__ import annotations

import email.policy
import hashlib
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from datetime import datetime, timezone

import aiosmtplib

from activities.render import Rendered

_WIRE = email.policy.SMTP.clone(max_line_length=998)
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# RFC 3463 codes that mean "this address does not exist": suppress it (EMAIL_NOTES.md).
_HARD_BOUNCE = {(1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1)}


def message_id(key: str, domain: str) -> str:
    """The same business step always carries the same Message-ID, so a duplicate is recognisable."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


@dataclass(frozen=True)
class Envelope:
    sender_email: str
    sender_name: str
    recipient_email: str
    recipient_name: str
    message_id: str
    unsubscribe_url: str
    key: str


def build(envelope: Envelope, rendered: Rendered) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((envelope.sender_name, envelope.sender_email))
    msg["To"] = formataddr((envelope.recipient_name, envelope.recipient_email))
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = envelope.message_id
    msg["List-Unsubscribe"] = f"<{envelope.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Followups-Key"] = envelope.key
    msg.set_content(rendered.text)  # text/plain first, text/html last: multipart/alternative
    msg.add_alternative(rendered.html, subtype="html")
    return msg


@dataclass(frozen=True)
class Refusal:
    """An SMTP reply that refused the message."""

    code: int
    text: str

    @property
    def enhanced(self) -> tuple[int, int, int] | None:
        match = _ENHANCED.search(self.text)
        return (int(match[1]), int(match[2]), int(match[3])) if match else None

    @property
    def permanent(self) -> bool:
        # 5.2.2 (mailbox full) is a 5xx that is worth retrying.
        return self.code >= 500 and self.enhanced != (5, 2, 2)

    @property
    def hard_bounce(self) -> bool:
        enhanced = self.enhanced
        return self.permanent and enhanced is not None and (enhanced[1], enhanced[2]) in _HARD_BOUNCE

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


class DeliveryRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: str = "none"  # none | starttls | tls
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


class SmtpTransport:
    """Delivers one message per call. Raises DeliveryRefused for a refusal; connection trouble
    surfaces as aiosmtplib/OS errors, which the send step treats as transient."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.local_hostname = socket.getfqdn()  # for EHLO: once, not a resolver call per message

    async def deliver(self, msg: EmailMessage, accepted: Callable[[str], Awaitable[None]]) -> None:
        """Send `msg`; `accepted(reply)` runs the moment the server says 250, before QUIT, so the
        caller records the delivery with the shortest possible window for a crash in between."""
        s = self.settings
        smtp = aiosmtplib.SMTP(hostname=s.host, port=s.port, use_tls=s.tls == "tls",
                               start_tls=True if s.tls == "starttls" else False, timeout=s.timeout,
                               username=s.username, password=s.password, local_hostname=self.local_hostname)
        try:
            await smtp.connect()
            # Serialised here, not by aiosmtplib's send_message: its 78-column policy turns a long
            # `List-Unsubscribe: <https://…>` into RFC 2047 encoded-words, which mail clients do not
            # read as a URI (RFC 2369/8058). 998 is RFC 5322's hard line limit.
            data = msg.as_bytes(policy=_WIRE)
            sender = parseaddr(str(msg["From"]))[1]
            recipients = [address for _, address in getaddresses([str(msg["To"])])]
            try:
                errors, response = await smtp.sendmail(sender, recipients, data)
            except aiosmtplib.SMTPRecipientsRefused as err:
                first = err.recipients[0]
                raise DeliveryRefused(Refusal(first.code, first.message)) from err
            except aiosmtplib.SMTPResponseException as err:
                raise DeliveryRefused(Refusal(err.code, err.message)) from err
            if errors:  # one recipient per message: a partial refusal is a refusal
                code, text = next(iter(errors.values()))
                raise DeliveryRefused(Refusal(code, text))
            await accepted(response)
        finally:
            if smtp.is_connected:
                try:
                    await smtp.quit()
                except aiosmtplib.SMTPException:
                    smtp.close()
