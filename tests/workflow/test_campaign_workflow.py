"""A campaign too large for one history continues as new and still sends everyone once (on the
time-skipping server, with the real send step). Not a recorded scenario: it runs under a lowered
history budget, which a replay under the real one would not follow."""

from __future__ import annotations

import worker
from activities import campaigns as campaign_activities
from tests.workflow.test_campaign_scenarios import draft, sent
from workflows.campaign.models import CampaignRun
from workflows.campaign.workflow import CampaignDelivery, workflow_id
from workflows.core import loop


async def test_a_campaign_too_large_for_one_history_continues_as_new_and_sends_everyone_once(
        ts_env, make_settings, pool, smtp, uid, monkeypatch):
    monkeypatch.setattr(loop, "HISTORY_EVENTS_BUDGET", 40)  # a dozen ranges or so per run
    monkeypatch.setattr(campaign_activities, "UNTHROTTLED_BATCH", 1)  # 300 ranges
    settings = make_settings(campaign_rate_per_minute=0)
    campaign_id = f"big-{uid}"
    emails = await draft(pool, campaign_id, 300)
    async with worker.running_worker(settings, ts_env.client):
        handle = await ts_env.client.start_workflow(
            CampaignDelivery.run, CampaignRun(campaign_id=campaign_id, send_queue=settings.campaign_queue),
            id=workflow_id(campaign_id), task_queue=settings.temporal_task_queue)
        done = await handle.result()
    assert (done.status, done.audience, done.sent, done.skipped, done.failed) == ("completed", 300, 300, 0, 0)
    assert done.runs >= 3 and done.done_through == 300 and done.done_ranges == []
    assert sorted(sent(smtp, campaign_id)) == sorted(f"{workflow_id(campaign_id)}/{e}" for e in emails)
    assert set(sent(smtp, campaign_id).values()) == {1}
    row = await pool.fetchrow("SELECT status, audience, finished_at FROM campaigns WHERE campaign_id = $1", campaign_id)
    assert (row["status"], row["audience"]) == ("completed", 300) and row["finished_at"] is not None




async def test_a_recipient_row_spoiled_by_hand_is_counted_failed_and_the_rest_go(ts_env, make_settings, pool, smtp, uid):
    settings = make_settings(campaign_rate_per_minute=0)
    campaign_id = f"bad-{uid}"
    await draft(pool, campaign_id, 3)
    store = campaign_activities.Campaigns(pool)
    await store.freeze(campaign_id, 100)
    await pool.execute("UPDATE campaign_audience SET recipient = '{\"email\": \"not an address\"}' "
                       "WHERE campaign_id = $1 AND seq = 2", campaign_id)
    async with worker.running_worker(settings, ts_env.client):
        done = await ts_env.client.execute_workflow(
            CampaignDelivery.run, CampaignRun(campaign_id=campaign_id, send_queue=settings.campaign_queue),
            id=workflow_id(campaign_id), task_queue=settings.temporal_task_queue)
    assert (done.status, done.sent, done.failed) == ("completed", 2, 1)
    counts = await store.counts(campaign_id, 3)
    assert (counts.sent, counts.failed, counts.remaining) == (2, 1, 0)  # the outbox adds up to the audience
    assert len(sent(smtp, campaign_id)) == 2
