"""Seeds 001/003's payment rules as pure functions: a reminder at started_at + each offset (default
3 days) while the payment is pending, never more than the grace late; `paid` stops them and sends
one confirmation; `cancel` stops them silently; still unpaid after `close_after` → expired."""

from __future__ import annotations

from datetime import datetime, timedelta

from workflows.core.events import no_change, record_outcome, record_skip, screen_event
from workflows.core.steps import EventOutcome, PlannedStep, StepKind, unreachable, waiting_for_start
from workflows.core.timing import offset_label, when
from workflows.payment.models import (
    PAYMENT_CLOSED,
    Cancel,
    Paid,
    Payment,
    PaymentEvent,
    PaymentPolicy,
    PaymentState,
    PaymentStatus,
)

__all__ = ["apply_event", "confirmation_key", "next_step", "record_skip", "reminder_key", "start"]

# A repeat of what ended the journey is a harmless duplicate (a second `paid`); anything else is refused.
ENDED_BY = {"paid": PaymentStatus.PAID.value, "cancel": PaymentStatus.CANCELLED.value}


def reminder_key(payment_id: str, offset: timedelta) -> str:
    return f"payment-{payment_id}/reminder-{offset_label(offset)}"


def confirmation_key(payment_id: str) -> str:
    return f"payment-{payment_id}/confirmation"


def next_step(state: PaymentState, policy: PaymentPolicy, awaiting_since: datetime,
              now: datetime) -> PlannedStep | None:
    if state.confirmation_pending:
        return PlannedStep(kind=StepKind.CONFIRMATION, at=now, label="payment confirmation, now")
    if state.status in PAYMENT_CLOSED:
        return None
    if state.status == PaymentStatus.AWAITING_START:
        return waiting_for_start(awaiting_since, policy.hold_early_events_for, "payment")
    assert state.started_at is not None
    expires_at = state.started_at + policy.close_after
    for number, offset in enumerate(policy.reminder_after, start=1):
        if reminder_key(state.payment_id, offset) in state.reminders_done:
            continue
        at = state.started_at + offset
        if at >= expires_at:
            break  # this one and every later one would come after the journey closed
        return PlannedStep(kind=StepKind.REMINDER, at=at, number=number, not_after=min(at + policy.reminder_grace,
                                                                                      expires_at),
                           label=f"reminder {number} of {len(policy.reminder_after)}, pending "
                                 f"{offset_label(offset)}, due {when(at)}")
    return PlannedStep(kind=StepKind.EXPIRE, at=expires_at, label=f"expires unpaid at {when(expires_at)}")


def start(state: PaymentState, payment: Payment, now: datetime) -> None:
    """Apply the payment; a `paid` held before it makes it paid at once (and confirmed), a `cancel`
    before it has already ended the journey."""
    state.payer_email = str(payment.payer.email)
    state.amount, state.currency = payment.amount, payment.currency
    state.started_at = payment.started_at or now
    if state.status != PaymentStatus.AWAITING_START:
        return
    if state.paid_at is not None:
        state.status, state.confirmation_pending = PaymentStatus.PAID, True
    else:
        state.status = PaymentStatus.PENDING


def apply_event(state: PaymentState, event: PaymentEvent, policy: PaymentPolicy | None,
                now: datetime) -> EventOutcome:
    """Twice the same event = once; after the journey ended only a repeat of what ended it is a
    (harmless) duplicate, anything else is refused as `ended`."""
    if (screened := screen_event(state, event, PAYMENT_CLOSED, ENDED_BY)) is not None:
        return screened

    def outcome(applied: bool, reason: str | None = None) -> EventOutcome:
        return record_outcome(state, event.dedupe_key(), applied, reason)

    # Only AWAITING_START or PENDING from here: a held `paid` (paid_at set, before the start) ends it.
    match event:
        case Paid():
            if state.paid_at is not None:
                return no_change(state, event, "already paid, held until the payment starts")
            state.paid_at, state.paid_reference = event.paid_at or now, event.reference
            if state.status == PaymentStatus.PENDING:
                state.status, state.confirmation_pending = PaymentStatus.PAID, True
            return outcome(True, event.reference)
        case Cancel():
            if state.paid_at is not None:
                return record_outcome(state, event.dedupe_key(), False,
                                      "the journey has already ended (paid, held until the payment starts)",
                                      code="ended")
            state.status = PaymentStatus.CANCELLED
            return outcome(True, event.reason)
        case _:
            unreachable(event)
