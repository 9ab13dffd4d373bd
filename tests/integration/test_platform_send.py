"""The messaging platform inside the one send step, end to end on the real stack: the template
version a journey pins, A/B variants, preferences and frequency caps decided at send time, and
tracked links that lead where the message pointed.

Template publications and category caps are global to a database, so the tests that change them
run on a database of their own (created in the same PostgreSQL)."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import asyncpg
import httpx
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

import worker
from activities.store import connect

from activities.template_store import Variant, pick_variant
from tests.conftest import Stack, running_stack
from tests.integration.test_appointment_http import _delivered
from tests.integration.test_payment_http import _payment
from workflows.contracts import SendRequest


@pytest_asyncio.fixture(scope="module")
async def own_stack(local_env, database_url, smtp) -> AsyncIterator[Stack]:
    name = f"platform_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    parts = urllib.parse.urlsplit(database_url)
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    async with running_stack(local_env, url, smtp) as stack:
        yield stack


@pytest_asyncio.fixture
async def http(own_stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=own_stack.base_url, headers=own_stack.headers, timeout=30) as client:
        yield client


async def _row(http: httpx.AsyncClient, key: str, until=lambda row: row["status"] not in ("queued", "sending")) -> dict:
    for _ in range(300):
        got = await http.get(f"/v1/messages/{key}")
        if got.status_code == 200 and until(got.json()):
            return got.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key}: {got.status_code} {got.text}")


async def _version(http: httpx.AsyncClient, name: str, subject: str, **fields) -> int:
    body = {"subject": subject, "text": "{{ payment_url }}\n", "html": '<p><a href="{{ payment_url }}">Pay</a></p>',
            **fields}
    saved = await http.post(f"/v1/templates/{name}/versions", json=body)
    assert saved.status_code == 201, saved.text
    version = saved.json()["version"]
    published = await http.post(f"/v1/templates/{name}/versions/{version}/publish")
    assert published.status_code in (200, 201), published.text
    return version


async def test_a_journey_keeps_the_version_published_when_it_started(own_stack, http, uid):
    first = await _version(http, "payment_reminder", "First wording {{ amount }}")
    assert (await http.post("/v1/payments", json=_payment(f"{uid}-a", policy={"reminder_after": ["PT3S"]}))).status_code == 201
    await asyncio.sleep(1.1)  # a later publication, by the database clock, than the journey's start
    second = await _version(http, "payment_reminder", "Second wording {{ amount }}")
    assert (await http.post("/v1/payments", json=_payment(f"{uid}-b", policy={"reminder_after": ["PT3S"]}))).status_code == 201

    [early] = await _delivered(own_stack.smtp, f"payment-{uid}-a/reminder-3s")
    [late] = await _delivered(own_stack.smtp, f"payment-{uid}-b/reminder-3s")
    assert early["Subject"] == "First wording 1234.50" and late["Subject"] == "Second wording 1234.50"
    rows = [await _row(http, f"payment-{uid}-{x}/reminder-3s") for x in "ab"]
    assert [(r["template_version"], r["category"], r["lifecycle"]) for r in rows] == \
        [(first, "reminders", "sent"), (second, "reminders", "sent")]


async def test_a_journey_whose_policy_asks_for_the_latest_gets_a_version_published_after_its_start(own_stack, http, uid):
    await _version(http, "payment_reminder", "Before {{ amount }}")
    policy = {"reminder_after": ["PT4S"], "template_versions": "latest"}
    assert (await http.post("/v1/payments", json=_payment(uid, policy=policy))).status_code == 201
    await asyncio.sleep(1.1)
    newer = await _version(http, "payment_reminder", "After {{ amount }}")
    [mail] = await _delivered(own_stack.smtp, f"payment-{uid}/reminder-4s")
    assert mail["Subject"] == "After 1234.50"
    assert (await _row(http, f"payment-{uid}/reminder-4s"))["template_version"] == newer


async def test_a_recipient_always_gets_the_same_variant_and_the_message_records_it(own_stack, http, uid):
    variants = [{"name": "plain", "weight": 1}, {"name": "urgent", "weight": 1, "subject": "Urgent: {{ amount }}"}]
    version = await _version(http, "payment_reminder", "Plain: {{ amount }}", variants=variants)
    payers = [f"{uid}-{n}" for n in range(6)]
    for payer in payers:
        assert (await http.post("/v1/payments", json=_payment(payer, policy={"reminder_after": ["PT1S"]}))).status_code == 201
    for payer in payers:
        [mail] = await _delivered(own_stack.smtp, f"payment-{payer}/reminder-1s")
        row = await _row(http, f"payment-{payer}/reminder-1s")
        expected = pick_variant("payment_reminder", version, _as_variants(variants), f"payer-{payer}@example.com")
        assert row["variant"] == expected.name and row["template_version"] == version
        assert mail["Subject"] == ("Urgent: 1234.50" if expected.name == "urgent" else "Plain: 1234.50")


def _as_variants(variants: list[dict]) -> list[Variant]:
    return [Variant(v["name"], v["weight"], {part: v[part] for part in ("subject", "text", "html") if part in v})
            for v in variants]


async def test_a_reminder_unsubscribed_category_is_skipped_and_the_receipt_still_goes(own_stack, http, uid):
    payer = f"payer-{uid}@example.com"
    chosen = await http.put(f"/v1/preferences/{payer}", json={"categories": {"reminders": {"email": False}}})
    assert chosen.status_code == 200, chosen.text
    assert (await http.post("/v1/payments", json=_payment(uid, policy={"reminder_after": ["PT1S"]}))).status_code == 201
    reminder = await _row(http, f"payment-{uid}/reminder-1s", until=lambda r: r["status"] == "skipped")
    assert reminder["reason"] == "unsubscribed from reminders (email)" and reminder["category"] == "reminders"
    assert (await http.post(f"/v1/payments/{uid}/paid", json={"reference": "ch_1"})).status_code == 200
    await _delivered(own_stack.smtp, f"payment-{uid}/confirmation")  # transactional is critical: it goes
    receipt = await _row(http, f"payment-{uid}/confirmation")
    assert receipt["status"] == "sent" and receipt["category"] == "transactional"


async def test_a_daily_cap_on_marketing_drops_the_second_welcome_across_journeys(own_stack, http, uid):
    capped = await http.put("/v1/categories/marketing", json={"description": "offers", "critical": False,
                                                              "daily_cap": 1, "cap_policy": "drop"})
    assert capped.status_code == 200, capped.text
    contact = {"email": f"lead-{uid}@example.com", "name": "Lee"}
    for n in (1, 2):
        started = await http.post("/v1/leads", json={"lead_id": f"{uid}-{n}", "contact": contact, "campaign": "spring"})
        assert started.status_code == 201, started.text
        await _row(http, f"lead-{uid}-{n}/step-1")  # one after the other: the second sees the first sent
    second = await _row(http, f"lead-{uid}-2/step-1")
    assert second["status"] == "skipped" and second["reason"].startswith("frequency cap (1 marketing a day)"), second
    assert (await _row(http, f"lead-{uid}-1/step-1"))["status"] == "sent"


async def test_links_are_tracked_to_where_the_message_pointed(own_stack, http, uid):
    assert (await http.post("/v1/payments", json=_payment(uid, policy={"reminder_after": ["PT1S"]}))).status_code == 201
    key = f"payment-{uid}/reminder-1s"
    [mail] = await _delivered(own_stack.smtp, key)
    html = mail.get_body(("html",)).get_content()
    base = own_stack.settings.public_base_url
    assert f'{base}/t/o/' in html  # the open pixel
    clicks = [part.split('"')[0] for part in html.split(f'href="{base}/t/c/')[1:]]
    await asyncio.sleep(2.1)  # a click within 2 s of sending is a scanner's
    async with httpx.AsyncClient(headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"}) as browser:
        followed = await browser.get(f"{base}/t/c/{clicks[0]}")
        assert followed.status_code == 302 and followed.headers["location"] == f"https://pay.example.com/{uid}"
    row = await _row(http, key, until=lambda r: r["lifecycle"] == "clicked")
    assert [(e["kind"], e["machine"]) for e in row["events"]] == [("clicked", False)]


async def test_messages_sent_at_the_same_moment_share_the_cap_one_goes(own_stack, http, uid):
    """Two journeys (or several messages that waited for the same cap) at the same moment: the one
    claimed first goes, the other sees it being sent and is held by the cap."""
    capped = await http.put("/v1/categories/marketing", json={"description": "offers", "critical": False,
                                                              "daily_cap": 1, "cap_policy": "drop"})
    assert capped.status_code == 200, capped.text
    pool = await connect(own_stack.settings.database_url, 4)
    sends = worker.send_activities(own_stack.settings, pool)
    try:
        requests = [SendRequest(
            key=f"lead-{uid}-{n}/step-1", journey="lead", entity_id=f"{uid}-{n}", template="lead_welcome",
            recipient={"email": f"same-{uid}@example.com", "name": "Sam"}, category="marketing",
            context={"name": "Sam", "company": None, "offer_url": None}, due_at=datetime.now(timezone.utc))
            for n in range(4)]
        results = await asyncio.gather(*(ActivityEnvironment().run(sends.send_message, r) for r in requests))
    finally:
        await sends.transport.close()
        await pool.close()
    statuses = sorted(result.status.value for result in results)
    assert statuses == ["sent", "skipped", "skipped", "skipped"], [(r.status, r.reason) for r in results]
    assert all(r.reason.startswith("frequency cap") for r in results if r.status.value == "skipped")
