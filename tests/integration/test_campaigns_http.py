"""Broadcast campaigns on the real stack (dev server, PostgreSQL, SMTP sink, the API on a socket):
a draft's audience from a list, a CSV and a filter; sent once to everyone through the one send
step; paused, resumed, and a worker restarted mid-way without anyone sent twice or skipped; an
urgent campaign overtaking a low one on the rate-limited queue; an A/B test decided on
conversions, the rest getting the winner; a lead-nurture campaign listed beside broadcasts."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx
import pytest
import pytest_asyncio

import worker
from activities.campaigns import arm_of
from starter.connect import connect_temporal
from tests.integration.test_cli import run
from workflows.campaign.models import Arm
from tests.conftest import running_stack

pytestmark = pytest.mark.integration

ANNOUNCEMENT = {"course": "Orbital Mechanics", "title": "Week 4 notes", "url": "https://lms.example.com/w4",
                "summary": "Transfer orbits."}


@pytest_asyncio.fixture(scope="module")
async def stack(local_env, database_url, smtp):
    """No rate limit: these tests are about what is sent, not how fast."""
    async with running_stack(local_env, database_url, smtp, campaign_rate_per_minute=0) as running:
        yield running


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def throttled(local_env, database_url, smtp):
    """600 a minute (10/s), one email per send activity: slow enough to pause, to overtake."""
    async with running_stack(local_env, database_url, smtp, campaign_rate_per_minute=600) as running:
        yield running


def people(uid: str, n: int, prefix: str = "p") -> list[dict]:
    return [{"email": f"{prefix}{i}-{uid}@example.com", "name": f"Person {i}"} for i in range(n)]


async def create(http: httpx.AsyncClient, campaign_id: str, **over) -> dict:
    body = {"campaign_id": campaign_id, "name": f"Campaign {campaign_id}", "template": "course_announcement",
            "context": ANNOUNCEMENT, **over}
    answer = await http.post("/v1/campaigns", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def until(http: httpx.AsyncClient, campaign_id: str, check, timeout: float = 60) -> dict:
    body: dict = {}
    for _ in range(int(timeout * 10)):
        body = (await http.get(f"/v1/campaigns/{campaign_id}")).json()
        if check(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"campaign {campaign_id} never got there: {body}")


def sent_keys(stack, campaign_id: str) -> Counter[str]:
    prefix = f"campaign-{campaign_id}/"
    return Counter({k: n for k, n in stack.smtp.sink.keys().items() if k.startswith(prefix)})


async def test_a_draft_from_a_list_a_csv_and_a_filter_goes_to_everyone_once(stack, http, uid):
    campaign_id = f"news-{uid}"
    draft = await create(http, campaign_id, recipients=people(uid, 3))
    assert (draft["status"], draft["kind"], draft["progress"]["audience"], draft["category"]) == \
        ("draft", "broadcast", 3, "progress")
    csv_text = (f"email,name,time_zone,nickname\n"
                f"csv1-{uid}@example.com,Ann,Europe/Berlin,annie\n"
                f"not-an-address,Bob,,\n"
                f"p0-{uid}@example.com,Dup,,\n"  # already in the audience: keeps its first entry
                f"csv2-{uid}@example.com,Cy,Mars/Olympus,\n")
    added = await http.post(f"/v1/campaigns/{campaign_id}/recipients", content=csv_text,
                            headers={"Content-Type": "text/csv"})
    assert added.status_code == 200, added.text
    report = added.json()
    assert (report["added"], report["audience"], report["rejected_count"]) == (1, 4, 2), report
    assert [(p["line"], p["field"]) for p in report["rejected"]] == [(3, "email"), (5, "time_zone")]
    # everyone enrolled in a course: a declared journey's recipients of that group
    course = f"c-{uid}"
    started = await http.post("/v1/journeys/enrollment", json={
        "id": f"{course}-e1", "group": course, "anchors": {"enrolled_at": "2026-01-01T00:00:00+00:00"},
        "recipient": {"email": f"enrolled-{uid}@example.com", "name": "Enrolled"},
        "context": {"course_title": course, "course_url": f"https://lms.example.com/{course}"}})
    assert started.status_code == 201, started.text
    filtered = await http.post(f"/v1/campaigns/{campaign_id}/filters", json={"journey": "enrollment", "group": course})
    assert filtered.status_code == 200 and filtered.json()["audience"] == 5, filtered.text
    pool = await asyncpg.connect(stack.settings.database_url)
    try:
        await pool.execute("INSERT INTO suppressions (email, reason, source) VALUES ($1, 'test', 'manual')",
                           f"p2-{uid}@example.com")
    finally:
        await pool.close()

    scheduled = await http.post(f"/v1/campaigns/{campaign_id}/schedule")
    assert scheduled.status_code == 202 and scheduled.json()["status"] in ("scheduled", "sending"), scheduled.text
    done = await until(http, campaign_id, lambda b: b["status"] == "completed")
    progress = done["progress"]
    assert (progress["audience"], progress["sent"], progress["failed"], progress["remaining"]) == (5, 4, 0, 0), done
    assert progress["skipped"] == {"recipient suppressed": 1}
    keys = sent_keys(stack, campaign_id)
    assert set(keys.values()) == {1} and len(keys) == 4
    [mail] = [m for m in stack.smtp.sink.messages if m["X-Followups-Key"] == f"campaign-{campaign_id}/csv1-{uid}@example.com"]
    assert mail["Subject"] == "New in Orbital Mechanics: Week 4 notes" and "Ann" in mail["To"]

    # a draft's audience is frozen once it is sent: nothing more can be added, it cannot be scheduled again
    late = await http.post(f"/v1/campaigns/{campaign_id}/recipients", json={"recipients": people(uid, 1, "late")})
    assert late.status_code == 409 and late.json()["field"] == "campaign_id", late.text
    again = await http.post(f"/v1/campaigns/{campaign_id}/schedule")
    assert again.status_code == 409, again.text
    listed = (await http.get("/v1/campaigns")).json()["campaigns"]
    assert campaign_id in [c["campaign_id"] for c in listed]
    stats = (await http.get(f"/v1/campaigns/{campaign_id}/stats")).json()
    assert (stats["started"], stats["emailed_per_step"]) == (5, {"broadcast": 4}), stats
    analytics = (await http.get(f"/v1/analytics/campaigns/{campaign_id}")).json()
    assert analytics["totals"]["sent"] == 4, analytics


async def test_bad_campaigns_are_refused_with_the_field(stack, http, uid):
    def field(answer: httpx.Response) -> tuple[int, str]:
        return answer.status_code, answer.json().get("field")

    base = {"campaign_id": f"bad-{uid}", "name": "Bad", "template": "course_announcement", "context": ANNOUNCEMENT}
    assert field(await http.post("/v1/campaigns", json={**base, "template": "no_such_template"})) == (422, "template")
    assert field(await http.post("/v1/campaigns", json={**base, "category": "marketing"})) == (422, "category")
    # the file template has no variants, so no arm of a test can be sent
    test = {"arms": [{"variant": "a"}, {"variant": "b"}]}
    assert field(await http.post("/v1/campaigns", json={**base, "ab_test": test})) == (422, "ab_test.arms")
    assert (await http.post("/v1/campaigns", json={**base, "priority": "asap"})).status_code == 422
    created = await create(http, f"empty-{uid}")
    assert created["status"] == "draft"
    empty = await http.post(f"/v1/campaigns/empty-{uid}/schedule")
    assert field(empty) == (422, "recipients")
    again = await http.post("/v1/campaigns", json={**base, "campaign_id": f"empty-{uid}", "name": "Other"})
    assert field(again) == (409, "name")
    cancelled = await http.post(f"/v1/campaigns/empty-{uid}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled", cancelled.text
    assert (await http.get(f"/v1/campaigns/nope-{uid}")).status_code == 404


async def test_pause_resume_and_a_worker_restart_send_everyone_exactly_once(throttled, uid):
    async with httpx.AsyncClient(base_url=throttled.base_url, headers=throttled.headers, timeout=30) as http:
        campaign_id = f"pause-{uid}"
        await create(http, campaign_id, recipients=people(uid, 60))
        assert (await http.post(f"/v1/campaigns/{campaign_id}/schedule")).status_code == 202
        await until(http, campaign_id, lambda b: b["progress"]["sent"] >= 10)
        paused = await http.post(f"/v1/campaigns/{campaign_id}/pause")
        assert paused.status_code == 202, paused.text
        held = await until(http, campaign_id, lambda b: b["status"] == "paused")
        await asyncio.sleep(1.5)
        still = (await http.get(f"/v1/campaigns/{campaign_id}")).json()
        assert still["progress"]["sent"] == held["progress"]["sent"] < 60, (held, still)

        # a second worker comes and the first one goes while the campaign is paused and then sending
        address = throttled.temporal.service_client.config.target_host
        client = await connect_temporal(throttled.settings.model_copy(update={"temporal_address": address}))
        async with worker.running_worker(throttled.settings, client):
            assert (await http.post(f"/v1/campaigns/{campaign_id}/resume")).status_code == 202
            await until(http, campaign_id, lambda b: b["status"] == "completed", timeout=90)
        done = (await http.get(f"/v1/campaigns/{campaign_id}")).json()
        assert (done["progress"]["sent"], done["progress"]["remaining"]) == (60, 0), done
        keys = sent_keys(throttled, campaign_id)
        assert len(keys) == 60 and set(keys.values()) == {1}, keys.most_common(3)


async def test_an_urgent_campaign_overtakes_a_low_one_on_the_throttled_queue(throttled, uid):
    async with httpx.AsyncClient(base_url=throttled.base_url, headers=throttled.headers, timeout=30) as http:
        low, urgent = f"low-{uid}", f"urgent-{uid}"
        await create(http, low, recipients=people(uid, 80, "low"), priority="low")
        await create(http, urgent, recipients=people(uid, 10, "urgent"), priority="urgent")
        assert (await http.post(f"/v1/campaigns/{low}/schedule")).status_code == 202
        await until(http, low, lambda b: b["progress"]["sent"] >= 3)  # its window is queued behind the rate
        assert (await http.post(f"/v1/campaigns/{urgent}/schedule")).status_code == 202
        await until(http, urgent, lambda b: b["status"] == "completed", timeout=60)
        # Counted in the order the sink received them, from the urgent campaign's first email on, so
        # the time its start takes on a loaded machine (the low one sending meanwhile) is not counted.
        # In order of arrival the urgent ten would wait for everyone the low one has queued (all it
        # has left): the low campaign would be done before the urgent one began.
        low_key, urgent_key = f"campaign-{low}", f"campaign-{urgent}"
        arrived = [str(m.get("X-Followups-Key")).split("/")[0] for m in throttled.smtp.sink.messages]
        ours = [key for key in arrived if key in (low_key, urgent_key)]
        first, last = ours.index(urgent_key), len(ours) - 1 - ours[::-1].index(urgent_key)
        low_before_first, low_before_last = ours[:first].count(low_key), ours[:last].count(low_key)
        assert low_before_last < 80, "the low campaign was done before the urgent one was"
        assert low_before_last - low_before_first < 24, \
            f"the low campaign sent {low_before_last - low_before_first} while the urgent one was sending"
        await until(http, low, lambda b: b["status"] == "completed", timeout=90)


async def test_an_ab_test_on_conversions_sends_the_rest_the_winner(stack, http, uid):
    name = f"offer_{uid}"
    saved = await http.post(f"/v1/templates/{name}/versions", json={
        "subject": "{{ headline }}", "text": "{% extends 'base.txt' %}{% block body %}{{ headline }}{% endblock %}",
        "html": "{% extends 'base.html' %}{% block body %}<p>{{ headline }}</p>{% endblock %}",
        "category": "marketing", "sample": {"headline": "Spring"},
        "variants": [{"name": "plain", "weight": 1}, {"name": "bold", "weight": 1, "subject": "** {{ headline }} **"}]})
    assert saved.status_code == 201, saved.text
    assert (await http.post(f"/v1/templates/{name}/versions/1/publish")).status_code == 201
    campaign_id = f"ab-{uid}"
    audience = people(uid, 120, "ab")
    plan = {"arms": [{"variant": "plain"}, {"variant": "bold"}], "test_fraction": 0.5, "wait": "PT1S", "metric": "conversions",
            "min_per_arm": 20}
    await create(http, campaign_id, template=name, context={"headline": "Spring sale"}, recipients=audience,
                 ab_test=plan)
    # who will get which arm is a hash of the campaign and the address: everyone on `bold` converts
    arms = [Arm(variant="plain"), Arm(variant="bold")]
    bold = [p["email"] for p in audience if arm_of(campaign_id, p["email"], arms) == "bold"]
    assert (await http.post(f"/v1/campaigns/{campaign_id}/conversions", json={"emails": bold})).status_code == 200
    assert (await http.post(f"/v1/campaigns/{campaign_id}/schedule")).status_code == 202
    await until(http, campaign_id, lambda b: b["status"] == "completed", timeout=90)
    test = (await http.get(f"/v1/campaigns/{campaign_id}/ab-test")).json()
    decision = test["decision"]
    assert (test["status"], decision["winner"], decision["rest_get"]) == ("decided", "bold", "bold"), test
    assert [t["against"] for t in decision["tests"]] == ["plain"] and decision["tests"][0]["p_value"] < 0.05
    arms = {a["arm"]: a for a in decision["arms"]}
    assert arms["bold"]["rate"] == 1.0 and arms["plain"]["rate"] == 0.0 and \
        arms["bold"]["sent"] + arms["plain"]["sent"] == 60
    pool = await asyncpg.connect(stack.settings.database_url)
    try:
        variants = Counter(r["variant"] for r in await pool.fetch(
            "SELECT variant FROM messages WHERE journey = 'campaign' AND entity_id = $1", campaign_id))
    finally:
        await pool.close()
    assert variants == Counter({"bold": arms["bold"]["sent"] + 60, "plain": arms["plain"]["sent"]}), variants
    subjects = {m["Subject"] for m in stack.smtp.sink.messages
                if str(m["X-Followups-Key"]).startswith(f"campaign-{campaign_id}/")}
    assert subjects == {"Spring sale", "** Spring sale **"}


async def test_the_cli_creates_sends_and_follows_a_campaign_to_its_end(stack, uid, tmp_path):
    context, audience = tmp_path / "context.json", tmp_path / "audience.csv"
    context.write_text(__import__("json").dumps(ANNOUNCEMENT))
    audience.write_text("email,name\n" + "".join(f"cli{i}-{uid}@example.com,Cli {i}\n" for i in range(12)) + "oops,X\n")
    code, out = await run(stack, "campaign", "create", f"cli-{uid}", "--template", "course_announcement",
                          "--context", str(context), "--csv", str(audience), "--priority", "high")
    assert code == 0 and "added 12; the audience is 12" in out and "line 14" in out and "draft" in out, out
    code, out = await run(stack, "campaign", "send", f"cli-{uid}")
    assert code == 0 and "12 sent, 0 skipped, 0 failed" in out and "completed" in out, out
    assert len(sent_keys(stack, f"cli-{uid}")) == 12
    code, out = await run(stack, "campaign", "list")
    assert code == 0 and f"cli-{uid}" in out and "broadcast" in out, out
    code, out = await run(stack, "campaign", "pause", f"cli-{uid}")
    assert code == 1 and "409" in out and "completed" in out, out


async def test_a_campaign_cancelled_in_temporal_is_cancelled_in_the_api_too(stack, http, uid):
    campaign_id = f"ui-{uid}"
    await create(http, campaign_id, recipients=people(uid, 2, "ui"))
    scheduled = await http.post(f"/v1/campaigns/{campaign_id}/schedule", json={"scheduled_at": "2099-01-01T00:00:00Z"})
    assert scheduled.status_code == 202 and scheduled.json()["status"] == "scheduled", scheduled.text
    await stack.temporal.get_workflow_handle(f"campaign-{campaign_id}").cancel()  # an operator, in the Web UI
    await until(http, campaign_id, lambda b: b["status"] == "cancelled")
    assert sent_keys(stack, campaign_id) == {}
