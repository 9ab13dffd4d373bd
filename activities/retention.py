"""How long Followups keeps what it holds about people, and how it forgets one person at once.

- `Retention.purge`: finished messages (sent, skipped, failed, dry run; never queued or sending)
  older than the retention period with their links and events, events older than it, read
  notifications older than it, the audience lists of campaigns that ended before it, and webhook
  events older than it that no endpoint is still waiting for, in bounded
  batches: each statement deletes at most `batch` rows and
  is its own short transaction, so the purge never holds locks the send step waits on for long.
- `RetentionActivities.purge` runs it for the `RetentionPurge` workflow, heartbeating per batch;
  `ensure_retention_schedule` makes the daily Schedule when a worker starts.
- `PersonalData`: every row about one address (GDPR export and erasure, starter/routes/recipients.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.client import (
    Client, Schedule, ScheduleActionStartWorkflow, ScheduleIntervalSpec, ScheduleOverlapPolicy, SchedulePolicy,
    ScheduleSpec,
)

from activities.digest import ensure_dispatch_schedule
from activities.preferences import email_hash
from settings import Settings
from workflows.retention import PURGE_OLD_ROWS, PurgeReport, PurgeRequest, RetentionPurge

_MESSAGES = """
WITH doomed AS (
    SELECT key FROM messages WHERE status IN ('sent', 'skipped', 'failed', 'dry_run') AND created_at < $1
    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
), links AS (DELETE FROM message_links l USING doomed d WHERE l.key = d.key RETURNING 1),
events AS (DELETE FROM message_events e USING doomed d WHERE e.key = d.key RETURNING 1),
gone AS (DELETE FROM messages m USING doomed d WHERE m.key = d.key RETURNING 1)
SELECT (SELECT count(*) FROM gone) AS messages, (SELECT count(*) FROM links) AS message_links,
       (SELECT count(*) FROM events) AS message_events
"""
# Events left once their messages are gone: those of messages still queued, and those no message owns.
_EVENTS = """
WITH doomed AS (SELECT id FROM message_events WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED),
gone AS (DELETE FROM message_events e USING doomed d WHERE e.id = d.id RETURNING 1)
SELECT count(*) AS message_events FROM gone
"""
_NOTIFICATIONS = """
WITH doomed AS (SELECT id FROM notifications WHERE read_at IS NOT NULL AND created_at < $1
                ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED),
gone AS (DELETE FROM notifications n USING doomed d WHERE n.id = d.id RETURNING 1)
SELECT count(*) AS notifications FROM gone
"""
# A campaign that ended before the cutoff keeps its row and counts (its messages go as above) but
# not its audience: up to a row per recipient, in the campaign's frozen list and its draft's.
_CAMPAIGN_AUDIENCE = """
WITH ended AS (SELECT campaign_id FROM campaigns WHERE status IN ('completed', 'cancelled') AND finished_at < $1),
doomed AS (SELECT a.campaign_id, a.seq FROM campaign_audience a JOIN ended USING (campaign_id)
           LIMIT $2 FOR UPDATE SKIP LOCKED),
members AS (SELECT m.campaign_id, m.email FROM campaign_members m JOIN ended USING (campaign_id)
            LIMIT $2 FOR UPDATE SKIP LOCKED),
gone AS (DELETE FROM campaign_audience a USING doomed d WHERE (a.campaign_id, a.seq) = (d.campaign_id, d.seq)
         RETURNING 1),
gone_members AS (DELETE FROM campaign_members m USING members d WHERE (m.campaign_id, m.email) = (d.campaign_id, d.email)
                 RETURNING 1)
SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM gone_members) AS campaign_audience
"""
# Webhook events told (or given up on) before the cutoff, with their deliveries; never one still pending.
_WEBHOOK_EVENTS = """
WITH doomed AS (SELECT seq FROM webhook_events e WHERE occurred_at < $1 AND NOT EXISTS (
                    SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = e.seq AND d.status = 'pending')
                ORDER BY occurred_at LIMIT $2 FOR UPDATE SKIP LOCKED),
gone AS (DELETE FROM webhook_events e USING doomed d WHERE e.seq = d.seq RETURNING 1)
SELECT count(*) AS webhook_events FROM gone
"""
TABLES = ("messages", "message_links", "message_events", "notifications", "campaign_audience", "webhook_events")

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Purged:
    cutoff: datetime
    deleted: dict[str, int]
    batches: int = 0


class Retention:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def purge(self, older_than: timedelta, batch: int, *, progress: Progress | None = None,
                    resume: Purged | None = None) -> Purged:
        """Delete what is older than `older_than` (counted from now, once), `batch` rows per
        statement; `progress` hears the running counts after each statement. `resume`: an earlier
        attempt's counts and cutoff, which this one carries on from."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        done = resume or Purged(await self.pool.fetchval("SELECT now() - $1::interval", older_than),
                                dict.fromkeys(TABLES, 0))
        for statement, paced_by in ((_MESSAGES, "messages"), (_EVENTS, "message_events"),
                                    (_NOTIFICATIONS, "notifications"), (_CAMPAIGN_AUDIENCE, "campaign_audience"),
                                    (_WEBHOOK_EVENTS, "webhook_events")):
            while True:
                row = await self.pool.fetchrow(statement, done.cutoff, batch)
                done.batches += 1
                for table, count in row.items():
                    done.deleted[table] += count
                if progress is not None:
                    progress({"cutoff": done.cutoff.isoformat(), "deleted": dict(done.deleted), "batches": done.batches})
                if row[paced_by] < batch:
                    break
        return done


