"""All SQL of Followups: the message outbox, suppressions, in-app notifications, and the
migrations that create them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATION_LOCK = 7_266_001  # pg_advisory_lock id: one migrator at a time across workers and APIs


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` with NUL bytes and lone surrogates, which PostgreSQL text and jsonb refuse, as U+FFFD."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(item) for item in value]
    return value


async def _session_kept(connection: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool beyond asyncpg's own rollback of an open
    transaction: nothing. Nothing here leaves session state behind (no SET, LISTEN, cursors or
    session advisory locks; the migration lock is released by its own `finally`), and asyncpg's
    default reset is a round trip to the server on every release: with it the send step spent as
    long resetting connections as running its statements."""


async def connect(database_url: str, size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=size, reset=_session_kept)
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply numbered .sql files not applied yet, in order; safe to run from every process at start."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
            for path in sorted(directory.glob("*.sql")):
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
                applied_now.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


@dataclass(frozen=True)
class Claim:
    """What the send step may do with a key: `send` it now, or it is `done` (or `busy` elsewhere)."""

    action: str  # "send" | "done" | "busy" | "erased" (the address was erased: nothing stored, row None)
    row: asyncpg.Record | None
    interrupted: bool = False  # an earlier attempt stopped mid-send: the one window SMTP cannot close


# A finished message keeps what the send step learnt on the way: the category its template
# declares, the saved version and A/B variant it rendered, and its lifecycle's first point.
_FINISH = """UPDATE messages SET status = $2, reason = $3, subject = COALESCE($4, subject),
                     smtp_response = $5, lease_until = NULL, updated_at = now(),
                     sent_at = CASE WHEN $2 IN ('sent', 'dry_run') THEN now() ELSE sent_at END,
                     lifecycle = CASE WHEN $2 IN ('sent', 'failed') AND lifecycle_rank($2) > lifecycle_rank(lifecycle)
                                      THEN $2 ELSE lifecycle END,
                     category = COALESCE($6, category), template_version = COALESCE($7, template_version),
                     variant = COALESCE($8, variant)
              WHERE key = $1"""


# A message's row, unless its address (or, for the parent's copy rule, its parent's) was erased.
_INSERT = """INSERT INTO messages (key, journey, entity_id, template, recipient, recipient_name, category, context,
                                   status, message_id, due_at, channel, phone, parent, attempts, lease_until)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8::jsonb, {status}, $9, $10, $11, $12,
                    CASE WHEN EXISTS (SELECT 1 FROM erased_recipients WHERE email_hash = $15) THEN NULL
                         ELSE $13::jsonb END, {attempts}, {lease}
             WHERE NOT EXISTS (SELECT 1 FROM erased_recipients WHERE email_hash = $14)
             ON CONFLICT (key) DO NOTHING"""
_INSERT_QUEUED = _INSERT.format(status="'queued'", attempts="0", lease="NULL")
_CLAIM_NEW = _INSERT.format(status="'sending'", attempts="1", lease="now() + $16::interval") + " RETURNING *"


