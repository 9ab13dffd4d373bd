"""Bounce messages read (RFC 3464 reports and the formats flufl.bounce knows): the failed recipients
and the message of ours a bounce returns, an auto-reply told apart; activities.bounces classifies them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from flufl.bounce import all_failures

from activities.bounces import ProviderEvent, failure_event, status_code
from activities.store import storable

# An address we can act on: no spaces, quotes or brackets, a dotted domain, no empty dot-atoms
# (flufl's heuristics also return fragments like `david...@gmail.com`).
_ATOM = r"[^@\s<>()'\",;\\.]+"
_ADDRESS = re.compile(rf"{_ATOM}(\.{_ATOM})*@{_ATOM}(\.{_ATOM})+")
_OUT_OF_OFFICE = re.compile(
    r"\s*(auto(matic|matische)?[ -]?(reply|response|answer|antwort)|out of (the )?office|abwesenheit|absence"
    r"|r[ée]ponse automatique|risposta automatica|respuesta autom[aá]tica|vacation|on leave)", re.I)


class NotABounce(ValueError):
    """The message names no failed recipient: nothing to record."""


class AutoReply(NotABounce):
    """An automatic reply (out of office): not a bounce, ignored."""


@dataclass(frozen=True)
class Failure:
    email: str
    permanent: bool  # failed for good; False: delayed, the sending server still retries
    status: str | None  # what the report says about this recipient: Status and Diagnostic-Code, or nearby text


@dataclass(frozen=True)
class Bounce:
    report_id: str  # the bounce's own Message-ID (or a hash of it): with the address, the event id
    failures: tuple[Failure, ...]
    message_id: str | None  # the Message-ID of our message it returns
    key: str | None  # its X-Followups-Key

    def events(self) -> list[ProviderEvent]:
        return [failure_event("dsn", f"{self.report_id}/{f.email}", f.email, f.status, delayed=not f.permanent,
                              message_id=self.message_id, key=self.key, detail={"permanent": f.permanent})
                for f in self.failures]


def read_bounce(raw: bytes) -> Bounce:
    """The failed recipients of a bounce message and the message of ours it returns. Raises AutoReply
    for an automatic reply and NotABounce for anything else that names no failed recipient."""
    msg = message_from_bytes(raw)
    report = any(part.get_content_type() == "message/delivery-status" for part in msg.walk())
    if not report and (marker := _auto_reply_marker(msg)) is not None:
        raise AutoReply(f"an automatic reply ({marker}), not a bounce")
    try:
        temporary, permanent = all_failures(msg)
    except Exception as err:  # a heuristic tripping over a malformed message: we cannot read it either
        raise NotABounce(f"the message could not be read as a bounce: {type(err).__name__}: {err}") from err
    statuses = _delivery_status(msg)
    failures = {}
    for addresses, is_permanent in ((permanent, True), (temporary, False)):  # failed wins over delayed
        for encoded in addresses:
            address = encoded.decode("ascii", "replace").strip().lower()  # a heuristic may return any bytes
            if _ADDRESS.fullmatch(address) and address.isascii() and "\ufffd" not in address \
                    and address not in failures:
                failures[address] = Failure(address, is_permanent, statuses.get(address) or _nearby(msg, address))
    if not failures:
        if str(msg.get("Auto-Submitted") or "").strip().lower().startswith("auto-replied"):
            raise AutoReply("an automatic reply (Auto-Submitted: auto-replied) naming no failed recipient")
        raise NotABounce("no failed recipient found: neither an RFC 3464 delivery-status part naming one nor a "
                         "bounce format flufl.bounce recognises")
    own = str(msg.get("Message-ID") or "").strip()
    report_id = own or "sha256:" + hashlib.sha256(raw).hexdigest()[:40]
    message_id, key = storable(_original(msg, raw, own))
    return Bounce(storable(report_id), tuple(failures.values()), message_id, key)


def _auto_reply_marker(msg: Message) -> str | None:
    for header in ("X-Autoreply", "X-Autorespond"):
        if msg.get(header) is not None:
            return header
    if str(msg.get("Precedence") or "").strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    subject = _decoded(msg.get("Subject"))
    if subject and _OUT_OF_OFFICE.match(subject):
        return f"subject {subject[:80]!r}"
    return None


def _decoded(value: Any) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError, MessageError):  # a broken encoded-word: shown as sent
        return str(value)


def _delivery_status(msg: Message) -> dict[str, str]:
    """Address → "Status Diagnostic-Code" from each per-recipient block of message/delivery-status
    parts, under both its Original-Recipient and Final-Recipient."""
    found: dict[str, str] = {}
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        for block in part.get_payload():
            said = _specific(str(block.get("Status") or ""), " ".join(str(block.get("Diagnostic-Code") or "").split()))
            for header in ("Original-Recipient", "Final-Recipient", "X-Actual-Recipient"):
                value = str(block.get(header) or "")
                address = value.split(";", 1)[-1].strip().strip("<>").lower()
                if address and said:
                    found.setdefault(address, said)
    return found


def _specific(status: str, diagnostic: str) -> str:
    """Status first, unless it is a bare x.0.0 and the diagnostic names a more precise code."""
    code, detailed = status_code(status), status_code(diagnostic)
    if code is not None and code[1:] == (0, 0) and detailed is not None and detailed[1:] != (0, 0):
        return f"{'.'.join(map(str, detailed))} {diagnostic}".strip()
    return f"{status} {diagnostic}".strip()


def _own_parts(msg: Message) -> Iterator[Message]:
    """The parts of the bounce itself, not of the message it returns (whose text could quote codes)."""
    yield msg
    if msg.is_multipart() and not msg.get_content_type().startswith("message/"):
        for part in msg.get_payload():
            yield from _own_parts(part)


def _nearby(msg: Message, address: str) -> str | None:
    """For a bounce with no delivery-status part: the lines naming the address and the three after
    it, when they carry a status code (Exim's "550 5.1.1 …" below the address)."""
    for part in _own_parts(msg):
        if part.get_content_type() != "text/plain":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        lines = payload.decode("utf-8", "replace").splitlines()
        for i, line in enumerate(lines):
            if address in line.lower():
                window = " ".join(" ".join(lines[i:i + 4]).split())
                if status_code(window) is not None:
                    return window[:500]
    return None


_KEY_LINE = re.compile(rb"^X-Followups-Key:[ \t]*([^\r\n]+)", re.I | re.M)
_ID_LINE = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.I | re.M)


def _original(msg: Message, raw: bytes, own: str) -> tuple[str | None, str | None]:
    """(Message-ID, X-Followups-Key) of the returned message: from a message/rfc822 or
    text/rfc822-headers part, else from header lines quoted in the text, else In-Reply-To."""
    for part in msg.walk():
        headers: Message | None = None
        if part.get_content_type() in ("message/rfc822", "message/global") and part.is_multipart():
            headers = part.get_payload(0)
        elif part.get_content_type() in ("text/rfc822-headers", "message/rfc822-headers"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = HeaderParser().parsestr(payload.decode("utf-8", "replace"))
        if headers is not None and (headers.get("Message-ID") or headers.get("X-Followups-Key")):
            key = _decoded(headers.get("X-Followups-Key")).strip() or None
            return (str(headers.get("Message-ID") or "").strip() or None), key
    keys = _KEY_LINE.findall(raw)
    ids = [found.decode("ascii", "replace") for found in _ID_LINE.findall(raw)]
    quoted = next((mid for mid in ids if mid != own), None) or str(msg.get("In-Reply-To") or "").strip() or None
    return quoted, (_decoded(keys[0].decode("utf-8", "replace")).strip() or None) if keys else None
