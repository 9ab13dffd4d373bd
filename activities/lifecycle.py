"""A message's life after the send step: every event kept with its time (migration 013), and the
furthest point it reached in `messages.lifecycle`, which only moves forward.

queued → sent → delivered → opened → clicked; a soft bounce sits between sent and delivered, a
hard bounce and a complaint end it, failed stands where sent would. Opens and clicks a machine
made (an image proxy, Apple Mail Privacy Protection, a link scanner) are kept, flagged, and move
nothing: a message a scanner opened is not a message a person read.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import asyncpg

EventKind = Literal["sent", "delivered", "opened", "clicked", "soft_bounced", "bounced", "complained", "failed",
                    "unsubscribed", "deferred"]
# Kinds that are a point of the lifecycle (the others are only kept as events).
STAGES = ("queued", "sent", "failed", "soft_bounced", "delivered", "opened", "clicked", "bounced", "complained")

_INSERT = """
INSERT INTO message_events (key, email, kind, at, machine, reason, detail, provider, provider_event_id)
SELECT target.key, lower(COALESCE($3::text, m.recipient)), $4, COALESCE($5, now()), $6, $7, $8::jsonb, $9, $10
FROM (SELECT COALESCE($1::text, (SELECT key FROM messages WHERE message_id = $2 ORDER BY created_at LIMIT 1))
      AS key) target
LEFT JOIN messages m ON m.key = target.key
WHERE COALESCE($3::text, m.recipient) IS NOT NULL
ON CONFLICT (provider, provider_event_id) DO NOTHING
RETURNING key
"""
_RECONSIDER = """
UPDATE messages SET lifecycle = best.kind, updated_at = now()
FROM (SELECT kind FROM (SELECT CASE WHEN status IN ('sent', 'failed') THEN status ELSE 'queued' END AS kind
                        FROM messages WHERE key = $1
                        UNION ALL
                        SELECT kind FROM message_events WHERE key = $1 AND NOT machine AND kind = ANY($2::text[])) k
      ORDER BY lifecycle_rank(kind) DESC LIMIT 1) best
WHERE messages.key = $1 AND messages.lifecycle <> best.kind
"""
_ADVANCE = """UPDATE messages SET lifecycle = $2, updated_at = now()
              WHERE key = $1 AND lifecycle_rank($2) > lifecycle_rank(lifecycle)"""


class Lifecycle:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, *, kind: EventKind, key: str | None = None, message_id: str | None = None,
                     email: str | None = None, at: datetime | None = None, machine: bool = False,
                     reason: str | None = None, detail: dict[str, Any] | None = None, provider: str | None = None,
                     provider_event_id: str | None = None) -> bool:
        """Keep one event and move the message's lifecycle forward if it goes further. The message
        is named by `key`, or by its `message_id` header (what providers report back); `email`
        defaults to the message's recipient. A provider event already recorded (same `provider` and
        `provider_event_id`: a webhook delivered twice) changes nothing. True if the event was new
        (False too for an event that names neither a known message nor an address)."""
        if key is None and message_id is None and email is None:
            raise ValueError("an event names a message (key or message_id) or at least an address")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_INSERT, key, message_id, email, kind, at, machine, reason,
                                      None if detail is None else json.dumps(detail), provider, provider_event_id)
            if row is None:
                return False
            if row["key"] is not None and not machine and kind in STAGES:
                await conn.execute(_ADVANCE, row["key"], kind)
        return True

    async def reconsider(self, key: str) -> None:
        """Put the lifecycle back where the human events take it, after events were found to be a
        machine's (a scanner's burst of clicks: its first click looked human when it came)."""
        await self.pool.execute(_RECONSIDER, key, list(STAGES))

    async def events(self, key: str) -> list[asyncpg.Record]:
        """A message's events in the order they happened."""
        return await self.pool.fetch("SELECT * FROM message_events WHERE key = $1 ORDER BY at, id", key)
