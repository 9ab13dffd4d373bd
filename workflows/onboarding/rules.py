"""Seed 003's "CTA approval" as a saga, in pure functions: the steps an approval asks for, in
order, each taken once at once (after the policy's undo window); a permanent failure of a
critical step (the password, the account, the credentials' delivery) or a `cancel` turns the
saga to undoing: revoke an account that exists (or may), then tell the admin what was done and
what was not. The admin is told in every case: the report is the saga's last step."""

from __future__ import annotations

from datetime import datetime

from workflows.core.events import no_change, record_outcome, record_skip, screen_event
from workflows.core.steps import EventOutcome, PlannedStep, StepKind, unreachable, waiting_for_start
from workflows.core.timing import when
from workflows.onboarding.models import (
    CRITICAL, ONBOARDING_CLOSED, Approval, Cancel, OnboardingEvent, OnboardingPolicy, OnboardingState,
    OnboardingStatus, Proceed, SagaStep, StepOutcome,
)

__all__ = ["apply_event", "next_step", "record_skip", "report", "saga_step", "start"]

STEPS = list(SagaStep)  # a planned step's `number` is its place here, from 1
ENDED_BY = {"cancel": OnboardingStatus.CANCELLED.value}
LABELS = {
    SagaStep.CREDENTIALS: "issue a temporary password",
    SagaStep.ACCOUNT: "create the account",
    SagaStep.WELCOME_EMAIL: "email the credentials",
    SagaStep.WHATSAPP: "WhatsApp welcome",
    SagaStep.WELCOME_CALL: "book the welcome call",
    SagaStep.CRM: "log to the CRM",
    SagaStep.LEAD: "mark the lead converted",
    SagaStep.REVOKE: "revoke the account",
    SagaStep.REPORT: "tell the admin",
}


# --- keys: each step's idempotency key, the same on every retry and run ----------------------

def secret_ref(onboarding_id: str) -> str:
    return f"onboarding-{onboarding_id}/password"


def account_key(onboarding_id: str) -> str:
    return f"onboarding-{onboarding_id}/account"


def revoke_key(onboarding_id: str) -> str:
    return f"onboarding-{onboarding_id}/revoke"


def welcome_key(onboarding_id: str) -> str:
    return f"onboarding-{onboarding_id}/welcome"


def crm_key(onboarding_id: str) -> str:
    return f"onboarding-{onboarding_id}/crm"


def report_key(onboarding_id: str) -> str:
    return f"onboarding-{onboarding_id}/admin-report"


def converted_event_id(onboarding_id: str) -> str:
    """The `event_id` of the lead's `converted`: a repeat (a retry, a replay) applies once."""
    return f"onboarding-{onboarding_id}/converted"


def welcome_call_id(onboarding_id: str) -> str:
    """The appointment journey of the welcome call: `appointment-welcome-{onboarding_id}`."""
    return f"welcome-{onboarding_id}"


# --- the plan -------------------------------------------------------------------------------

def saga_step(planned: PlannedStep) -> SagaStep:
    return STEPS[planned.number - 1]


def taken(state: OnboardingState, step: SagaStep) -> bool:
    return any(outcome.step == step for outcome in state.outcomes)


def _planned(step: SagaStep, at: datetime) -> PlannedStep:
    return PlannedStep(kind=StepKind.STEP, at=at, number=STEPS.index(step) + 1,
                       label=f"{step.value}: {LABELS[step]}, {when(at)}")


def next_step(state: OnboardingState, policy: OnboardingPolicy, awaiting_since: datetime,
              now: datetime) -> PlannedStep | None:
    if state.status in ONBOARDING_CLOSED:
        return None
    if state.status == OnboardingStatus.AWAITING_START:
        return waiting_for_start(awaiting_since, policy.hold_early_events_for, "approval")
    if state.status == OnboardingStatus.UNDOING:
        if (state.user_id is not None or state.account_unsure) and not taken(state, SagaStep.REVOKE):
            return _planned(SagaStep.REVOKE, now)
        return _planned(SagaStep.REPORT, now)
    assert state.approved_at is not None
    window = None if state.proceed_now else policy.undo_window
    at = now if window is None else max(state.approved_at + window, now)
    for step in state.plan:
        if not taken(state, step):
            return _planned(step, at)
    return _planned(SagaStep.REPORT, now)


