"""A declared journey's timing as pure functions of (anchors, definition, what was done, now).

A step is due at its anchor's moment plus its offset and is taken once per moment: when an event
moves the anchor, the step is planned again for the new moment (`{step}-{stamp}` marks what was
taken). It is skipped, never sent late, from `until` (its window closes) or `at + grace` on. The
journey completes when nothing is left to take and neither `ends` nor any anchor lies ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from workflows.core.events import no_change, record_outcome, screen_event
from workflows.core.steps import EventOutcome, PlannedStep, Skip, StepKind, waiting_for_start
from workflows.core.timing import stamp_key, when
from workflows.declared.definition import At, Definition, Step
from workflows.declared.models import (
    DECLARED_CLOSED, DeclaredEvent, DeclaredPolicy, DeclaredStart, DeclaredState, DeclaredStatus,
)


@dataclass(frozen=True)
class Due:
    """One step at one moment."""

    number: int  # 1-based, in the definition's order
    step: Step
    at: datetime
    not_after: datetime

    @property
    def mark(self) -> str:
        return f"{self.step.name}-{stamp_key(self.at)}"


def moment(at: At, anchors: dict[str, datetime]) -> datetime | None:
    value = anchors.get(at.anchor)
    return None if value is None else value + at.offset


def due_steps(definition: Definition, anchors: dict[str, datetime], done: list[str] | set[str]) -> list[Due]:
    """Every step whose anchor is known and that was not taken at its moment, earliest first."""
    taken, found = set(done), []
    for number, step in enumerate(definition.steps, start=1):
        at = moment(step.at, anchors)
        if at is None:
            continue
        closes = at + (step.grace or definition.grace)
        if step.until is not None and (until := moment(step.until, anchors)) is not None:
            closes = min(closes, until)
        due = Due(number, step, at, closes)
        if due.mark not in taken:
            found.append(due)
    return sorted(found, key=lambda d: (d.at, d.number))


def finish_at(definition: Definition, anchors: dict[str, datetime]) -> datetime | None:
    """The journey waits for events until its last anchor, its last step's moment and `ends` have
    all passed (a deadline can still move before it is reached)."""
    moments = list(anchors.values())
    moments += [at for step in definition.steps if (at := moment(step.at, anchors)) is not None]
    if definition.ends is not None and (ends := moment(definition.ends, anchors)) is not None:
        moments.append(ends)
    return max(moments, default=None)


def next_step(state: DeclaredState, policy: DeclaredPolicy, awaiting_since: datetime,
              now: datetime) -> PlannedStep | None:
    if state.status in DECLARED_CLOSED:
        return None
    if state.status == DeclaredStatus.AWAITING_START:
        return waiting_for_start(awaiting_since, policy.hold_early_events_for, policy.name)
    definition = policy.definition
    if definition.roster and state.members and all(m in state.exited_members for m in state.members):
        return PlannedStep(kind=StepKind.FINISH, at=now, label="every member has left: nothing more to send")
    pending = due_steps(definition, state.anchors, state.done)
    if pending:
        first = pending[0]
        return PlannedStep(kind=StepKind.STEP, at=first.at, number=first.number, not_after=first.not_after,
                           label=f"{first.step.name} ({first.step.template}) due {when(first.at)}")
    end = max(finish_at(definition, state.anchors) or now, now)
    return PlannedStep(kind=StepKind.FINISH, at=end,
                       label=f"waiting for events until {when(end)}, then complete" if end > now else "complete")


def step_at(policy: DeclaredPolicy, state: DeclaredState, number: int) -> Due:
    """The due step the plan named (the loop takes it right after planning: nothing moved)."""
    return next(due for due in due_steps(policy.definition, state.anchors, state.done) if due.number == number)


def message_key(state: DeclaredState, due: Due, member_id: str | None, channel: str) -> str:
    """`enrollment-42/welcome-20261203T090000Z`, `/m-17` per member, `/webhook` per other channel."""
    key = f"{state.journey}-{state.id}/{due.mark}"
    if member_id is not None:
        key += f"/m-{member_id}"
    return key if channel == "email" else f"{key}/{channel}"


def start(state: DeclaredState, start: DeclaredStart, now: datetime) -> None:
    """Anchors an event set before the start keep the event's moment."""
    state.anchors = {**start.anchors, **state.anchors}
    state.members = [member.member_id for member in start.roster or []]
    if state.status == DeclaredStatus.AWAITING_START:
        state.status = DeclaredStatus.ACTIVE


def apply_event(state: DeclaredState, event: DeclaredEvent, policy: DeclaredPolicy,
                now: datetime | None = None) -> EventOutcome:
    definition = policy.definition
    exits = {name: DeclaredStatus.EXITED.value for name, spec in definition.events.items() if spec.exits}
    if (screened := screen_event(state, event, DECLARED_CLOSED,
                                 {"cancel": DeclaredStatus.CANCELLED.value, **exits})) is not None:
        return screened
    key = event.dedupe_key()
    if event.kind == "cancel":
        state.status, state.ended_by = DeclaredStatus.CANCELLED, "cancel"
        return record_outcome(state, key, True)
    spec = definition.event(event.kind)
    if spec is None:
        known = ", ".join(sorted({*definition.events, "cancel"}))
        return record_outcome(state, key, False, f"{policy.name} v{policy.version} has no event {event.kind!r}: "
                                                 f"its events are {known}", field="event")
    if spec.exits:
        state.status, state.ended_by = DeclaredStatus.EXITED, event.kind
        return record_outcome(state, key, True)
    if spec.member_exits:
        if event.member_id is None:
            return record_outcome(state, key, False, f"{event.kind} names the member who leaves", field="member_id")
        if state.members and event.member_id not in state.members:
            return record_outcome(state, key, False, f"no member {event.member_id!r} on the roster",
                                  field="member_id")
        if event.member_id in state.exited_members:
            return no_change(state, event, f"{event.member_id} has already left ({state.exited_members[event.member_id]})")
        state.exited_members[event.member_id] = event.kind
        return record_outcome(state, key, True)
    assert spec.sets is not None
    if event.at is None:
        return record_outcome(state, key, False, f"{event.kind} sets {spec.sets}: give its moment in `at`", field="at")
    if state.anchors.get(spec.sets) == event.at:
        return no_change(state, event, f"{spec.sets} is already {when(event.at)}")
    state.anchors[spec.sets] = event.at
    return record_outcome(state, key, True, f"{spec.sets} is now {when(event.at)}")


def record_skip(state: DeclaredState, step: str, reason: str, now: datetime) -> None:
    state.skips.append(Skip(step=step, reason=reason, at=now))
