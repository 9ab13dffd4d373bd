"""One workflow for every declared journey: id `{name}-{id}` (`enrollment-42`), its definition
pinned in its input (`DeclaredPolicy`: name, version, definition), so a new version of the
definition never changes a journey already running.

ACTIVE   each step at its anchor ± offset, to the recipient or to every member of the roster who has
         not left, on each of the step's channels; skipped rather than sent after its window closes.
Events   an exit event ends it; a member exit lets one member go; an anchor event sets or moves an
         anchor and the plan follows (a step taken for the old moment is taken again for the new one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from temporalio import workflow

from workflows.contracts import Channel, Recipient, SendRequest
from workflows.core.send import send
from workflows.core.shell import JourneyCore, Reply
from workflows.core.steps import PlannedStep, StepKind, too_late, unreachable
from workflows.core.timing import when
from workflows.declared import rules
from workflows.declared.models import (
    DeclaredEvent, DeclaredInput, DeclaredPolicy, DeclaredStart, DeclaredState, DeclaredStatus, Member,
)

SENDS_AT_ONCE = 50  # a roster step goes out in batches of this many members


def workflow_id(name: str, entity_id: str) -> str:
    return f"{name}-{entity_id}"


Send = Callable[[rules.Due], Awaitable[None]]


async def take(state: DeclaredState, policy: DeclaredPolicy, step: PlannedStep, now: datetime, send_step: Send) -> None:
    """Take the step the loop woke for at `now`; `send_step(due)` sends it to everyone it is for."""
    match step.kind:
        case StepKind.ABANDON:
            state.status = DeclaredStatus.ABANDONED
        case StepKind.FINISH:
            state.status = DeclaredStatus.COMPLETED
        case StepKind.STEP:
            due = rules.step_at(policy, state, step.number)
            state.done.append(due.mark)
            if too_late(due.not_after, now):
                late = "its window closed" if due.step.until is not None else "beyond the grace"
                rules.record_skip(state, f"{state.journey}-{state.id}/{due.mark}",
                                  f"{due.step.name} was due {when(due.at)}: {late}", now)
                return
            await send_step(due)
        case _:
            unreachable(step)


@workflow.defn
class DeclaredJourney:
    @workflow.init
    def __init__(self, journey: DeclaredInput) -> None:
        policy = journey.policy
        state = DeclaredState(id=journey.id, status=DeclaredStatus.AWAITING_START, journey=policy.name,
                              version=policy.version, policy=policy)
        self.core = JourneyCore(policy.name, journey.id, rules, policy, state, journey.start, journey.state,
                                journey.awaiting_since, details=self._details, recipient=self._recipient,
                                group=lambda: self._start.group if self._start else None)

    @property
    def state(self) -> DeclaredState:
        return self.core.state

    @property
    def _start(self) -> DeclaredStart | None:
        start = self.core.start
        assert start is None or isinstance(start, DeclaredStart)
        return start

    @workflow.run
    async def run(self, journey: DeclaredInput) -> DeclaredState:
        await self.core.run(self._take, self._carry)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.update
    def start_journey(self, start: DeclaredStart) -> Reply[DeclaredState]:
        return self.core.started(start)

    @workflow.update
    def apply_event(self, event: DeclaredEvent) -> Reply[DeclaredState]:
        return self.core.applied(event)

    @apply_event.validator
    def _screen(self, event: DeclaredEvent) -> None:
        self.core.screen(event)

    @workflow.signal
    def begin(self, start: DeclaredStart) -> None:
        """The start as a signal: the durable fallback when no worker answers an update in time."""
        self.core.begin(start)

    @workflow.signal
    def event(self, event: DeclaredEvent) -> None:
        self.core.apply(event)

    @workflow.query
    def state_query(self) -> DeclaredState:
        return self.state

    async def _take(self, step: PlannedStep) -> None:
        policy = self.core.policy
        assert isinstance(policy, DeclaredPolicy)
        await take(self.state, policy, step, workflow.now(), self._send_step)

    async def _send_step(self, due: rules.Due) -> None:
        start = self._start
        assert start is not None
        if start.roster is None:
            await self._send_to(start, due, None)
            return
        for first in range(0, len(start.roster), SENDS_AT_ONCE):
            batch = [m for m in start.roster[first:first + SENDS_AT_ONCE]
                     if m.member_id not in self.state.exited_members]  # a member may leave during the fan-out
            await asyncio.gather(*(self._send_to(start, due, member) for member in batch))

    async def _send_to(self, start: DeclaredStart, due: rules.Due, member: Member | None) -> None:
        recipient = member.recipient if member else start.recipient
        assert recipient is not None
        phone = member.phone if member else start.phone
        await asyncio.gather(*(self._send_on(start, due, member, recipient, phone, channel)
                               for channel in due.step.channels))

    async def _send_on(self, start: DeclaredStart, due: rules.Due, member: Member | None, recipient: Recipient, phone: str | None,
                       channel: Channel) -> None:
        state = self.state
        key = rules.message_key(state, due, member.member_id if member else None, channel)
        request = SendRequest(
            key=key, journey=state.journey, entity_id=state.id, template=due.step.template, recipient=recipient,
            category=due.step.category, channel=channel, phone=phone if channel == "webhook" else None,
            context={**start.context, **{name: at.isoformat() for name, at in state.anchors.items()},
                     "name": recipient.name, "journey": state.journey, "step": due.step.name,
                     "member_id": member.member_id if member else None},
            due_at=due.at, not_after=due.not_after, deferrable=member is None,
        )
        status = await send(request, lambda k, reason: rules.record_skip(state, k, reason, workflow.now()),
                            self.core.waiting())  # dropped if an event changes the status or the plan
        if status.delivered:
            state.delivered += 1

    def _recipient(self) -> str | None:
        start = self._start
        return str(start.recipient.email) if start is not None and start.recipient is not None else None

    def _carry(self) -> DeclaredInput:
        policy = self.core.policy
        assert isinstance(policy, DeclaredPolicy)
        return DeclaredInput(id=self.state.id, policy=policy, start=self._start, state=self.state,
                             awaiting_since=self.core.awaiting_since)

    def _details(self) -> list[str]:
        state = self.state
        lines = [f"**{state.journey} {state.id}** (version {state.version}) — {state.status.value}"]
        if state.anchors:
            lines.append(", ".join(f"{name}: {when(at)}" for name, at in state.anchors.items()))
        if state.members:
            lines.append(f"members: {len(state.members)}, left: {len(state.exited_members)}")
        lines.append(f"messages delivered: {state.delivered}")
        if state.ended_by:
            lines.append(f"ended by: {state.ended_by}")
        return lines
