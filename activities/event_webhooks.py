"""Outbound event webhooks: the backend is told what happened (README: Event webhooks).

- Events are written by PostgreSQL itself, in the transaction of the fact (migration 018: the
  send step's status change, a lifecycle event) or by a journey's `announce_journey` local
  activity (its stage), each to every enabled endpoint that wants its type.
- `Endpoints`: the endpoints and their deliveries, as the API and the delivery rounds see them.
- `WebhookActivities.deliver_due`: one round for one endpoint — the oldest pending delivery of
  each journey that is due, signed the Standard Webhooks way, at most `in_flight` at once. A
  2xx is delivered; anything else is tried again on `RETRY_AFTER`, then recorded failed (a retry
  by hand sends it again). An event waits for the earlier ones of its journey, never for others.
- `Wakener`: LISTENs for endpoints that got work while idle and signals their workflows.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
from standardwebhooks.webhooks import Webhook
from temporalio import activity
from temporalio.client import Client

from activities.send import sent_in_batch
from workflows.contracts import ANNOUNCE_JOURNEY, Announcement
from workflows.webhooks import DELIVER_DUE, DeliveryRound, EndpointDelivery, workflow_id

# The catalogue: every type an endpoint can ask for, and what its `data` tells.
EVENT_TYPES: dict[str, str] = {
    "journey.started": "a journey has its start: data.stage is the stage it begins in",
    "journey.stage_changed": "a journey moved on: data.previous_stage → data.stage",
    "journey.ended": "a journey has nothing left to do: data.outcome is its last stage "
                     "(completed, expired, cancelled, converted, paid, abandoned…)",
    "message.sent": "the send step handed a message over (SMTP 250, webhook 2xx, in-app stored)",
    "message.skipped": "a message was not sent, for data.reason (a preference, quiet hours passed, too late…)",
    "message.failed": "a message can never be sent, for data.reason (refused, template problem…)",
    "message.delivered": "a provider reported the message delivered",
    "message.bounced": "the message bounced: data.bounce is hard or soft",
    "message.complained": "the recipient marked the message as spam",
    "message.opened": "a person opened the message (machine opens are not told)",
    "message.clicked": "a person clicked a link of the message (scanners are not told)",
    "recipient.unsubscribed": "an address unsubscribed (one-click, a link, the preference page)",
    "payment.reminded": "a payment's reminder went out (a message.sent of its journey)",
    "lead.converted": "a lead converted: its nurture stops",
    "checkin.negative": "a tutor answered the first-session check-in negatively: it is escalated",
}
CHANNEL = "followups_webhooks"  # migration 018's NOTIFY
SETTINGS_ENDPOINT = "settings"  # the id of the endpoint FOLLOWUPS_EVENTS_WEBHOOK_URL defines
# Standard Webhooks' schedule, roughly: about a day of retries, then failed until retried by hand.
log = logging.getLogger(__name__)
RETRY_AFTER = tuple(timedelta(seconds=s) for s in (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800))
ROUND_SECONDS = 30.0  # a round starts no batch after this; a batch lasts at most BATCH_LANES × the timeout
BATCH_LANES = 4  # a batch is this many deliveries per lane in flight


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def usable_secret(secret: str) -> str | None:
    """None if `secret` is whsec_ + base64 of at least 24 bytes; else what is wrong with it."""
    if not secret.startswith("whsec_"):
        return "the secret must start with whsec_"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return "the secret must be whsec_ followed by base64"
    return None if len(key) >= 24 else "the secret must hold at least 24 random bytes (32 base64 characters)"


def body_of(event_type: str, occurred_at: datetime, data: Any) -> bytes:
    """The payload Standard Webhooks recommends: type, timestamp, data."""
    return json.dumps({"type": event_type, "timestamp": occurred_at.isoformat(), "data": data},
                      separators=(",", ":")).encode()


def retry_at(attempts: int, now: datetime) -> datetime | None:
    """When attempt `attempts + 1` goes, or None once the schedule is spent."""
    return now + RETRY_AFTER[attempts - 1] if attempts <= len(RETRY_AFTER) else None


_ENDPOINT_FIELDS = "id, url, description, event_types, secret, enabled, created_at"
# A pending delivery of endpoint $1 that is its journey's oldest: a later one waits for it; nothing else does.
_HEAD = """d.endpoint_id = $1 AND d.status = 'pending' AND NOT EXISTS (
    SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND p.journey_key = d.journey_key
                                         AND p.status = 'pending' AND p.event_seq < d.event_seq)"""
_HEADS = """
SELECT d.id, d.journey_key, d.attempts, e.id AS event_id, e.type, e.occurred_at, e.data
FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq
WHERE {head} AND d.next_attempt_at <= now()
ORDER BY d.event_seq LIMIT $2
""".format(head=_HEAD)
_NEXT_DUE = """
SELECT min(d.next_attempt_at) FROM webhook_deliveries d
WHERE {head}
""".format(head=_HEAD)
# One batch's attempts written at once: (id, attempts, HTTP status, error or NULL, next attempt or NULL).
_RECORD = """
UPDATE webhook_deliveries d
SET attempts = a.attempts, last_status = a.answer, last_error = a.error,
    status = CASE WHEN a.error IS NULL THEN 'delivered' WHEN a.again IS NULL THEN 'failed' ELSE 'pending' END,
    delivered_at = CASE WHEN a.error IS NULL THEN now() END,
    next_attempt_at = COALESCE(a.again, d.next_attempt_at)
FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[], $5::timestamptz[]) AS a(id, attempts, answer, error, again)
WHERE d.id = a.id AND d.status = 'pending'
"""


class Endpoints:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, url: str, event_types: list[str], description: str = "", secret: str | None = None,
                     endpoint_id: str | None = None) -> asyncpg.Record:
        return await self.pool.fetchrow(
            f"""INSERT INTO webhook_endpoints (id, url, description, event_types, secret) VALUES ($1, $2, $3, $4, $5)
                RETURNING {_ENDPOINT_FIELDS}""",
            endpoint_id or "ep_" + secrets.token_hex(8), url, description, event_types, secret or new_secret())

    async def put_from_settings(self, url: str, secret: str, event_types: list[str]) -> None:
        """The endpoint of FOLLOWUPS_EVENTS_WEBHOOK_URL, as the settings say now (every worker at start)."""
        await self.pool.execute(
            """INSERT INTO webhook_endpoints (id, url, description, event_types, secret) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (id) DO UPDATE SET url = $2, event_types = $4, secret = $5, enabled = true,
                                              deleted_at = NULL""",
            SETTINGS_ENDPOINT, url, "from FOLLOWUPS_EVENTS_WEBHOOK_URL", event_types, secret)

    async def list(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT {_ENDPOINT_FIELDS} FROM webhook_endpoints WHERE enabled ORDER BY created_at, id")

    async def get(self, endpoint_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"SELECT {_ENDPOINT_FIELDS} FROM webhook_endpoints WHERE id = $1 AND enabled", endpoint_id)

    async def delete(self, endpoint_id: str) -> bool:
        """Disable it for good: nothing more is recorded for it, and what was pending is cancelled."""
        async with self.pool.acquire() as conn, conn.transaction():
            gone = await conn.fetchval(
                "UPDATE webhook_endpoints SET enabled = false, deleted_at = now() WHERE id = $1 AND enabled RETURNING id",
                endpoint_id)
            await conn.execute("UPDATE webhook_deliveries SET status = 'cancelled' WHERE endpoint_id = $1 "
                               "AND status = 'pending'", endpoint_id)
        return gone is not None

    async def deliveries(self, endpoint_id: str, status: str | None, after: int, limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """SELECT d.id, d.status, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.created_at,
                      d.delivered_at, e.id AS event_id, e.type, e.journey_key, e.occurred_at, e.data
               FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq
               WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status = $2) AND d.id > $3
               ORDER BY d.id LIMIT $4""",
            endpoint_id, status, after, limit)

    async def retry(self, endpoint_id: str, delivery_id: int) -> bool:
        """Send a delivery again now, whatever became of it (a cancelled one stays cancelled)."""
        return await self.pool.fetchval(
            """UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now()
               WHERE endpoint_id = $1 AND id = $2 AND status <> 'cancelled' RETURNING true""",
            endpoint_id, delivery_id) is not None

    async def heads(self, endpoint_id: str, limit: int) -> list[asyncpg.Record]:
        """The deliveries that may go now: each journey's oldest pending one, if it is due."""
        return await self.pool.fetch(_HEADS, endpoint_id, limit)

    async def record(self, attempts: list[tuple[asyncpg.Record, Attempt]]) -> None:
        """Write one batch's attempts down: delivered, tried again later, or failed for good."""
        now = datetime.now(timezone.utc)
        rows = [(head["id"], head["attempts"] + 1, attempt.answer, attempt.error[:500] if attempt.error else None,
                 None if attempt.error is None else retry_at(head["attempts"] + 1, now)) for head, attempt in attempts]
        await self.pool.execute(_RECORD, *(list(column) for column in zip(*rows)))

    async def rest(self, endpoint_id: str, refusing: bool) -> tuple[bool, datetime | None]:
        """(work is due now, the next retry): when none is due, the endpoint goes to sleep — under
        its row's lock, which an event being recorded for it holds until commit, so such an event
        either is seen here or wakes it again. An endpoint `refusing` everything stays marked awake:
        new events wait for its next retry rather than each waking it."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM webhook_endpoints WHERE id = $1 FOR UPDATE", endpoint_id)
            next_due = await conn.fetchval(_NEXT_DUE, endpoint_id)
            if next_due is not None and next_due <= datetime.now(timezone.utc):
                return True, next_due
            if not refusing:
                await conn.execute("UPDATE webhook_endpoints SET awake = false WHERE id = $1", endpoint_id)
            return False, next_due

    async def with_work(self) -> list[str]:
        """Endpoints that have pending deliveries (a listener starting looks at these first)."""
        rows = await self.pool.fetch(
            "SELECT id FROM webhook_endpoints e WHERE enabled AND EXISTS "
            "(SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending')")
        return [row["id"] for row in rows]


@dataclass(frozen=True)
class Attempt:
    answer: int | None  # the HTTP status, None without one
    error: str | None  # None: delivered


class WebhookActivities:
    def __init__(self, endpoints: Endpoints, timeout: float = 10.0, in_flight: int = 16) -> None:
        self.endpoints, self.in_flight = endpoints, in_flight
        self.http = httpx.AsyncClient(timeout=timeout, headers={"User-Agent": "Followups-Webhooks"})

    async def close(self) -> None:
        await self.http.aclose()

    @activity.defn(name=ANNOUNCE_JOURNEY)
    async def announce_journey(self, news: list[Announcement]) -> None:
        async with self.endpoints.pool.acquire() as conn, conn.transaction():
            await conn.executemany("SELECT webhook_emit($1, $2, $3, $4::jsonb)",
                                   [(item.fact, item.type, item.journey_key, json.dumps(item.data)) for item in news])

    @activity.defn(name=DELIVER_DUE)
    async def deliver_due(self, endpoint_id: str) -> DeliveryRound:
        """Batches of due heads until none is left or ROUND_SECONDS have passed; a batch's
        attempts are written in one statement once all of them have an answer."""
        endpoint = await self.endpoints.get(endpoint_id)
        if endpoint is None:
            return DeliveryRound(gone=True)
        signer = Webhook(endpoint["secret"])
        done = DeliveryRound()
        deadline = time.monotonic() + ROUND_SECONDS
        while heads := await self.endpoints.heads(endpoint_id, self.in_flight * BATCH_LANES):
            attempts = await sent_in_batch((self._attempt(endpoint["url"], signer, head) for head in heads),
                                           self.in_flight)
            await self.endpoints.record(list(zip(heads, attempts)))
            delivered = sum(attempt.error is None for attempt in attempts)
            done.delivered += delivered
            done.failed += len(attempts) - delivered
            activity.heartbeat(done.delivered)
            if time.monotonic() > deadline:
                done.more = True
                return done
        done.refusing = done.failed > 0 and done.delivered == 0
        done.more, done.next_due = await self.endpoints.rest(endpoint_id, done.refusing)
        return done

    async def _attempt(self, url: str, signer: Webhook, head: asyncpg.Record) -> Attempt:
        return await self.post(url, signer, head["event_id"],
                               body_of(head["type"], head["occurred_at"], json.loads(head["data"])))

    async def post(self, url: str, signer: Webhook, event_id: str, body: bytes) -> Attempt:
        now = datetime.now(timezone.utc)
        headers = {"Content-Type": "application/json", "webhook-id": event_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signer.sign(event_id, now, body)}
        try:
            response = await self.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as err:
            return Attempt(None, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
        if response.is_success:
            return Attempt(response.status_code, None)
        return Attempt(response.status_code, f"answered {response.status_code}: {response.text[:200]}")


async def wake(client: Client, endpoint_id: str, task_queue: str) -> None:
    """Signal the endpoint's workflow, starting it if it is not running."""
    await client.start_workflow(EndpointDelivery.run, endpoint_id, id=workflow_id(endpoint_id),
                                task_queue=task_queue, start_signal="wake")


