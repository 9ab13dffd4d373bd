"""The payment journey (seeds 001 and 003): one workflow per payment, id `payment-{payment_id}`.

PENDING  a reminder at started_at + each policy offset (default 3 days, the seed's "pending 3+
         days"), with the payment link, on each of the payment's channels (email, webhook); one
         more than `reminder_grace` late is skipped with a reason, never sent late; still unpaid
         at started_at + close_after (30 days) → EXPIRED.
Events   paid (→ PAID: reminders stop, one confirmation goes out) / cancel (→ CANCELLED: nothing
         more is sent), as Updates (refused ones never enter history) or signals; an event before
         the start is held until it arrives.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

from workflows.contracts import Channel, SendRequest, SendStatus
from workflows.core.send import send
from workflows.core.shell import JourneyCore, Reply
from workflows.core.steps import PlannedStep, StepKind, too_late, unreachable
from workflows.core.timing import when
from workflows.payment import rules
from workflows.payment.models import Payment, PaymentEvent, PaymentInput, PaymentState, PaymentStatus


def workflow_id(payment_id: str) -> str:
    return f"payment-{payment_id}"


@workflow.defn
class PaymentJourney:
    @workflow.init
    def __init__(self, journey: PaymentInput) -> None:
        state = PaymentState(payment_id=journey.payment_id, status=PaymentStatus.AWAITING_START, policy=journey.policy)
        self.core = JourneyCore("payment", journey.payment_id, rules, journey.policy, state,
                                journey.payment, journey.state, journey.awaiting_since,
                                details=self._details, recipient=lambda: self.state.payer_email)

    @property
    def state(self) -> PaymentState:
        return self.core.state

    @workflow.run
    async def run(self, journey: PaymentInput) -> PaymentState:
        await self.core.run(self._take, self._carry)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.update
    def start_journey(self, payment: Payment) -> Reply[PaymentState]:
        return self.core.started(payment)

    @workflow.update
    def apply_event(self, event: PaymentEvent) -> Reply[PaymentState]:
        return self.core.applied(event)

    @apply_event.validator
    def _screen(self, event: PaymentEvent) -> None:
        self.core.screen(event)

    @workflow.signal
    def begin(self, payment: Payment) -> None:
        """The start as a signal: the durable fallback when no worker answers an update in time."""
        self.core.begin(payment)

    @workflow.signal
    def event(self, event: PaymentEvent) -> None:
        self.core.apply(event)

    @workflow.query
    def state_query(self) -> PaymentState:
        return self.state

    async def _take(self, step: PlannedStep) -> None:
        state, now = self.state, workflow.now()
        match step.kind:
            case StepKind.ABANDON:
                state.status = PaymentStatus.ABANDONED
            case StepKind.EXPIRE:
                state.status = PaymentStatus.EXPIRED
            case StepKind.CONFIRMATION:
                state.confirmation_pending = False
                statuses = await self._send(rules.confirmation_key(state.payment_id), "payment_confirmation", step)
                state.confirmation_sent = any(status.delivered for status in statuses)
            case StepKind.REMINDER:
                assert state.started_at is not None
                key = rules.reminder_key(state.payment_id, step.at - state.started_at)
                state.reminders_done.append(key)  # taken, whatever comes of it: never planned again
                if too_late(step.not_after, now):
                    rules.record_skip(state, key, f"reminder moment passed {now - step.at} ago, beyond the grace", now)
                    return
                await self._send(key, "payment_reminder", step)
            case _:
                unreachable(step)

    async def _send(self, key: str, template: str, step: PlannedStep) -> list[SendStatus]:
        """One message per channel of the payment, together: `key` by email, `key/webhook` by webhook."""
        payment = self.core.start
        assert isinstance(payment, Payment)
        return list(await asyncio.gather(*(self._send_to(payment, key, template, step, channel)
                                           for channel in payment.channels)))

    async def _send_to(self, payment: Payment, key: str, template: str, step: PlannedStep,
                       channel: Channel) -> SendStatus:
        state = self.state
        message_key = key if channel == "email" else f"{key}/{channel}"
        request = SendRequest(
            key=message_key, journey="payment", entity_id=state.payment_id, template=template,
            recipient=payment.payer.recipient(), channel=channel,
            phone=payment.payer.phone if channel == "webhook" else None,
            context={
                "payer_name": payment.payer.name,
                "amount": payment.amount,
                "currency": payment.currency,
                "locale": payment.payer.locale,
                "payment_url": payment.payment_url,
                "description": payment.description,
                "reminder_number": step.number,
                "started_at": state.started_at.isoformat() if state.started_at else None,
                "paid_at": state.paid_at.isoformat() if state.paid_at else None,
                "paid_reference": state.paid_reference,
                "time_zone": payment.payer.time_zone,
            },
            due_at=step.at, not_after=step.not_after,
        )
        status = await send(request, lambda k, reason: rules.record_skip(state, k, reason, workflow.now()), self.core.waiting())
        if status.delivered and step.kind == StepKind.REMINDER:
            state.reminders_sent.append(message_key)
        return status

    def _carry(self) -> PaymentInput:
        return PaymentInput(payment_id=self.state.payment_id, payment=self.core.start, policy=self.core.policy,
                            state=self.state, awaiting_since=self.core.awaiting_since)

    def _details(self) -> list[str]:
        state = self.state
        lines = [f"**Payment {state.payment_id}** — {state.status.value}"]
        if state.amount:
            lines.append(f"{state.amount} {state.currency}, pending since {when(state.started_at)}"
                         if state.started_at else f"{state.amount} {state.currency}")
        lines.append(f"reminders taken: {len(state.reminders_done)} of {len(self.core.policy.reminder_after)}, "
                     f"messages delivered: {len(state.reminders_sent)}")
        if state.paid_reference:
            lines.append(f"paid: {state.paid_reference}")
        return lines
