"""The payment journey (seeds 001 and 003) through the HTTP API on the real dev server, PostgreSQL
and an SMTP sink over a socket: a reminder while pending, one confirmation once paid, and the
answers a backend relies on (one round trip, 409 after the end, the same event_id applies once)."""

from __future__ import annotations

import asyncio

import httpx
import pytest_asyncio

from tests.integration.test_appointment_http import _delivered


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


def _payment(uid: str, **fields) -> dict:
    return {"payment_id": uid, "payer": {"email": f"payer-{uid}@example.com", "name": "Pat Payer", "locale": "de_DE"},
            "amount": "1234.50", "currency": "EUR", "payment_url": f"https://pay.example.com/{uid}",
            "policy": {"reminder_after": ["PT2S"]}, **fields}


async def test_a_reminder_while_pending_then_one_confirmation_once_paid(stack, http, uid):
    started = await http.post("/v1/payments", json=_payment(uid))
    assert started.status_code == 201, started.text
    assert started.json()["state"]["next_step"]["kind"] == "reminder"
    [reminder] = await _delivered(stack.smtp, f"payment-{uid}/reminder-2s")
    assert "1.234,50\xa0€" in reminder.get_body(("plain",)).get_content()  # the payer's locale, by Babel

    paid = await http.post(f"/v1/payments/{uid}/paid", json={"reference": "ch_1", "event_id": f"stripe-{uid}"})
    assert paid.status_code == 200, paid.text
    assert paid.json()["event"]["code"] == "applied"
    again = await http.post(f"/v1/payments/{uid}/paid", json={"reference": "ch_1", "event_id": f"stripe-{uid}"})
    assert again.status_code == 200 and again.json()["event"] == paid.json()["event"]  # a retry answers as the first

    await _delivered(stack.smtp, f"payment-{uid}/confirmation")
    await asyncio.sleep(1)
    assert stack.smtp.sink.keys()[f"payment-{uid}/confirmation"] == 1
    late = await http.post(f"/v1/payments/{uid}/cancel", json={})
    assert late.status_code == 409 and late.json()["field"] == "payment_id", late.text
    for _ in range(100):  # the journey closes once the confirmation is recorded
        if (await stack.temporal.get_workflow_handle(f"payment-{uid}").describe()).status.name != "RUNNING":
            break
        await asyncio.sleep(0.1)
    retried = await http.post(f"/v1/payments/{uid}/paid", json={"reference": "ch_1", "event_id": f"stripe-{uid}"})
    assert retried.status_code == 200 and retried.json()["event"] == paid.json()["event"], retried.text  # after the end too


async def test_paid_after_cancel_is_a_conflict_and_bad_amounts_are_refused(http, uid):
    assert (await http.post("/v1/payments", json=_payment(uid, policy={"reminder_after": ["P3D"]}))).status_code == 201
    assert (await http.post(f"/v1/payments/{uid}/cancel", json={"reason": "order voided"})).status_code == 200
    paid = await http.post(f"/v1/payments/{uid}/paid", json={})
    assert paid.status_code == 409, paid.text
    for amount in ("0", "-5", "1.234", "NaN"):
        refused = await http.post("/v1/payments", json=_payment(f"{uid}-bad", amount=amount))
        assert refused.status_code == 422 and refused.json()["field"] == "amount", (amount, refused.text)
