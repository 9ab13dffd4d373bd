"""Digests: the recipients table, the progress callback, the dispatcher's two activities and the
Schedule that runs it.

- `plan_digest_dispatch(slot)`: the distinct zones among the recipients (one index probe per zone),
  then the pure rules (workflows/digest/rules.py) say which are due in the slot, per kind.
- `send_digest_batch(batch)`: the next `limit` recipients of the due zones in keyset order
  (time zone, recipient), each digest through the one send step (`SendActivities.send_message`:
  outbox claim, suppressions, rendering, SMTP, record) under `digest/{recipient}/{period}`. Keys
  an earlier run already finished are passed over before anything is fetched or rendered, so a
  backfill or a retry of a slot costs one query per batch and sends nothing twice.
- `ensure_dispatch_schedule`: the one Schedule, created or updated when a worker starts.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
from pydantic import TypeAdapter, ValidationError
from temporalio import activity
from temporalio.client import (
    Client, Schedule, ScheduleActionStartWorkflow, ScheduleAlreadyRunningError, ScheduleIntervalSpec,
    ScheduleOverlapPolicy, SchedulePolicy, ScheduleSpec, ScheduleUpdate, ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.mail import message_id
from activities.outgoing import reason_kind
from activities.send import SEND_LEASE, SendActivities, sent_in_batch
from activities.webhook import signature
from workflows.contracts import MessageCategory, Recipient, SendRequest, SendStatus
from workflows.core import search
from workflows.digest import rules
from workflows.digest.models import (
    PLAN_DIGESTS, SEND_DIGESTS, BatchReport, Cursor, DigestBatch, DigestKind, DispatchInput, DispatchPlan, DueGroup,
    Progress,
)
from workflows.digest.workflow import DigestDispatch

SENDS_IN_FLIGHT = 20  # per batch, as the roster fan-out: hides SMTP round trips, spares a small server
_PROGRESS = TypeAdapter(Progress)
_FINISHED = ("sent", "skipped", "failed", "dry_run")


class DigestRecipients:
    """The `digest_recipients` table (migration 007)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(self, recipient: str, *, email: str, name: str, time_zone: str, digests: list[str],
                  progress: dict[str, Any] | None) -> tuple[asyncpg.Record, bool]:
        """Insert or replace; the row and whether it was new."""
        row = await self.pool.fetchrow(
            "INSERT INTO digest_recipients (recipient, email, name, time_zone, digests, progress) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (recipient) DO UPDATE SET email = $2, name = $3, "
            "time_zone = $4, digests = $5, progress = $6::jsonb, updated_at = now() "
            "RETURNING *, (xmax = 0) AS created",
            recipient, email, name, time_zone, digests, None if progress is None else json.dumps(progress))
        assert row is not None
        return row, row["created"]

    async def get(self, recipient: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM digest_recipients WHERE recipient = $1", recipient)

    async def delete(self, recipient: str) -> bool:
        return (await self.pool.execute("DELETE FROM digest_recipients WHERE recipient = $1", recipient)) != "DELETE 0"

    async def zones(self) -> list[str]:
        """The distinct time zones, by a loose index scan: one probe per zone, not a pass over
        every recipient."""
        rows = await self.pool.fetch(
            "WITH RECURSIVE z AS ((SELECT time_zone FROM digest_recipients ORDER BY time_zone LIMIT 1) "
            "UNION ALL SELECT (SELECT r.time_zone FROM digest_recipients r WHERE r.time_zone > z.time_zone "
            "ORDER BY r.time_zone LIMIT 1) FROM z WHERE z.time_zone IS NOT NULL) "
            "SELECT time_zone FROM z WHERE time_zone IS NOT NULL")
        return [row["time_zone"] for row in rows]

    async def page(self, kind: str, zones: list[str], after: Cursor | None, limit: int) -> list[asyncpg.Record]:
        """The next `limit` recipients of `kind` in `zones`, after `after`, in (time zone, recipient) order."""
        columns = "SELECT recipient, email, name, time_zone, progress FROM digest_recipients "
        if after is None:
            return await self.pool.fetch(
                columns + "WHERE time_zone = ANY($1::text[]) AND $2 = ANY(digests) "
                "ORDER BY time_zone, recipient LIMIT $3", zones, kind, limit)
        return await self.pool.fetch(
            columns + "WHERE time_zone = ANY($1::text[]) AND $2 = ANY(digests) AND (time_zone, recipient) > ($3, $4) "
            "ORDER BY time_zone, recipient LIMIT $5", zones, kind, after.time_zone, after.recipient, limit)

    async def finished(self, keys: list[str]) -> set[str]:
        rows = await self.pool.fetch(
            "SELECT key FROM messages WHERE key = ANY($1::text[]) AND status = ANY($2::text[])", keys, list(_FINISHED))
        return {row["key"] for row in rows}


class ProgressUnavailable(Exception):
    """The callback has no progress for this recipient and period (it answered 404 or 204)."""


class ProgressRefused(Exception):
    """The callback's answer cannot be used (a 4xx, a body that is not a progress object)."""


class ProgressCallback:
    """Pulls a recipient's progress per send: a signed POST of `{recipient, digest, period, email,
    time_zone}` to FOLLOWUPS_PROGRESS_CALLBACK_URL, signed like the webhook channel
    (`X-Followups-Signature: sha256=HMAC(secret, timestamp + "." + body)`, `X-Followups-Timestamp`,
    `X-Followups-Key` = the digest's key). 200 with a JSON object: the progress; 404 or 204: no
    digest this time (skipped, with the reason); 408, 429, 5xx, no answer: the batch is retried."""

    def __init__(self, url: str, secret: str, timeout: float = 10.0) -> None:
        self.url, self.secret = url, secret
        self.http = httpx.AsyncClient(timeout=timeout)

    async def fetch(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        content = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        response = await self.http.post(self.url, content=content, headers={
            "Content-Type": "application/json", "X-Followups-Key": key, "X-Followups-Timestamp": timestamp,
            "X-Followups-Signature": signature(self.secret, timestamp, content)})
        if response.status_code in (204, 404):
            raise ProgressUnavailable(f"the progress callback has none (it answered {response.status_code})")
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise ApplicationError(f"progress callback answered {response.status_code}", type="ProgressCallbackBusy")
        if not response.is_success:
            raise ProgressRefused(f"the progress callback answered {response.status_code}: {response.text[:200]}")
        try:
            return _PROGRESS.validate_python(response.json())
        except (ValueError, ValidationError) as err:
            problem = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
            raise ProgressRefused(f"the progress callback's answer is not a progress object: {problem}") from err

    async def close(self) -> None:
        await self.http.aclose()


class DigestActivities:
    def __init__(self, recipients: DigestRecipients, sends: SendActivities, *, grace: timedelta,
                 callback: ProgressCallback | None = None) -> None:
        self.recipients, self.sends, self.grace, self.callback = recipients, sends, grace, callback

    @activity.defn(name=PLAN_DIGESTS)
    async def plan(self, scheduled: datetime) -> DispatchPlan:
        slot = rules.slot_of(scheduled)
        zones = await self.recipients.zones()
        groups = [DueGroup(kind=kind, period=period, zones=due)
                  for kind in DigestKind for period, due in rules.due_zones(kind.cadence, zones, slot).items()]
        return DispatchPlan(slot_start=slot.start, slot_end=slot.end, zones_known=len(zones), groups=groups)

    @activity.defn(name=SEND_DIGESTS)
    async def send_batch(self, batch: DigestBatch) -> BatchReport:
        group = batch.group
        rows = await self.recipients.page(group.kind.value, group.zones, batch.after, batch.limit + 1)
        more, rows = len(rows) > batch.limit, rows[:batch.limit]
        keys = {row["recipient"]: group.kind.key(row["recipient"], group.period) for row in rows}
        done = await self.recipients.finished(list(keys.values())) if rows else set()

        async def one(row: asyncpg.Record) -> tuple[str, str | None]:
            key = keys[row["recipient"]]
            if key in done:
                return "already_done", None
            return await self._send(batch, row, key)

        outcomes = await sent_in_batch((one(row) for row in rows), SENDS_IN_FLIGHT)
        counts = Counter(outcome for outcome, _ in outcomes)
        skipped = Counter(reason_kind(reason) for outcome, reason in outcomes if outcome == "skipped")
        last = Cursor(time_zone=rows[-1]["time_zone"], recipient=rows[-1]["recipient"]) if more else None
        return BatchReport(recipients=len(rows), sent=counts["sent"], already_done=counts["already_done"],
                           skipped=dict(skipped), failed=counts["failed"], last=last)

    async def _send(self, batch: DigestBatch, row: asyncpg.Record, key: str) -> tuple[str, str | None]:
        group = batch.group
        try:
            recipient = Recipient(email=row["email"], name=row["name"], time_zone=row["time_zone"])
        except ValidationError as err:  # stored under other settings (a .test address, SMTPUTF8 off)
            return "failed", f"recipient: {err.errors()[0]['msg']}"
        context: dict[str, Any] = {"digest": group.kind.value, "period": group.period,
                                   "due_at": batch.slot_end.isoformat()}
        request = SendRequest(
            key=key, journey="digest", entity_id=row["recipient"], template=group.kind.template,
            recipient=recipient, context=context, category=MessageCategory.TRANSACTIONAL,
            due_at=batch.slot_end, not_after=batch.slot_end + self.grace)
        try:
            progress = await self._progress(row, group, key)
        except ProgressUnavailable as err:
            return await self._record(request, "skipped", f"no progress: {err}")
        except ProgressRefused as err:
            return await self._record(request, "failed", str(err))
        request = request.model_copy(update={"context": {**context, "progress": progress}})
        result = await self.sends.send_counted(request)  # failed for good: recorded, the rest go on
        if result.already_done:
            return "already_done", None
        if result.status.delivered:
            return "sent", None
        return ("failed" if result.status is SendStatus.FAILED else "skipped"), result.reason

    async def _progress(self, row: asyncpg.Record, group: DueGroup, key: str) -> dict[str, Any]:
        if self.callback is not None:
            return await self.callback.fetch(key, {
                "recipient": row["recipient"], "digest": group.kind.value, "period": group.period,
                "email": row["email"], "time_zone": row["time_zone"]})
        if row["progress"] is None:
            raise ProgressUnavailable("none was pushed (PUT /v1/progress/{recipient}) and no callback is set")
        return json.loads(row["progress"])

    async def _record(self, request: SendRequest, status: str, reason: str) -> tuple[str, str | None]:
        """A digest that cannot go out is still recorded under its key, with the reason, so the
        outbox shows it (`GET /v1/messages?journey=digest`) and no later run of the period tries again."""
        outbox = self.sends.outbox
        claim = await outbox.claim(
            key=request.key, journey=request.journey, entity_id=request.entity_id, template=request.template,
            recipient=str(request.recipient.email).lower(), recipient_name=request.recipient.name,
            category=str(request.category), context=request.context,
            message_id=message_id(request.key, self.sends.sender.domain), due_at=request.due_at, lease=SEND_LEASE)
        if claim.action == "done":
            return "already_done", None
        if claim.action == "busy":
            raise ApplicationError(f"{request.key} is being sent by another attempt", type="SendInFlight")
        await outbox.finish(request.key, status, reason=reason)
        return status, reason



def dispatch_schedule(task_queue: str, schedule_id: str, grace: timedelta, batch_size: int) -> Schedule:
    """Every 30 minutes on the UTC grid (:00 and :30); each run serves the slot ending at its
    scheduled time. Runs never wait for each other (a slot's dispatch may take longer than 30
    minutes over a large audience; two slots never share a recipient), and a fire missed while
    Temporal was down is caught up within the digests' grace, past which a digest is not sent."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DigestDispatch.run, DispatchInput(batch_size=batch_size), id=schedule_id, task_queue=task_queue,
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(search.JOURNEY, "digest")]),
            static_summary="digest dispatch: the recipients whose local time reached their digest in this slot"),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=rules.SLOT)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=grace),
    )


async def ensure_dispatch_schedule(client: Client, schedule: Schedule, schedule_id: str) -> None:
    """Create the Schedule, or bring an existing one up to this worker's definition while keeping
    its state (an operator's pause and note stay). Every worker does this at start: idempotent."""
    try:
        await client.create_schedule(schedule_id, schedule)
        return
    except ScheduleAlreadyRunningError:
        pass
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise  # a worker that cannot make sure of the Schedule says so at start, not never
        # The time-skipping test server (workflow tests, `followups preview`) has no Schedules.
        logging.getLogger(__name__).info("no Schedules on this Temporal server: digests are not scheduled")
        return

    async def keep_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule.state = current.description.schedule.state
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(schedule_id).update(keep_state)
