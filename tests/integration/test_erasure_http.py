"""GDPR export and erasure through the real API, worker, dev server and PostgreSQL: a person with a
running payment journey, messages (their own and a child's copy to them as the parent), events,
links, a notification, preferences, a suppression, a digest registration, a lead, an enrollment, a
roster place and an announcement. The export lists all of it; DELETE ends the journey, deletes its
execution and every row about them, keeps only the hash, leaves a bystander's rows alone, and
says 0 everywhere the second time; the export is then empty. A later send to the address is
skipped as erased."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest_asyncio
from temporalio.service import RPCError, RPCStatusCode

from activities.lifecycle import Lifecycle
from activities.retention import email_hash
from activities.store import Leads, Notifications, Outbox, Roster, Suppressions, connect
from tests.integration.test_appointment_http import _delivered

TABLES = ("messages", "message_events", "message_links", "notifications", "preferences", "recipient_settings",
          "suppressions", "digest_recipients", "journey_recipients", "announcement_audience", "leads", "roster",
          "announcements")


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=60) as client:
        yield client


@pytest_asyncio.fixture
async def pool(stack):
    pool = await connect(stack.settings.database_url)
    yield pool
    await pool.close()


def _payment(uid: str, email: str, reminders: list[str]) -> dict:
    return {"payment_id": uid, "payer": {"email": email, "name": "Erin Example"}, "amount": "20.00",
            "currency": "EUR", "payment_url": f"https://pay.example.com/{uid}", "policy": {"reminder_after": reminders}}


async def seed(pool, uid: str, email: str, other: str) -> None:
    """Rows about `email` in every table that holds people, and one row of `other` beside several."""
    lower = email.lower()
    key = f"payment-{uid}/reminder-1s"
    await Lifecycle(pool).record(kind="opened", key=key)
    await Lifecycle(pool).record(kind="bounced", email=lower)  # an address-only provider event
    await pool.execute("INSERT INTO message_links (key, idx, url) VALUES ($1, 99, 'https://pay.example.com/x')", key)
    await Notifications(pool).deliver(key=f"note-{uid}", recipient=email, journey="payment", entity_id=uid,
                                      template="payment_reminder", title="Pay", body="Please pay")
    await pool.execute("INSERT INTO preferences (email, category, channel, subscribed) VALUES ($1, 'marketing', "
                       "'email', false)", lower)
    await pool.execute("INSERT INTO recipient_settings (email, time_zone) VALUES ($1, 'Europe/Berlin')", lower)
    await Suppressions(pool).add(email, "manual", "asked by phone")
    await pool.execute("INSERT INTO digest_recipients (recipient, email, name, time_zone, digests) VALUES "
                       "($1, $2, 'Erin', 'Europe/Berlin', '{weekly}')", f"erin-{uid}", email)
    await Leads(pool).add_many([(f"lead-{uid}", "spring", email), (f"lead-other-{uid}", "spring", other)])
    await pool.execute("INSERT INTO journey_recipients (journey, entity_id, grp, email, recipient) VALUES "
                       "('enrollment', $1, 'math', $2, $3)", uid, lower, json.dumps({"email": email, "name": "Erin"}))
    await Roster(pool).add(f"session-{uid}", [{"attendee_id": "erin", "name": "Erin", "email": email},
                                              {"attendee_id": "other", "name": "Olu", "email": other}],
                           keep_removed=False)
    recipients = [{"email": email, "name": "Erin"}, {"email": other, "name": "Olu"}]
    await pool.execute("INSERT INTO announcements (course, announcement_id, body, audience) VALUES "
                       "('math', $1, $2, 2)", uid, json.dumps({"title": "New", "recipients": recipients}))
    await pool.executemany("INSERT INTO announcement_audience (course, announcement_id, email, recipient) VALUES "
                           "('math', $1, $2, $3)", [(uid, r["email"], json.dumps(r)) for r in recipients])
    # a child's message whose copies go to Erin as the parent; and a message of the bystander
    for child_key, recipient, parent in ((f"child-{uid}/welcome", f"kid-{uid}@example.com",
                                          {"email": email, "name": "Erin", "copy": "also"}),
                                         (f"other-{uid}/welcome", other, None)):
        await Outbox(pool).claim(key=child_key, journey="enrollment", entity_id=uid, template="welcome",
                                 recipient=recipient, recipient_name="Kid", category="transactional", context={},
                                 message_id=f"<{uid}.{len(child_key)}@example.com>", due_at=None,
                                 lease=timedelta(minutes=1), parent=parent)
        await Outbox(pool).finish(child_key, "sent")


async def test_export_then_erase_everything_and_keep_only_the_hash(stack, http, pool, uid):
    email, other = f"Erin.{uid}@example.com", f"olu.{uid}@example.com"
    started = await http.post("/v1/payments", json=_payment(uid, email, ["PT1S", "P3D"]))
    assert started.status_code == 201, started.text
    await _delivered(stack.smtp, f"payment-{uid}/reminder-1s")
    await seed(pool, uid, email, other)

    exported = await http.get(f"/v1/recipients/{email}/export")
    assert exported.status_code == 200, exported.text
    before = exported.json()
    assert before["email"] == email.lower() and before["erased_at"] is None
    held = {table: len(rows) for table, rows in before["tables"].items()}
    assert set(held) == set(TABLES) and all(held.values()), held
    assert {row["key"] for row in before["tables"]["messages"]} == {f"payment-{uid}/reminder-1s", f"child-{uid}/welcome"}
    assert before["tables"]["roster"][0]["attendee"]["email"] == email
    [journey] = before["journeys"]
    assert (journey["workflow_id"], journey["status"], journey["journey"]) == (f"payment-{uid}", "RUNNING", "payment")

    erased = await http.delete(f"/v1/recipients/{email}")
    assert erased.status_code == 200, erased.text
    report = erased.json()
    assert report["email_hash"] == email_hash(email)
    assert (report["journeys_cancelled"], report["journeys_terminated"], report["executions_deleted"]) == (1, 0, 1)
    deleted = report["deleted"]
    # the send step may add its own events and tracked links to the reminder
    assert deleted["messages"] == 2 and deleted["message_events"] >= 2 and deleted["message_links"] >= 1
    varying = {"messages", "message_events", "message_links"}
    assert {table: n for table, n in deleted.items() if table not in varying} == {
        "erased_recipients": 1, **dict.fromkeys(set(TABLES) - varying, 1)}

    assert await pool.fetchval("SELECT count(*) FROM erased_recipients WHERE email_hash = $1", email_hash(email)) == 1
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE key = $1", f"other-{uid}/welcome") == 1
    assert await pool.fetchval("SELECT count(*) FROM leads WHERE lead_id = $1", f"lead-other-{uid}") == 1
    assert await Roster(pool).page(f"session-{uid}", None, 10) == [{"attendee_id": "other", "name": "Olu", "email": other}]
    body = json.loads(await pool.fetchval("SELECT body FROM announcements WHERE announcement_id = $1", uid))
    assert body["recipients"] == [{"email": other, "name": "Olu"}]
    await _gone(stack, f"payment-{uid}")

    after = await _export_settled(http, email)
    assert after["erased_at"] is not None
    assert {table: rows for table, rows in after["tables"].items() if rows} == {}

    again = (await http.delete(f"/v1/recipients/{email}")).json()
    assert set(again["deleted"].values()) == {0}, again
    assert (again["journeys_cancelled"], again["journeys_terminated"], again["executions_deleted"]) == (0, 0, 0)


async def test_an_address_never_seen_exports_nothing_and_is_erased_once(http, uid):
    email = f"nobody.{uid}@example.com"
    exported = (await http.get(f"/v1/recipients/{email}/export")).json()
    assert exported["journeys"] == [] and not any(exported["tables"].values())
    first = (await http.delete(f"/v1/recipients/{email}")).json()
    assert first["deleted"]["erased_recipients"] == 1 and sum(first["deleted"].values()) == 1
    assert (await http.delete(f"/v1/recipients/{email}")).json()["deleted"]["erased_recipients"] == 0
    assert (await http.delete("/v1/recipients/not-an-address")).status_code == 422


async def test_a_later_send_to_an_erased_address_is_skipped_and_stores_nothing(stack, http, uid):
    email = f"gone.{uid}@example.com"
    assert (await http.delete(f"/v1/recipients/{email}")).status_code == 200
    started = await http.post("/v1/payments", json=_payment(uid, email, ["PT1S", "P3D"]))
    assert started.status_code == 201, started.text
    try:
        for _ in range(300):
            skips = (await http.get(f"/v1/payments/{uid}")).json()["state"]["skips"]
            if skips:
                break
            await asyncio.sleep(0.1)
        assert [(s["step"], s["reason"]) for s in skips] == [(f"payment-{uid}/reminder-1s", "recipient erased")]
        assert f"payment-{uid}/reminder-1s" not in stack.smtp.sink.keys()
        # Not even the skipped message's row: it would hold the address again.
        assert (await http.get("/v1/messages", params={"journey": "payment", "entity_id": uid})).json() == []
    finally:
        await http.post(f"/v1/payments/{uid}/cancel", json={})


async def _gone(stack, workflow_id: str) -> None:
    # Temporal deletes asynchronously: once the close is through its visibility queue (~30 s here)
    for _ in range(900):
        try:
            await stack.temporal.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            assert err.status == RPCStatusCode.NOT_FOUND
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} was not deleted")


async def _export_settled(http: httpx.AsyncClient, email: str) -> dict:
    """The export once visibility has caught up with the deletion."""
    for _ in range(100):
        body = (await http.get(f"/v1/recipients/{email}/export")).json()
        if not body["journeys"]:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{email}'s journeys are still listed: {body['journeys']}")