class Outbox:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def claim(self, *, key: str, journey: str, entity_id: str, template: str, recipient: str,
                    recipient_name: str, category: str, context: dict[str, Any], message_id: str,
                    due_at: datetime | None, lease: timedelta, channel: str = "email",
                    phone: str | None = None, parent: dict[str, Any] | None = None,
                    recipient_hash: str | None = None, parent_hash: str | None = None) -> Claim:
        """Record the key as queued (once) and take a lease on sending it. `parent`: the recipient is
        under 13 (their parent's address and copy rule), kept so a forced resend follows it too.
        `recipient_hash`: an address erased under that hash (GDPR) is not stored again: "erased";
        nor is an erased parent's address (`parent_hash`) on their child's row.

        A key seen for the first time is stored already leased, in one statement (one round trip:
        the common case, every message's first attempt); a key stored before is looked at under a
        row lock, in a transaction."""
        values = (key, journey, entity_id, template, recipient, recipient_name, category, json.dumps(context),
                  message_id, due_at, channel, phone, None if parent is None else json.dumps(parent),
                  recipient_hash, parent_hash)
        row = await self.pool.fetchrow(_CLAIM_NEW, *values, lease)
        if row is not None:
            return Claim("send", row)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_INSERT_QUEUED, *values)  # erased meanwhile: still nothing; else already there
            row = await conn.fetchrow("SELECT * FROM messages WHERE key = $1 FOR UPDATE", key)
            if row is None:
                return Claim("erased", None)
            if row["status"] in ("sent", "skipped", "failed", "dry_run"):
                return Claim("done", row)
            if row["status"] == "sending" and row["lease_until"] and row["lease_until"] > await conn.fetchval("SELECT now()"):
                return Claim("busy", row)
            interrupted = row["status"] == "sending"
            row = await conn.fetchrow(
                """UPDATE messages SET status = 'sending', attempts = attempts + 1,
                          lease_until = now() + $2::interval, updated_at = now()
                   WHERE key = $1 RETURNING *""",
                key, lease,
            )
            return Claim("send", row, interrupted)

    async def release(self, key: str, error: str) -> None:
        """A transient failure: back to queued so the next attempt may send at once."""
        await self.pool.execute(
            "UPDATE messages SET status = 'queued', lease_until = NULL, reason = $2, updated_at = now() "
            "WHERE key = $1 AND status = 'sending'",
            key, error,
        )

    async def finish(self, key: str, status: str, *, reason: str | None = None, subject: str | None = None,
                     smtp_response: str | None = None, category: str | None = None,
                     template_version: int | None = None, variant: str | None = None) -> None:
        await self.pool.execute(_FINISH, key, status, reason, subject, smtp_response, category, template_version,
                                variant)

    async def get(self, key: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM messages WHERE key = $1", key)

    async def list(self, *, journey: str | None = None, entity_id: str | None = None,
                   status: str | None = None, limit: int = 100) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """SELECT * FROM messages
               WHERE ($1::text IS NULL OR journey = $1) AND ($2::text IS NULL OR entity_id = $2)
                 AND ($3::text IS NULL OR status = $3)
               ORDER BY created_at, key LIMIT $4""",
            journey, entity_id, status, limit,
        )

    async def count_resends(self, key: str) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM messages WHERE starts_with(key, $1) AND substr(key, length($1) + 1) ~ '^[0-9]+$'",
            key + "/resend-",
        )


class Notifications:
    """In-app notifications (migration 006): what the send step delivers on the `in_app` channel,
    one per message key, read by the app through /v1/notifications. A recipient is the address a
    journey has for them, lower-cased as in `messages.recipient`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def deliver(self, *, key: str, recipient: str, journey: str, entity_id: str, template: str,
                      title: str, body: str, category: str | None = None, template_version: int | None = None,
                      variant: str | None = None) -> int:
        """Store the notification of `key` and record its message as sent, in one transaction: unlike
        SMTP there is no window in which it is delivered and not recorded. A second call for the same
        key stores nothing. The notification's id."""
        async with self.pool.acquire() as conn, conn.transaction():
            notification_id = await conn.fetchval(
                "INSERT INTO notifications (key, recipient, journey, entity_id, template, title, body) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING RETURNING id",
                key, recipient.lower(), journey, entity_id, template, title, body)
            if notification_id is None:
                notification_id = await conn.fetchval("SELECT id FROM notifications WHERE key = $1", key)
            await conn.execute(_FINISH, key, "sent", None, title, f"notification {notification_id}",
                               category, template_version, variant)
            return notification_id

    async def page(self, recipient: str, *, before: int | None, limit: int, unread_only: bool) -> list[asyncpg.Record]:
        """Newest first: the next `limit` notifications with an id below `before` (keyset order)."""
        return await self.pool.fetch(
            "SELECT * FROM notifications WHERE recipient = $1 AND ($2::bigint IS NULL OR id < $2) "
            "AND (NOT $3 OR read_at IS NULL) ORDER BY id DESC LIMIT $4",
            recipient.lower(), before, unread_only, limit)

    async def unread(self, recipient: str) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM notifications WHERE recipient = $1 AND read_at IS NULL", recipient.lower())

    async def mark_read(self, notification_id: int) -> asyncpg.Record | None:
        """Mark one read (it keeps the time it was first read); None for an id that does not exist."""
        return await self.pool.fetchrow(
            "UPDATE notifications SET read_at = COALESCE(read_at, now()) WHERE id = $1 RETURNING *",
            notification_id)

    async def mark_all_read(self, recipient: str, up_to: int | None = None) -> int:
        """Mark every unread notification of `recipient` read (only those up to id `up_to`, the
        newest the person saw, if given); how many changed."""
        status = await self.pool.execute(
            "UPDATE notifications SET read_at = now() WHERE recipient = $1 AND read_at IS NULL "
            "AND ($2::bigint IS NULL OR id <= $2)", recipient.lower(), up_to)
        return int(status.split()[-1])


class Suppressions:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def reason_for(self, email: str) -> str | None:
        row = await self.pool.fetchrow("SELECT source, reason FROM suppressions WHERE email = $1", email.lower())
        return f"{row['source']}: {row['reason']}" if row else None

    async def add(self, email: str, source: str, reason: str) -> bool:
        """Suppress an address; True if it was not suppressed before."""
        status = await self.pool.execute(
            "INSERT INTO suppressions (email, source, reason) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING",
            email.lower(), source, reason,
        )
        return status.endswith(" 1")


