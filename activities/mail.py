"""Building and delivering one email over SMTP, and classifying what the server answered."""

from __future__ import annotations

import email.charset
import email._policybase
import email.policy
import hashlib
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from dataclasses import dataclass
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from datetime import datetime, timezone

import aiosmtplib
import idna
from confusable_homoglyphs.confusables import is_mixed_script

from activities.render import Rendered

if TYPE_CHECKING:
    from activities.dkim import DkimKey

# compat32 at RFC 5322's 998-column hard limit: a long `List-Unsubscribe: <https://…>` stays a bare
# URI on one line (folding it, or encoding it as RFC 2047 words, hides it from mail clients).
class _Wire(email._policybase.Compat32):
    """compat32, with a header that needs no folding written as it is: what compat32 writes for a
    short ASCII value anyway, without building an email.header.Header for it (a fifth of the
    build's time, 16 headers a message)."""

    def _fold(self, name: str, value: object, sanitize: bool) -> str:
        if isinstance(value, str) and value.isascii() and "\r" not in value and "\n" not in value \
                and len(name) + 2 + len(value) <= (self.max_line_length or 0):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


_WIRE = _Wire().clone(linesep="\r\n", max_line_length=998)
# RFC 6532: a message to an address that is not ASCII carries it as UTF-8 in its To: header, which
# compat32 writes as is only from a surrogate-escaped string under an 8-bit policy.
_WIRE_UTF8 = _WIRE.clone(cte_type="8bit")
_PLACEHOLDER = "followups-address@placeholder.invalid"
_UTF8_QP = email.charset.Charset("utf-8")
_UTF8_QP.body_encoding = email.charset.QP  # readable source, 7-bit safe, lines ≤ 76
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


@dataclass(frozen=True)
class Outgoing:
    """A message ready for the wire: envelope addresses and the serialised bytes (CRLF; 7-bit
    unless `smtputf8`: then an address is UTF-8 and only a server offering SMTPUTF8 may take it)."""

    sender: str
    recipients: list[str]
    data: bytes
    smtputf8: bool = False


class Unbuildable(ValueError):
    """The message cannot be put on the wire as asked: no retry changes that."""