def start(state: OnboardingState, approval: Approval, now: datetime) -> None:
    """Apply the approval: the plan is the steps it asks for. A `cancel` held before it has already
    ended the journey (nothing was done); a held `proceed` skips the undo window."""
    state.student_email = str(approval.student.email)
    state.approved_at = now
    state.plan = [SagaStep.CREDENTIALS, SagaStep.ACCOUNT, SagaStep.WELCOME_EMAIL]
    if approval.student.phone is not None:
        state.plan.append(SagaStep.WHATSAPP)
    if approval.welcome_call is not None:
        state.plan.append(SagaStep.WELCOME_CALL)
    state.plan.append(SagaStep.CRM)
    if approval.lead_id is not None:
        state.plan.append(SagaStep.LEAD)
    if state.status == OnboardingStatus.AWAITING_START:
        state.status = OnboardingStatus.ONBOARDING


# --- what the workflow records ------------------------------------------------------------------

def record(state: OnboardingState, step: SagaStep, outcome: str, detail: str, now: datetime) -> None:
    """One step's outcome. A critical step that failed for good turns the saga to undoing."""
    state.outcomes.append(StepOutcome(step=step, outcome=outcome, detail=detail, at=now))  # type: ignore[arg-type]
    if outcome in ("failed", "skipped") and step in CRITICAL and state.status == OnboardingStatus.ONBOARDING:
        state.status = OnboardingStatus.UNDOING
        state.failure = f"{LABELS[step]}: {detail}"


def final_status(state: OnboardingState) -> OnboardingStatus:
    if state.failure is not None:
        return OnboardingStatus.FAILED
    if state.cancel_reason is not None:
        return OnboardingStatus.CANCELLED
    return OnboardingStatus.COMPLETED


def report(state: OnboardingState) -> dict:
    """The admin's report, as template context: what was done, what was not (and why), what was
    undone. Plain lists of lines: the outbox keeps this context, so nothing secret goes in."""
    lines = {"done": [], "not_done": [], "undone": []}
    for outcome in state.outcomes:
        if outcome.step == SagaStep.REVOKE:
            lines["undone" if outcome.outcome == "done" else "not_done"].append(
                f"{LABELS[outcome.step]}: {outcome.detail}")
        else:
            lines["done" if outcome.outcome == "done" else "not_done"].append(
                f"{LABELS[outcome.step]}: {outcome.detail}" if outcome.detail else LABELS[outcome.step])
    for step in state.plan:
        if not taken(state, step):
            lines["not_done"].append(f"{LABELS[step]}: not attempted")
    return {"result": final_status(state).value, "failure": state.failure, "cancel_reason": state.cancel_reason,
            "user_id": state.user_id, **lines}


# --- events ---------------------------------------------------------------------------------

def apply_event(state: OnboardingState, event: OnboardingEvent, policy: OnboardingPolicy | None,
                now: datetime) -> EventOutcome:
    """Twice the same event = once; after the saga ended only a repeat of a cancel that ended it is
    a (harmless) duplicate, anything else is refused as `ended`."""
    if (screened := screen_event(state, event, ONBOARDING_CLOSED, ENDED_BY)) is not None:
        return screened
    match event:
        case Proceed():
            if state.status == OnboardingStatus.UNDOING:
                return no_change(state, event, "the saga is undoing: there is nothing to go on with")
            window = (policy or state.policy).undo_window
            if state.proceed_now or window is None or (state.approved_at is not None
                                                       and state.approved_at + window <= now):
                return no_change(state, event, "already under way")
            state.proceed_now = True
            return record_outcome(state, event.dedupe_key(), True)
        case Cancel():
            if state.status == OnboardingStatus.UNDOING:
                return no_change(state, event, "already undoing")
            state.cancel_reason = event.reason or "the approval was withdrawn"
            # Before the approval came nothing was done: nothing to undo, nobody to tell.
            state.status = (OnboardingStatus.CANCELLED if state.status == OnboardingStatus.AWAITING_START
                            else OnboardingStatus.UNDOING)
            return record_outcome(state, event.dedupe_key(), True, event.reason)
        case _:
            unreachable(event)