@dataclass(frozen=True)
class CampaignStats:
    campaign: str
    started: int
    emailed_per_step: dict[str, int]
    converted: int
    replied: int
    unsubscribed: int

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.started if self.started else 0.0


class Leads:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add_many(self, rows: list[tuple[str, str, str]]) -> set[str]:
        """Insert (lead_id, campaign, email) rows; the ids that were new."""
        if not rows:
            return set()
        inserted = await self.pool.fetch(
            "INSERT INTO leads (lead_id, campaign, email) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (lead_id) DO NOTHING "
            "RETURNING lead_id",
            [r[0] for r in rows], [r[1] for r in rows], [r[2].lower() for r in rows],
        )
        return {row["lead_id"] for row in inserted}

    async def known(self, lead_ids: list[str]) -> set[str]:
        rows = await self.pool.fetch("SELECT lead_id FROM leads WHERE lead_id = ANY($1::text[])", lead_ids)
        return {row["lead_id"] for row in rows}

    async def record_end(self, lead_id: str, campaign: str, email: str, status: str, reference: str | None) -> None:
        await self.pool.execute(
            "INSERT INTO leads (lead_id, campaign, email, status, conversion_reference, ended_at) "
            "VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (lead_id) DO UPDATE SET status = $4, "
            "conversion_reference = $5, ended_at = COALESCE(leads.ended_at, now())",
            lead_id, campaign, email.lower(), status, reference,
        )

    async def stats(self, campaign: str) -> CampaignStats | None:
        counts = await self.pool.fetchrow(
            "SELECT count(*) AS started, count(*) FILTER (WHERE status = 'converted') AS converted, "
            "count(*) FILTER (WHERE status = 'replied') AS replied, "
            # unsubscribed: by the one-click link or the preference page (an `unsubscribed` event), or by
            # an unsubscribe suppression from before preferences existed
            "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM message_events e WHERE e.email = leads.email "
            "AND e.kind = 'unsubscribed') OR EXISTS (SELECT 1 FROM suppressions s WHERE s.email = leads.email "
            "AND s.source = 'unsubscribe')) AS unsubscribed FROM leads WHERE campaign = $1",
            campaign,
        )
        if not counts["started"]:
            return None
        steps = await self.pool.fetch(
            # leads, not messages: a parent's copy (`…/step-1/parent`) or a resend is the same lead emailed
            "SELECT split_part(m.key, '/', 2) AS step, count(DISTINCT l.lead_id) AS sent FROM leads l "
            "JOIN messages m ON m.journey = 'lead' AND m.entity_id = l.lead_id "
            "WHERE l.campaign = $1 AND m.status IN ('sent', 'dry_run') GROUP BY 1 ORDER BY 1",
            campaign,
        )
        return CampaignStats(campaign, counts["started"], {row["step"]: row["sent"] for row in steps},
                             counts["converted"], counts["replied"], counts["unsubscribed"])


@dataclass(frozen=True)
class ImportRecord:
    import_id: str
    campaign: str | None
    rows: int
    started: int
    already_imported: int
    rejected: int
    created_at: datetime


