"""The in_app channel (seed 003) on the real stack: a payment and a session deliver in-app
notifications through the one send step (same outbox row, key, suppression and too-late rules),
stored once per key even across an interrupted attempt; the app reads, pages and marks them
through /v1/notifications, the Python client and the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

import worker
from activities.store import Outbox, Suppressions
from starter.client import FollowupsClient, FollowupsError
from tests.integration.test_appointment_http import _delivered
from tests.integration.test_cli import run as run_cli
from tests.integration.test_payment_http import _payment
from tests.integration.test_sessions_http import _attendee, _session
from workflows.contracts import SendRequest, SendStatus


@pytest_asyncio.fixture
async def http(stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def sends(make_settings, pool):
    activities = worker.send_activities(make_settings(), pool)
    yield activities
    await activities.transport.close()


def in_app(uid: str, n: int, recipient: str, **fields) -> SendRequest:
    values = dict(key=f"lead-{uid}/step-{n}", journey="lead", entity_id=uid, template="lead_welcome",
                  recipient={"email": recipient, "name": "Ann"}, channel="in_app",
                  context={"name": f"Ann {n}", "company": None, "offer_url": None}, due_at=datetime.now(timezone.utc))
    return SendRequest.model_validate({**values, **fields})


async def send(sends, req: SendRequest):
    return await ActivityEnvironment().run(sends.send_message, req)


async def _until(check, timeout: float = 30.0):
    for _ in range(int(timeout * 10)):
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("condition never met")


async def test_a_payment_reminder_by_email_and_in_app_then_read(stack, http, uid):
    payer = f"payer-{uid}@example.com"
    started = await http.post("/v1/payments", json=_payment(uid, channels=["email", "in_app"]))
    assert started.status_code == 201, started.text

    async def listed():
        page = (await http.get("/v1/notifications", params={"recipient": payer.upper()})).json()
        return page if page["notifications"] else None

    page = await _until(listed)
    [note] = page["notifications"]
    assert page["recipient"] == payer and page["next_before"] is None
    assert note["key"] == f"payment-{uid}/reminder-2s/in_app" and note["journey"] == "payment"
    assert note["title"] == "Reminder: 1.234,50 € is still open"  # the payer's locale, as by email
    assert f"https://pay.example.com/{uid}" in note["body"] and "Stop these emails" not in note["body"]
    assert note["read"] is False and note["read_at"] is None
    await _delivered(stack.smtp, f"payment-{uid}/reminder-2s")  # the email went as well
    assert stack.smtp.sink.keys()[note["key"]] == 0  # and the in-app one never by SMTP
    messages = (await http.get("/v1/messages", params={"journey": "payment", "entity_id": uid})).json()
    row = next(m for m in messages if m["key"] == note["key"])
    assert row["status"] == "sent" and row["subject"] == note["title"]

    assert (await http.get("/v1/notifications/unread-count", params={"recipient": payer})).json() == {
        "recipient": payer, "unread": 1}
    read = await http.post(f"/v1/notifications/{note['id']}/read")
    assert read.status_code == 200 and read.json()["read"] is True, read.text
    again = await http.post(f"/v1/notifications/{note['id']}/read")
    assert again.json()["read_at"] == read.json()["read_at"]  # the first reading's time stays
    assert (await http.get("/v1/notifications/unread-count", params={"recipient": payer})).json()["unread"] == 0


async def test_a_session_attendee_on_in_app_only_gets_no_email(stack, http, uid):
    body = _session(uid, 4, [_attendee(uid, "ann", channels=["in_app"]), _attendee(uid, "bob")],
                    policy={"reminder_offsets": [2]})
    assert (await http.post("/v1/sessions", json=body)).status_code == 201

    async def both_sent():
        rows = (await http.get(f"/v1/sessions/{uid}")).json()["messages"]
        return rows if len(rows) == 2 and all(r["status"] == "sent" for r in rows) else None

    rows = await _until(both_sent)
    keys = sorted(r["key"].split("/", 2)[2] for r in rows)
    assert keys == ["ann/in_app", "bob/email"]
    page = (await http.get("/v1/notifications", params={"recipient": f"ann-{uid}@example.com"})).json()
    assert [n["key"].rsplit("/", 2)[1:] for n in page["notifications"]] == [["ann", "in_app"]]
    assert "Algebra 1" in page["notifications"][0]["title"]
    assert (await http.get("/v1/notifications", params={"recipient": f"bob-{uid}@example.com"})).json()[
        "notifications"] == []
    assert not [m for m in stack.smtp.sink.messages if m["To"].addresses[0].addr_spec == f"ann-{uid}@example.com"]


async def test_one_notification_per_key_and_the_send_steps_rules_apply(sends, pool, stack, http, uid):
    ann = f"ann-{uid}@example.com"
    first = await send(sends, in_app(uid, 1, ann))
    assert first.status == SendStatus.SENT
    assert (await send(sends, in_app(uid, 1, ann))).already_done  # a retry of a finished key

    # an attempt that died mid-send (its lease ran out): the next stores it, once
    outbox = Outbox(pool)
    req = in_app(uid, 2, ann)
    fields = dict(key=req.key, journey=req.journey, entity_id=req.entity_id, template=req.template, recipient=ann,
                  recipient_name="Ann", category="transactional", context=req.context, message_id="<x@y>",
                  due_at=req.due_at, lease=timedelta(0), channel="in_app")
    assert (await outbox.claim(**fields)).action == "send"
    assert (await send(sends, req)).status == SendStatus.SENT
    assert (await outbox.get(req.key))["attempts"] == 2

    late = await send(sends, in_app(uid, 3, ann, not_after=datetime.now(timezone.utc) - timedelta(minutes=1)))
    assert late.status == SendStatus.SKIPPED and late.reason.startswith("too late")
    await Suppressions(pool).add(f"gone-{uid}@example.com", "unsubscribe", "test")
    gone = await send(sends, in_app(uid, 4, f"gone-{uid}@example.com"))
    assert gone.status == SendStatus.SKIPPED and gone.reason.startswith("recipient suppressed")

    page = (await http.get("/v1/notifications", params={"recipient": ann})).json()
    assert [n["key"] for n in page["notifications"]] == [f"lead-{uid}/step-2", f"lead-{uid}/step-1"]
    assert page["notifications"][0]["body"].startswith("Hello Ann 2")
    assert (await http.get("/v1/notifications", params={"recipient": f"gone-{uid}@example.com"})).json()[
        "notifications"] == []


async def test_pages_newest_first_unread_only_and_read_all_up_to(sends, stack, http, uid):
    cy = f"cy-{uid}@example.com"
    for n in range(1, 6):
        await send(sends, in_app(uid, n, cy))
    seen, before = [], None
    while True:
        params = {"recipient": cy, "limit": 2, **({"before": before} if before else {})}
        page = (await http.get("/v1/notifications", params=params)).json()
        seen += [n["key"] for n in page["notifications"]]
        if (before := page["next_before"]) is None:
            break
    assert seen == [f"lead-{uid}/step-{n}" for n in range(5, 0, -1)]

    ids = {n["key"].rsplit("-", 1)[1]: n["id"] for n in
           (await http.get("/v1/notifications", params={"recipient": cy})).json()["notifications"]}
    assert (await http.post(f"/v1/notifications/{ids['4']}/read")).status_code == 200
    unread = (await http.get("/v1/notifications", params={"recipient": cy, "unread_only": "true"})).json()
    assert [n["id"] for n in unread["notifications"]] == [ids["5"], ids["3"], ids["2"], ids["1"]]
    marked = await http.post("/v1/notifications/read-all", params={"recipient": cy, "up_to": ids["3"]})
    assert marked.json() == {"recipient": cy, "marked": 3}, marked.text  # 5 arrived after what was seen
    assert (await http.get("/v1/notifications/unread-count", params={"recipient": cy})).json()["unread"] == 1
    assert (await http.post("/v1/notifications/read-all", params={"recipient": cy})).json()["marked"] == 1

    def through_the_client():
        with FollowupsClient(stack.base_url, api_key=stack.settings.api_keys[0]) as client:
            page = client.notifications(cy, limit=1)
            with pytest.raises(FollowupsError) as missing:
                client.mark_read(2**62)
            return page, client.unread_count(cy), client.mark_all_read(cy).marked, missing.value

    page, unread_count, marked_again, missing = await asyncio.to_thread(through_the_client)
    assert [n.key for n in page.notifications] == [f"lead-{uid}/step-5"] and page.next_before == ids["5"]
    assert (unread_count, marked_again) == (0, 0)
    assert missing.status == 404 and missing.field == "notification_id"

    await send(sends, in_app(uid, 6, cy))
    code, out = await run_cli(stack, "notifications", "unread", cy)
    assert code == 0 and out.strip() == "1", out
    code, out = await run_cli(stack, "notifications", "list", cy, "--unread")
    assert code == 0 and f"lead-{uid}/step-6" in out and f"lead-{uid}/step-5" not in out, out
    code, out = await run_cli(stack, "notifications", "read-all", cy)
    assert code == 0 and "1 marked read" in out, out


@pytest.mark.parametrize("method, path, params, field", [
    ("GET", "/v1/notifications", {}, "recipient"),
    ("GET", "/v1/notifications", {"recipient": "not an address"}, "recipient"),
    ("GET", "/v1/notifications", {"recipient": "a@example.com", "limit": 0}, "limit"),
    ("GET", "/v1/notifications", {"recipient": "a@example.com", "before": 2**63}, "before"),
    ("GET", "/v1/notifications", {"recipient": "a@example.com", "unread_only": "maybe"}, "unread_only"),
    ("GET", "/v1/notifications/unread-count", {"recipient": "x" * 400 + "@example.com"}, "recipient"),
    ("POST", "/v1/notifications/read-all", {"recipient": "a@example.com", "up_to": -1}, "up_to"),
    ("POST", "/v1/notifications/abc/read", {}, "notification_id"),
    ("POST", "/v1/notifications/0/read", {}, "notification_id"),
])
async def test_bad_input_is_a_422_naming_the_field(http, method, path, params, field):
    answer = await http.request(method, path, params=params)
    assert answer.status_code == 422 and answer.json()["field"] == field, answer.text


async def test_the_routes_need_the_api_key(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as anonymous:
        answer = await anonymous.get("/v1/notifications", params={"recipient": "a@example.com"})
    assert answer.status_code == 401 and answer.json()["field"] == "authorization"
