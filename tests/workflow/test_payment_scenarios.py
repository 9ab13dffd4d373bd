"""Seeds 001/003's payment journey on the time-skipping server, with the real send step (PostgreSQL +
SMTP): reminders while pending, one confirmation once paid."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import asyncpg

from starter.service import Journeys
from tests.workflow.conftest import Driver, driver_fixture
from workflows.payment.models import PAYMENT_CLOSED, Payer, Payment, PaymentStatus, payment_event
from workflows.payment.workflow import PaymentJourney
from workflows.registry import PAYMENT

D = timedelta(days=1)
H = timedelta(hours=1)


class PaymentScenario(Driver):
    journey = PaymentJourney
    closed = PAYMENT_CLOSED
    prefix = "payment"

    async def start(self, pending_for: timedelta = timedelta(0), **fields) -> None:
        """Start the journey now, for a payment pending since `pending_for` ago. `started_at` is always
        set here: the edge would stamp the wall clock, and this server's clock is weeks ahead of it."""
        self.anchor = await self.now()
        fields.setdefault("payer", Payer(email=f"pay-{self.entity_id}@example.com", name="Pat", locale="de_DE",
                                         time_zone="Europe/Berlin"))
        payment = Payment(payment_id=self.entity_id, amount="1249.90", currency="EUR",
                          payment_url=f"https://pay.example.com/{self.entity_id}", description="Algebra course",
                          started_at=self.anchor - pending_for, **fields)
        await Journeys(self.client, self.settings, PAYMENT).start_durably(payment)

    async def event(self, kind: str, **fields) -> None:
        await self.signal(payment_event(kind=kind, **fields))

    def subjects(self, smtp) -> list[str]:
        return [m["Subject"] for m in smtp.sink.messages
                if m["X-Followups-Key"].startswith(f"payment-{self.entity_id}/")]


payment = driver_fixture(PaymentScenario)


async def test_unpaid_gets_one_reminder_at_day_3_then_expires_at_day_30(payment, smtp):
    await payment.start()
    final = await payment.result()
    assert final.status == PaymentStatus.EXPIRED and not final.confirmation_sent
    assert await payment.sent() == [("reminder-3d", 3 * D)]
    assert payment.subjects(smtp) == ["Reminder: 1.249,90 € for Algebra course is still open"]  # Babel, de_DE


async def test_paid_before_day_3_gets_the_confirmation_only(payment, smtp):
    await payment.start()
    await payment.at(2 * D)
    await payment.event("paid", reference="ch_991", event_id="psp-evt-1")
    final = await payment.result()
    assert final.status == PaymentStatus.PAID and final.confirmation_sent and final.paid_reference == "ch_991"
    assert await payment.sent() == [("confirmation", 2 * D)]
    assert payment.subjects(smtp) == ["Payment received: 1.249,90 € for Algebra course"]


async def test_paid_after_the_reminder_gets_the_confirmation(payment):
    await payment.start()
    await payment.at(4 * D)
    await payment.event("paid", event_id="psp-evt-2")
    final = await payment.result()
    assert final.status == PaymentStatus.PAID
    assert await payment.sent() == [("reminder-3d", 3 * D), ("confirmation", 4 * D)]


async def test_cancel_sends_nothing(payment):
    await payment.start()
    await payment.at(D)
    await payment.event("cancel", reason="invoice withdrawn")
    final = await payment.result()
    assert final.status == PaymentStatus.CANCELLED and final.skips == []
    assert await payment.sent() == []


async def test_duplicate_paid_by_event_id_confirms_once(payment):
    await payment.start()
    await payment.at(D)
    await payment.event("paid", reference="ch_1", event_id="psp-evt-3")
    await payment.event("paid", reference="ch_1", event_id="psp-evt-3")  # at-least-once delivery
    await payment.event("paid", reference="ch_1")  # and once more without an id: what ended it, again
    final = await payment.result()
    assert await payment.sent() == [("confirmation", D)]
    assert [(e.applied, e.code) for e in final.events] == [(True, "applied")]  # duplicates are not logged


async def test_custom_reminders_at_day_1_3_and_7(payment):
    await payment.start(policy={"reminder_after": ["P7D", "P1D", "P3D"], "close_after": "P10D"})
    final = await payment.result()
    assert final.status == PaymentStatus.EXPIRED
    assert await payment.sent() == [("reminder-1d", D), ("reminder-3d", 3 * D), ("reminder-7d", 7 * D)]


async def test_a_reminder_past_its_grace_is_skipped_never_sent_late(payment):
    await payment.start(pending_for=5 * D)  # the day-3 reminder was due 2 days ago: past the 1-day grace
    state = await payment.state()
    assert [s.step for s in state.skips] == [f"payment-{payment.entity_id}/reminder-3d"]
    assert "beyond the grace" in state.skips[0].reason
    assert state.next_step.kind == "expire" and state.next_step.at == payment.anchor + 25 * D
    final = await payment.result()
    assert final.status == PaymentStatus.EXPIRED and await payment.sent() == []


