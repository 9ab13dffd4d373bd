"""GDPR export and erasure through the real API, worker, dev server and PostgreSQL: a person with a
running payment journey, messages (their own and a child's copy to them as the parent), events,
links, a notification, preferences, a suppression, a digest registration, a lead, an enrollment, a
roster place and an announcement. The export lists all of it; DELETE ends the journey, deletes its
execution and every row about them, keeps only the hash, leaves a bystander's rows alone, and
says 0 everywhere the second time; the export is then empty. A later send to the address is
skipped as erased. Erasing a child takes the parent's copies of their messages; erasing a parent
takes the parent out of the children's records. An address that could change the meaning of the
visibility query (a quote, a backslash, whitespace) is refused and changes nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest_asyncio
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.lifecycle import Lifecycle
from activities.retention import email_hash
from activities.store import Leads, Notifications, Outbox, Roster, Suppressions, connect
from starter.routes.recipients import _recipient_is
from tests.integration.test_appointment_http import _delivered
from workflows.contracts import Recipient

TABLES = ("messages", "message_events", "message_links", "notifications", "preferences", "recipient_settings",
          "suppressions", "digest_recipients", "journey_recipients", "announcement_audience", "leads", "roster",
          "announcements", "campaign_members", "campaign_audience", "campaign_conversions", "webhook_events")


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
    # an endpoint that wants opens: the open below is an event the backend is to be told, naming Erin
    await pool.execute("INSERT INTO webhook_endpoints (id, url, secret, event_types) VALUES "
                       "($1, 'http://127.0.0.1:9/', 'whsec_x', '{message.opened}')", f"ep-{uid}")
    await Lifecycle(pool).record(kind="opened", key=key)
    await pool.execute("UPDATE webhook_endpoints SET enabled = false WHERE id = $1", f"ep-{uid}")
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
    await pool.execute("INSERT INTO campaigns (campaign_id, name, template, category, priority) VALUES "
                       "($1, 'Spring', 'course_announcement', 'progress', 'normal')", f"c-{uid}")
    for table in ("campaign_members", "campaign_audience"):
        seq = ", seq" if table == "campaign_audience" else ""
        await pool.executemany(f"INSERT INTO {table} (campaign_id, email, recipient{seq}) VALUES "
                               f"($1, $2, $3{', $4' if seq else ''})",
                               [(f"c-{uid}", r["email"].lower(), json.dumps(r), *([n] if seq else []))
                                for n, r in enumerate(recipients, start=1)])
    await pool.execute("INSERT INTO campaign_conversions (campaign_id, email) VALUES ($1, $2), ($1, $3)",
                       f"c-{uid}", lower, other)
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
    # of an announcement's recipients, only their own entry: never the others'
    [announcement] = before["tables"]["announcements"]
    assert announcement["body"]["recipients"] == [{"email": email, "name": "Erin"}]
    assert announcement["body"]["title"] == "New" and other not in json.dumps(before)
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


# The review's attack (a backslash before the quote, which the quote's doubling made an escaped
# quote and then a closing one), and the same with each character that could end the literal or
# the query; each as sent on the wire.
ATTACKS = ("a@b%5C')or(WorkflowType!%3D%22%22)%23", "a@b%22)or(WorkflowType!%3D%22%22)%23", "a@b%5C",
           "a@b%5C')%23", "a@b%20or%20WorkflowType!%3D''")
# A single quote is allowed (o'brien@example.com): doubled in its literal, it only names an odd address.
QUOTED = ("a@b')or(WorkflowType!%3D'')%23", "a@b')", "a@b'%23")


async def test_an_address_that_could_change_the_visibility_query_is_refused_and_changes_nothing(stack, http, pool, uid):
    victim = f"victim.{uid}@example.com"
    started = await http.post("/v1/payments", json=_payment(uid, victim, ["P3D"]))
    assert started.status_code == 201, started.text
    try:
        for attack in ATTACKS:
            for method, path in (("DELETE", f"/v1/recipients/{attack}"), ("GET", f"/v1/recipients/{attack}/export")):
                answer = await http.request(method, path)
                assert answer.status_code == 422, (method, attack, answer.text)
                assert answer.json()["field"] == "email", answer.text
                assert "double quotes, backslashes, whitespace or control characters" in answer.json()["detail"][0]["reason"]
        for attack in QUOTED:
            exported = await http.get(f"/v1/recipients/{attack}/export")
            assert exported.status_code == 200 and exported.json()["journeys"] == [], exported.text
            erased = await http.delete(f"/v1/recipients/{attack}")
            assert erased.status_code == 200 and erased.json()["journeys_cancelled"] == 0, erased.text
            assert erased.json()["executions_deleted"] == 0, erased.text
        # a control character never gets past the URL check (its 422 names the path)
        assert (await http.delete("/v1/recipients/a@b%00")).status_code == 422
        decoded = [httpx.URL(f"/{attack}").path[1:] for attack in ATTACKS]
        assert await pool.fetchval("SELECT count(*) FROM erased_recipients WHERE email_hash = ANY($1::text[])",
                                   [email_hash(address) for address in decoded]) == 0
        # the query builder itself: a quote stays inside its literal, a backslash is refused
        query = _recipient_is(("a@b')or(WorkflowType!=\"\")#", "o'brien@example.com"))
        assert [e async for e in stack.temporal.list_workflows(query)] == []
        with pytest.raises(ValueError):
            _recipient_is(("a@b\\')or(WorkflowType!=\"\")#",))
        # what is left of an attack without a quote is only an odd address: it matches nobody
        odd = (await http.get("/v1/recipients/a@b)or(WorkflowType!%3Dx)%23/export")).json()
        assert odd["journeys"] == [] and not any(odd["tables"].values())

        description = await stack.temporal.get_workflow_handle(f"payment-{uid}").describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        [journey] = (await http.get(f"/v1/recipients/{victim}/export")).json()["journeys"]
        assert journey["workflow_id"] == f"payment-{uid}" and journey["status"] == "RUNNING"
    finally:
        await http.post(f"/v1/payments/{uid}/cancel", json={})


def _child(uid: str, name: str, parent: str, copy: str) -> dict:
    return Recipient(email=f"{name}.{uid}@example.com", name=name.title(), under_13=True, parent_email=parent,
                     parent_name=f"Pat Parent {uid}", parent_copy=copy).model_dump(mode="json")


async def seed_family(pool, uid: str, parent: str) -> tuple[dict, dict]:
    """Two children of `parent`: Kim (copies `also`, with a message, its parent's copy, their
    events and links) and Ivy (messages to the parent `instead`), in every record that names a
    child; and a bystander, Olu, beside them."""
    kim, ivy = _child(uid, "kim", parent, "also"), _child(uid, "ivy", parent, "instead")
    olu = {"email": f"olu.{uid}@example.com", "name": "Olu"}
    people = [kim, ivy, olu]
    await pool.executemany("INSERT INTO journey_recipients (journey, entity_id, grp, email, recipient) VALUES "
                           "('enrollment', $1, 'art', $2, $3)", [(uid, p["email"], json.dumps(p)) for p in people])
    await pool.executemany("INSERT INTO announcement_audience (course, announcement_id, email, recipient) VALUES "
                           "('art', $1, $2, $3)", [(uid, p["email"], json.dumps(p)) for p in people])
    await pool.execute("INSERT INTO announcements (course, announcement_id, body, audience) VALUES ('art', $1, $2, 3)",
                       uid, json.dumps({"title": "New", "url": "https://example.com", "recipients": people}))
    await Roster(pool).add(f"session-{uid}", [{"attendee_id": p["name"].lower(), **p} for p in people],
                           keep_removed=False)
    own = {"email": parent.lower(), "name": f"Pat Parent {uid}", "copy": "also"}
    for key, recipient, name, context, kept in (
            (f"kim-{uid}/welcome", kim["email"], "Kim", {}, own),
            (f"kim-{uid}/welcome/parent", parent.lower(), "Parent of Kim", {"parent_copy_of": "Kim"}, None),
            (f"olu-{uid}/welcome", olu["email"], "Olu", {}, None)):
        await Outbox(pool).claim(key=key, journey="enrollment", entity_id=uid, template="welcome", recipient=recipient,
                                 recipient_name=name, category="transactional", context=context,
                                 message_id=f"<{uid}.{len(key)}@example.com>", due_at=None,
                                 lease=timedelta(minutes=1), parent=kept)
        await Outbox(pool).finish(key, "sent")
        await Lifecycle(pool).record(kind="opened", key=key)
        await pool.execute("INSERT INTO message_links (key, idx, url) VALUES ($1, 99, 'https://example.com/x')", key)
    return kim, ivy


async def _mentions(pool, value: str) -> dict[str, int]:
    """Rows of every table of a person's data whose text holds `value` (any case)."""
    found = {}
    for table in TABLES:
        found[table] = await pool.fetchval(f"SELECT count(*) FROM {table} t WHERE t::text ILIKE '%' || $1 || '%'", value)
    return {table: n for table, n in found.items() if n}


