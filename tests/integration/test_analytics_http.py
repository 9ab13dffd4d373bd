"""Analytics through the real API over a database of its own (so overall counts are exact): rows
made by the send step's own calls (Outbox.claim / finish) and the lifecycle's (Lifecycle.record),
with known human and machine opens and clicks, bounces, a complaint, an unsubscribe, skips and a
failure; exact counts, rates and time-to-open percentiles per scope, per template version and
variant, over a period; and `followups stats` printing the same."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest
import pytest_asyncio

from activities.lifecycle import Lifecycle
from activities.store import Leads, Outbox, connect
from tests.conftest import running_stack
from tests.integration.test_cli import run
from tests.integration.test_retention import fresh_database

TEMPLATE = "promo_spring"


@pytest_asyncio.fixture(scope="module")
async def analytics_stack(local_env, database_url, smtp):
    async with fresh_database(database_url, f"analytics_{uuid.uuid4().hex[:8]}") as url:
        async with running_stack(local_env, url, smtp) as stack:
            pool = await connect(url)
            try:
                await seed(pool)
                yield stack
            finally:
                await pool.close()


@pytest_asyncio.fixture
async def http(analytics_stack):
    async with httpx.AsyncClient(base_url=analytics_stack.base_url, headers=analytics_stack.headers,
                                 timeout=30) as client:
        yield client


async def sent(pool: asyncpg.Pool, key: str, *, journey: str = "payment", entity_id: str | None = None,
               template: str = TEMPLATE, status: str = "sent", reason: str | None = None,
               version: int | None = None, variant: str | None = None, age: timedelta | None = None) -> datetime:
    """One message through the outbox; its sending time."""
    outbox = Outbox(pool)
    await outbox.claim(key=key, journey=journey, entity_id=entity_id or key.split("/")[0], template=template,
                       recipient=f"{key.split('/')[0]}@example.com", recipient_name="Pat", category="marketing",
                       context={}, message_id=f"<{key.replace('/', '.')}@example.com>", due_at=None,
                       lease=timedelta(minutes=5))
    if status == "queued":
        await outbox.release(key, "SMTP busy")
    else:
        await outbox.finish(key, status, reason=reason)
    await pool.execute("UPDATE messages SET template_version = $2, variant = $3 WHERE key = $1", key, version, variant)
    if age is not None:
        await pool.execute("UPDATE messages SET created_at = created_at - $2::interval WHERE key = $1", key, age)
    return await pool.fetchval("SELECT COALESCE(sent_at, now()) FROM messages WHERE key = $1", key)


async def seed(pool: asyncpg.Pool) -> None:
    events = Lifecycle(pool)

    async def event(key: str, kind: str, at: datetime, machine: bool = False) -> None:
        await events.record(kind=kind, key=key, at=at, machine=machine)

    # promo_spring v1 variant a: four sent
    at = await sent(pool, "a1/promo", version=1, variant="a")
    await event("a1/promo", "delivered", at)
    await event("a1/promo", "opened", at + timedelta(seconds=60))
    await event("a1/promo", "opened", at + timedelta(seconds=5000))  # opened again: still one message, first open counts
    await event("a1/promo", "clicked", at + timedelta(seconds=70))
    at = await sent(pool, "a2/promo", version=1, variant="a")
    await event("a2/promo", "delivered", at)
    await event("a2/promo", "opened", at + timedelta(seconds=1), machine=True)  # Apple MPP prefetch
    await event("a2/promo", "opened", at + timedelta(seconds=120))
    at = await sent(pool, "a3/promo", version=1, variant="a")
    await event("a3/promo", "opened", at + timedelta(seconds=2), machine=True)
    await event("a3/promo", "clicked", at + timedelta(seconds=2), machine=True)  # a link scanner
    at = await sent(pool, "a4/promo", version=1, variant="a")
    await event("a4/promo", "bounced", at + timedelta(seconds=30))
    # v1 variant b: two sent
    at = await sent(pool, "b1/promo", version=1, variant="b")
    await event("b1/promo", "delivered", at)
    await event("b1/promo", "opened", at + timedelta(seconds=600))
    await event("b1/promo", "complained", at + timedelta(seconds=700))
    at = await sent(pool, "b2/promo", version=1, variant="b")
    await event("b2/promo", "soft_bounced", at)
    await event("b2/promo", "unsubscribed", at + timedelta(seconds=900))
    # the file default: one sent, two skipped, one failed, one queued
    await sent(pool, "f1/promo")
    await sent(pool, "f2/promo", status="skipped", reason="recipient suppressed (unsubscribe: one-click)")
    await sent(pool, "f3/promo", status="skipped", reason="too late: due by 2026-01-01T09:00:00+00:00")
    await sent(pool, "f4/promo", status="failed", reason="550 5.1.1 no such user")
    await sent(pool, "f5/promo", status="queued")
    # an interview journey's two messages, ten days old; one opened by a person
    at = await sent(pool, "i1/followup-1", journey="interview", template="interview_followup", age=timedelta(days=10))
    await event("i1/followup-1", "opened", at + timedelta(seconds=30))
    await sent(pool, "i2/followup-1", journey="interview", template="interview_followup", age=timedelta(days=10))
    # campaign spring: lead-1 two messages (one clicked); campaign autumn: lead-2 one
    await Leads(pool).add_many([("lead-1", "spring", "l1@example.com"), ("lead-2", "autumn", "l2@example.com")])
    at = await sent(pool, "lead-1/step-1", journey="lead", entity_id="lead-1", template="lead_nurture_1")
    await event("lead-1/step-1", "opened", at + timedelta(seconds=10))
    await event("lead-1/step-1", "clicked", at + timedelta(seconds=20))
    await sent(pool, "lead-1/step-2", journey="lead", entity_id="lead-1", template="lead_nurture_2")
    await sent(pool, "lead-2/step-1", journey="lead", entity_id="lead-2", template="lead_nurture_1")


ZERO = dict.fromkeys(("delivered", "opened_human", "opened_machine", "clicked_human", "clicked_machine", "bounced",
                      "soft_bounced", "complained", "unsubscribed"), 0)


def figures(body: dict, **expected) -> None:
    counts = {**ZERO, "pending": 0, "dry_run": 0, "failed": 0, "skipped": {}, **expected}
    assert {name: body[name] for name in counts} == counts, body
    assert body["rates"] == {name: round(body[name] / body["sent"], 4) if body["sent"] else 0.0 for name in ZERO}


async def test_a_template_per_version_and_variant(http):
    answer = await http.get(f"/v1/analytics/templates/{TEMPLATE}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["scope"], body["name"]) == ("template", TEMPLATE)
    totals = body["totals"]
    figures(totals, messages=11, sent=7, pending=1, failed=1, delivered=3, opened_human=3, opened_machine=2,
            clicked_human=1, clicked_machine=1, bounced=1, soft_bounced=1, complained=1, unsubscribed=1,
            skipped={"recipient suppressed": 1, "too late": 1})
    assert totals["rates"]["opened_human"] == 0.4286 and totals["rates"]["bounced"] == 0.1429
    # first human opens at 60, 120 and 600 s: percentile_cont interpolates between them
    assert totals["time_to_open"] == {"opens": 3, "p50": 120.0, "p90": pytest.approx(504.0),
                                      "p99": pytest.approx(590.4)}

    groups = {(g["template_version"], g["variant"]): g for g in body["breakdown"]}
    assert list(groups) == [(None, None), (1, "a"), (1, "b")]
    figures(groups[(1, "a")], messages=4, sent=4, delivered=2, opened_human=2, opened_machine=2, clicked_human=1,
            clicked_machine=1, bounced=1)
    assert groups[(1, "a")]["rates"]["delivered"] == 0.5
    assert groups[(1, "a")]["time_to_open"] == {"opens": 2, "p50": 90.0, "p90": pytest.approx(114.0),
                                                "p99": pytest.approx(119.4)}
    figures(groups[(1, "b")], messages=2, sent=2, delivered=1, opened_human=1, soft_bounced=1, complained=1,
            unsubscribed=1)
    figures(groups[(None, None)], messages=5, sent=1, pending=1, failed=1,
            skipped={"recipient suppressed": 1, "too late": 1})
    assert groups[(None, None)]["time_to_open"] == {"opens": 0, "p50": None, "p90": None, "p99": None}


async def test_overall_journey_and_campaign_scopes_and_a_period(http):
    overall = (await http.get("/v1/analytics/overall")).json()
    assert overall["breakdown"] == [] and overall["name"] is None
    figures(overall["totals"], messages=16, sent=12, pending=1, failed=1, delivered=3, opened_human=5,
            opened_machine=2, clicked_human=2, clicked_machine=1, bounced=1, soft_bounced=1, complained=1,
            unsubscribed=1, skipped={"recipient suppressed": 1, "too late": 1})

    recent = (await http.get("/v1/analytics/overall", params={
        "since": (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()})).json()
    assert recent["totals"]["messages"] == 14 and recent["totals"]["opened_human"] == 4  # not the interview's
    old = (await http.get("/v1/analytics/journeys/interview", params={
        "until": (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()})).json()
    figures(old["totals"], messages=2, sent=2, opened_human=1)
    assert old["totals"]["time_to_open"]["p50"] == 30.0

    payment = (await http.get("/v1/analytics/journeys/payment")).json()
    assert payment["totals"]["messages"] == 11
    tutor = await http.get("/v1/analytics/journeys/tutor")  # a kind with no message yet
    assert tutor.status_code == 200 and tutor.json()["totals"]["messages"] == 0

    spring = (await http.get("/v1/analytics/campaigns/spring")).json()
    figures(spring["totals"], messages=2, sent=2, opened_human=1, clicked_human=1)
    assert spring["totals"]["rates"]["clicked_human"] == 0.5
    autumn = (await http.get("/v1/analytics/campaigns/autumn")).json()
    figures(autumn["totals"], messages=1, sent=1)


@pytest.mark.parametrize("path, field", [
    ("/v1/analytics/journeys/no-such-kind", "kind"),
    ("/v1/analytics/campaigns/no-such-campaign", "campaign"),
    ("/v1/analytics/templates/no_such_template", "name"),
])
async def test_unknown_names_are_404(http, path, field):
    answer = await http.get(path)
    assert answer.status_code == 404 and answer.json()["field"] == field, answer.text


async def test_a_period_the_wrong_way_round_or_without_a_zone_is_422(http):
    now = datetime.now(timezone.utc)
    backwards = await http.get("/v1/analytics/overall", params={"since": now.isoformat(),
                                                                "until": (now - timedelta(hours=1)).isoformat()})
    assert backwards.status_code == 422 and backwards.json()["field"] == "since", backwards.text
    naive = await http.get("/v1/analytics/overall", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "since", naive.text
    empty = await http.get("/v1/analytics/overall", params={"since": now.isoformat(), "until": now.isoformat()})
    assert empty.status_code == 200 and empty.json()["totals"]["messages"] == 0
    unauthenticated = await http.get("/v1/analytics/overall", headers={"Authorization": "Bearer wrong"})
    assert unauthenticated.status_code == 401


async def test_the_cli_prints_the_same(analytics_stack):
    code, out = await run(analytics_stack, "stats", "--template", TEMPLATE)
    assert code == 0, out
    lines = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
             for line in out.splitlines() if line.count("│") > 2}
    assert lines["sent"] == ["7", "1", "4", "2"]  # all, the file default, v1 a, v1 b
    assert lines["opened human"] == ["3 (42.9%)", "0 (0.0%)", "2 (50.0%)", "1 (50.0%)"]
    assert lines["clicked machine"][0] == "1 (14.3%)"
    assert lines["skipped"][0] == "recipient suppressed 1, too late 1"
    assert lines["time to open p50 / p90 / p99"][0] == "2.0 min / 8.4 min / 9.8 min (3 opens)"
    assert "file" in out and "v1 a" in out and "v1 b" in out

    code, out = await run(analytics_stack, "stats", "--campaign", "spring", "--since", "7d")
    assert code == 0 and "campaign spring" in out, out
    code, out = await run(analytics_stack, "stats", "--journey", "no-such-kind")
    assert code == 1 and "404" in out, out
    code, out = await run(analytics_stack, "stats", "--journey", "payment", "--template", TEMPLATE)
    assert code != 0 and "at most one" in out, out

