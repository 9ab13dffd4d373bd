"""Seed 003's lead nurture as pure functions: day 0 first email, day 3 "still interested?", day 7
final offer (the policy's steps); a conversion, a reply, an unsubscribe or a cancel stops it."""

from __future__ import annotations

from datetime import datetime

from workflows.core.events import record_outcome, screen_event
from workflows.core.steps import EventOutcome, PlannedStep, Skip, StepKind, waiting_for_start
from workflows.core.timing import when
from workflows.lead.models import LEAD_CLOSED, Converted, Lead, LeadEvent, LeadPolicy, LeadState, LeadStatus

ENDS_IN = {"converted": LeadStatus.CONVERTED, "replied": LeadStatus.REPLIED, "cancel": LeadStatus.CANCELLED}
SUPPRESSED_PREFIX = "recipient suppressed"  # how the send step words a skip for a suppressed address


def step_key(lead_id: str, number: int) -> str:
    return f"lead-{lead_id}/step-{number}"


def next_step(state: LeadState, policy: LeadPolicy, awaiting_since: datetime, now: datetime) -> PlannedStep | None:
    if state.status in LEAD_CLOSED:
        return None
    if state.status == LeadStatus.AWAITING_START:
        return waiting_for_start(awaiting_since, policy.hold_early_events_for, "lead")
    assert state.started_at is not None
    if state.steps_done >= len(policy.steps):
        return PlannedStep(kind=StepKind.FINISH, at=now, label="every step is done")
    number = state.steps_done + 1
    step = policy.steps[state.steps_done]
    at = state.started_at + step.after
    return PlannedStep(kind=StepKind.STEP, at=at, number=number, not_after=at + policy.step_grace,
                       label=f"email {number} of {len(policy.steps)} ({step.template}) due {when(at)}")


def start(state: LeadState, lead: Lead, now: datetime) -> None:
    state.campaign = lead.campaign
    state.contact_email = str(lead.contact.email)
    state.started_at = lead.started_at or now
    if state.status == LeadStatus.AWAITING_START:
        state.status = LeadStatus.NURTURING


def apply_event(state: LeadState, event: LeadEvent, policy: LeadPolicy | None = None,
                now: datetime | None = None) -> EventOutcome:
    """Twice the same event = once; after the journey ended only a repeat of what ended it is a
    (harmless) duplicate."""
    if (screened := screen_event(state, event, LEAD_CLOSED, {k: v.value for k, v in ENDS_IN.items()})) is not None:
        return screened
    state.status = ENDS_IN[event.kind]
    reference = event.reference if isinstance(event, Converted) else None
    state.conversion_reference = reference if isinstance(event, Converted) else state.conversion_reference
    return record_outcome(state, event.dedupe_key(), True, reference)


def record_skip(state: LeadState, step: str, reason: str, now: datetime) -> None:
    state.skips.append(Skip(step=step, reason=reason, at=now))
    if reason.startswith(SUPPRESSED_PREFIX) and state.status == LeadStatus.NURTURING:  # a conversion meanwhile stays
        state.status = LeadStatus.SUPPRESSED
