"""What a failed delivery means for the address: bounce classes from RFC 3463 status codes, RFC 3464
bounce messages read with flufl.bounce (activities.dsn), and the suppression rules every provider
event goes through.

- hard: 5.1.1–5.1.3, 5.1.6, 5.1.10, 5.2.1 (activities.mail's list) and 5.4.4 (unable to route, as
  listmonk has it): the address or its domain does not exist → kind 'bounced', suppressed at once.
- soft: any other code (4.x.x, 5.2.2 mailbox full, 5.x.x not listed) → kind 'soft_bounced'; the
  third soft bounce of different messages within 30 days suppresses (source 'soft_bounce').
- policy: x.7.x, RFC 3463's "security or policy status" (SPF, DKIM, DMARC, reputation, content; 4.7.x
  is its temporary form) → kind 'failed' with the reason "policy: …" and detail.sender_side. The
  receiving server refused the sender, not the address: never a suppression, never counted as a
  soft bounce, and the same kind the send step records when SMTP gives that refusal at once, so a
  report finds every sender-side refusal in one place (mautic#9222 suppressed people for them).
- no code at all: the provider's own verdict decides (SES Permanent, Mailgun severity permanent,
  Postmark HardBounce → hard); a bare bounce message's heuristics are not enough → soft.
A delay notice (DSN Action: delayed, SendGrid deferred, Mailgun temporary, Postmark Transient) is
kind 'deferred': the message is still being retried. A complaint suppresses at once (source
'complaint'). An auto-reply (out of office) is not a bounce (mautic#2761).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import asyncpg

from activities.lifecycle import EventKind, Lifecycle
from activities.mail import Refusal
from activities.store import Suppressions, storable

BounceClass = Literal["hard", "soft", "policy"]
Verdict = Literal["permanent", "temporary"] | None
KIND_OF: dict[BounceClass, EventKind] = {"hard": "bounced", "soft": "soft_bounced", "policy": "failed"}
SOFT_LIMIT = 3
SOFT_WINDOW = timedelta(days=30)
_UNROUTABLE = (5, 4, 4)


def status_code(text: str | None) -> tuple[int, int, int] | None:
    """The first RFC 3463 enhanced status code in `text` ("smtp; 550 5.1.1 unknown" → (5, 1, 1))."""
    return Refusal(0, text).enhanced if text else None


def classify(text: str | None, verdict: Verdict = None) -> BounceClass:
    """The class of a failed delivery from its status code (see the module docstring); `verdict` is
    the provider's own permanent/temporary word, used only when the text carries no code."""
    code = status_code(text)
    if code is None:
        return "hard" if verdict == "permanent" else "soft"
    if code[1] == 7:
        return "policy"
    if Refusal(code[0] * 100, text or "").hard_bounce or code == _UNROUTABLE:
        return "hard"
    return "soft"


def soft_bounces(events: Iterable[tuple[str | None, datetime]], now: datetime) -> int:
    """How many different messages soft-bounced within SOFT_WINDOW before `now`, from (message key,
    time) pairs: one message reported twice (a provider's retry, two DSNs) counts once; an event tied
    to no message counts on its own."""
    recent = [key for key, at in events if at > now - SOFT_WINDOW]
    return len(set(recent) - {None}) + recent.count(None)


def describe(bounce_class: BounceClass, text: str | None, delayed: bool = False) -> str:
    """The reason recorded with the event (and with a suppression it causes)."""
    code = status_code(text)
    said = " ".join((text or "").split())[:400] or "no reason given"
    shown = f"{'.'.join(map(str, code))}: " if code and not said.startswith(".".join(map(str, code))) else ""
    if delayed:
        return f"delayed, still being retried: {shown}{said}"
    if bounce_class == "policy":
        return (f"policy: {shown}{said} (the receiving server refused the sender, not the address: check SPF, "
                "DKIM, DMARC and the sending reputation; the recipient is not suppressed)")
    return f"{bounce_class} bounce: {shown}{said}"


