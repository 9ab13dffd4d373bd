"""The interview journey (seed 000): one workflow per interview, id `interview-{interview_id}`.

PENDING   follow-up 1 at invited_at + 48 h, then every 24 h, at most 3, each with the slot link;
          unanswered after 14 days → EXPIRED.
SCHEDULED one reminder at scheduled_at − 24 h (skipped, with a reason, if more than 2 h late);
          at scheduled_at → COMPLETED.
Events    confirm / reschedule / cancel / complete, as Updates (refused ones never enter history)
          or, from older callers, signals; an event before the start is held until it arrives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from temporalio import workflow

from workflows.contracts import SendRequest, SendStatus
from workflows.core.send import send
from workflows.core.shell import JourneyCore, Reply
from workflows.core.steps import PlannedStep, StepKind, too_late, unreachable
from workflows.core.timing import when
from workflows.interview import rules
from workflows.interview.models import (
    InterviewEvent,
    InterviewInput,
    InterviewState,
    InterviewStatus,
    Invitation,
)


def workflow_id(interview_id: str) -> str:
    return f"interview-{interview_id}"


async def take(state: InterviewState, step: PlannedStep, now: datetime,
               send: Callable[[str, str, PlannedStep], Awaitable[SendStatus]]) -> None:
    """Take the step the loop woke for at `now`; `send(key, template, step)` is the send step (the
    rules' tests pass one on a fake clock, with events arriving while it runs)."""
    match step.kind:
        case StepKind.ABANDON:
            state.status = InterviewStatus.ABANDONED
        case StepKind.EXPIRE:
            state.status = InterviewStatus.EXPIRED
        case StepKind.COMPLETE:
            state.status = InterviewStatus.COMPLETED
        case StepKind.FOLLOWUP:
            key = rules.followup_key(state.interview_id, step.number)
            if too_late(step.not_after, now):
                rules.record_skip(state, key, "the interview expired before this follow-up", now)
                state.status = InterviewStatus.EXPIRED
                return
            await send(key, "interview_followup", step)
            state.followups_sent = step.number
            state.last_sent_at = now  # when it was due and went out, not when SMTP finished
        case StepKind.REMINDER:
            assert state.scheduled_at is not None
            key = rules.reminder_key(state.interview_id, state.scheduled_at)
            if too_late(step.not_after, now):
                rules.record_skip(state, key, f"reminder moment passed {now - step.at} ago, beyond the grace", now)
                return
            if (await send(key, "interview_reminder", step)).delivered:
                state.reminders_sent.append(key)
        case _:
            unreachable(step)


@workflow.defn
class InterviewJourney:
    @workflow.init
    def __init__(self, journey: InterviewInput) -> None:
        state = InterviewState(interview_id=journey.interview_id, status=InterviewStatus.AWAITING_START,
                               policy=journey.policy)
        self.core = JourneyCore("interview", journey.interview_id, rules, journey.policy, state,
                                journey.invitation, journey.state, journey.awaiting_since,
                                details=self._details, recipient=lambda: self.state.candidate_email)

    @property
    def state(self) -> InterviewState:
        return self.core.state

    @workflow.run
    async def run(self, journey: InterviewInput) -> InterviewState:
        await self.core.run(self._take, self._carry)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    # --- events ---------------------------------------------------------------------------

    @workflow.update
    def start_journey(self, invitation: Invitation) -> Reply[InterviewState]:
        return self.core.started(invitation)

    @workflow.update
    def apply_event(self, event: InterviewEvent) -> Reply[InterviewState]:
        return self.core.applied(event)

    @apply_event.validator
    def _screen(self, event: InterviewEvent) -> None:
        self.core.screen(event)

    @workflow.signal
    def invite(self, invitation: Invitation) -> None:
        """The start as a signal: the durable fallback when no worker answers an update in time."""
        self.core.begin(invitation)

    @workflow.signal
    def event(self, event: InterviewEvent) -> None:
        self.core.apply(event)

    @workflow.query
    def state_query(self) -> InterviewState:
        return self.state

    # --- steps ----------------------------------------------------------------------------

    async def _take(self, step: PlannedStep) -> None:
        await take(self.state, step, workflow.now(), self._send)

    async def _send(self, key: str, template: str, step: PlannedStep) -> SendStatus:
        invitation = self.core.start
        assert isinstance(invitation, Invitation)
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
                "max_followups": self.core.policy.max_followups,
                "scheduled_at": self.state.scheduled_at.isoformat() if self.state.scheduled_at else None,
                "time_zone": invitation.candidate.time_zone,
            },
            due_at=step.at,
            not_after=step.not_after,
        )
        return await send(request, lambda key, reason: rules.record_skip(self.state, key, reason, workflow.now()), self.core.waiting())

    def _carry(self) -> InterviewInput:
        return InterviewInput(interview_id=self.state.interview_id, invitation=self.core.start,
                              policy=self.core.policy, state=self.state, awaiting_since=self.core.awaiting_since)

    def _details(self) -> list[str]:
        state = self.state
        lines = [f"**Interview {state.interview_id}** — {state.status.value}"]
        if state.scheduled_at:
            lines.append(f"scheduled at {when(state.scheduled_at)}")
        lines.append(f"follow-ups sent: {state.followups_sent} of {self.core.policy.max_followups}")
        return lines