def wire_address(address: str) -> str:
    """The address as SMTP carries it: the domain as IDNA (`ada@xn--bcher-kva.de`), so only a part
    before the @ that is not ASCII needs SMTPUTF8."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError as err:
        raise Unbuildable(f"the domain of {address} has no IDNA form: {err}") from err


def for_display(address: str) -> str:
    """The address as a page shows it: where the part before the @ or a label of the domain mixes
    scripts (a Cyrillic а among Latin letters, `аda@exаmple.com`), that part as punycode
    (`xn--da-6kc@xn--exmple-4nf.com`), so a look-alike never passes for the address it imitates.
    Single-script addresses (`用户@例子.广告`, `ada@bücher.de`) show as they are."""
    local, _, domain = address.rpartition("@")
    return f"{_shown(local)}@{'.'.join(_shown(label) for label in domain.split('.'))}"


def _shown(part: str) -> str:
    return "xn--" + part.encode("punycode").decode("ascii") if is_mixed_script(part) else part


def build(envelope: Envelope, rendered: Rendered, dkim: DkimKey | None = None) -> Outgoing:
    """multipart/alternative, text/plain first and text/html last, both UTF-8 quoted-printable;
    with `dkim`, signed as it goes on the wire (the signature covers the unsubscribe headers, as
    mailbox providers ask of bulk mail: EMAIL_NOTES.md).

    Built with the stdlib's compat32 MIME classes: a third of the CPU of `EmailMessage` with the
    default policy (0.6 against 1.9 ms per message, bench/throughput.py). Values are checked for
    line breaks here, since compat32 does not refuse them."""
    for name, value in (("sender name", envelope.sender_name), ("recipient name", envelope.recipient_name),
                        ("subject", rendered.subject), ("key", envelope.key), ("unsubscribe URL", envelope.unsubscribe_url)):
        if "\r" in value or "\n" in value:
            raise Unbuildable(f"the {name} may not contain a line break: {value!r}")
    recipient = wire_address(envelope.recipient_email)
    msg = MIMEMultipart("alternative")
    msg["From"] = _address(envelope.sender_name, envelope.sender_email, "From")
    msg["To"] = _address(envelope.recipient_name, recipient, "To")
    msg["Subject"] = _text(rendered.subject, "Subject")
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = envelope.message_id
    msg["List-Unsubscribe"] = f"<{envelope.unsubscribe_url}>"  # a bare URI on one line (RFC 2369/8058)
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Followups-Key"] = _text(envelope.key, "X-Followups-Key")
    msg.attach(MIMEText(rendered.text, "plain", _UTF8_QP))
    msg.attach(MIMEText(rendered.html, "html", _UTF8_QP))
    utf8 = not recipient.isascii()
    try:
        data = msg.as_bytes(policy=_WIRE_UTF8 if utf8 else _WIRE)
    except (UnicodeError, ValueError) as err:
        raise Unbuildable(f"the message cannot be encoded: {err}") from err
    if dkim is not None:
        data = dkim.sign(data) + data
    return Outgoing(envelope.sender_email, [recipient], data, smtputf8=utf8)


class _Words(Header):
    """RFC 2047 encoded-words folded at 76 columns (no word over 75 characters, RFC 2047 §2),
    whatever line length the generator allows the rest of the header block."""

    def encode(self, splitchars: str = ";, \t", maxlinelen: int | None = None, linesep: str = "\n") -> str:
        return super().encode(splitchars, 76, linesep)


def _text(value: str, header: str) -> str | Header:
    """ASCII stays as is; anything else becomes encoded-words."""
    return value if value.isascii() else _Words(value, "utf-8", header_name=header)


def _address(name: str, address: str, field: str) -> str | Header:
    if not address.isascii():  # the name as formataddr writes it (quoted or encoded-words), the address as UTF-8
        value = formataddr((name, _PLACEHOLDER), charset="utf-8").replace(_PLACEHOLDER, address)
        return value.encode("utf-8").decode("ascii", "surrogateescape")
    if name.isascii():
        return formataddr((name, address))
    header = _Words(name, "utf-8", header_name=field)
    header.append(f"<{address}>", "us-ascii")
    return header


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


class NoSmtputf8(Exception):
    """The message needs SMTPUTF8 (RFC 6531) and the server does not offer it."""


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
    pool_size: int = 10  # idle connections kept for the next message; 0 = a new session per message
    messages_per_connection: int = 100  # then QUIT and open a fresh one
    idle_seconds: float = 30.0  # an idle connection older than this is closed, not reused


@dataclass
class _Connection:
    smtp: aiosmtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0


class SmtpTransport:
    """Delivers one message per call over a small pool of open SMTP sessions. Raises
    DeliveryRefused for a refusal; connection trouble surfaces as aiosmtplib/OS errors, which the
    send step treats as transient.

    A kept connection may have been closed by the server meanwhile. That shows at MAIL FROM,
    before the server has seen any of the message, so the transaction is retried once on a fresh
    connection. Anything after DATA is never retried here: that is the send step's business."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.local_hostname = socket.getfqdn()  # for EHLO: once, not a resolver call per message
        self._idle: list[_Connection] = []

    async def deliver(self, out: Outgoing, accepted: Callable[[str], Awaitable[None]]) -> None:
        """Send `out`; `accepted(reply)` runs the moment the server says 250, before the
        connection is reused or closed, so the caller records the delivery with the shortest
        possible window for a crash in between."""
        conn = self._take()
        reused = conn is not None
        if conn is None:
            conn = await self._open()
        keep = False
        encoding = "utf-8" if out.smtputf8 else "ascii"
        try:
            try:
                await self._begin(conn, out)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPResponseException, OSError) as err:
                refused = isinstance(err, aiosmtplib.SMTPResponseException) and err.code != 421
                if not reused or refused:
                    raise
                await self._discard(conn)  # the server dropped it while idle: start over, once
                conn = await self._open()
                await self._begin(conn, out)
            for recipient in out.recipients:
                await conn.smtp.rcpt(recipient, encoding=encoding)
            response = await conn.smtp.data(out.data)
            conn.sent += 1
            keep = True
            await accepted(response.message)
        except NoSmtputf8:
            keep = True  # nothing was begun: the connection serves the next message
            raise
        except aiosmtplib.SMTPRecipientRefused as err:
            raise DeliveryRefused(Refusal(err.code, err.message)) from err
        except aiosmtplib.SMTPResponseException as err:
            raise DeliveryRefused(Refusal(err.code, err.message)) from err
        finally:
            if keep and conn.smtp.is_connected and len(self._idle) < self.settings.pool_size \
                    and conn.sent < self.settings.messages_per_connection:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                await self._discard(conn, polite=keep)

    @staticmethod
    async def _begin(conn: _Connection, out: Outgoing) -> None:
        """MAIL FROM; for a message that needs SMTPUTF8, only once the server has said it offers it."""
        if not out.smtputf8:
            await conn.smtp.mail(out.sender)
            return
        if conn.smtp.is_ehlo_or_helo_needed:
            await conn.smtp.ehlo()
        if not conn.smtp.supports_extension("smtputf8"):
            raise NoSmtputf8(f"{out.recipients[0]} needs SMTPUTF8, which the SMTP server does not offer")
        options = ["SMTPUTF8"] + (["BODY=8BITMIME"] if conn.smtp.supports_extension("8bitmime") else [])
        await conn.smtp.mail(out.sender, options=options, encoding="utf-8")

    async def close(self) -> None:
        """QUIT every idle connection (at worker shutdown)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._discard(conn, polite=True)

    def _take(self) -> _Connection | None:
        """The most recently used idle connection still open and fresh; stale ones are dropped."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.smtp.is_connected and now - conn.idle_since < self.settings.idle_seconds:
                return conn
            conn.smtp.close()
        return None

    async def _open(self) -> _Connection:
        s = self.settings
        smtp = aiosmtplib.SMTP(hostname=s.host, port=s.port, use_tls=s.tls == "tls",
                               start_tls=True if s.tls == "starttls" else False, timeout=s.timeout,
                               username=s.username, password=s.password, local_hostname=self.local_hostname)
        await smtp.connect()
        return _Connection(smtp)

    @staticmethod
    async def _discard(conn: _Connection, polite: bool = False) -> None:
        if polite and conn.smtp.is_connected:
            try:
                await conn.smtp.quit()
                return
            except (aiosmtplib.SMTPException, OSError):
                pass
        conn.smtp.close()
