"""Parent copies (seed 004, COPPA) through the real send step, PostgreSQL and an SMTP server on a
socket: each copy is its own outbox row and message, a retry never sends either twice, the
parent's own unsubscribe applies to the parent's copy, a resend reaches the parent again, and a
journey started through the HTTP API sends both."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import worker
from activities import tokens
from activities.preferences import Preferences, email_hash
from activities.store import Leads, Notifications, Outbox, Suppressions
from tests.integration.test_appointment_http import _booking, _delivered
from workflows.contracts import SendRequest, SendStatus


@pytest_asyncio.fixture
async def sends(make_settings, smtp, pool):
    activities = worker.send_activities(make_settings(), pool)
    yield activities
    await activities.transport.close()


def _soon(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def child(uid: str, **fields) -> dict:
    return {"email": f"kid-{uid}@example.com", "name": "Kim Kid", "under_13": True,
            "parent_email": f"mum-{uid}@example.com", "parent_name": "Maria Kid", **fields}


def request(uid: str, recipient: dict, **fields) -> SendRequest:
    values = dict(key=f"lead-{uid}/step-1", journey="lead", entity_id=uid, template="lead_welcome",
                  recipient=recipient, context={"name": "Kim", "company": None, "offer_url": None},
                  due_at=datetime.now(timezone.utc))
    return SendRequest.model_validate({**values, **fields})


async def send(sends, req: SendRequest):
    return await ActivityEnvironment().run(sends.send_message, req)


def to(smtp, address: str) -> list:
    return [m for m in smtp.sink.messages if m["To"].addresses[0].addr_spec == address]


async def test_also_sends_each_its_own_message_once_and_a_retry_sends_nothing_more(sends, smtp, pool, uid):
    req = request(uid, child(uid))
    result = await send(sends, req)
    assert result.status == SendStatus.SENT and result.key == req.key  # the journey sees its own message
    [own], [copy] = to(smtp, f"kid-{uid}@example.com"), to(smtp, f"mum-{uid}@example.com")
    assert own["X-Followups-Key"] == req.key and copy["X-Followups-Key"] == f"{req.key}/parent"
    assert own["Message-ID"] != copy["Message-ID"]
    assert str(copy["To"]) == f"Maria Kid <mum-{uid}@example.com>"
    text = copy.get_body(("plain",)).get_content()
    assert text.startswith("You receive this copy because Kim Kid is under 13")
    assert "You receive this copy" not in own.get_body(("plain",)).get_content()
    # the copy's unsubscribe link names the parent's address, not the child's
    link = copy["List-Unsubscribe"].strip("<>")
    assert tokens.verify("test-secret", link.rsplit("/", 1)[1]) == (f"mum-{uid}@example.com", f"{req.key}/parent")
    outbox = Outbox(pool)
    assert (await outbox.get(req.key))["status"] == "sent"
    assert (await outbox.get(f"{req.key}/parent"))["status"] == "sent"

    again = await send(sends, req)
    assert again.already_done and again.status == SendStatus.SENT
    assert smtp.sink.keys()[req.key] == 1 and smtp.sink.keys()[f"{req.key}/parent"] == 1


async def test_a_lead_whose_parent_got_a_copy_counts_once_in_the_campaign_stats(sends, pool, uid):
    await Leads(pool).add_many([(uid, f"camp-{uid}", f"kid-{uid}@example.com"),
                                (f"{uid}-b", f"camp-{uid}", f"kid-{uid}-b@example.com")])
    await send(sends, request(uid, child(uid)))
    await send(sends, request(f"{uid}-b", child(f"{uid}-b", parent_copy="instead"), key=f"lead-{uid}-b/step-1"))
    assert (await Leads(pool).stats(f"camp-{uid}")).emailed_per_step == {"step-1": 2}


async def test_instead_sends_only_the_parents_copy_and_records_why(sends, smtp, pool, uid):
    req = request(uid, child(uid, parent_copy="instead"))
    result = await send(sends, req)
    assert result.status == SendStatus.SENT and result.key == f"{req.key}/parent"
    assert to(smtp, f"kid-{uid}@example.com") == [] and len(to(smtp, f"mum-{uid}@example.com")) == 1
    row = await Outbox(pool).get(req.key)
    assert row["status"] == "skipped" and row["reason"] == f"under 13: sent to the parent instead, as {req.key}/parent"
    assert (await send(sends, req)).already_done
    assert len(to(smtp, f"mum-{uid}@example.com")) == 1 and to(smtp, f"kid-{uid}@example.com") == []


async def test_a_soft_refusal_of_one_is_retried_without_sending_the_other_again(sends, smtp, uid):
    kid = f"kid-{uid}@example.com"
    smtp.sink.refuse[kid], smtp.sink.refuse_times[kid] = "451 4.3.0 try again later", 1
    req = request(uid, child(uid))
    with pytest.raises(ApplicationError) as raised:
        await send(sends, req)
    assert raised.value.type == "SoftRefusal" and not raised.value.non_retryable
    assert to(smtp, kid) == [] and len(to(smtp, f"mum-{uid}@example.com")) == 1  # the parent's went out meanwhile
    assert (await send(sends, req)).status == SendStatus.SENT  # the activity's retry
    assert smtp.sink.keys()[req.key] == 1 and smtp.sink.keys()[f"{req.key}/parent"] == 1


async def test_the_parents_hard_bounce_fails_only_the_copy_and_suppresses_the_parent(sends, smtp, pool, uid):
    mum = f"mum-{uid}@example.com"
    smtp.sink.refuse[mum] = "550 5.1.1 no such user"
    req = request(uid, child(uid))
    assert (await send(sends, req)).status == SendStatus.SENT
    assert (await Outbox(pool).get(f"{req.key}/parent"))["status"] == "failed"
    assert (await Suppressions(pool).reason_for(mum)).startswith("hard_bounce")
    smtp.sink.refuse.pop(mum)


async def test_the_parents_unsubscribe_stops_the_copies_and_the_childs_does_not(sends, smtp, pool, uid):
    await Suppressions(pool).add(f"mum-{uid}@example.com", "unsubscribe", "one-click unsubscribe")
    req = request(uid, child(uid))
    assert (await send(sends, req)).status == SendStatus.SENT
    copy = await Outbox(pool).get(f"{req.key}/parent")
    assert copy["status"] == "skipped" and copy["reason"].startswith("recipient suppressed (unsubscribe")
    assert to(smtp, f"mum-{uid}@example.com") == [] and len(to(smtp, f"kid-{uid}@example.com")) == 1

    # instead: the parent's unsubscribe is what the journey sees (a lead stops as suppressed)
    instead = request(uid, child(uid, parent_copy="instead"), key=f"lead-{uid}/step-2")
    result = await send(sends, instead)
    assert result.status == SendStatus.SKIPPED and result.reason.startswith("recipient suppressed")
    assert len(to(smtp, f"kid-{uid}@example.com")) == 1


async def test_a_resend_of_the_childs_message_copies_the_parent_again(sends, smtp, uid):
    req = request(uid, child(uid))
    await send(sends, req)
    recorded = await ActivityEnvironment().run(sends.recorded_request, req.key)
    assert recorded.recipient == req.recipient  # under 13, the parent and the rule, from the outbox row
    await send(sends, recorded.model_copy(update={"key": f"{req.key}/resend-1"}))
    assert smtp.sink.keys()[f"{req.key}/resend-1"] == 1 and smtp.sink.keys()[f"{req.key}/resend-1/parent"] == 1
    # a resend of the copy itself is again a copy, to the parent only
    copy = await ActivityEnvironment().run(sends.recorded_request, f"{req.key}/parent")
    await send(sends, copy.model_copy(update={"key": f"{req.key}/parent/resend-1"}))
    [again] = [m for m in smtp.sink.messages if m["X-Followups-Key"] == f"{req.key}/parent/resend-1"]
    assert again["To"].addresses[0].addr_spec == f"mum-{uid}@example.com"
    assert again.get_body(("plain",)).get_content().startswith("You receive this copy")


async def test_in_the_app_the_parent_gets_a_notification_of_their_own(sends, pool, smtp, uid):
    req = request(uid, child(uid), channel="in_app")
    assert (await send(sends, req)).status == SendStatus.SENT
    notes = Notifications(pool)
    [own] = await notes.page(f"kid-{uid}@example.com", before=None, limit=10, unread_only=False)
    [copy] = await notes.page(f"mum-{uid}@example.com", before=None, limit=10, unread_only=False)
    assert (own["key"], copy["key"]) == (req.key, f"{req.key}/parent")
    assert copy["body"].startswith("You receive this copy because Kim Kid is under 13")
    assert not own["body"].startswith("You receive") and copy["title"] == own["title"]
    assert smtp.sink.keys()[req.key] == 0 and smtp.sink.keys()[f"{req.key}/parent"] == 0


async def test_a_webhook_message_gets_a_recorded_skip_for_the_parent(sends, pool, uid):
    req = request(uid, child(uid), channel="webhook", phone="+4915112345678")
    await send(sends, req)  # no webhook configured: the child's is skipped too, with its own reason
    copy = await Outbox(pool).get(f"{req.key}/parent")
    assert copy["status"] == "skipped" and "no phone number" in copy["reason"] and copy["phone"] is None


async def test_a_journey_started_over_http_sends_the_parent_a_copy(stack, uid):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as http:
        refused = await http.post("/v1/appointments", json=_booking(uid, 3600, patient={
            "email": f"kid-{uid}@example.com", "name": "Kim", "under_13": True}))
        assert refused.status_code == 422 and refused.json()["field"] == "patient.parent_email", refused.text

        body = _booking(uid, 6, patient=child(uid), policy={"reminder_offsets": [3]})
        started = await http.post("/v1/appointments", json=body)
        assert started.status_code == 201, started.text
        key = f"appointment-{uid}/reminder-3s-" + datetime.fromisoformat(body["scheduled_at"]).astimezone(
            timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        [own] = await _delivered(stack.smtp, key)
        [copy] = await _delivered(stack.smtp, key + "/parent")
        assert own["To"].addresses[0].addr_spec == f"kid-{uid}@example.com"
        assert copy["To"].addresses[0].addr_spec == f"mum-{uid}@example.com"
        await asyncio.sleep(0.5)
        listed = (await http.get("/v1/messages", params={"journey": "appointment", "entity_id": uid})).json()
        assert {m["key"]: m["status"] for m in listed} == {key: "sent", key + "/parent": "sent"}


async def test_a_payer_and_a_session_attendee_under_13_copy_the_parent_too(stack, uid):
    """The payment's payer and a session's attendee are recipients with their own models: the
    parent fields pass through them to the send step."""
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as http:
        refused = await http.post("/v1/sessions", json={
            "session_id": f"s-{uid}", "title": "Algebra", "course": "c", "starts_at": _soon(3600), "ends_at": _soon(7200),
            "tutor": {"name": "T", "email": "t@example.com"},
            "attendees": [{"attendee_id": "k", "name": "Kim", "email": f"kid-{uid}@example.com", "under_13": True}]})
        assert refused.status_code == 422 and refused.json()["field"] == "attendees.0.parent_email", refused.text
        started = await http.post("/v1/payments", json={
            "payment_id": f"p-{uid}", "currency": "EUR", "amount": "49.90", "payment_url": "https://pay.example.com/x",
            "payer": {**child(uid), "email": f"kid-{uid}@example.com", "name": "Kim"},
            "policy": {"reminder_after": ["PT2S"]}})
        assert started.status_code == 201, started.text
        await _delivered(stack.smtp, f"payment-p-{uid}/reminder-2s")
        [copy] = await _delivered(stack.smtp, f"payment-p-{uid}/reminder-2s/parent")
        assert copy["To"].addresses[0].addr_spec == f"mum-{uid}@example.com"


async def test_a_parents_copy_goes_with_the_childs_message_whatever_the_parents_send_window(sends, smtp, pool, uid):
    """A copy never waits on its own: were it deferred after the child's message went (or failed),
    nothing would ever ask for it again."""
    now = datetime.now(timezone.utc)
    closed = f"{(now + timedelta(hours=2)):%H:00}-{(now + timedelta(hours=3)):%H:00}"  # opens in 1-2 h
    await Preferences(pool).put(f"mum-{uid}@example.com", send_window=closed, time_zone="UTC")
    req = request(uid, child(uid))
    assert (await send(sends, req)).status == SendStatus.SENT
    assert to(smtp, f"kid-{uid}@example.com") and to(smtp, f"mum-{uid}@example.com")
    assert (await Outbox(pool).get(f"{req.key}/parent"))["status"] == "sent"


async def test_a_message_the_journey_dropped_while_it_waited_is_recorded_skipped_with_its_copy(sends, smtp, pool, uid):
    req = request(uid, child(uid)).model_copy(update={"skip_reason": "no longer due: cancelled"})
    result = await send(sends, req)
    assert result.status == SendStatus.SKIPPED and result.reason == "no longer due: cancelled"
    for key in (req.key, f"{req.key}/parent"):
        row = await Outbox(pool).get(key)
        assert (row["status"], row["reason"]) == ("skipped", "no longer due: cancelled")
    assert not to(smtp, f"kid-{uid}@example.com") and not to(smtp, f"mum-{uid}@example.com")


async def test_an_erased_parents_address_is_stored_nowhere_again(sends, smtp, pool, uid):
    await pool.execute("INSERT INTO erased_recipients (email_hash) VALUES ($1)", email_hash(f"mum-{uid}@example.com"))
    req = request(uid, child(uid))
    assert (await send(sends, req)).status == SendStatus.SENT  # the child's own message goes
    row = await Outbox(pool).get(req.key)
    assert row["parent"] is None  # not the erased parent's address on the child's row
    assert await Outbox(pool).get(f"{req.key}/parent") is None and not to(smtp, f"mum-{uid}@example.com")