class RetentionActivities:
    def __init__(self, retention: Retention) -> None:
        self.retention = retention

    @activity.defn(name=PURGE_OLD_ROWS)
    async def purge(self, request: PurgeRequest) -> PurgeReport:
        resume = None
        if details := activity.info().heartbeat_details:  # a retry: go on counting from where the last attempt was
            last = details[0]
            resume = Purged(datetime.fromisoformat(last["cutoff"]), dict(last["deleted"]), last["batches"])
        done = await self.retention.purge(timedelta(days=request.older_than_days), request.batch_size,
                                          progress=activity.heartbeat, resume=resume)
        return PurgeReport(cutoff=done.cutoff, deleted=done.deleted, batches=done.batches)


def retention_schedule(task_queue: str, schedule_id: str, days: int, batch_size: int) -> Schedule:
    """Daily at 03:00 UTC. A purge never overlaps another (the next is skipped while one runs);
    one missed while Temporal was down is not caught up: the next day's does the same work."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RetentionPurge.run, PurgeRequest(older_than_days=days, batch_size=batch_size),
            id=schedule_id, task_queue=task_queue,
            static_summary=f"retention: purge messages, events and read notifications older than {days} days"),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1), offset=timedelta(hours=3))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(minutes=10)),
    )


async def ensure_retention_schedule(client: Client, settings: Settings) -> None:
    """The one retention Schedule (FOLLOWUPS_RETENTION_SCHEDULE_ID; "" leaves it alone), created or
    updated, keeping an operator's pause, by every worker at start."""
    if settings.retention_schedule_id:
        schedule = retention_schedule(settings.temporal_task_queue, settings.retention_schedule_id,
                                      settings.retention_days, settings.retention_batch_size)
        await ensure_dispatch_schedule(client, schedule, settings.retention_schedule_id)


# Every row about a person, table by table: `{email}` is the lower-cased address, `{keys}` the keys
# of their messages. Messages are theirs as the recipient, as the parent who gets a child's copies,
# and as the child whose copy (`{key}/parent`, its context naming the child) went to the parent.
_ABOUT = {
    "messages": "recipient = {email} OR (parent IS NOT NULL AND lower(parent ->> 'email') = {email}) "
                "OR key IN (SELECT c.key || '/parent' FROM messages c WHERE c.recipient = {email})",
    "message_events": "email = {email} OR key = ANY({keys})",
    "message_links": "key = ANY({keys})",
    "notifications": "recipient = {email} OR key = ANY({keys})",
    "preferences": "email = {email}",
    "recipient_settings": "email = {email}",
    "suppressions": "email = {email}",
    "digest_recipients": "lower(email) = {email}",
    "journey_recipients": "lower(email) = {email}",
    "announcement_audience": "lower(email) = {email}",
    "campaign_members": "email = {email}",
    "campaign_audience": "email = {email}",
    "campaign_conversions": "email = {email}",
    "leads": "email = {email}",
    "roster": "lower(attendee ->> 'email') = {email}",
    # what the backend was (or is still to be) told about them; their deliveries go with them
    "webhook_events": "data ->> 'recipient' = {email} OR data ->> 'key' = ANY({keys})",
}
_IN_ANNOUNCEMENT = ("jsonb_typeof(body -> 'recipients') = 'array' AND EXISTS (SELECT 1 FROM "
                    "jsonb_array_elements(body -> 'recipients') r WHERE lower(r ->> '{field}') = $1)")
_ENTRIES = "(SELECT COALESCE(jsonb_agg({entry}), '[]') FROM jsonb_array_elements(body -> 'recipients') r {where})"


# A child whose parent is erased keeps their own record without the parent in it. Their copy rule
# goes too (a record of someone under 13 without a parent's address is not a valid recipient); a
# child whose messages went to the parent instead of them is taken off what is still to be sent,
# rather than starting to get messages themselves. `d`: the column (or element) holding a record.
def _parent_is(d: str) -> str:
    return f"lower({d} ->> 'parent_email') = $1"


def _instead(d: str) -> str:
    return f"COALESCE(({d} ->> 'parent_copy') = 'instead', false)"


def _stripped(d: str) -> str:
    return f"{d} - '{{under_13,parent_email,parent_name,parent_copy}}'::text[]"


