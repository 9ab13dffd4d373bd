"""The retention purge on real PostgreSQL (a database of its own, so every count is exact) and its
Schedule on the real dev server: finished messages older than the period go with their links and
events, in batches of the given size; queued and sending ones, recent ones and unread notifications
stay; a second purge finds nothing. The worker makes the daily Schedule; a triggered run purges
and returns its counts."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
from temporalio.client import ScheduleOverlapPolicy

from activities.lifecycle import Lifecycle
from activities.retention import Retention
from activities.store import Notifications, Outbox, connect, migrate
from tests.conftest import running_stack
from workflows.retention import PurgeReport

OLD = timedelta(days=100)


@contextlib.asynccontextmanager
async def fresh_database(database_url: str, name: str) -> AsyncIterator[str]:
    """A new empty database on the test server, dropped afterwards: for counts over whole tables."""
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urllib.parse.urlsplit(database_url)
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def message(pool: asyncpg.Pool, key: str, status: str, *, age: timedelta = timedelta(0),
                  reason: str | None = None, links: int = 0, events: int = 0) -> None:
    """One outbox row through the send step's own calls, `age` old, with links and 'opened' events."""
    outbox = Outbox(pool)
    await outbox.claim(key=key, journey="payment", entity_id=key.split("/")[0], template="payment_reminder",
                       recipient=f"{key.split('/')[0]}@example.com", recipient_name="Pat", category="reminder",
                       context={}, message_id=f"<{key.replace('/', '.')}@example.com>", due_at=None,
                       lease=timedelta(minutes=5))
    if status == "queued":
        await outbox.release(key, "SMTP busy")
    elif status != "sending":
        await outbox.finish(key, status, reason=reason)
    await pool.execute("UPDATE messages SET created_at = now() - $2::interval, sent_at = now() - $2::interval "
                       "WHERE key = $1", key, age)
    for idx in range(links):
        await pool.execute("INSERT INTO message_links (key, idx, url) VALUES ($1, $2, $3)", key, idx,
                           f"https://example.com/{idx}")
    for n in range(events):
        await Lifecycle(pool).record(kind="opened", key=key, at=await pool.fetchval("SELECT now() - $1::interval", age)
                                     + timedelta(minutes=n))


async def notification(pool: asyncpg.Pool, key: str, *, read: bool, age: timedelta) -> None:
    notifications = Notifications(pool)
    found = await notifications.deliver(key=key, recipient="pat@example.com", journey="payment", entity_id="p",
                                        template="payment_reminder", title="Reminder", body="Pay soon")
    if read:
        await notifications.mark_read(found)
    await pool.execute("UPDATE notifications SET created_at = now() - $2::interval WHERE key = $1", key, age)


async def seed(pool: asyncpg.Pool, uid: str) -> None:
    """Old and finished: 5 messages (2 links, 2 events each), an event of no message, a read
    notification. Kept: old queued and sending messages (their old events go), recent messages,
    an old unread notification, a recent read one."""
    for n, status in enumerate(("sent", "skipped", "failed", "dry_run", "sent")):
        await message(pool, f"old{n}-{uid}/reminder", status, age=OLD, reason="too late: due by then"
                      if status == "skipped" else None, links=2, events=2)
    await message(pool, f"oldq-{uid}/reminder", "queued", age=OLD, events=1)
    await message(pool, f"olds-{uid}/reminder", "sending", age=OLD, events=1)
    for n in range(2):
        await message(pool, f"new{n}-{uid}/reminder", "sent", age=timedelta(days=89), links=1, events=1)
    await Lifecycle(pool).record(kind="bounced", email=f"stray-{uid}@example.com",
                                 at=await pool.fetchval("SELECT now() - $1::interval", OLD))
    await notification(pool, f"n-old-read-{uid}", read=True, age=OLD)
    await notification(pool, f"n-old-unread-{uid}", read=False, age=OLD)
    await notification(pool, f"n-new-read-{uid}", read=True, age=timedelta(days=1))
    # campaigns: one that ended long ago loses its audience lists (3 frozen + 1 draft member); one that
    # ended recently and one still sending keep theirs
    for campaign_id, status, age in ((f"old-{uid}", "completed", OLD), (f"recent-{uid}", "cancelled", timedelta(days=1)),
                                     (f"running-{uid}", "sending", OLD)):
        await pool.execute(
            "INSERT INTO campaigns (campaign_id, name, template, category, priority, status, finished_at) "
            "VALUES ($1, $1, 'course_announcement', 'progress', 'normal', $2, now() - $3::interval)",
            campaign_id, status, age)
        await pool.executemany("INSERT INTO campaign_audience (campaign_id, seq, email, recipient) VALUES ($1, $2, $3, '{}')",
                               [(campaign_id, n, f"c{n}@example.com") for n in (1, 2, 3)])
        await pool.execute("INSERT INTO campaign_members (campaign_id, email, recipient) VALUES ($1, 'm@example.com', '{}')",
                           campaign_id)
    # webhook events: two old ones told (or given up on) go; an old one still pending and a new one stay
    await pool.execute("INSERT INTO webhook_endpoints (id, url, secret) VALUES ($1, 'http://127.0.0.1:9/', 'whsec_x')",
                       f"ep-{uid}")
    for n, (status, age) in enumerate((("delivered", OLD), ("failed", OLD), ("pending", OLD),
                                       ("delivered", timedelta(days=1)))):
        await pool.execute("SELECT webhook_emit($1, 'journey.started', $2, '{}')", f"fact-{n}-{uid}", f"j/{n}")
        seq = await pool.fetchval("SELECT max(seq) FROM webhook_events")
        await pool.execute("UPDATE webhook_events SET occurred_at = now() - $2::interval WHERE seq = $1", seq, age)
        await pool.execute("UPDATE webhook_deliveries SET status = $2 WHERE event_seq = $1", seq, status)
    await pool.execute("UPDATE webhook_endpoints SET enabled = false WHERE id = $1", f"ep-{uid}")


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {table: await pool.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("messages", "message_links", "message_events", "notifications", "campaign_audience",
                          "webhook_events")}


