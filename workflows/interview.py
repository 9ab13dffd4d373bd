"""The interview journey (seed 000): one workflow per interview, id `interview-{interview_id}`.

PENDING   follow-up 1 at invited_at + 48 h, then every 24 h, at most 3, each with the slot link;
          unanswered after 14 days → EXPIRED.
SCHEDULED one reminder at scheduled_at − 24 h (skipped, with a reason, if more than 2 h late);
          at scheduled_at → COMPLETED.
Events    confirm / reschedule / cancel / complete (signals, deduplicated), applied by the pure
          rules in `interview_rules`; an event before the start is held until the start arrives.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import interview_rules as rules
    from workflows.blocks import run_plan, send, too_late, when, with_overrides
    from workflows.models import (
        CLOSED_STATUSES,
        Invitation,
        InterviewEvent,
        InterviewInput,
        InterviewState,
        InterviewStatus,
        PlannedStep,
        SendRequest,
        SendStatus,
        StepKind,
    )
    from workflows.search import publish

def workflow_id(interview_id: str) -> str:
    return f"interview-{interview_id}"


@workflow.defn
class InterviewJourney:
    @workflow.init
    def __init__(self, journey: InterviewInput) -> None:
        self.policy = journey.policy
        self.invitation: Invitation | None = None
        self.state = InterviewState(
            interview_id=journey.interview_id, status=InterviewStatus.AWAITING_START, policy=journey.policy
        )
        self.awaiting_since = workflow.now()
        self.revision = 0  # bumped by every applied event so a sleeping wait re-plans
        if journey.invitation is not None:
            self._start(journey.invitation)

    @workflow.run
    async def run(self, journey: InterviewInput) -> InterviewState:
        await run_plan(self)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    # --- events ---------------------------------------------------------------------------

    @workflow.signal
    def invite(self, invitation: Invitation) -> None:
        """The start. Arrives with the start itself, or after events that were sent early."""
        if self.invitation is None:
            self._start(invitation)

    @workflow.signal
    def event(self, event: InterviewEvent) -> None:
        outcome = rules.apply_event(self.state, event, workflow.now())
        if outcome.applied:
            self.revision += 1
        workflow.logger.info("event %s: %s", outcome.event, outcome.reason or "applied")

    @workflow.query
    def state_query(self) -> InterviewState:
        return self.state

    # --- steps ----------------------------------------------------------------------------

    def _start(self, invitation: Invitation) -> None:
        self.invitation = invitation
        self.policy = self.state.policy = with_overrides(self.policy, invitation.policy)
        rules.start(self.state, invitation, invitation.invited_at or workflow.now())
        self.revision += 1

    def _plan(self) -> PlannedStep | None:
        step = rules.next_step(self.state, self.policy, self.awaiting_since)
        self._show(step)
        return step

    async def _take(self, step: PlannedStep) -> None:
        now = workflow.now()
        if step.kind == StepKind.ABANDON:
            self.state.status = InterviewStatus.ABANDONED
        elif step.kind == StepKind.EXPIRE:
            self.state.status = InterviewStatus.EXPIRED
        elif step.kind == StepKind.COMPLETE:
            self.state.status = InterviewStatus.COMPLETED
        elif step.kind == StepKind.FOLLOWUP:
            key = rules.followup_key(self.state.interview_id, step.number)
            if too_late(step.not_after, now):
                rules.record_skip(self.state, key, "the interview expired before this follow-up", now)
                self.state.status = InterviewStatus.EXPIRED
                return
            await self._send(key, "interview_followup", step)
            self.state.followups_sent = step.number
            self.state.last_sent_at = now  # when it was due and went out, not when SMTP finished
        else:
            assert self.state.scheduled_at is not None
            key = rules.reminder_key(self.state.interview_id, self.state.scheduled_at)
            if too_late(step.not_after, now):
                late = now - step.at
                rules.record_skip(self.state, key, f"reminder moment passed {late} ago, beyond the grace", now)
                return
            result = await self._send(key, "interview_reminder", step)
            if result in (SendStatus.SENT, SendStatus.DRY_RUN):
                self.state.reminders_sent.append(key)

    async def _send(self, key: str, template: str, step: PlannedStep) -> SendStatus:
        invitation = self.invitation
        assert invitation is not None
        request = SendRequest(
            key=key,
            journey="interview",
            entity_id=self.state.interview_id,
            template=template,
            recipient=invitation.candidate,
            context={
                "candidate_name": invitation.candidate.name,
                "slot_selection_url": invitation.slot_selection_url,
                "followup_number": step.number,
                "max_followups": self.policy.max_followups,
                "scheduled_at": self.state.scheduled_at.isoformat() if self.state.scheduled_at else None,
                "time_zone": invitation.candidate.time_zone,
            },
            due_at=step.at,
            not_after=step.not_after,
        )
        return await send(request, lambda key, reason: rules.record_skip(self.state, key, reason, workflow.now()))

    def _show(self, step: PlannedStep | None) -> None:
        """Search attributes and current details, so the Web UI tells the journey's story."""
        self.state.next_step = step
        publish(
            journey="interview",
            entity_id=self.state.interview_id,
            stage=self.state.status.value,
            next_action_at=step.at if step else None,
            recipient=self.state.candidate_email,
        )
        lines = [f"**Interview {self.state.interview_id}** — {self.state.status.value}"]
        if self.state.scheduled_at:
            lines.append(f"scheduled at {when(self.state.scheduled_at)}")
        lines.append(f"follow-ups sent: {self.state.followups_sent} of {self.policy.max_followups}")
        lines.append(f"next: {step.label}" if step else "next: nothing, the journey has ended")
        for skip in self.state.skips[-3:]:
            lines.append(f"skipped {skip.step}: {skip.reason}")
        workflow.set_current_details("\n\n".join(lines))


__all__ = ["InterviewJourney", "workflow_id", "CLOSED_STATUSES"]
