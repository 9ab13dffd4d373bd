"""Campaign scenarios on the time-skipping server, with the real send step, PostgreSQL and SMTP
sink; each records its history for tests/replay (`FOLLOWUPS_RECORD_HISTORIES=1`): one scheduled
days ahead waits, runs its A/B test, waits hours for the decision and sends the rest the winner;
one cancelled before its time sends nothing; one sent at once goes to everyone once."""

from __future__ import annotations

import os
from pathlib import Path
from datetime import datetime, timedelta, timezone

import worker
from activities.campaigns import Campaigns, arm_of
from workflows.campaign.models import AbPlan, Arm, CampaignRun
from workflows.campaign.workflow import CampaignDelivery, workflow_id
from workflows.contracts import Recipient

HISTORIES = Path(__file__).resolve().parent.parent / "histories"

CONTEXT = {"course": "Orbital Mechanics", "title": "Week 4 notes", "url": "https://lms.example.com/w4",
           "summary": "Transfer orbits."}


async def draft(pool, campaign_id: str, people: int, ab: AbPlan | None = None) -> list[str]:
    store = Campaigns(pool)
    assert await store.create({"campaign_id": campaign_id, "name": campaign_id, "template": "course_announcement",
                               "category": "progress", "priority": "normal", "context": CONTEXT,
                               "ab_test": ab.model_dump(mode="json") if ab else None, "filters": [],
                               "scheduled_at": None}) is None
    emails = [f"p{i}-{campaign_id}@example.com" for i in range(people)]
    await store.add_members(campaign_id, [(Recipient(email=e, name=f"P {i}"), {}) for i, e in enumerate(emails)])
    await pool.execute("UPDATE campaigns SET status = 'scheduled' WHERE campaign_id = $1", campaign_id)
    return emails


def sent(smtp, campaign_id: str) -> dict[str, int]:
    return {k: n for k, n in smtp.sink.keys().items() if k.startswith(f"{workflow_id(campaign_id)}/")}


async def recorded(ts_env, request, campaign_id: str) -> None:
    """The finished run's history, for the replay test (only a file not there yet is written)."""
    if os.environ.get("FOLLOWUPS_RECORD_HISTORIES"):
        target = HISTORIES / f"campaign-{request.node.name.removeprefix('test_')}.json"
        if not target.exists():
            target.write_text((await ts_env.client.get_workflow_handle(workflow_id(campaign_id)).fetch_history()).to_json())


async def test_a_scheduled_ab_campaign_waits_tests_decides_hours_later_and_sends_the_rest_the_winner(
        ts_env, make_settings, pool, smtp, uid, request):
    settings = make_settings(campaign_rate_per_minute=0)
    campaign_id = f"abw-{uid}"
    name = f"ab_{uid}"
    from activities.template_store import TemplateStore, Variant

    templates = TemplateStore(pool)
    await templates.save(name, subject="{{ title }}", text="{% extends 'base.txt' %}{% block body %}{{ title }}{% endblock %}",
                         html="{% extends 'base.html' %}{% block body %}<p>{{ title }}</p>{% endblock %}",
                         category="marketing", sample={"title": "x"},
                         variants=[Variant("plain", 1), Variant("loud", 1, {"subject": "{{ title }}!"})])
    await templates.publish(name, 1)
    arms = [Arm(variant="plain"), Arm(variant="loud")]
    ab = AbPlan(arms=arms, test_fraction=0.5, wait=timedelta(hours=4), metric="conversions", min_per_arm=10)
    emails = await draft(pool, campaign_id, 80, ab)
    await pool.execute("UPDATE campaigns SET template = $2, category = 'marketing' WHERE campaign_id = $1",
                       campaign_id, name)
    await Campaigns(pool).convert(campaign_id, [e for e in emails if arm_of(campaign_id, e, arms) == "loud"])
    start = datetime.now(timezone.utc) + timedelta(days=3)
    async with worker.running_worker(settings, ts_env.client):
        handle = await ts_env.client.start_workflow(
            CampaignDelivery.run, CampaignRun(campaign_id=campaign_id, send_queue=settings.campaign_queue,
                                              scheduled_at=start, ab=ab),
            id=workflow_id(campaign_id), task_queue=settings.temporal_task_queue)
        done = await handle.result()
    await recorded(ts_env, request, campaign_id)
    assert (done.status, done.sent, done.test_size, done.winner) == ("completed", 80, 40, "loud")
    decided_at = await pool.fetchval("SELECT decided_at FROM campaign_ab_decisions WHERE campaign_id = $1", campaign_id)
    rows = await pool.fetch("SELECT variant, updated_at FROM messages WHERE journey = 'campaign' AND entity_id = $1",
                            campaign_id)
    assert sorted(r["variant"] for r in rows if r["updated_at"] > decided_at) == ["loud"] * 40  # the rest: the winner
    assert {r["variant"] for r in rows if r["updated_at"] < decided_at} == {"plain", "loud"}  # the test: both arms


async def test_a_campaign_cancelled_before_its_time_sends_nothing(ts_env, make_settings, pool, smtp, uid,
                                                                             request):
    settings = make_settings(campaign_rate_per_minute=0)
    campaign_id = f"cx-{uid}"
    await draft(pool, campaign_id, 5)
    async with worker.running_worker(settings, ts_env.client):
        handle = await ts_env.client.start_workflow(
            CampaignDelivery.run, CampaignRun(campaign_id=campaign_id, send_queue=settings.campaign_queue,
                                              scheduled_at=datetime.now(timezone.utc) + timedelta(days=30)),
            id=workflow_id(campaign_id), task_queue=settings.temporal_task_queue,
            start_signal="cancel")  # with the start: a signal sent after it could come after skipped time
        done = await handle.result()
    await recorded(ts_env, request, campaign_id)
    assert (done.status, done.audience, done.sent) == ("cancelled", None, 0)
    assert sent(smtp, campaign_id) == {}
    assert await pool.fetchval("SELECT status FROM campaigns WHERE campaign_id = $1", campaign_id) == "cancelled"



async def test_a_campaign_sent_at_once_goes_to_everyone_once(ts_env, make_settings, pool, smtp, uid, request):
    settings = make_settings(campaign_rate_per_minute=0)
    campaign_id = f"now-{uid}"
    emails = await draft(pool, campaign_id, 250)
    async with worker.running_worker(settings, ts_env.client):
        handle = await ts_env.client.start_workflow(
            CampaignDelivery.run, CampaignRun(campaign_id=campaign_id, send_queue=settings.campaign_queue),
            id=workflow_id(campaign_id), task_queue=settings.temporal_task_queue)
        done = await handle.result()
    await recorded(ts_env, request, campaign_id)
    assert (done.status, done.audience, done.batch, done.sent, done.runs) == ("completed", 250, 100, 250, 1)
    assert sorted(sent(smtp, campaign_id)) == sorted(f"{workflow_id(campaign_id)}/{e}" for e in emails)