async def test_pending_for_3_and_a_half_days_reminds_at_once_within_the_grace(payment):
    await payment.start(pending_for=3 * D + 12 * H)  # the day-3 reminder was due 12 h ago: inside the grace
    final = await payment.result()
    assert final.status == PaymentStatus.EXPIRED and final.skips == []
    assert await payment.sent() == [("reminder-3d", -12 * H)]


async def test_webhook_channel_is_keyed_apart_and_skipped_without_a_webhook(payment):
    await payment.start(channels=["email", "webhook"],
                        payer=Payer(email=f"pay-{payment.entity_id}@example.com", name="Pat", phone="+4915112345678"))
    await payment.at(3 * D + H)
    await payment.event("paid", event_id="psp-evt-5")
    final = await payment.result()
    assert await payment.sent() == [("reminder-3d", 3 * D), ("confirmation", 3 * D + H)]
    skipped = {s.step.split("/", 1)[1]: s.reason for s in final.skips}
    assert set(skipped) == {"reminder-3d/webhook", "confirmation/webhook"}
    assert all("no webhook configured" in reason for reason in skipped.values())


# --- send windows (FOLLOWUPS_SEND_WINDOW): quiet hours in the payer's zone ------------------------

QUIET = {"send_window": "08:00-21:00"}
payment_in_hours = driver_fixture(PaymentScenario, settings_from=lambda request: QUIET)
BERLIN = ZoneInfo("Europe/Berlin")


def _next_local(after: datetime, hour: int) -> datetime:
    """The first `hour`:00 in Berlin at least a day after `after`, in UTC."""
    local = (after + D).astimezone(BERLIN)
    moment = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    return (moment if moment >= local else moment + D).astimezone(timezone.utc)


async def _remind_at_23(payment: PaymentScenario, grace: str) -> tuple[datetime, datetime]:
    """Start a payment whose one reminder is due at 23:00 in Berlin (quiet until 08:00) with `grace`."""
    now = await payment.now()
    due = _next_local(now, 23)
    await payment.start(policy={"reminder_after": [f"PT{int((due - now).total_seconds())}S"],
                                "reminder_grace": grace, "close_after": "P5D"})
    return now, due


async def _deferrals(payment: PaymentScenario) -> list[dict]:
    conn = await asyncpg.connect(payment.database_url)
    try:
        rows = await conn.fetch("SELECT reason, detail FROM message_events WHERE key LIKE $1 AND kind = 'deferred'",
                                f"payment-{payment.entity_id}/%")
    finally:
        await conn.close()
    return [{"reason": row["reason"], **json.loads(row["detail"])} for row in rows]


async def test_a_reminder_due_in_quiet_hours_waits_for_the_window_and_says_why(payment_in_hours):
    payment = payment_in_hours
    _, due = await _remind_at_23(payment, grace="PT12H")
    final = await payment.result()
    opens = _next_local(due - D, 8)  # the next morning, 08:00 Berlin
    assert [d["until"] for d in await _deferrals(payment)] == [opens.isoformat()]
    [deferral] = await _deferrals(payment)
    assert deferral["reason"].startswith("quiet hours in Europe/Berlin until 08:00")
    assert final.status == PaymentStatus.EXPIRED and final.skips == []
    assert len(await payment.sent()) == 1
    history = await payment.client.get_workflow_handle(payment.workflow_id).fetch_history()
    summaries = [event.user_metadata.summary.data.decode() for event in history.events
                 if event.HasField("timer_started_event_attributes") and event.HasField("user_metadata")]
    assert any("waiting: quiet hours in Europe/Berlin" in summary for summary in summaries), summaries


async def test_a_reminder_whose_deadline_comes_before_the_window_goes_at_once_with_the_reason(payment_in_hours):
    payment = payment_in_hours
    await _remind_at_23(payment, grace="PT1H")
    await payment.result()
    assert await _deferrals(payment) == []
    conn = await asyncpg.connect(payment.database_url)
    try:
        row = await conn.fetchrow("SELECT status, reason FROM messages WHERE key LIKE $1", f"payment-{payment.entity_id}/%")
    finally:
        await conn.close()
    assert row["status"] == "sent" and "comes first" in row["reason"], dict(row)


async def test_a_cancel_while_waiting_for_the_window_sends_nothing(payment_in_hours):
    payment = payment_in_hours
    now, due = await _remind_at_23(payment, grace="PT12H")
    await payment.at(due - now + H)  # inside the deferral
    await payment.event("cancel", reason="invoice withdrawn")
    final = await payment.result()
    assert final.status == PaymentStatus.CANCELLED and await payment.sent() == []
    assert len(await _deferrals(payment)) == 1
