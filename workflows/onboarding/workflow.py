"""The approval onboarding saga (seed 003, "CTA approval"): one workflow per approval, id
`onboarding-{onboarding_id}`, started when an admin approves (`POST /v1/onboardings`).

ONBOARDING  credentials (a temporary password as a one-time secret in PostgreSQL: only its id is
            here) → account (signed `account.create` webhook, one idempotency key on every retry;
            the backend answers the user id) → welcome email with the credentials (the send step
            reads the secret at render time and deletes it once sent) → WhatsApp welcome (webhook
            channel) → welcome call (an `appointment` journey, a child left running) → CRM entry
            (signed `crm.log`) → the lead marked converted (`lead-{lead_id}`) → the admin's report.
UNDOING     the account refused, the credentials undeliverable, or `cancel`: revoke an account that
            exists or may (signed `account.revoke`), then the admin's report of what was done,
            what was not and what was undone → FAILED / CANCELLED.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, WorkflowAlreadyStartedError

from workflows.appointment.models import AppointmentInput, Booking
from workflows.appointment.workflow import AppointmentJourney
from workflows.contracts import SendRequest, SendStatus
from workflows.core import search
from workflows.core.send import send
from workflows.core.shell import JourneyCore, Reply
from workflows.core.steps import PlannedStep, StepKind, unreachable
from workflows.lead.models import Converted
from workflows.lead.workflow import LeadJourney
from workflows.onboarding import rules
from workflows.onboarding.models import (
    ACCOUNT_REFUSED, BACKEND_MISSING, CREATE_ACCOUNT, FORGET_SECRET, ISSUE_PASSWORD, LOG_TO_CRM, REVOKE_ACCOUNT,
    AccountRequest, Approval, CrmEntry, OnboardingEvent, OnboardingInput, OnboardingState, OnboardingStatus, SagaStep,
)

LOCAL = timedelta(seconds=30)  # PostgreSQL only: retried until it answers
BACKEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(minutes=10))


def workflow_id(onboarding_id: str) -> str:
    return f"onboarding-{onboarding_id}"


@workflow.defn
class OnboardingJourney:
    @workflow.init
    def __init__(self, journey: OnboardingInput) -> None:
        state = OnboardingState(onboarding_id=journey.onboarding_id, status=OnboardingStatus.AWAITING_START,
                                policy=journey.policy)
        self.core = JourneyCore("onboarding", journey.onboarding_id, rules, journey.policy, state,
                                journey.approval, journey.state, journey.awaiting_since,
                                details=self._details, recipient=lambda: self.state.student_email)

    @property
    def state(self) -> OnboardingState:
        return self.core.state

    @property
    def approval(self) -> Approval:
        assert isinstance(self.core.start, Approval)
        return self.core.start

    @workflow.run
    async def run(self, journey: OnboardingInput) -> OnboardingState:
        await self.core.run(self._take, self._carry)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.update
    def start_journey(self, approval: Approval) -> Reply[OnboardingState]:
        return self.core.started(approval)

    @workflow.update
    def apply_event(self, event: OnboardingEvent) -> Reply[OnboardingState]:
        return self.core.applied(event)

    @apply_event.validator
    def _screen(self, event: OnboardingEvent) -> None:
        self.core.screen(event)

    @workflow.signal
    def begin(self, approval: Approval) -> None:
        """The start as a signal: the durable fallback when no worker answers an update in time."""
        self.core.begin(approval)

    @workflow.signal
    def event(self, event: OnboardingEvent) -> None:
        self.core.apply(event)

    @workflow.query
    def state_query(self) -> OnboardingState:
        return self.state

    # --- the steps ------------------------------------------------------------------------------

    async def _take(self, planned: PlannedStep) -> None:
        if planned.kind == StepKind.ABANDON:
            self.state.status = OnboardingStatus.ABANDONED
            return
        step = rules.saga_step(planned)
        match step:
            case SagaStep.CREDENTIALS:
                await self._credentials()
            case SagaStep.ACCOUNT:
                await self._account()
            case SagaStep.WELCOME_EMAIL:
                await self._welcome_email(planned)
            case SagaStep.WHATSAPP:
                await self._whatsapp(planned)
            case SagaStep.WELCOME_CALL:
                await self._welcome_call()
            case SagaStep.CRM:
                await self._crm()
            case SagaStep.LEAD:
                await self._lead()
            case SagaStep.REVOKE:
                await self._revoke()
            case SagaStep.REPORT:
                await self._report(planned)
            case _:
                unreachable(step)

    def _record(self, step: SagaStep, outcome: str, detail: str = "") -> None:
        rules.record(self.state, step, outcome, detail, workflow.now())

    async def _credentials(self) -> None:
        ref = rules.secret_ref(self.state.onboarding_id)
        await workflow.execute_activity(ISSUE_PASSWORD, ref, start_to_close_timeout=LOCAL,
                                        summary="issue a temporary password (kept as a one-time secret)")
        self.state.secret_ref = ref
        self._record(SagaStep.CREDENTIALS, "done", f"kept as one-time secret {ref}")

    async def _account(self) -> None:
        state, student = self.state, self.approval.student
        request = AccountRequest(key=rules.account_key(state.onboarding_id), onboarding_id=state.onboarding_id,
                                 email=str(student.email), name=student.name, phone=student.phone,
                                 secret_ref=state.secret_ref)
        try:
            user_id = await workflow.execute_activity(
                CREATE_ACCOUNT, request, result_type=str, start_to_close_timeout=LOCAL,
                schedule_to_close_timeout=self.core.policy.backend_give_up_after, retry_policy=BACKEND_RETRY,
                summary=f"account.create {request.key}")
        except ActivityError as err:
            cause = err.cause
            # A refusal created nothing; giving up without an answer may have left an account behind.
            state.account_unsure = not (isinstance(cause, ApplicationError)
                                        and cause.type in (ACCOUNT_REFUSED, BACKEND_MISSING))
            self._record(SagaStep.ACCOUNT, "failed", _reason(err))
            return
        state.user_id = user_id
        self._record(SagaStep.ACCOUNT, "done", f"user {user_id}")

    async def _send(self, request: SendRequest) -> tuple[SendStatus, str]:
        skipped: list[str] = []

        def on_skip(key: str, reason: str) -> None:
            skipped.append(reason)
            rules.record_skip(self.state, key, reason, workflow.now())

        status = await send(request, on_skip)
        return status, (skipped[-1] if skipped else status.value)

    async def _welcome_email(self, planned: PlannedStep) -> None:
        state, approval = self.state, self.approval
        status, why = await self._send(SendRequest(
            key=rules.welcome_key(state.onboarding_id), journey="onboarding", entity_id=state.onboarding_id,
            template="onboarding_welcome", recipient=approval.student.recipient(),
            context={"student_name": approval.student.name, "login_email": str(approval.student.email),
                     "login_url": approval.login_url, "user_id": state.user_id},
            secret_ref=state.secret_ref, due_at=planned.at))
        await self._forget()  # used or undeliverable: nobody needs the password again
        if status.delivered:
            self._record(SagaStep.WELCOME_EMAIL, "done", f"to {approval.student.email}")
        else:
            self._record(SagaStep.WELCOME_EMAIL, "failed", f"the credentials were not delivered: {why}")

    async def _whatsapp(self, planned: PlannedStep) -> None:
        state, student = self.state, self.approval.student
        status, why = await self._send(SendRequest(
            key=f"{rules.welcome_key(state.onboarding_id)}/webhook", journey="onboarding",
            entity_id=state.onboarding_id, template="onboarding_whatsapp", recipient=student.recipient(),
            context={"student_name": student.name, "login_url": self.approval.login_url},
            channel="webhook", phone=student.phone, due_at=planned.at))
        self._record(SagaStep.WHATSAPP, "done" if status.delivered else "failed",
                     f"to {student.phone}" if status.delivered else why)

    async def _welcome_call(self) -> None:
        """A child journey left running when the saga ends (ABANDON): it reminds the student before
        the call for as long as the call is booked, independently of this saga."""
        approval, state = self.approval, self.state
        call = approval.welcome_call
        assert call is not None
        appointment_id = rules.welcome_call_id(state.onboarding_id)
        booking = Booking(appointment_id=appointment_id, patient=approval.student.recipient(),
                          scheduled_at=call.scheduled_at, doctor=call.host, location=call.location)
        try:
            await workflow.start_child_workflow(
                AppointmentJourney.run, AppointmentInput(appointment_id=appointment_id, booking=booking),
                id=f"appointment-{appointment_id}", task_queue=workflow.info().task_queue,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=search.at_start("appointment", appointment_id),
                static_summary=f"Welcome call {appointment_id}: {approval.student.name} with {call.host}")
        except WorkflowAlreadyStartedError:
            pass  # booked before (a journey of that id exists): the same call, not a second one
        state.welcome_call_id = appointment_id
        self._record(SagaStep.WELCOME_CALL, "done", f"appointment-{appointment_id} with {call.host}")

    async def _crm(self) -> None:
        state, approval = self.state, self.approval
        entry = CrmEntry(key=rules.crm_key(state.onboarding_id), onboarding_id=state.onboarding_id,
                         email=str(approval.student.email), user_id=state.user_id,
                         approved_by=str(approval.approved_by.email),
                         steps=[f"{o.step.value}: {o.outcome}" for o in state.outcomes])
        try:
            await workflow.execute_activity(
                LOG_TO_CRM, entry, start_to_close_timeout=LOCAL,
                schedule_to_close_timeout=self.core.policy.backend_give_up_after, retry_policy=BACKEND_RETRY,
                summary=f"crm.log {entry.key}")
        except ActivityError as err:
            self._record(SagaStep.CRM, "failed", _reason(err))
            return
        self._record(SagaStep.CRM, "done")

    async def _lead(self) -> None:
        """`converted` to the lead's journey, under an event_id of this saga: applied once."""
        lead_id = self.approval.lead_id
        assert lead_id is not None
        event = Converted(reference=f"onboarding-{self.state.onboarding_id}",
                          event_id=rules.converted_event_id(self.state.onboarding_id))
        try:
            await workflow.get_external_workflow_handle(f"lead-{lead_id}").signal(LeadJourney.event, event)
        except FailureError as err:  # no running journey for that lead (never started, or ended)
            self._record(SagaStep.LEAD, "failed", f"lead-{lead_id} could not be told: {err.message or err}")
            return
        self._record(SagaStep.LEAD, "done", f"lead-{lead_id}")

    async def _revoke(self) -> None:
        state, student = self.state, self.approval.student
        request = AccountRequest(key=rules.revoke_key(state.onboarding_id), onboarding_id=state.onboarding_id,
                                 email=str(student.email), name=student.name, user_id=state.user_id,
                                 account_key=rules.account_key(state.onboarding_id),
                                 reason=state.failure or state.cancel_reason)
        try:
            await workflow.execute_activity(
                REVOKE_ACCOUNT, request, start_to_close_timeout=LOCAL,
                schedule_to_close_timeout=self.core.policy.backend_give_up_after, retry_policy=BACKEND_RETRY,
                summary=f"account.revoke {request.key}")
        except ActivityError as err:
            self._record(SagaStep.REVOKE, "failed", f"the account is still there, revoke it by hand: {_reason(err)}")
            return
        self._record(SagaStep.REVOKE, "done", f"user {state.user_id}" if state.user_id
                     else "whatever account.create may have made")

    async def _report(self, planned: PlannedStep) -> None:
        state, approval = self.state, self.approval
        await self._forget()
        status, why = await self._send(SendRequest(
            key=rules.report_key(state.onboarding_id), journey="onboarding", entity_id=state.onboarding_id,
            template="onboarding_admin_report", recipient=approval.approved_by.recipient(),
            context={"admin_name": approval.approved_by.name, "student_name": approval.student.name,
                     "student_email": str(approval.student.email), "onboarding_id": state.onboarding_id,
                     **rules.report(state)},
            due_at=planned.at))
        self._record(SagaStep.REPORT, "done" if status.delivered else "failed",
                     f"to {approval.approved_by.email}" if status.delivered else why)
        state.status = rules.final_status(state)

    async def _forget(self) -> None:
        if self.state.secret_ref is not None:
            await workflow.execute_activity(FORGET_SECRET, self.state.secret_ref, start_to_close_timeout=LOCAL,
                                            summary="delete the one-time secret")
            self.state.secret_ref = None

    def _carry(self) -> OnboardingInput:
        return OnboardingInput(onboarding_id=self.state.onboarding_id, approval=self.core.start,
                               policy=self.core.policy, state=self.state, awaiting_since=self.core.awaiting_since)

    def _details(self) -> list[str]:
        state = self.state
        lines = [f"**Onboarding {state.onboarding_id}** ({state.student_email or 'no approval yet'}) — "
                 f"{state.status.value}"]
        lines += [f"{o.step.value}: {o.outcome}{f' ({o.detail})' if o.detail else ''}" for o in state.outcomes[-6:]]
        if state.failure:
            lines.append(f"failed: {state.failure}")
        return lines


def _reason(err: ActivityError) -> str:
    cause = err.cause
    return str(cause.message if isinstance(cause, FailureError) else err)
