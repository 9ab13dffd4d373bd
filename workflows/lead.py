"""The lead nurture journey (seed 003): one workflow per lead, id `lead-{lead_id}`.

NURTURING  email n at started_at + steps[n].after (day 0, day 3, day 7 by default), each skipped
           rather than sent more than `step_grace` late; after the last one → FINISHED.
Events     converted (with a reference) / replied / cancel stop it at once; an unsubscribe or a
           hard bounce stops it at the next step (→ SUPPRESSED). When it ends, the outcome is
           written to the `leads` table for campaign stats.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.leads import LeadActivities
    from workflows import lead_rules as rules
    from workflows.blocks import run_plan, send, too_late, with_overrides
    from workflows.models import (
        Lead,
        LeadEvent,
        LeadInput,
        LeadState,
        LeadStatus,
        MessageCategory,
        PlannedStep,
        SendRequest,
        StepKind,
    )
    from workflows.search import publish


def workflow_id(lead_id: str) -> str:
    return f"lead-{lead_id}"


@workflow.defn
class LeadJourney:
    @workflow.init
    def __init__(self, journey: LeadInput) -> None:
        self.policy = journey.policy
        self.lead: Lead | None = None
        self.state = LeadState(lead_id=journey.lead_id, status=LeadStatus.AWAITING_START, policy=journey.policy)
        self.awaiting_since = workflow.now()
        self.revision = 0
        if journey.lead is not None:
            self._start(journey.lead)

    @workflow.run
    async def run(self, journey: LeadInput) -> LeadState:
        await run_plan(self)
        if self.lead is not None:
            await workflow.execute_activity_method(
                LeadActivities.record_lead_end, self.state, start_to_close_timeout=timedelta(seconds=30),
                summary=f"record {self.state.status.value}",
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.signal
    def begin(self, lead: Lead) -> None:
        if self.lead is None:
            self._start(lead)

    @workflow.signal
    def event(self, event: LeadEvent) -> None:
        if rules.apply_event(self.state, event).applied:
            self.revision += 1

    @workflow.query
    def state_query(self) -> LeadState:
        return self.state

    def _start(self, lead: Lead) -> None:
        self.lead = lead
        self.policy = self.state.policy = with_overrides(self.policy, lead.policy)
        rules.start(self.state, lead, lead.started_at or workflow.now())
        self.revision += 1

    def _plan(self) -> PlannedStep | None:
        step = rules.next_step(self.state, self.policy, self.awaiting_since, workflow.now())
        self._show(step)
        return step

    async def _take(self, step: PlannedStep) -> None:
        now = workflow.now()
        if step.kind == StepKind.ABANDON:
            self.state.status = LeadStatus.ABANDONED
            return
        if step.kind == StepKind.FINISH:
            self.state.status = LeadStatus.FINISHED
            return
        key = rules.step_key(self.state.lead_id, step.number)
        self.state.steps_done = step.number
        if too_late(step.not_after, now):
            rules.record_skip(self.state, key, f"step moment passed {now - step.at} ago, beyond the grace", now)
            return
        lead = self.lead
        assert lead is not None
        template = self.policy.steps[step.number - 1].template
        request = SendRequest(
            key=key, journey="lead", entity_id=self.state.lead_id, template=template, recipient=lead.contact,
            category=MessageCategory.MARKETING,
            context={"name": lead.contact.name, "company": lead.company, "offer_url": lead.offer_url,
                     "campaign": lead.campaign, "step": step.number, "steps": len(self.policy.steps)},
            due_at=step.at, not_after=step.not_after,
        )
        status = await send(request, lambda k, reason: rules.record_skip(self.state, k, reason, workflow.now()))
        if status.value in ("sent", "dry_run"):
            self.state.sent.append(key)

    def _show(self, step: PlannedStep | None) -> None:
        self.state.next_step = step
        publish(journey="lead", entity_id=self.state.lead_id, stage=self.state.status.value,
                next_action_at=step.at if step else None, recipient=self.state.contact_email,
                group=self.state.campaign)
        lines = [f"**Lead {self.state.lead_id}** ({self.state.campaign or 'no campaign yet'}) — "
                 f"{self.state.status.value}"]
        lines.append(f"emails sent: {len(self.state.sent)} of {len(self.policy.steps)}")
        if self.state.conversion_reference:
            lines.append(f"converted: {self.state.conversion_reference}")
        lines.append(f"next: {step.label}" if step else "next: nothing, the journey has ended")
        for skip in self.state.skips[-3:]:
            lines.append(f"skipped {skip.step}: {skip.reason}")
        workflow.set_current_details("\n\n".join(lines))


__all__ = ["LeadJourney", "workflow_id"]