class LeadImports:
    """Every CSV upload's counts and rejected rows (migration 005), kept `KEEP` then deleted."""

    KEEP = timedelta(days=30)
    BATCH = 2_000  # problems per COPY: the Python work between two awaits stays a few ms

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, import_id: str, campaign: str | None, rows: int, started: int, already_imported: int,
                     problems: Sequence[tuple[int, str, str]]) -> None:
        """Store one upload: its counts, and each rejected row (line, field, reason) in file order,
        by COPY in batches."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM lead_imports WHERE created_at < now() - $1::interval", self.KEEP)
            await conn.execute(
                "INSERT INTO lead_imports (import_id, campaign, rows, started, already_imported, rejected) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                import_id, storable(campaign), rows, started, already_imported, len(problems))
            for first in range(0, len(problems), self.BATCH):
                await conn.copy_records_to_table(
                    "lead_import_problems", columns=("import_id", "n", "line", "field", "reason"),
                    records=[(import_id, n, line, storable(field), storable(reason))
                             for n, (line, field, reason) in enumerate(problems[first:first + self.BATCH],
                                                                       start=first + 1)])

    async def get(self, import_id: str) -> ImportRecord | None:
        row = await self.pool.fetchrow(
            "SELECT import_id, campaign, rows, started, already_imported, rejected, created_at "
            "FROM lead_imports WHERE import_id = $1", import_id)
        return ImportRecord(**row) if row else None

    async def problems(self, import_id: str, after: int, limit: int) -> list[asyncpg.Record]:
        """Rejected rows after the `after`-th, in file order."""
        return await self.pool.fetch(
            "SELECT n, line, field, reason FROM lead_import_problems WHERE import_id = $1 AND n > $2 "
            "ORDER BY n LIMIT $3", import_id, after, limit)


@dataclass(frozen=True)
class RosterCounts:
    changed: int  # rows added, updated, removed or marked by this call
    members: int  # attendees on the roster now


class Roster:
    """A class session's roster (migration 004). Every write is idempotent: the same change twice
    changes nothing the second time, and says so."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, session_id: str, attendees: list[dict[str, Any]], *, keep_removed: bool) -> RosterCounts:
        """Upsert attendees. `keep_removed`: the start's own roster, which neither revives an attendee
        removed before it arrived nor overwrites one added or changed by an event since."""
        # The start's roster only fills rows no event has (a feedback mark that came first); an
        # event's addition overrides what is there and revives a removal.
        conflict = ("DO UPDATE SET attendee = EXCLUDED.attendee, changed_at = now() "
                    "WHERE roster.attendee IS NULL AND NOT roster.removed" if keep_removed else
                    "DO UPDATE SET attendee = EXCLUDED.attendee, removed = false, changed_at = now() "
                    "WHERE roster.removed OR roster.attendee IS DISTINCT FROM EXCLUDED.attendee")
        async with self.pool.acquire() as conn, conn.transaction():
            changed = 0
            for start in range(0, len(attendees), 1000):
                part = attendees[start:start + 1000]
                rows = await conn.fetch(
                    "INSERT INTO roster (session_id, attendee_id, attendee) "
                    "SELECT $1, a->>'attendee_id', a FROM jsonb_array_elements($2::jsonb) AS a "
                    f"ON CONFLICT (session_id, attendee_id) {conflict} RETURNING attendee_id",
                    session_id, json.dumps(part))
                changed += len(rows)
            return RosterCounts(changed, await self._members(conn, session_id))

    async def remove(self, session_id: str, attendee_ids: list[str]) -> RosterCounts:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "INSERT INTO roster (session_id, attendee_id, removed) SELECT $1, unnest($2::text[]), true "
                "ON CONFLICT (session_id, attendee_id) DO UPDATE SET removed = true, changed_at = now() "
                "WHERE NOT roster.removed RETURNING attendee_id, (xmax = 0) AS inserted",
                session_id, attendee_ids)
            # a tombstone for someone never on the roster is recorded, but nobody was removed
            return RosterCounts(sum(1 for r in rows if not r["inserted"]), await self._members(conn, session_id))

    async def mark_feedback(self, session_id: str, attendee_ids: list[str]) -> RosterCounts:
        """A mark for an attendee not stored yet (the start's roster still on its way) is kept in a
        row of its own, which their addition fills in."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "INSERT INTO roster (session_id, attendee_id, feedback) SELECT $1, unnest($2::text[]), true "
                "ON CONFLICT (session_id, attendee_id) DO UPDATE SET feedback = true, changed_at = now() "
                "WHERE NOT roster.feedback RETURNING attendee_id", session_id, attendee_ids)
            return RosterCounts(len(rows), await self._members(conn, session_id))

    async def page(self, session_id: str, after: str | None, limit: int, *,
                   without_feedback: bool = False) -> list[dict[str, Any]]:
        """The next `limit` attendees on the roster, by attendee_id after `after` (keyset order)."""
        rows = await self.pool.fetch(
            "SELECT attendee FROM roster WHERE session_id = $1 AND NOT removed AND attendee IS NOT NULL "
            "AND ($2::text IS NULL OR attendee_id > $2) AND (NOT $3 OR NOT feedback) "
            "ORDER BY attendee_id LIMIT $4", session_id, after, without_feedback, limit)
        return [json.loads(r["attendee"]) for r in rows]

    async def size(self, session_id: str) -> int:
        async with self.pool.acquire() as conn:
            return await self._members(conn, session_id)

    async def count_after(self, session_id: str, after: str, *, without_feedback: bool = False) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM roster WHERE session_id = $1 AND NOT removed AND attendee IS NOT NULL "
            "AND attendee_id > $2 AND (NOT $3 OR NOT feedback)", session_id, after, without_feedback)

    @staticmethod
    async def _members(conn: asyncpg.Connection, session_id: str) -> int:
        return await conn.fetchval(
            "SELECT count(*) FROM roster WHERE session_id = $1 AND NOT removed AND attendee IS NOT NULL", session_id)