_SCRUB = (
    ("journey_recipients", f"UPDATE journey_recipients SET recipient = {_stripped('recipient')}, ended_by = CASE "
                           f"WHEN {_instead('recipient')} THEN COALESCE(ended_by, 'parent erased') ELSE ended_by END "
                           f"WHERE {_parent_is('recipient')}"),
    ("announcement_audience", f"DELETE FROM announcement_audience WHERE {_parent_is('recipient')} "
                              f"AND {_instead('recipient')}"),
    ("announcement_audience", f"UPDATE announcement_audience SET recipient = {_stripped('recipient')} "
                              f"WHERE {_parent_is('recipient')}"),
    *((table, f"DELETE FROM {table} WHERE {_parent_is('recipient')} AND {_instead('recipient')}")
      for table in ("campaign_members", "campaign_audience")),
    *((table, f"UPDATE {table} SET recipient = {_stripped('recipient')} WHERE {_parent_is('recipient')}")
      for table in ("campaign_members", "campaign_audience")),
    ("roster", f"UPDATE roster SET attendee = {_stripped('attendee')}, removed = removed OR {_instead('attendee')}, "
               f"changed_at = now() WHERE {_parent_is('attendee')}"),
    ("announcements", "UPDATE announcements SET body = jsonb_set(body, '{recipients}', " + _ENTRIES.format(
        entry=f"CASE WHEN {_parent_is('r')} THEN {_stripped('r')} ELSE r END", where="")
     + f") WHERE {_IN_ANNOUNCEMENT.format(field='parent_email')}"),
)


def _bound(condition: str, email: str, keys: list[str]) -> tuple[str, list[Any]]:
    """The condition with numbered parameters, and their values."""
    values: list[Any] = []
    names = {}
    for name, value, cast in (("email", email, "text"), ("keys", keys, "text[]")):
        if "{" + name + "}" in condition:
            values.append(value)
            names[name] = f"${len(values)}::{cast}"
    return condition.format(**{"email": "", "keys": "", **names}), values


class PersonalData:
    """Everything the database holds about one address (GDPR articles 15 and 17)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def export(self, email: str) -> dict[str, Any]:
        """Table → its rows about `email` (as JSON objects); `announcements`: the bodies that list
        them, each with only their own recipient entry."""
        email = email.strip().lower()
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            keys = await _keys(conn, email)
            found = {}
            for table, about in _ABOUT.items():
                condition, values = _bound(about, email, keys)
                found[table] = json.loads(await conn.fetchval(
                    f"SELECT COALESCE(jsonb_agg(to_jsonb(t)), '[]') FROM (SELECT * FROM {table} "
                    f"WHERE {condition}) t", *values))
            # an announcement's body as posted, but of its recipients only their own entry
            own = _ENTRIES.format(entry="r", where="WHERE lower(r ->> 'email') = $1")
            found["announcements"] = json.loads(await conn.fetchval(
                "SELECT COALESCE(jsonb_agg(jsonb_build_object('course', course, 'announcement_id', announcement_id, "
                f"'body', jsonb_set(body, '{{recipients}}', {own}))), '[]') FROM announcements "
                f"WHERE {_IN_ANNOUNCEMENT.format(field='email')}", email))
            erased_at = await conn.fetchval("SELECT erased_at FROM erased_recipients WHERE email_hash = $1",
                                            email_hash(email))
        return {"tables": found, "erased_at": erased_at}

    async def mark_erased(self, email: str) -> int:
        """Keep sha256 of the address in `erased_recipients`, which the send step treats as a
        suppression: first, so that nothing is sent to them while the rest is erased. 1 if new."""
        return _count(await self.pool.execute(
            "INSERT INTO erased_recipients (email_hash) VALUES ($1) ON CONFLICT DO NOTHING", email_hash(email)))

    async def erase(self, email: str) -> dict[str, int]:
        """Delete every row about `email`, in one transaction; rows deleted or changed per table. A
        removed attendee stays on a roster as a tombstone without their data, so the session's own
        roster arriving later cannot bring them back; an announcement's body loses them from its
        recipient list; their children's records lose them as the parent (`_SCRUB`)."""
        email = email.strip().lower()
        async with self.pool.acquire() as conn, conn.transaction():
            counts: dict[str, int] = {}
            keys = await _keys(conn, email)
            for table, about in _ABOUT.items():
                condition, values = _bound(about, email, keys)
                if table == "roster":
                    status = await conn.execute("UPDATE roster SET attendee = NULL, removed = true, changed_at = now() "
                                                f"WHERE {condition}", *values)
                else:
                    status = await conn.execute(f"DELETE FROM {table} WHERE {condition}", *values)
                counts[table] = _count(status)
            others = _ENTRIES.format(entry="r", where="WHERE lower(r ->> 'email') IS DISTINCT FROM $1")
            counts["announcements"] = _count(await conn.execute(
                f"UPDATE announcements SET body = jsonb_set(body, '{{recipients}}', {others}) "
                f"WHERE {_IN_ANNOUNCEMENT.format(field='email')}", email))
            for table, statement in _SCRUB:  # as the parent of a child: changed rows count with the table's
                counts[table] += _count(await conn.execute(statement, email))
        return counts


async def _keys(conn: asyncpg.Connection, email: str) -> list[str]:
    condition, values = _bound(_ABOUT["messages"], email, [])
    return [row["key"] for row in await conn.fetch(f"SELECT key FROM messages WHERE {condition}", *values)]


def _count(status: str) -> int:
    return int(status.split()[-1])
