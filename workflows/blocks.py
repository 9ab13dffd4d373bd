"""Building blocks every journey reuses: follow-up spacing, remind-before windows, the one
durable wait ("sleep until the step is due, unless an event changes the plan") and the send step.

The pure functions of (anchors, policy) are unit- and property-tested without Temporal;
`wait_for_step_or_change` and `send` are the pieces that touch the workflow API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.send import PermanentDeliveryFailure, SendActivities
    from workflows.models import EventOutcome, SendRequest, SendStatus, too_late  # noqa: F401 (too_late: for journeys)

SEND_TIMEOUT = timedelta(seconds=30)  # = the outbox lease: a stuck attempt is retried after this
SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                         maximum_interval=timedelta(minutes=10))


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


ENDED_BY = {"cancel": "cancelled", "complete": "completed"}  # event kind → the status it ends a journey in


def record_outcome(state, key: str, applied: bool, reason: str | None = None) -> EventOutcome:
    """Log an event's outcome in the state (the API reads it back by key) and return it."""
    result = EventOutcome(event=key, applied=applied, reason=reason)
    state.events.append(result)
    return result


def screen_event(state, event, closed: frozenset, ended_by: dict[str, str] = ENDED_BY) -> EventOutcome | None:
    """What every journey does first with an event. A redelivered `event_id` is a duplicate; on an
    ended journey a repeat of what ended it (a second cancel) is a harmless duplicate, anything else
    is refused. None: the journey's own rules apply it."""
    key = event.dedupe_key()
    if event.event_id and any(seen.event == key and seen.applied for seen in state.events):
        return EventOutcome(event=key, applied=False, reason="duplicate: already applied")
    if state.status in closed:
        if ended_by.get(event.kind) == state.status.value:
            return EventOutcome(event=key, applied=False, reason=f"duplicate: already {state.status.value}")
        return record_outcome(state, key, False, f"the journey has already ended ({state.status.value})")
    return None


def no_change(state, event, why: str) -> EventOutcome:
    """An event that asks for what already is (confirm the time it has): a success that changes
    nothing. Logged under its `event_id`, so a late redelivery after a later change is still a
    duplicate and cannot undo that change; without an id nothing is logged (twice = once)."""
    result = EventOutcome(event=event.dedupe_key(), applied=True, reason=f"no change: {why}")
    if event.event_id:
        state.events.append(result)
    return result


def with_overrides(policy, overrides):
    """A journey's policy: the defaults it started with, then the start's overrides, re-validated."""
    return type(policy).model_validate({**policy.model_dump(), **overrides.model_dump(exclude_none=True)})


async def run_plan(journey) -> None:
    """The loop every journey runs: plan the next step, sleep until it is due unless an event
    changes the plan (`journey.revision` moves), take it; until the plan is empty. The journey
    provides `_plan()`, `_take(step)`, `_show(step)` and `revision`."""
    while (step := journey._plan()) is not None:
        seen = journey.revision
        if not await wait_for_step_or_change(step.at, lambda: journey.revision != seen, step.label):
            continue  # an event changed the plan: plan again
        await journey._take(step)
    journey._show(None)


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


async def send(request: SendRequest, on_skip: Callable[[str, str], None]) -> SendStatus:
    """Run the send step. A skip or a permanent refusal is reported to `on_skip(key, reason)` and
    the journey goes on; anything else is retried with backoff until it goes through."""
    try:
        result = await workflow.execute_activity_method(
            SendActivities.send_message,
            request,
            start_to_close_timeout=SEND_TIMEOUT,
            retry_policy=SEND_RETRY,
            summary=f"send {request.key}",
        )
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type in PermanentDeliveryFailure.ALL:
            on_skip(request.key, f"delivery failed: {cause.message}")
            return SendStatus.FAILED
        raise
    if result.status in (SendStatus.SKIPPED, SendStatus.FAILED):  # FAILED: the key had failed before
        on_skip(request.key, result.reason or f"{result.status.value} at the send step")
    return result.status
