"""The lead nurture journey (seed 003): one workflow per lead, id `lead-{lead_id}`.

NURTURING  email n at started_at + steps[n].after (day 0, day 3, day 7 by default), each skipped
           rather than sent more than `step_grace` late; after the last one → FINISHED.
Events     converted (with a reference) / replied / cancel stop it at once; an unsubscribe or a
           hard bounce stops it at the next step (→ SUPPRESSED). When it ends, the outcome is
           written to the `leads` table for campaign stats.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.contracts import RECORD_LEAD_END, MessageCategory, SendRequest, SendStatus
from workflows.core.send import send
from workflows.core.shell import JourneyCore, Reply
from workflows.core.steps import PlannedStep, StepKind, too_late, unreachable
from workflows.lead import rules
from workflows.lead.models import Lead, LeadEvent, LeadInput, LeadState, LeadStatus


def workflow_id(lead_id: str) -> str:
    return f"lead-{lead_id}"


async def take(state: LeadState, step: PlannedStep, now: datetime,
               send: Callable[[str, PlannedStep], Awaitable[SendStatus]]) -> None:
    """Take the step the loop woke for at `now`; `send(key, step)` is the send step (the rules'
    tests pass one on a fake clock, with events arriving while it runs)."""
    match step.kind:
        case StepKind.ABANDON:
            state.status = LeadStatus.ABANDONED
        case StepKind.FINISH:
            state.status = LeadStatus.FINISHED
        case StepKind.STEP:
            key = rules.step_key(state.lead_id, step.number)
            state.steps_done = step.number
            if too_late(step.not_after, now):
                rules.record_skip(state, key, f"step moment passed {now - step.at} ago, beyond the grace", now)
                return
            if (await send(key, step)).delivered:
                state.sent.append(key)
        case _:
            unreachable(step)


@workflow.defn
class LeadJourney:
    @workflow.init
    def __init__(self, journey: LeadInput) -> None:
        state = LeadState(lead_id=journey.lead_id, status=LeadStatus.AWAITING_START, policy=journey.policy)
        self.core = JourneyCore("lead", journey.lead_id, rules, journey.policy, state, journey.lead, journey.state,
                                journey.awaiting_since, details=self._details,
                                recipient=lambda: self.state.contact_email, group=lambda: self.state.campaign,
                                facts=lambda: ["lead.converted"] if self.state.status is LeadStatus.CONVERTED else [])

    @property
    def state(self) -> LeadState:
        return self.core.state

    @workflow.run
    async def run(self, journey: LeadInput) -> LeadState:
        await self.core.run(self._take, self._carry)
        if self.core.start is not None:
            await workflow.execute_activity(
                RECORD_LEAD_END, self.state, start_to_close_timeout=timedelta(seconds=30),
                summary=f"record {self.state.status.value}",
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.update
    def start_journey(self, lead: Lead) -> Reply[LeadState]:
        return self.core.started(lead)

    @workflow.update
    def apply_event(self, event: LeadEvent) -> Reply[LeadState]:
        return self.core.applied(event)

    @apply_event.validator
    def _screen(self, event: LeadEvent) -> None:
        self.core.screen(event)

    @workflow.signal
    def begin(self, lead: Lead) -> None:
        """The start as a signal: the durable fallback when no worker answers an update in time."""
        self.core.begin(lead)

    @workflow.signal
    def event(self, event: LeadEvent) -> None:
        self.core.apply(event)

    @workflow.query
    def state_query(self) -> LeadState:
        return self.state

    async def _take(self, step: PlannedStep) -> None:
        await take(self.state, step, workflow.now(), self._send)

    async def _send(self, key: str, step: PlannedStep) -> SendStatus:
        state, lead, policy = self.state, self.core.start, self.core.policy
        assert isinstance(lead, Lead)
        request = SendRequest(
            key=key, journey="lead", entity_id=state.lead_id, template=policy.steps[step.number - 1].template,
            recipient=lead.contact, category=MessageCategory.MARKETING,
            context={"name": lead.contact.name, "company": lead.company, "offer_url": lead.offer_url,
                     "campaign": lead.campaign, "step": step.number, "steps": len(policy.steps)},
            due_at=step.at, not_after=step.not_after,
        )
        return await send(request, lambda k, reason: rules.record_skip(state, k, reason, workflow.now()), self.core.waiting())

    def _carry(self) -> LeadInput:
        return LeadInput(lead_id=self.state.lead_id, lead=self.core.start, policy=self.core.policy,
                         state=self.state, awaiting_since=self.core.awaiting_since)

    def _details(self) -> list[str]:
        state = self.state
        lines = [f"**Lead {state.lead_id}** ({state.campaign or 'no campaign yet'}) — {state.status.value}",
                 f"emails sent: {len(state.sent)} of {len(self.core.policy.steps)}"]
        if state.conversion_reference:
            lines.append(f"converted: {state.conversion_reference}")
        return lines
