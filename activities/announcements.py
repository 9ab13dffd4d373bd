"""New-content notices: the audience frozen in PostgreSQL when an announcement is posted, sent in
keyset batches through the one send step (suppressions and the outbox's idempotency apply), and
who each declared journey was started for (the course's enrolled list)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.outgoing import reason_kind
from activities.send import SendActivities, sent_in_batch
from workflows.announcement import ANNOUNCE_BATCH, Batch, BatchReport, workflow_id
from workflows.contracts import MessageCategory, Recipient, SendRequest, SendStatus

SENDS_IN_FLIGHT = 20
TEMPLATE = "course_announcement"


@dataclass(frozen=True)
class Counts:
    audience: int
    sent: int
    failed: int
    skipped: dict[str, int]

    @property
    def remaining(self) -> int:
        return max(self.audience - self.sent - self.failed - sum(self.skipped.values()), 0)


class JourneyRecipients:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, journey: str, entity_id: str, group: str | None, recipients: list[Recipient]) -> None:
        await self.pool.executemany(
            "INSERT INTO journey_recipients (journey, entity_id, grp, email, recipient) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT DO NOTHING",
            [(journey, entity_id, group, str(r.email), r.model_dump_json()) for r in recipients])

    async def ended(self, journey: str, entity_id: str, event: str) -> None:
        await self.pool.execute("UPDATE journey_recipients SET ended_by = $3 WHERE journey = $1 AND entity_id = $2 "
                                "AND ended_by IS NULL", journey, entity_id, event)


class Announcements:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, course: str, announcement_id: str, body: dict[str, Any],
                     recipients: list[Recipient] | None, from_journey: str) -> tuple[dict[str, Any] | None, int]:
        """Freeze the audience: (None, size) when this call created it; (the body kept, size) when the
        id existed. `recipients` None: everyone on the `from_journey` journeys of the course."""
        async with self.pool.acquire() as conn, conn.transaction():
            kept = await conn.fetchrow("SELECT body, audience FROM announcements WHERE course = $1 AND "
                                       "announcement_id = $2 FOR UPDATE", course, announcement_id)
            if kept is not None:
                return json.loads(kept["body"]), kept["audience"]
            if recipients is not None:
                await conn.executemany(
                    "INSERT INTO announcement_audience (course, announcement_id, email, recipient) VALUES "
                    "($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    [(course, announcement_id, str(r.email), r.model_dump_json()) for r in recipients])
            else:
                await conn.execute(
                    "INSERT INTO announcement_audience (course, announcement_id, email, recipient) "
                    "SELECT DISTINCT ON (email) $1, $2, email, recipient FROM journey_recipients "
                    "WHERE journey = $3 AND grp = $1 AND ended_by IS NULL ORDER BY email, started_at",
                    course, announcement_id, from_journey)
            size = await conn.fetchval("SELECT count(*) FROM announcement_audience WHERE course = $1 AND "
                                       "announcement_id = $2", course, announcement_id)
            if size:
                await conn.execute("INSERT INTO announcements (course, announcement_id, body, audience) VALUES "
                                   "($1, $2, $3, $4)", course, announcement_id, json.dumps(body), size)
            return None, size

    async def page(self, course: str, announcement_id: str, after: str | None, limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT email, recipient FROM announcement_audience WHERE course = $1 AND announcement_id = $2 "
            "AND ($3::text IS NULL OR email > $3) ORDER BY email LIMIT $4", course, announcement_id, after, limit)

    async def body(self, course: str, announcement_id: str) -> dict[str, Any] | None:
        found = await self.pool.fetchval("SELECT body FROM announcements WHERE course = $1 AND announcement_id = $2",
                                         course, announcement_id)
        return json.loads(found) if found is not None else None

    async def counts(self, course: str, announcement_id: str) -> Counts | None:
        audience = await self.pool.fetchval("SELECT audience FROM announcements WHERE course = $1 AND "
                                            "announcement_id = $2", course, announcement_id)
        if audience is None:
            return None
        rows = await self.pool.fetch(
            "SELECT status, reason, count(*) AS n FROM messages WHERE journey = 'announcement' AND entity_id = $1 "
            "AND status IN ('sent', 'dry_run', 'skipped', 'failed') GROUP BY status, reason",
            entity_id(course, announcement_id))
        skipped: Counter[str] = Counter()
        sent = failed = 0
        for row in rows:
            if row["status"] in ("sent", "dry_run"):
                sent += row["n"]
            elif row["status"] == "failed":
                failed += row["n"]
            else:
                skipped[reason_kind(row["reason"])] += row["n"]
        return Counts(audience, sent, failed, dict(skipped))


def entity_id(course: str, announcement_id: str) -> str:
    return f"{course}/{announcement_id}"


class AnnouncementActivities:
    def __init__(self, announcements: Announcements, sends: SendActivities) -> None:
        self.announcements, self.sends = announcements, sends

    @activity.defn(name=ANNOUNCE_BATCH)
    async def announce_batch(self, batch: Batch) -> BatchReport:
        """Send to the next `limit` of the audience; a message no retry can fix is counted and the rest
        go on; a transient failure fails the batch, whose retry finds the ones already sent done."""
        body = await self.announcements.body(batch.course, batch.announcement_id)
        if body is None:
            raise ApplicationError(f"no announcement {batch.announcement_id!r} in {batch.course!r}",
                                   type="UnknownAnnouncement", non_retryable=True)
        page = await self.announcements.page(batch.course, batch.announcement_id, batch.after, batch.limit + 1)
        people = page[:batch.limit]
        now = datetime.now(timezone.utc)

        async def one(row: asyncpg.Record) -> tuple[SendStatus, str | None]:
            recipient = Recipient.model_validate_json(row["recipient"])
            request = SendRequest(
                key=f"{workflow_id(batch.course, batch.announcement_id)}/{row['email']}", journey="announcement",
                entity_id=entity_id(batch.course, batch.announcement_id), template=TEMPLATE, recipient=recipient,
                category=MessageCategory.TRANSACTIONAL, due_at=now,
                context={"course": batch.course, "title": body["title"], "url": body["url"],
                         "summary": body.get("summary"), "name": recipient.name})
            result = await self.sends.send_counted(request)
            return result.status, result.reason

        done = await sent_in_batch((one(row) for row in people), SENDS_IN_FLIGHT)
        skipped = Counter(reason_kind(reason or status.value) for status, reason in done if status == SendStatus.SKIPPED)
        return BatchReport(recipients=len(people), sent=sum(1 for status, _ in done if status.delivered),
                           failed=sum(1 for status, _ in done if status == SendStatus.FAILED), skipped=dict(skipped),
                           last=people[-1]["email"] if len(page) > batch.limit else None)