async def test_erasing_a_child_takes_the_parents_copies_of_their_messages(http, pool, uid):
    parent = f"Pat.{uid}@example.com"
    kim, _ = await seed_family(pool, uid, parent)
    exported = (await http.get(f"/v1/recipients/{kim['email']}/export")).json()
    assert {row["key"] for row in exported["tables"]["messages"]} == {f"kim-{uid}/welcome", f"kim-{uid}/welcome/parent"}

    erased = await http.delete(f"/v1/recipients/{kim['email']}")
    assert erased.status_code == 200, erased.text
    deleted = erased.json()["deleted"]
    assert (deleted["messages"], deleted["message_links"]) == (2, 2) and deleted["message_events"] >= 2
    for key in (f"kim-{uid}/welcome", f"kim-{uid}/welcome/parent"):
        for table in ("messages", "message_events", "message_links"):
            assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE key = $1", key) == 0, (table, key)
    assert await _mentions(pool, kim["email"]) == {} and await _mentions(pool, f"kim-{uid}/welcome") == {}
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE key = $1", f"olu-{uid}/welcome") == 1


async def test_erasing_a_parent_takes_them_out_of_their_childrens_records(http, pool, uid):
    parent = f"Pat.{uid}@example.com"
    kim, ivy = await seed_family(pool, uid, parent)
    before = await _mentions(pool, parent)
    assert {"journey_recipients", "announcement_audience", "roster", "announcements", "messages"} <= set(before)

    erased = await http.delete(f"/v1/recipients/{parent}")
    assert erased.status_code == 200, erased.text
    deleted = erased.json()["deleted"]
    # changed: Kim's and Ivy's records (Ivy's audience row goes), the body's two entries in one row
    assert {t: deleted[t] for t in ("journey_recipients", "announcement_audience", "roster", "announcements")} == {
        "journey_recipients": 2, "announcement_audience": 2, "roster": 2, "announcements": 1}
    assert await _mentions(pool, parent) == {} and await _mentions(pool, f"Pat Parent {uid}") == {}

    gone = ("under_13", "parent_email", "parent_name", "parent_copy")
    plain = {name: {k: v for k, v in child.items() if k not in gone} for name, child in (("kim", kim), ("ivy", ivy))}
    rows = {r["email"]: r for r in await pool.fetch("SELECT email, recipient, ended_by FROM journey_recipients "
                                                     "WHERE entity_id = $1", uid)}
    assert json.loads(rows[kim["email"]]["recipient"]) == plain["kim"] and rows[kim["email"]]["ended_by"] is None
    # Ivy's messages went to the parent instead: with no parent left, nothing more goes to her
    assert json.loads(rows[ivy["email"]]["recipient"]) == plain["ivy"]
    assert rows[ivy["email"]]["ended_by"] == "parent erased"
    audience = {r["email"]: json.loads(r["recipient"]) for r in await pool.fetch(
        "SELECT email, recipient FROM announcement_audience WHERE announcement_id = $1", uid)}
    assert set(audience) == {kim["email"], f"olu.{uid}@example.com"} and audience[kim["email"]] == plain["kim"]
    Recipient.model_validate(audience[kim["email"]])  # still a recipient the announcement can send to
    on_roster = await Roster(pool).page(f"session-{uid}", None, 10)
    assert [a["attendee_id"] for a in on_roster] == ["kim", "olu"] and on_roster[0] == {"attendee_id": "kim", **plain["kim"]}
    body = json.loads(await pool.fetchval("SELECT body FROM announcements WHERE announcement_id = $1", uid))
    assert body["recipients"][:2] == [plain["kim"], plain["ivy"]]
    # the children's own messages went with the parent's (they named the parent); the bystander's stay
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE entity_id = $1", uid) == 1
