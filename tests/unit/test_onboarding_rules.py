"""The onboarding saga's rules (seed 003, "CTA approval") as pure functions: the plan an approval
asks for, the undo window, withdrawal, and, over any run (any step failing, a withdrawal at any
moment), the saga's promises: each step once and in order, an account that exists or may is
revoked when undoing and only then, and the admin is told last, in every case."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.core.steps import StepKind
from workflows.onboarding import rules
from workflows.onboarding.models import (
    CRITICAL, ONBOARDING_CLOSED, Approval, OnboardingPolicy, OnboardingState, OnboardingStatus, SagaStep,
    onboarding_event,
)

NOW = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
FORWARD = [SagaStep.CREDENTIALS, SagaStep.ACCOUNT, SagaStep.WELCOME_EMAIL, SagaStep.WHATSAPP,
           SagaStep.WELCOME_CALL, SagaStep.CRM, SagaStep.LEAD]


def approval(**fields) -> Approval:
    return Approval.model_validate({
        "onboarding_id": "cta-7", "login_url": "https://lms.example.com/login",
        "student": {"email": "sam@example.com", "name": "Sam", **fields.pop("student", {})},
        "approved_by": {"email": "ada@example.com", "name": "Ada"}, **fields})


def started(policy: OnboardingPolicy = OnboardingPolicy(), **fields) -> OnboardingState:
    state = OnboardingState(onboarding_id="cta-7", status=OnboardingStatus.AWAITING_START, policy=policy)
    rules.start(state, approval(**fields), NOW)
    return state


def test_the_plan_is_what_the_approval_asks_for_in_order():
    assert started().plan == [SagaStep.CREDENTIALS, SagaStep.ACCOUNT, SagaStep.WELCOME_EMAIL, SagaStep.CRM]
    full = started(student={"phone": "+4915112345678"}, lead_id="L-17",
                   welcome_call={"scheduled_at": NOW + timedelta(days=2), "host": "Alex"})
    assert full.plan == FORWARD


def test_steps_wait_for_the_undo_window_unless_told_to_proceed():
    policy = OnboardingPolicy(undo_window=timedelta(minutes=30))
    state = started(policy)
    step = rules.next_step(state, policy, NOW, NOW + timedelta(minutes=5))
    assert rules.saga_step(step) == SagaStep.CREDENTIALS and step.at == NOW + timedelta(minutes=30)
    outcome = rules.apply_event(state, onboarding_event(kind="proceed"), policy, NOW + timedelta(minutes=5))
    assert outcome.code == "applied"
    assert rules.next_step(state, policy, NOW, NOW + timedelta(minutes=5)).at == NOW + timedelta(minutes=5)
    again = rules.apply_event(state, onboarding_event(kind="proceed"), policy, NOW + timedelta(minutes=6))
    assert again.code == "no_change"


def test_a_cancel_before_any_step_undoes_nothing_and_reports():
    state = started()
    outcome = rules.apply_event(state, onboarding_event(kind="cancel", reason="mis-click"), None, NOW)
    assert outcome.code == "applied" and state.status == OnboardingStatus.UNDOING
    assert rules.saga_step(rules.next_step(state, state.policy, NOW, NOW)) == SagaStep.REPORT
    report = rules.report(state)
    assert report["result"] == "cancelled" and report["done"] == [] and report["undone"] == []
    assert "create the account: not attempted" in report["not_done"]


def test_a_cancel_before_the_approval_ends_it_with_nothing_to_tell():
    state = OnboardingState(onboarding_id="cta-7", status=OnboardingStatus.AWAITING_START)
    assert rules.apply_event(state, onboarding_event(kind="cancel"), None, NOW).code == "applied"
    assert state.status == OnboardingStatus.CANCELLED and rules.next_step(state, state.policy, NOW, NOW) is None
    rules.start(state, approval(), NOW)  # the approval comes after all: it stays withdrawn
    assert state.status == OnboardingStatus.CANCELLED


def test_after_the_end_only_a_repeat_of_the_cancel_is_harmless():
    state = started()
    state.status = OnboardingStatus.COMPLETED
    assert rules.apply_event(state, onboarding_event(kind="cancel"), None, NOW).code == "ended"
    state.status = OnboardingStatus.CANCELLED
    assert rules.apply_event(state, onboarding_event(kind="cancel"), None, NOW).code == "duplicate"
    assert rules.apply_event(state, onboarding_event(kind="proceed"), None, NOW).code == "ended"


def test_a_refused_account_is_not_revoked_an_unanswered_one_is():
    state = started()
    rules.record(state, SagaStep.CREDENTIALS, "done", "", NOW)
    rules.record(state, SagaStep.ACCOUNT, "failed", "422", NOW)
    assert state.status == OnboardingStatus.UNDOING
    assert rules.saga_step(rules.next_step(state, state.policy, NOW, NOW)) == SagaStep.REPORT
    state.account_unsure = True  # gave up without an answer: it may exist
    assert rules.saga_step(rules.next_step(state, state.policy, NOW, NOW)) == SagaStep.REVOKE


def test_keys():
    assert rules.secret_ref("cta-7") == "onboarding-cta-7/password"
    assert rules.account_key("cta-7") == "onboarding-cta-7/account"
    assert rules.welcome_call_id("cta-7") == "welcome-cta-7"
    assert rules.converted_event_id("cta-7") == "onboarding-cta-7/converted"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(phone=st.booleans(), call=st.booleans(), lead=st.booleans(),
       results=st.lists(st.sampled_from(["done", "done", "failed", "skipped", "unsure"]), min_size=9, max_size=9),
       cancel_at=st.one_of(st.none(), st.integers(0, 9)))
def test_any_run_takes_each_step_once_revokes_what_may_exist_and_reports_last(phone, call, lead, results, cancel_at):
    fields = {"student": {"phone": "+4915112345678"}} if phone else {}
    if call:
        fields["welcome_call"] = {"scheduled_at": NOW + timedelta(days=2), "host": "Alex"}
    if lead:
        fields["lead_id"] = "L-1"
    state = started(**fields)
    taken: list[SagaStep] = []
    for n in range(20):
        if n == cancel_at:
            rules.apply_event(state, onboarding_event(kind="cancel"), None, NOW)
        planned = rules.next_step(state, state.policy, NOW, NOW)
        if planned is None:
            break
        assert planned.kind == StepKind.STEP and planned.at == NOW
        step = rules.saga_step(planned)
        taken.append(step)
        result = results[n % len(results)]
        if step == SagaStep.ACCOUNT and result in ("done", "unsure"):
            state.user_id = "u-1" if result == "done" else None
            state.account_unsure = result == "unsure"
            result = "done" if result == "done" else "failed"
        rules.record(state, step, "failed" if result == "unsure" else result, "", NOW)
        if step == SagaStep.REPORT:
            state.status = rules.final_status(state)
    assert state.status in ONBOARDING_CLOSED
    assert taken[-1] == SagaStep.REPORT and len(taken) == len(set(taken))  # each once, the admin last
    forward = [s for s in taken if s in FORWARD]
    assert forward == [s for s in state.plan if s in forward]  # in the plan's order, no gaps
    assert forward == state.plan[:len(forward)]
    undoing = state.failure is not None or state.cancel_reason is not None
    assert (SagaStep.REVOKE in taken) == (undoing and (state.user_id is not None or state.account_unsure))
    critical_failed = any(o.step in CRITICAL and o.outcome != "done" for o in state.outcomes)
    assert state.status == (OnboardingStatus.FAILED if state.failure else OnboardingStatus.CANCELLED
                            if state.cancel_reason else OnboardingStatus.COMPLETED)
    if critical_failed and state.cancel_reason is None:
        assert state.status == OnboardingStatus.FAILED