async def test_old_finished_rows_are_purged_in_batches_and_the_rest_kept(database_url, uid):
    async with fresh_database(database_url, f"retention_{uid}") as url:
        pool = await connect(url)
        try:
            await migrate(pool)
            await seed(pool, uid)
            assert await counts(pool) == {"messages": 9, "message_links": 12, "message_events": 15, "notifications": 3,
                                          "campaign_audience": 9, "webhook_events": 4}

            heard: list[dict] = []
            purged = await Retention(pool).purge(timedelta(days=90), 2, progress=heard.append)
            assert purged.deleted == {"messages": 5, "message_links": 10, "message_events": 13, "notifications": 1,
                                      "campaign_audience": 4, "webhook_events": 2}
            # messages 2+2+1; the events left (2 of queued/sending messages, 1 of none) 2+1; notifications 1;
            # the old campaign's audience 2 (+1 member) + 1; webhook events 2 + 0
            assert purged.batches == 10 and len(heard) == 10
            assert [h["deleted"]["messages"] for h in heard] == [2, 4, 5, 5, 5, 5, 5, 5, 5, 5]
            assert await counts(pool) == {"messages": 4, "message_links": 2, "message_events": 2, "notifications": 2,
                                          "campaign_audience": 6, "webhook_events": 2}
            assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 2  # theirs went with them
            assert {r["campaign_id"] for r in await pool.fetch("SELECT campaign_id FROM campaign_audience")} == {
                f"recent-{uid}", f"running-{uid}"}
            kept = {row["key"]: row["status"] for row in await pool.fetch("SELECT key, status FROM messages")}
            assert kept == {f"oldq-{uid}/reminder": "queued", f"olds-{uid}/reminder": "sending",
                            f"new0-{uid}/reminder": "sent", f"new1-{uid}/reminder": "sent"}
            assert {row["key"] for row in await pool.fetch("SELECT key FROM notifications")} == {
                f"n-old-unread-{uid}", f"n-new-read-{uid}"}

            again = await Retention(pool).purge(timedelta(days=90), 2)
            assert again.deleted == dict.fromkeys(again.deleted, 0) and again.batches == 5
        finally:
            await pool.close()


async def test_the_worker_makes_the_daily_schedule_and_a_triggered_run_purges(local_env, database_url, smtp, uid):
    async with fresh_database(database_url, f"retention_stack_{uid}") as url:
        async with running_stack(local_env, url, smtp, retention_schedule_id=f"retention-{uid}",
                                 retention_batch_size=100) as stack:
            handle = stack.temporal.get_schedule_handle(f"retention-{uid}")
            try:
                described = await handle.describe()
                [interval] = described.schedule.spec.intervals
                assert (interval.every, interval.offset) == (timedelta(days=1), timedelta(hours=3))
                assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
                assert described.schedule.action.task_queue == stack.settings.temporal_task_queue
                assert described.schedule.action.workflow == "RetentionPurge"
                nxt = described.info.next_action_times[0]
                assert (nxt.hour, nxt.minute, nxt.second) == (3, 0, 0)

                pool = await connect(url)
                try:
                    await seed(pool, uid)
                    await handle.trigger()
                    report = await _run_result(stack, handle)
                    assert report.deleted == {"messages": 5, "message_links": 10, "message_events": 13,
                                              "notifications": 1, "campaign_audience": 4, "webhook_events": 2}
                    assert report.batches == 5  # 100 rows a statement: one per table's pass
                    assert await counts(pool) == {"messages": 4, "message_links": 2, "message_events": 2,
                                                  "notifications": 2, "campaign_audience": 6, "webhook_events": 2}
                finally:
                    await pool.close()
            finally:
                await handle.delete()


async def _run_result(stack, handle) -> PurgeReport:
    for _ in range(300):
        actions = (await handle.describe()).info.recent_actions
        if actions:
            run = actions[-1].action
            result = await stack.temporal.get_workflow_handle(run.workflow_id,
                                                              run_id=run.first_execution_run_id).result()
            return PurgeReport.model_validate(result)
        await asyncio.sleep(0.1)
    raise AssertionError("the triggered purge never ran")
