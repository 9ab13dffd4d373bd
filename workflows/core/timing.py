"""Timing helpers every journey reuses: how moments read, follow-up spacing, remind-before windows,
offsets and stamps inside idempotency keys. Pure functions of their arguments."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def when(moment: datetime) -> str:
    """How a moment reads in the Web UI and in logs: `2026-11-25 09:00 UTC`."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%d %H:%M:%S UTC" if utc.second else "%Y-%m-%d %H:%M UTC")


def followup_due(
    anchor: datetime, first_after: timedelta, interval: timedelta, sent: int, last_sent_at: datetime | None
) -> datetime:
    """Follow-up number `sent + 1`: anchor + first_after + sent × interval, and never closer than
    `interval` to the previous one (a worker that was down does not fire a burst when it returns)."""
    due = anchor + first_after + sent * interval
    if last_sent_at is not None:
        due = max(due, last_sent_at + interval)
    return due


def remind_before(event_at: datetime, before: timedelta, grace: timedelta) -> tuple[datetime, datetime]:
    """(when to remind, the moment from which a reminder no longer makes sense: `at + grace`, or
    the event itself if sooner)."""
    at = event_at - before
    return at, min(at + grace, event_at)


def offset_label(offset: timedelta) -> str:
    """`1h`, `15m`, `1d2h`, `1m30s250ms`: how an offset reads inside an idempotency key. Distinct
    offsets read differently, down to the microsecond (two offsets never share a key)."""
    micro = offset // timedelta(microseconds=1)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if micro >= size * 1_000_000:
            parts.append(f"{micro // (size * 1_000_000)}{unit}")
            micro %= size * 1_000_000
    if micro:
        parts.append(f"{micro // 1000}ms" if micro % 1000 == 0 else f"{micro}us")
    return "".join(parts) or "0s"


def stamp_key(moment: datetime) -> str:
    """A compact UTC stamp for idempotency keys: the same moment always gives the same key."""
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
