"""What every journey does with an event before its own rules: drop a redelivery, refuse what
comes after the end, and log the outcome so a late redelivery stays a duplicate."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from workflows.core.fields import EventId, Strict
from workflows.core.steps import EventOutcome, OutcomeCode, Skip

ENDED_BY = {"cancel": "cancelled", "complete": "completed"}  # event kind → the status it ends a journey in
# How many outcomes a journey keeps: an `event_id` is recognised as a redelivery within its
# journey's last 1,000 events (a session whose 10,000 attendees each send feedback stays small).
EVENT_LOG = 1_000


class JourneyEvent(Strict):
    """The base of every event model. Unknown fields are ignored: histories recorded when each
    journey had one event model carry every field of it (`scheduled_at: null` on a cancel)."""

    model_config = {"extra": "ignore", "frozen": True}
    kind: str
    event_id: EventId | None = None

    def stamp(self) -> str:
        """What tells two events of one kind apart without an `event_id` (e.g. the new time)."""
        return ""

    def dedupe_key(self) -> str:
        return self.event_id or f"{self.kind}:{self.stamp()}"


def applied_under(state: Any, event_id: str) -> EventOutcome | None:
    """The latest outcome applied under `event_id` (a refusal logged under the same id is not one)."""
    return next((seen for seen in reversed(state.events) if seen.event == event_id and seen.applied), None)


def fingerprint(event: JourneyEvent) -> str:
    """What an `event_id` names: the event's kind and a digest of its fields. A second event under
    the same id with another fingerprint is a different event, not a redelivery."""
    body = event.model_dump_json(exclude={"event_id"}).encode()
    return f"{event.kind}:{hashlib.sha256(body).hexdigest()[:16]}"


def fingerprinted(state: Any, event: JourneyEvent, outcome: EventOutcome) -> EventOutcome:
    """The outcome, marked with the event's fingerprint where it was logged under its `event_id`."""
    if not event.event_id or not state.events or state.events[-1] is not outcome:
        return outcome
    outcome = state.events[-1] = outcome.model_copy(update={"fingerprint": fingerprint(event)})
    return outcome


def reused_id(seen: EventOutcome, event: JourneyEvent) -> EventOutcome | None:
    """A refusal when `event` reuses the `event_id` of a different event applied before."""
    return id_taken(seen.event, seen.fingerprint, event)


def id_taken(event_id: str, taken_by: str | None, event: JourneyEvent) -> EventOutcome | None:
    """A refusal when `event_id` was taken by the event of fingerprint `taken_by` and `event` is another."""
    if taken_by is None or taken_by == fingerprint(event):
        return None
    before = taken_by.partition(":")[0]
    what = f"a {before} event" if before != event.kind else f"another {before} (with other fields)"
    return EventOutcome(event=event_id, applied=False, code="conflict", field="event_id",
                        reason=f"event_id {event_id!r} was already used for {what}: give this {event.kind} "
                               "an event_id of its own")


def record_outcome(state: Any, key: str, applied: bool, reason: str | None = None,
                   code: OutcomeCode | None = None, field: str | None = None) -> EventOutcome:
    """Log an event's outcome in the state (a redelivery finds it by key) and return it."""
    result = EventOutcome(event=key, applied=applied, reason=reason,
                          code=code or ("applied" if applied else "invalid"), field=field)
    log_outcome(state, result)
    return result


def log_outcome(state: Any, outcome: EventOutcome) -> None:
    state.events.append(outcome)
    if len(state.events) > EVENT_LOG:
        del state.events[:len(state.events) - EVENT_LOG]


def screen_event(state: Any, event: JourneyEvent, closed: frozenset,
                 ended_by: dict[str, str] = ENDED_BY) -> EventOutcome | None:
    """A redelivered `event_id` is a duplicate; on an ended journey a repeat of what ended it (a
    second cancel) is a harmless duplicate, anything else is refused. None: the journey's own
    rules apply it."""
    key = event.dedupe_key()
    if event.event_id and (seen := applied_under(state, key)) is not None:
        return reused_id(seen, event) or EventOutcome(event=key, applied=False, reason="duplicate: already applied",
                                                      code="duplicate")
    if state.status in closed:
        if ended_by.get(event.kind) == state.status.value:
            return EventOutcome(event=key, applied=False, reason=f"duplicate: already {state.status.value}",
                                code="duplicate")
        return record_outcome(state, key, False, f"the journey has already ended ({state.status.value})",
                              code="ended")
    return None


def no_change(state: Any, event: JourneyEvent, why: str) -> EventOutcome:
    """An event that asks for what already is (confirm the time it has): a success that changes
    nothing. Logged under its `event_id`, so a late redelivery after a later change is still a
    duplicate and cannot undo that change; without an id nothing is logged (twice = once)."""
    result = EventOutcome(event=event.dedupe_key(), applied=True, reason=f"no change: {why}", code="no_change")
    if event.event_id:
        log_outcome(state, result)
    return result


def record_skip(state: Any, step: str, reason: str, now: datetime) -> None:
    state.skips.append(Skip(step=step, reason=reason, at=now))


def event_maker(union: Any) -> Any:
    """`make(kind="confirm", scheduled_at=…)` → the event model of that kind (tests, previews, bulk)."""
    from pydantic import TypeAdapter

    adapter = TypeAdapter(union)
    return lambda **fields: adapter.validate_python(fields)
