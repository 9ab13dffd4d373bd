"""The tutor rescheduling journey (seed 004): one workflow per tutor, id `tutor-{tutor_id}`.

WATCHING  every `rescheduled` event is counted in two sliding windows; ≥ 3 in 7 days → one
          supportive email to the tutor (CHECKIN), ≥ 6 in 14 days → the manager is told
          (ESCALATE); each once per episode, not again until the count in its window falls below
          its threshold (EXPIRE: the window clears, the alert re-arms; also when the oldest kept
          reschedule leaves every window and is dropped from the state).
Events     rescheduled (session_id, at), close (the tutor left) / cancel: the journey's only ends.
          It lives for years: the history budget continues it as new with its state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from temporalio import workflow

from workflows.contracts import Recipient, SendRequest, SendStatus
from workflows.core.send import send
from workflows.core.shell import JourneyCore, Reply
from workflows.core.steps import PlannedStep, StepKind, too_late, unreachable
from workflows.tutor import rules
from workflows.tutor.models import Tutor, TutorEvent, TutorInput, TutorPolicy, TutorState, TutorStatus

TEMPLATES = {"supportive": "tutor_supportive", "manager": "tutor_manager_alert"}


def workflow_id(tutor_id: str) -> str:
    return f"tutor-{tutor_id}"


async def take(state: TutorState, step: PlannedStep, policy: TutorPolicy, now: datetime,
               send: Callable[[rules.Rule, str, PlannedStep, int], Awaitable[SendStatus]]) -> None:
    """Take the step the loop woke for at `now`; `send(rule, key, step, count)` is the send step (the
    rules' tests pass one on a fake clock, with events arriving while it runs)."""
    match step.kind:
        case StepKind.ABANDON:
            state.status = TutorStatus.ABANDONED
        case StepKind.EXPIRE:
            rules.settle(state, policy, now)
        case StepKind.CHECKIN | StepKind.ESCALATE:
            rule = rules.rule_for(step, policy)
            key, counted = rules.open_alert(state, rule, step.at)
            if rules.alerted_before(state, key):
                return  # a late report joined this episode to one already alerted: it was told once
            if too_late(step.not_after, now):
                rules.record_skip(state, key, f"the {rule.name} window cleared {now - step.not_after} ago, "
                                              "before the alert could go out", now)
                return
            status = await send(rule, key, step, counted)
            rules.record_alert(state, rule, key, now, counted, status.delivered)
        case _:
            unreachable(step)


@workflow.defn
class TutorJourney:
    @workflow.init
    def __init__(self, journey: TutorInput) -> None:
        state = TutorState(tutor_id=journey.tutor_id, status=TutorStatus.AWAITING_START, policy=journey.policy)
        self.core = JourneyCore("tutor", journey.tutor_id, rules, journey.policy, state, journey.tutor,
                                journey.state, journey.awaiting_since, details=self._details,
                                recipient=lambda: self.state.tutor_email)

    @property
    def state(self) -> TutorState:
        return self.core.state

    @workflow.run
    async def run(self, journey: TutorInput) -> TutorState:
        await self.core.run(self._take, self._carry)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.update
    def start_journey(self, tutor: Tutor) -> Reply[TutorState]:
        return self.core.started(tutor)

    @workflow.update
    def apply_event(self, event: TutorEvent) -> Reply[TutorState]:
        return self.core.applied(event)

    @apply_event.validator
    def _screen(self, event: TutorEvent) -> None:
        self.core.screen(event)

    @workflow.signal
    def begin(self, tutor: Tutor) -> None:
        """The start as a signal: the durable fallback when no worker answers an update in time."""
        self.core.begin(tutor)

    @workflow.signal
    def event(self, event: TutorEvent) -> None:
        self.core.apply(event)

    @workflow.query
    def state_query(self) -> TutorState:
        return self.state

    async def _take(self, step: PlannedStep) -> None:
        await take(self.state, step, self.core.policy, workflow.now(), self._send)  # type: ignore[arg-type]

    async def _send(self, rule: rules.Rule, key: str, step: PlannedStep, counted: int) -> SendStatus:
        state, tutor = self.state, self.core.start
        assert isinstance(tutor, Tutor)
        to_tutor = rule.name == "supportive"
        recipient = tutor.tutor if to_tutor else Recipient(email=tutor.manager_email,
                                                           name=tutor.manager_name or "Manager")
        request = SendRequest(
            key=key, journey="tutor", entity_id=state.tutor_id, template=TEMPLATES[rule.name], recipient=recipient,
            context={
                "name": recipient.name, "tutor_name": tutor.tutor.name, "tutor_email": str(tutor.tutor.email),
                "count": counted, "threshold": rule.threshold, "window": rules.window_text(rule.window),
                "reschedules": [{"session_id": r.session_id, "at": r.at.isoformat()}
                                for r in rules.counted_reschedules(state, rule.window, step.at)[-20:]],
                "support_url": tutor.support_url,
                "time_zone": tutor.tutor.time_zone if to_tutor else None,
            },
            due_at=step.at, not_after=step.not_after,
        )
        return await send(request, lambda k, reason: rules.record_skip(state, k, reason, workflow.now()), self.core.waiting(plan_matters=False))

    def _carry(self) -> TutorInput:
        return TutorInput(tutor_id=self.state.tutor_id, tutor=self.core.start, policy=self.core.policy,
                          state=self.state, awaiting_since=self.core.awaiting_since)

    def _details(self) -> list[str]:
        state, policy = self.state, self.core.policy
        lines = [f"**Tutor {state.tutor_id}** ({state.tutor_email or 'no start yet'}) — {state.status.value}"]
        lines.append(" · ".join(f"{rule.name}: {state.counts.get(rule.name, 0)} of {rule.threshold} in "
                                f"{rules.window_text(rule.window)}"
                                + (" (alerted, waiting for the window to clear)" if getattr(state, rule.name) else "")
                                for rule in rules.alert_rules(policy)))
        lines.append(f"reschedules: {state.reschedules_total} in all, alerts: {len(state.alerts)}")
        return lines