@dataclass(frozen=True)
class ProviderEvent:
    """One event about one address, whatever reported it (a provider webhook, a bounce message)."""

    provider: str  # ses | sendgrid | mailgun | postmark | dsn
    event_id: str  # the provider's id: a second delivery of the same event changes nothing
    kind: EventKind
    email: str | None
    message_id: str | None = None  # our Message-ID header, as the provider echoes it
    key: str | None = None  # our messages.key (X-Followups-Key, or a custom argument carrying it)
    at: datetime | None = None
    code: str | None = None  # RFC 3463 status, "5.1.1"
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    machine: bool = False  # an open by an image proxy (SendGrid's sg_machine_open)


def failure_event(provider: str, event_id: str, email: str, text: str | None, verdict: Verdict = None, *,
                  delayed: bool = False, bounce_class: BounceClass | None = None, **fields: Any) -> ProviderEvent:
    """The event for one failed (or delayed) delivery, classified from its status text unless the
    provider has named the class itself (Postmark's Blocked and DMARCPolicy types are policy)."""
    text = storable(text)  # a bounce's bytes may hold NULs or undecodable text: kept as U+FFFD
    bounce_class = bounce_class or classify(text, verdict)
    code = status_code(text)
    detail = {"class": bounce_class, "sender_side": bounce_class == "policy", **fields.pop("detail", {})}
    return ProviderEvent(provider, event_id, "deferred" if delayed else KIND_OF[bounce_class], email.lower(),
                         code=".".join(map(str, code)) if code else None,
                         reason=describe(bounce_class, text, delayed), detail=detail, **fields)


# --- applying events ---------------------------------------------------------------------------


@dataclass
class Outcome:
    recorded: int = 0
    duplicates: int = 0
    suppressed: list[str] = field(default_factory=list)


class BounceHandling:
    """Keeps each provider event (once per provider id) and applies the suppression rules."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.lifecycle = Lifecycle(pool)
        self.suppressions = Suppressions(pool)

    async def apply(self, event: ProviderEvent) -> list[str]:
        """Record the event and apply its rule: the addresses it newly suppressed ([] for a repeat)."""
        return (await self._apply(event))[1]

    async def apply_all(self, events: Iterable[ProviderEvent]) -> Outcome:
        outcome = Outcome()
        for event in events:
            recorded, suppressed = await self._apply(event)
            outcome.recorded += recorded
            outcome.duplicates += not recorded
            outcome.suppressed.extend(suppressed)
        return outcome

    async def _apply(self, event: ProviderEvent) -> tuple[bool, list[str]]:
        named = event.key if isinstance(event.key, str) and event.key else None
        key = named if named and await self.pool.fetchval(
            "SELECT true FROM messages WHERE key = $1", named) else None  # a key we never sent names nothing
        detail = {**event.detail, **({"code": event.code} if event.code else {})}
        if named and key is None:
            detail["unknown_key"] = named
        message_id = event.message_id if isinstance(event.message_id, str) and not key else None
        recorded = await self.lifecycle.record(
            kind=event.kind, key=key, message_id=message_id, email=event.email, at=event.at,
            machine=event.machine, reason=storable(event.reason), detail=storable(detail) or None,
            provider=event.provider, provider_event_id=event.event_id)
        if not recorded or not event.email:
            return recorded, []
        email = event.email.lower()
        if event.kind == "bounced":
            source = "hard_bounce"
        elif event.kind == "complained":
            source = "complaint"
        elif event.kind == "soft_bounced" and await self._soft_bounces(email) >= SOFT_LIMIT:
            source = "soft_bounce"
        else:
            return recorded, []
        reason = f"{event.reason or event.kind} ({event.provider} {event.event_id})"
        if source == "soft_bounce":
            reason = f"{SOFT_LIMIT} soft bounces within {SOFT_WINDOW.days} days, the last: {reason}"
        added = await self.suppressions.add(email, source, storable(reason[:1000]))
        return recorded, [email] if added else []

    async def _soft_bounces(self, email: str) -> int:
        rows = await self.pool.fetch("SELECT key, at FROM message_events WHERE email = $1 AND kind = 'soft_bounced' "
                                     "AND at > now() - $2::interval", email, SOFT_WINDOW)
        return soft_bounces(((row["key"], row["at"]) for row in rows), datetime.now(timezone.utc))
