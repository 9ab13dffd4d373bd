"""Building blocks every journey reuses: follow-up spacing, remind-before windows, and the one
durable wait ("sleep until the step is due, unless an event changes the plan").

The first three are pure functions of (anchors, policy) so they are unit- and property-tested
without Temporal; `wait_for_step_or_change` is the only piece that touches the workflow API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from temporalio import workflow


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
    """(when to remind, the last moment a reminder still makes sense). Never after the event."""
    at = event_at - before
    return at, min(at + grace, event_at)


def stamp_key(moment: datetime) -> str:
    """A compact UTC stamp for idempotency keys: the same moment always gives the same key."""
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


async def wait_for_step_or_change(due: datetime, changed: Callable[[], bool], summary: str) -> bool:
    """Sleep durably until `due`; return True when it is reached, False when `changed()` became true
    first (an event re-planned the journey). The timer carries `summary` for the Web UI."""
    remaining = due - workflow.now()
    if remaining <= timedelta(0):
        return not changed()
    try:
        await workflow.wait_condition(changed, timeout=remaining, timeout_summary=summary)
    except TimeoutError:
        return True
    return False