class Wakener:
    """LISTEN for endpoints that got an event while they had nothing to do, and wake their
    workflows. On each (re)connection, every endpoint with pending deliveries is woken first: a
    notification sent while no listener was connected is gone."""

    def __init__(self, database_url: str, endpoints: Endpoints, client: Client, task_queue: str) -> None:
        self.database_url, self.endpoints, self.client, self.task_queue = database_url, endpoints, client, task_queue
        self.woken: asyncio.Queue[str] = asyncio.Queue()

    async def run(self) -> None:
        waking = asyncio.create_task(self._wake_each())
        try:
            while True:
                try:
                    await self._listen()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                    log.warning("webhook listener: %s; listening again in 5 s", err)
                await asyncio.sleep(5)
        finally:
            waking.cancel()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.database_url)
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _: closed.set())
        try:
            await conn.add_listener(CHANNEL, lambda _conn, _pid, _channel, endpoint_id: self.woken.put_nowait(endpoint_id))
            for endpoint_id in await self.endpoints.with_work():
                self.woken.put_nowait(endpoint_id)
            await closed.wait()
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _wake_each(self) -> None:
        while True:
            endpoint_id = await self.woken.get()
            while True:
                try:
                    await wake(self.client, endpoint_id, self.task_queue)
                    break
                except Exception as err:  # noqa: BLE001 (Temporal away: the event stays pending, try again)
                    log.warning("webhook endpoint %s: waking it failed (%s); again in 5 s", endpoint_id, err)
                    await asyncio.sleep(5)
