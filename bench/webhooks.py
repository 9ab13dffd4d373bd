"""Event webhooks (activities/event_webhooks.py, workflows/webhooks.py) on the embedded stack: how fast
they go out against a bare HTTP loop, and what a dead endpoint costs the journeys (nothing, is the
promise).

    .venv/bin/python -m bench.webhooks [--quick] [--events N] [--keys K] [--reminders M] [--spread S]
                                       [--parts deliveries,lateness] [--out NAME]
    .venv/bin/python -m bench.webhooks --parts dead_round,head_of_line [--hold 200]   # diagnostics

One embedded PostgreSQL, one Temporal dev server (starter/embedded.py: SQLite file, WAL pragmas, as
`make dev`), one `followups worker` process (its webhooks worker included: the endpoints' own task
queue), bench/peers/sink.py (real SMTP, writes each idempotency key's arrival time) and
bench/peers/webhook_receiver.py (uvicorn serving a bare ASGI app that verifies every Standard
Webhooks signature with `standardwebhooks` and counts webhook-ids), each in its own process.
Settings as shipped: FOLLOWUPS_WEBHOOK_DELIVERIES_IN_FLIGHT 16, FOLLOWUPS_EVENTS_WEBHOOK_TIMEOUT_SECONDS 10.

1. deliveries: one endpoint wanting every type (Endpoints.create, the API's store) for the receiver.
   N events (20,000; --quick 3,000) over K journey keys (1,000), interleaved (event i → key i mod K)
   and numbered per key (data.seq, so the receiver checks the order per journey), recorded by
   `SELECT webhook_emit(...) FROM generate_series(...)`, after a 200-event warm-up that starts the
   endpoint's workflow. PostgreSQL's NOTIFY at commit wakes it through the worker's listener;
   rounds of `deliver_due` post them. The peer: the same events read back, their bodies built
   (outside the clock) and signed with headers as `WebhookActivities.post` makes them (inside),
   posted by a bare `httpx.AsyncClient` loop with the same concurrency to the same receiver. In
   halves, Followups, bare, bare, Followups (each half's events recorded in one transaction; the
   bare loop posts the first half's twice), so a drift in the machine's load weighs on both. Timed
   at the receiver, from the first new webhook-id to the last, summed over the halves:
   deliveries/s → ratio. CPU ms per delivery of each process (worker tree, dev server, PostgreSQL's
   backends, receiver; the peer: this process and the receiver), summed → CPU ratio. Checked: every
   id received, none forged or out of order per journey, every delivery row `delivered`.
2. lateness: M appointment journeys (300; --quick 100) booked by the service's `start_new`, each
   with one reminder 10 s before its appointment (policy.reminder_offsets), so that each journey
   also ends within its phase (4 events: started, message.sent, stage changed, ended). Due moments
   spread evenly over S s (30; --quick 10), starting once the bookings are made (the lead: from a
   20-journey warm-up's booking rate). Lateness = the SMTP sink's arrival time − due; a reminder
   more than 10 s late is skipped as too late (its appointment began) and counted "not sent", with
   the reason its `messages` row gives. Phases, one after another on the same stack: no endpoint;
   a dead endpoint wanting every type (accepts the connection, never answers: every attempt waits
   the whole 10 s timeout); an endpoint whose URL refuses the connection. Full: none, dead,
   refused, dead, none (the two "none" rounds give the run's own noise); --quick: none, dead,
   refused. p50/p95/p99/max per phase and pooled per endpoint kind, ratios to "none", CPU ms per
   reminder (worker, dev server, PostgreSQL), the cores other processes used meanwhile (psutil:
   the machine's busy time minus ours), and the dead endpoint's side: connections it accepted,
   most open at once, deliveries still pending and the journeys behind them at the phase's end.
   After each endpoint's phase its peer is stopped, the endpoint deleted and its workflow woken to
   end.
Diagnostics, not in `make bench` (--parts dead_round,head_of_line):
3. dead_round: a dead endpoint and H events over H journeys (--hold-events, 400), watched for
   --hold seconds (200): how long one `deliver_due` round takes when every attempt waits the
   timeout, against the activity's start-to-close timeout (2 min); connections open at once.
4. head_of_line: the receiver answers 500 to "bad-…" journeys' events; B such journeys (4 events
   each), then 50 other journeys' 200 events: are the others delivered while the refused ones
   wait for their retries? B × 4 under the 1,000 pending rows a round looks at, then over it.
--profile: py-spy on the worker while it delivers (part 1; it skews the rate: not for the record).

Time, measured on 2 cores that other work kept ~70 % busy (load average 8-10): --quick 2 min 13 s;
the defaults 11 min (stack ~25 s, deliveries 5.6 min at ~100/s, warm-up and five lateness phases of
55 s each 5 min). The deliveries part scales with the rate: at --quick's 370/s, 2 × 20,000 take
under 2 minutes. Absolute rates and lateness mean little on a shared machine: read the ratios, and
the "other processes, cores" column before the lateness. Writes bench/results/webhooks.json
(--quick: webhooks-quick.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import (
    CpuClock,
    Peer,
    PySpy,
    Proc,
    Temporal,
    exit_on_sigterm,
    free_port,
    in_flight,
    load,
    machine_facts,
    now_iso,
    percentile,
    postgres_version,
    postmaster_pid,
    say,
    stack_env,
    start_postgres,
    start_temporal,
    start_worker,
    table,
    wait_worker_polling,
    work_dir,
    write_results,
)
from settings import Settings

WARM_EVENTS = 200
# A reminder's offset before its appointment: the journey ends OFFSET_S after its reminder (its last
# events fall inside the phase), and a reminder later than that is skipped as too late, not sent.
OFFSET_S = 10
WARM_REMINDERS = 20
STALL_S = 60.0  # no new delivery for this long: the run failed, say so
HOLD_EVENTS = 400
GOOD_JOURNEYS = 50
HOL_WATCH_S = 45.0
TYPES = ["journey.started", "message.sent", "journey.stage_changed", "journey.ended"]


class Stack:
    """PostgreSQL (shared), a dev server, the arrival-recording SMTP sink and one worker."""

    def __init__(self, work: Path, pg_url: str) -> None:
        self.work, self.pg_url = work, pg_url
        self.queue = f"bench-webhooks-{uuid.uuid4().hex[:6]}"
        self.settings = Settings(temporal_task_queue=self.queue)
        self.arrivals_path = work / "arrivals.tsv"
        self.temporal: Temporal | None = None
        self.sink: Peer | None = None
        self.worker: Proc | None = None
        self.cpu_pids: dict[str, int | None] = {}

    async def __aenter__(self) -> Stack:
        self.sink = Peer(self.work, "sink", ["bench.peers.sink", "--out", str(self.arrivals_path)]).start()
        self.temporal = await start_temporal(self.work)
        env = stack_env(database_url=self.pg_url, temporal=self.temporal, task_queue=self.queue,
                        smtp_port=self.sink.port, FOLLOWUPS_DIGEST_SCHEDULE_ID="", FOLLOWUPS_RETENTION_SCHEDULE_ID="")
        self.worker = start_worker(self.work, env)
        await wait_worker_polling(self.temporal, self.queue, self.worker, timeout=90)
        await wait_worker_polling(self.temporal, self.settings.webhook_queue, self.worker)
        self.cpu_pids = {"worker": self.worker.pid, "temporal": self.temporal.pid,
                         "postgres": await postmaster_pid(self.pg_url)}
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.temporal is not None:
            await self.temporal.stop()
        if self.sink is not None:
            self.sink.stop()

    def alive(self) -> None:
        if self.worker is not None and not self.worker.running():
            raise SystemExit(f"the worker exited:\n{self.worker.tail()}")

    def arrivals(self) -> dict[str, float]:
        """Each key's first arrival at the SMTP sink (unix time)."""
        first: dict[str, float] = {}
        text = self.arrivals_path.read_text() if self.arrivals_path.exists() else ""
        for line in text.splitlines():
            stamp, _, key = line.partition("\t")
            if key and key not in first:
                first[key] = float(stamp)
        return first

    async def end_endpoint(self, pool, endpoint_id: str) -> str:
        """Delete it (its pending deliveries are cancelled), wake its workflow and wait for it to end."""
        from temporalio.service import RPCError

        from activities.event_webhooks import Endpoints
        from workflows.webhooks import workflow_id

        await Endpoints(pool).delete(endpoint_id)
        assert self.temporal is not None
        handle = self.temporal.client.get_workflow_handle(workflow_id(endpoint_id))
        try:
            await handle.signal("wake")
        except RPCError:
            return "never started"
        try:
            await asyncio.wait_for(handle.result(), 60)
            return "ended"
        except asyncio.TimeoutError:
            return "still running after 60 s"

    async def endpoint_view(self, pool, endpoint_id: str) -> dict[str, Any]:
        """Its deliveries as PostgreSQL has them and its workflow's round as the server has it."""
        from workflows.webhooks import workflow_id

        row = await pool.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'pending') AS pending, "
            "count(*) FILTER (WHERE status = 'delivered') AS delivered, "
            "count(*) FILTER (WHERE status = 'failed') AS failed, "
            "count(DISTINCT journey_key) FILTER (WHERE status = 'pending') AS journeys_waiting, "
            "count(*) FILTER (WHERE attempts > 0) AS attempted, coalesce(sum(attempts), 0) AS attempts, "
            "coalesce(max(attempts), 0) AS max_attempts FROM webhook_deliveries WHERE endpoint_id = $1", endpoint_id)
        out: dict[str, Any] = dict(row)
        assert self.temporal is not None
        try:
            described = await self.temporal.client.get_workflow_handle(workflow_id(endpoint_id)).describe()
        except Exception:  # noqa: BLE001 (never woken: nothing to describe)
            return out
        out["workflow_status"] = described.status.name if described.status else None
        out["history_events"] = described.raw_description.workflow_execution_info.history_length  # ~ rounds × 6
        pending = described.raw_description.pending_activities
        if pending:
            activity = pending[0]
            out["round"] = {"attempt": activity.attempt, "state": activity.state,
                            "last_failure": activity.last_failure.message or None}
        return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (every core; not idle, I/O wait or stolen)."""
    import psutil

    times = psutil.cpu_times()  # guest time is already inside user and nice
    return times.user + times.nice + times.system + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)


def summary(values: list[float], missing: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(values), "missing": missing}
    if values:
        out.update({f"p{round(q * 100)}_s": round(percentile(values, q), 3) for q in (0.5, 0.95, 0.99)})
        out["max_s"] = round(max(values), 3)
    return out


def per_unit_ms(cpu_s: dict[str, float], n: int) -> dict[str, float]:
    return {name: round(1000 * seconds / max(n, 1), 3) for name, seconds in cpu_s.items()}


# --- 1. deliveries ----------------------------------------------------------------------------------

EMIT = """
SELECT webhook_emit(t || '/' || i, ($4::text[])[i % 4 + 1], 'appointment/' || t || '-' || (i % $3),
    jsonb_build_object('run', t, 'seq', i / $3, 'journey', 'appointment', 'entity_id', t || '-' || (i % $3),
                       'workflow_id', 'appointment-' || t || '-' || (i % $3), 'stage', 'confirmed',
                       'key', 'appointment-' || t || '-' || (i % $3) || '/reminder-1h-' || i,
                       'template', 'appointment_reminder', 'recipient', 'p' || (i % $3) || '@example.com',
                       'channel', 'email', 'category', null::text, 'variant', null::text, 'status', 'sent',
                       'reason', null::text, 'due_at', now(), 'sent_at', now()))
FROM (SELECT $1::text AS t) AS run, generate_series(0, $2::int - 1) AS i
"""


async def emit(pool, tag: str, n: int, keys: int) -> float:
    """N events over `keys` journeys in one transaction (what many journeys' sends would record); seconds."""
    began = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(EMIT, tag, n, keys, TYPES)
    return time.perf_counter() - began


async def wait_received(stack: Stack, receiver: Peer, n: int) -> dict[str, Any]:
    """Until the receiver holds `n` distinct webhook-ids; SystemExit when none arrives for STALL_S."""
    seen, moved = -1, time.monotonic()
    while True:
        stats = receiver.ask("stats")
        if stats["distinct"] >= n:
            return stats
        if stats["distinct"] != seen:
            seen, moved = stats["distinct"], time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            assert stack.worker is not None
            raise SystemExit(f"{stats['distinct']} of {n} webhooks received and none for {STALL_S:.0f} s:\n"
                             f"{stack.worker.tail()}")
        stack.alive()
        await asyncio.sleep(0.25)


async def bare_loop(url: str, secret: str, bodies: list[tuple[str, bytes]], concurrency: int,
                    timeout: float) -> dict[str, int]:
    """Prebuilt bodies, signed and posted as `WebhookActivities.post` does, `concurrency` at once."""
    import httpx
    from standardwebhooks.webhooks import Webhook

    signer = Webhook(secret)
    async with httpx.AsyncClient(timeout=timeout, headers={"User-Agent": "bench-bare-loop"}) as http:
        async def post(item: tuple[str, bytes]) -> bool:
            event_id, body = item
            now = datetime.now(timezone.utc)
            response = await http.post(url, content=body, headers={
                "Content-Type": "application/json", "webhook-id": event_id,
                "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signer.sign(event_id, now, body)})
            return response.is_success

        outcomes = await in_flight(concurrency, bodies, post)
    return {"answered_2xx": sum(outcomes), "refused": len(outcomes) - sum(outcomes)}


async def followups_round(stack: Stack, pool, receiver: Peer, endpoint: str, tag: str, n: int, keys: int,
                          profile: bool) -> dict[str, Any]:
    """N events recorded in one transaction; timed at the receiver until it holds them all."""
    receiver.ask("reset")
    cpu = CpuClock({**stack.cpu_pids, "receiver": receiver.pid}, trees=frozenset({"postgres", "worker"}))
    out: dict[str, Any] = {"tag": tag, "events": n, "emit_s": round(await emit(pool, tag, n, keys), 2)}
    committed = time.time()
    cpu.start()
    busy = machine_busy_s()
    if profile:
        assert stack.worker is not None
        with PySpy(stack.worker.pid, stack.work / f"worker-{tag}.pyspy") as spy:
            stats = await wait_received(stack, receiver, n)
        out["worker_profile"] = spy.top()
    else:
        stats = await wait_received(stack, receiver, n)
    cpu_s = cpu.since()
    busy = machine_busy_s() - busy
    out.update(cpu_s=cpu_s, others_cpu_s=round(busy - sum(cpu_s.values()), 1), receiver=stats,
               seconds=round(stats["last"] - stats["first"], 3),
               commit_to_first_s=round(stats["first"] - committed, 3),
               commit_to_last_s=round(stats["last"] - committed, 3))
    rows = await pool.fetch(
        "SELECT d.status, count(*) AS n, max(d.attempts) AS max_attempts FROM webhook_deliveries d "
        "JOIN webhook_events e ON e.seq = d.event_seq WHERE d.endpoint_id = $1 AND e.data->>'run' = $2 "
        "GROUP BY d.status", endpoint, tag)
    out["rows"] = {row["status"]: row["n"] for row in rows}
    out["max_attempts"] = max((row["max_attempts"] for row in rows), default=0)
    say(f"deliveries: Followups {n:,} in {out['seconds']:.1f} s = {n / out['seconds']:.0f}/s")
    return out


async def bare_round(receiver: Peer, url: str, secret: str, bodies: list[tuple[str, bytes]], concurrency: int,
                     timeout: float) -> dict[str, Any]:
    receiver.ask("reset")
    cpu = CpuClock({"bench": os.getpid(), "receiver": receiver.pid}).start()
    busy = machine_busy_s()
    answered = await bare_loop(url, secret, bodies, concurrency, timeout)
    cpu_s = cpu.since()
    busy = machine_busy_s() - busy
    out: dict[str, Any] = {"events": len(bodies), **answered, "cpu_s": cpu_s,
                           "others_cpu_s": round(busy - sum(cpu_s.values()), 1), "receiver": receiver.ask("stats")}
    out["seconds"] = round(out["receiver"]["last"] - out["receiver"]["first"], 3)
    say(f"deliveries: bare loop {len(bodies):,} in {out['seconds']:.1f} s = {len(bodies) / out['seconds']:.0f}/s")
    return out


def combined(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one path added up: deliveries over the seconds they took, CPU over the deliveries."""
    n = sum(r["events"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    cpu: dict[str, float] = {}
    for r in rounds:
        for name, value in r["cpu_s"].items():
            cpu[name] = round(cpu.get(name, 0.0) + value, 2)
    per = per_unit_ms(cpu, n)
    return {"deliveries": n, "seconds": round(seconds, 2), "deliveries_per_s": round(n / seconds, 1),
            "cpu_s": cpu, "cpu_ms_per_delivery": per, "cpu_ms_per_delivery_all": round(sum(per.values()), 3),
            "rounds": rounds}


async def deliveries(args: argparse.Namespace, stack: Stack, pool, run: str) -> dict[str, Any]:
    """Followups and the bare loop in halves, F B B F, so that a drift in the machine's load weighs on both."""
    from activities.event_webhooks import Endpoints, body_of, new_secret

    n, keys = args.events, args.keys
    half = n // 2
    concurrency = stack.settings.webhook_deliveries_in_flight
    timeout = stack.settings.events_webhook_timeout_seconds
    out: dict[str, Any] = {"events": n, "journey_keys": keys, "in_flight": concurrency, "timeout_s": timeout,
                           "order": "followups, bare, bare, followups (each N/2; the bare loop posts the first "
                                    "half's events both times)"}
    secret = new_secret()
    receiver = Peer(stack.work, "receiver", ["bench.peers.webhook_receiver", "--secret", secret]).start()
    url = f"http://127.0.0.1:{receiver.port}/hooks"
    try:
        endpoint = (await Endpoints(pool).create(url, [], "bench receiver", secret))["id"]
        say(f"deliveries: warm-up, {WARM_EVENTS} events")
        await emit(pool, f"w{run}", WARM_EVENTS, min(keys, WARM_EVENTS))
        await wait_received(stack, receiver, WARM_EVENTS)

        say(f"deliveries: {n:,} events over {keys:,} journeys, in halves; each half recorded in one transaction")
        first = await followups_round(stack, pool, receiver, endpoint, f"d1{run}", half, keys, args.profile)
        events = await pool.fetch("SELECT id, type, occurred_at, data FROM webhook_events WHERE data->>'run' = $1 "
                                  "ORDER BY seq", first["tag"])
        bodies = [(row["id"], body_of(row["type"], row["occurred_at"], json.loads(row["data"]))) for row in events]
        bare = [await bare_round(receiver, url, secret, bodies, concurrency, timeout) for _ in range(2)]
        second = await followups_round(stack, pool, receiver, endpoint, f"d2{run}", n - half, keys, False)
        out["followups"] = combined([first, second])
        out["bare"] = combined(bare)
        out["workflow"] = await stack.endpoint_view(pool, endpoint)
        out["endpoint_end"] = await stack.end_endpoint(pool, endpoint)
    finally:
        receiver.stop()
    out["ratio"] = round(out["followups"]["deliveries_per_s"] / out["bare"]["deliveries_per_s"], 3)
    out["cpu_ratio"] = round(out["bare"]["cpu_ms_per_delivery_all"] / out["followups"]["cpu_ms_per_delivery_all"], 3)
    mine = [first, second]
    out["check"] = {
        "received_all": all(r["receiver"]["distinct"] == r["events"] for r in mine),
        "repeated": sum(r["receiver"]["repeated"] for r in mine), "forged": sum(r["receiver"]["forged"] for r in mine),
        "out_of_order": sum(r["receiver"]["out_of_order"] for r in mine),
        "rows": [r["rows"] for r in mine], "max_attempts": max(r["max_attempts"] for r in mine),
        "bare_received_all": all(r["receiver"]["distinct"] == r["events"] == r["answered_2xx"] for r in bare)}
    check = out["check"]
    check["ok"] = (check["received_all"] and check["forged"] == 0 and check["out_of_order"] == 0
                   and all(r["rows"] == {"delivered": r["events"]} for r in mine) and check["bare_received_all"])
    return out


# --- 2. reminder lateness beside a dead endpoint ------------------------------------------------------


async def book(stack: Stack, tag: str, dues: list[datetime]) -> list[tuple[str, datetime]]:
    """One appointment journey per due moment (its reminder OFFSET_S before the appointment); the
    reminders' idempotency keys (what the sink sees) with their due moments."""
    from starter.service import Journeys
    from workflows.appointment.models import Booking
    from workflows.appointment.rules import reminder_key
    from workflows.registry import APPOINTMENT

    assert stack.temporal is not None
    journeys = Journeys(stack.temporal.client, stack.settings, APPOINTMENT)
    offset = timedelta(seconds=OFFSET_S)

    async def one(job: tuple[int, datetime]) -> tuple[str, datetime]:
        i, due = job
        appointment_id = f"{tag}-{i}"
        booking = Booking.model_validate({
            "appointment_id": appointment_id, "scheduled_at": due + offset, "doctor": "Dr Bench",
            "clinic": "Bench Clinic", "confirmed": True, "policy": {"reminder_offsets": [OFFSET_S]},
            "patient": {"email": f"p.{appointment_id}@example.com", "name": f"Patient {i}", "time_zone": "UTC"}})
        await journeys.start_new(booking)
        return reminder_key(appointment_id, due + offset, offset), due

    return await in_flight(32, enumerate(dues), one)


async def phase(stack: Stack, pool, kind: str, tag: str, m: int, spread: float, lead: float) -> dict[str, Any]:
    """M reminders due over `spread` s from `lead` s on, beside an endpoint of `kind` (none, dead, refused)."""
    from activities.event_webhooks import Endpoints

    dead: Peer | None = None
    endpoint: str | None = None
    url = ""
    if kind == "dead":
        dead = Peer(stack.work, f"dead-{tag}", ["bench.peers.webhook_receiver", "--dead"]).start()
        url = f"http://127.0.0.1:{dead.port}/hooks"
    elif kind == "refused":
        url = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there
    if kind != "none":
        endpoint = (await Endpoints(pool).create(url, [], f"bench {kind}"))["id"]
    out: dict[str, Any] = {"endpoint": kind, "reminders": m, "spread_s": spread, "lead_s": round(lead, 1)}
    try:
        cpu = CpuClock({**stack.cpu_pids, "sink": stack.sink.pid if stack.sink else None, "bench": os.getpid(),
                        "dead_peer": dead.pid if dead else None}, trees=frozenset({"postgres", "worker"})).start()
        busy = machine_busy_s()
        phase_began = time.monotonic()
        first_due = datetime.now(timezone.utc) + timedelta(seconds=lead)
        step = spread / max(m - 1, 1)
        began = time.monotonic()
        planned = await book(stack, tag, [first_due + timedelta(seconds=i * step) for i in range(m)])
        out["booking_s"] = round(time.monotonic() - began, 2)
        out["booked_after_first_due"] = datetime.now(timezone.utc) > first_due
        last_due = max(due for _, due in planned).timestamp()
        # a reminder is sent by its appointment (OFFSET_S after due) or skipped as too late, and its
        # journey then ends: its last events belong to this phase
        while time.time() < last_due + OFFSET_S + 3:
            stack.alive()
            await asyncio.sleep(0.5)
        arrived = stack.arrivals()
        cpu_s = cpu.since()
        busy = machine_busy_s() - busy
        late = [arrived[key] - due.timestamp() for key, due in planned if key in arrived]
        out.update(summary(late, missing=m - len(late)), cpu_s=cpu_s, cpu_ms_per_reminder=per_unit_ms(cpu_s, m),
                   machine_busy_s=round(busy, 1), others_cpu_s=round(busy - sum(cpu_s.values()), 1),
                   phase_s=round(time.monotonic() - phase_began, 1),
                   loadavg_1m_after=round(os.getloadavg()[0], 2), lateness_s=[round(x, 4) for x in late])
        if missing := [key for key, _ in planned if key not in arrived]:
            rows = await pool.fetch("SELECT status, split_part(coalesce(reason, ''), ':', 1) AS why, count(*) AS n "
                                    "FROM messages WHERE key = ANY($1) GROUP BY 1, 2", missing)
            out["not_arrived"] = {f"{row['status']} {row['why']}".strip(): row["n"] for row in rows}
            out["not_arrived"]["no message row"] = len(missing) - sum(row["n"] for row in rows)
        if endpoint is not None:
            out["endpoint_side"] = await stack.endpoint_view(pool, endpoint)
            if dead is not None:
                out["endpoint_side"]["dead_peer"] = dead.ask("stats")
    finally:
        if dead is not None:
            dead.stop()  # its connections close: the round in flight ends at once
        if endpoint is not None:
            out["endpoint_end"] = await stack.end_endpoint(pool, endpoint)
    say(f"lateness: {kind:8} p50 {out.get('p50_s')} p99 {out.get('p99_s')} max {out.get('max_s')} s, "
        f"{out['missing']} missing, booked in {out['booking_s']} s")
    return out


async def lateness(args: argparse.Namespace, stack: Stack, pool, run: str) -> dict[str, Any]:
    m, spread = args.reminders, args.spread
    order = ["none", "dead", "refused"] if args.quick else ["none", "dead", "refused", "dead", "none"]
    say(f"lateness: warm-up, {WARM_REMINDERS} reminders")
    began = time.monotonic()
    warm = await phase(stack, pool, "none", f"w{run}", WARM_REMINDERS, 2.0, 5.0)
    rate = WARM_REMINDERS / max(warm["booking_s"], 0.05)
    lead = min(60.0, 4.0 + m / rate)  # the booking's time at the warm-up's rate (a small batch: slower), and 4 s
    say(f"lateness: warm-up booked at {rate:.0f}/s; each phase: {m} reminders over {spread:.0f} s from {lead:.0f} s on")
    phases = []
    for i, kind in enumerate(order):
        phases.append(await phase(stack, pool, kind, f"{kind[0]}{i}{run}", m, spread, lead))
    pooled: dict[str, Any] = {}
    for kind in dict.fromkeys(order):
        mine = [p for p in phases if p["endpoint"] == kind]
        pooled[kind] = summary([x for p in mine for x in p["lateness_s"]], sum(p["missing"] for p in mine))
    ratios = {kind: {q: round(pooled[kind][q] / pooled["none"][q], 2) if pooled["none"].get(q) else None
                     for q in ("p50_s", "p95_s", "p99_s", "max_s")}
              for kind in pooled if kind != "none" and pooled[kind].get("n")}
    out: dict[str, Any] = {"order": order, "warm_up": {k: v for k, v in warm.items() if k != "lateness_s"},
                           "lead_s": round(lead, 1), "phases": phases, "pooled": pooled, "ratio_to_none": ratios,
                           "warm_up_seconds": round(time.monotonic() - began, 1)}
    nones = [p for p in phases if p["endpoint"] == "none"]
    if len(nones) == 2 and all(p.get("n") for p in nones):  # the run's own noise: the same phase twice
        out["none_rounds_differ_s"] = {q: round(abs(nones[0][q] - nones[1][q]), 3)
                                       for q in ("p50_s", "p95_s", "p99_s", "max_s")}
    return out


# --- 3. one round against a dead endpoint (a diagnostic) ----------------------------------------------


async def dead_round(args: argparse.Namespace, stack: Stack, pool, run: str) -> dict[str, Any]:
    """H journeys' events to a dead endpoint, watched: rounds, their attempts and timeouts, the
    connections open at once (more than the in-flight setting: two rounds overlap)."""
    from temporalio.api.enums.v1 import EventType

    from activities.event_webhooks import Endpoints
    from workflows.webhooks import ROUND_TIMEOUT, workflow_id

    n, hold = args.hold_events, args.hold
    concurrency = stack.settings.webhook_deliveries_in_flight
    timeout = stack.settings.events_webhook_timeout_seconds
    dead = Peer(stack.work, "dead-round", ["bench.peers.webhook_receiver", "--dead"]).start()
    endpoint: str | None = None
    out: dict[str, Any] = {"events": n, "journeys": n, "hold_s": hold, "in_flight": concurrency, "timeout_s": timeout,
                           "round_timeout_s": ROUND_TIMEOUT.total_seconds(),
                           "one_batch_needs_s": math.ceil(n / concurrency) * timeout}
    try:
        endpoint = (await Endpoints(pool).create(f"http://127.0.0.1:{dead.port}/hooks", [], "bench dead round"))["id"]
        await emit(pool, f"h{run}", n, n)
        samples = []
        began = time.monotonic()
        while time.monotonic() - began < hold:
            stack.alive()
            await asyncio.sleep(10)
            view = await stack.endpoint_view(pool, endpoint)
            samples.append({"t_s": round(time.monotonic() - began), **dead.ask("stats"),
                            "attempted": view["attempted"], "round": view.get("round")})
            say(f"dead_round: {samples[-1]}")
        out["samples"] = samples
        assert stack.temporal is not None
        handle = stack.temporal.client.get_workflow_handle(workflow_id(endpoint))
        kinds: dict[str, int] = {}
        async for event in handle.fetch_history_events():
            name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
            if name.startswith("ACTIVITY_TASK"):
                kinds[name] = kinds.get(name, 0) + 1
        out["history"] = kinds
        out["dead_peer"] = dead.ask("stats")
    finally:
        dead.stop()
        if endpoint is not None:
            out["endpoint_end"] = await stack.end_endpoint(pool, endpoint)
    return out


# --- 4. a refused journey's retries beside other journeys (a diagnostic) ------------------------------


async def head_of_line(args: argparse.Namespace, stack: Stack, pool, run: str) -> dict[str, Any]:
    """A receiver that answers 500 to one kind of journey's events ("bad-…"), B such journeys with 4
    events each, then G other journeys' 4 events each: are the others delivered while the refused
    ones wait for their retries? Once with B × 4 pending rows under `WINDOW`, once over it."""
    from activities.event_webhooks import WINDOW, Endpoints, new_secret

    good = GOOD_JOURNEYS
    out: dict[str, Any] = {"window": WINDOW, "good_journeys": good, "events_per_journey": 4, "cases": []}
    secret = new_secret()
    receiver = Peer(stack.work, "receiver-hol", ["bench.peers.webhook_receiver", "--secret", secret,
                                                 "--refuse-prefix", "bad-"]).start()
    try:
        for bad in (WINDOW // 8, WINDOW // 4 + 50):
            receiver.ask("reset")
            endpoint = (await Endpoints(pool).create(f"http://127.0.0.1:{receiver.port}/hooks", [], "bench hol",
                                                     secret))["id"]
            await emit(pool, f"bad-{bad}{run}", 4 * bad, bad)
            began = time.monotonic()
            while receiver.ask("stats")["refused"] < bad and time.monotonic() - began < 30:
                await asyncio.sleep(0.25)  # every refused journey's head tried once: its retry waits
            await emit(pool, f"ok-{bad}{run}", 4 * good, good)
            emitted = time.monotonic()
            delivered_s = None
            while time.monotonic() - emitted < HOL_WATCH_S:
                stack.alive()
                if receiver.ask("stats")["distinct"] >= 4 * good:
                    delivered_s = round(time.monotonic() - emitted, 2)
                    break
                await asyncio.sleep(0.25)
            stats = receiver.ask("stats")
            view = await stack.endpoint_view(pool, endpoint)
            case = {"refused_journeys": bad, "refused_rows": 4 * bad, "others_delivered": stats["distinct"],
                    "others_all_delivered_after_s": delivered_s, "watched_s": HOL_WATCH_S,
                    "refused_answers": stats["refused"], "pending": view["pending"],
                    "journeys_waiting": view["journeys_waiting"]}
            say(f"head_of_line: {case}")
            out["cases"].append(case)
            await stack.end_endpoint(pool, endpoint)
    finally:
        receiver.stop()
    return out


# --- the run ------------------------------------------------------------------------------------------


def print_tables(results: dict[str, Any]) -> None:
    if d := results.get("deliveries"):
        f, b = d["followups"], d["bare"]
        fc, bc = f["cpu_ms_per_delivery"], b["cpu_ms_per_delivery"]
        rounds = f["rounds"]
        check = d["check"]
        table(f"Webhook deliveries: {d['events']:,} events over {d['journey_keys']:,} journeys, one endpoint, "
              f"{d['in_flight']} in flight, into a verifying receiver (own process)",
              ["path", "deliveries", "s", "deliveries/s", "ratio", "CPU ms/delivery: sender", "dev server",
               "PostgreSQL", "receiver", "all", "CPU ratio"],
              [["Followups: worker → endpoint workflow → deliver_due rounds", f["deliveries"], f["seconds"],
                f["deliveries_per_s"], d["ratio"], fc.get("worker", "–"), fc.get("temporal", "–"),
                fc.get("postgres", "–"), fc.get("receiver", "–"), f["cpu_ms_per_delivery_all"], d["cpu_ratio"]],
               ["bare httpx.AsyncClient loop, prebuilt bodies, signed per post", b["deliveries"], b["seconds"],
                b["deliveries_per_s"], 1.0, bc.get("bench", "–"), "–", "–", bc.get("receiver", "–"),
                b["cpu_ms_per_delivery_all"], 1.0]],
              caption="Timed at the receiver, first new webhook-id to last, in halves (Followups, bare, bare, "
                      "Followups; per half: Followups "
                      + ", ".join(f"{r['events'] / r['seconds']:.0f}" for r in rounds) + "/s, bare "
                      + ", ".join(f"{r['events'] / r['seconds']:.0f}" for r in b["rounds"]) + "/s; other processes "
                      "used " + ", ".join(f"{r['others_cpu_s'] / r['seconds']:.1f}" for r in (rounds[0], *b["rounds"],
                                                                                           rounds[1]))
                      + " cores meanwhile, in that order). CPU ratio: "
                      "the bare loop's CPU per delivery over Followups' (all processes: what a shared machine's "
                      "load moves least). Per half: events recorded (one transaction) in "
                      + ", ".join(f"{r['emit_s']}" for r in rounds) + " s; commit → first delivered "
                      + ", ".join(f"{r['commit_to_first_s']}" for r in rounds) + " s. Checks: repeated "
                      f"{check['repeated']}, forged {check['forged']}, out of order per journey "
                      f"{check['out_of_order']}, rows {check['rows']}: {'ok' if check['ok'] else 'NOT OK'}.")
    if lt := results.get("lateness"):
        def cells(label: str, r: dict[str, Any], extra: list[Any]) -> list[Any]:
            return [label, r.get("n", 0) + r.get("missing", 0), r.get("missing", 0), r.get("p50_s", "–"),
                    r.get("p95_s", "–"), r.get("p99_s", "–"), r.get("max_s", "–"), *extra]

        rows = []
        for i, p in enumerate(lt["phases"]):
            cpu = p["cpu_ms_per_reminder"]
            side = p.get("endpoint_side", {})
            dead = side.get("dead_peer", {})
            rows.append(cells(f"{i + 1}. {p['endpoint']}", p, [
                f"{cpu.get('worker', 0):.1f} / {cpu.get('temporal', 0):.1f} / {cpu.get('postgres', 0):.1f}",
                round(p["others_cpu_s"] / p["phase_s"], 2),
                f"{side.get('attempts', '–')} / {side.get('history_events', '–')}" if side else "–",
                f"{dead.get('accepted', '–')} / {dead.get('max_open', '–')}" if dead else "–",
                f"{side.get('pending', '–')} / {side.get('journeys_waiting', '–')}" if side else "–"]))
        for kind, r in lt["pooled"].items():
            rows.append(cells(f"all '{kind}' phases", r, ["", "", "", "", ""]))
        ratio_text = "; ".join(f"{kind} / none: p50 {r['p50_s']}, p95 {r['p95_s']}, p99 {r['p99_s']}, max {r['max_s']}"
                               for kind, r in lt["ratio_to_none"].items())
        noise = lt.get("none_rounds_differ_s")
        table(f"Reminder lateness (SMTP arrival − due), {lt['phases'][0]['reminders']} appointment reminders over "
              f"{lt['phases'][0]['spread_s']:.0f} s per phase, one worker",
              ["endpoint", "reminders", "not sent", "p50 s", "p95 s", "p99 s", "max s",
               "CPU ms/reminder worker / server / PG", "other processes, cores", "attempts / its workflow's events",
               "dead peer: conns / max open", "left pending / journeys"], rows,
              caption=f"Ratios: {ratio_text}."
                      + (f" The two 'none' rounds differ by p50 {noise['p50_s']} s, p99 {noise['p99_s']} s, max "
                         f"{noise['max_s']} s (the run's noise)." if noise else "")
                      + f" Each phase's lead {lt['lead_s']} s; the dead endpoint's every attempt waits the "
                        f"timeout; 'refused': nothing listens on its port. Not sent: a reminder more than {OFFSET_S} s "
                        "late is skipped as too late (its appointment began): "
                      + ("; ".join(f"phase {i + 1}: {p['not_arrived']}" for i, p in enumerate(lt["phases"])
                                   if p.get("not_arrived")) or "none") + ".")
    if dr := results.get("dead_round"):
        table(f"One endpoint, dead, {dr['events']} journeys waiting; a batch needs {dr['one_batch_needs_s']:.0f} s "
              f"of a round's {dr['round_timeout_s']:.0f} s", ["t s", "connections", "open", "max open", "attempted",
                                                              "round attempt", "round's last failure"],
              [[s["t_s"], s["accepted"], s["open"], s["max_open"], s["attempted"],
                (s["round"] or {}).get("attempt", "–"), ((s["round"] or {}).get("last_failure") or "–")[:60]]
               for s in dr["samples"]],
              caption=f"The endpoint workflow's activity events: {dr['history']}.")
    if hol := results.get("head_of_line"):
        table(f"A receiver refusing (500) some journeys' events; then {hol['good_journeys']} other journeys' "
              f"{hol['good_journeys'] * hol['events_per_journey']} events (window {hol['window']} pending rows)",
              ["refused journeys", "their pending rows", "others delivered", "all others after s", "watched s"],
              [[c["refused_journeys"], c["refused_rows"], c["others_delivered"],
                c["others_all_delivered_after_s"] or "not yet", c["watched_s"]] for c in hol["cases"]])


async def amain(args: argparse.Namespace) -> int:
    import asyncpg

    work = work_dir("webhooks")
    run = uuid.uuid4().hex[:5]
    load_before = load()
    say(f"webhooks: work dir {work}; parts {', '.join(args.parts)}; load {load_before}")
    began = time.monotonic()
    pg_url = await start_postgres(work)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=4)
    results: dict[str, Any] = {}
    try:
        async with Stack(work, pg_url) as stack:
            results["stack_start_s"] = round(time.monotonic() - began, 1)
            for part, measure in (("deliveries", deliveries), ("lateness", lateness), ("dead_round", dead_round),
                                  ("head_of_line", head_of_line)):
                if part in args.parts:
                    part_began = time.monotonic()
                    results[part] = await measure(args, stack, pool, run)
                    results[part]["part_seconds"] = round(time.monotonic() - part_began, 1)
        print_tables(results)
        results["total_seconds"] = round(time.monotonic() - began, 1)
        path = write_results(args.out, {
            "benchmark": "webhooks", "mode": "quick" if args.quick else "full", "when": now_iso(),
            "command": " ".join([".venv/bin/python", "-m", "bench.webhooks", *sys.argv[1:]]),
            "params": {"events": args.events, "keys": args.keys, "reminders": args.reminders, "spread_s": args.spread,
                       "offset_s": OFFSET_S, "parts": args.parts},
            "machine": machine_facts(await postgres_version(pg_url), extra_packages=("standardwebhooks",)),
            "load": {"before": load_before, "after": load()},
            **results,
        })
        say(f"wrote {path} ({results['total_seconds']:.0f} s)")
    finally:
        await pool.close()
    return 0 if results.get("deliveries", {}).get("check", {}).get("ok", True) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,000 events; 100 reminders over 10 s, 3 phases")
    parser.add_argument("--events", type=int, default=None, help="events delivered (20,000; --quick 3,000)")
    parser.add_argument("--keys", type=int, default=1000, help="journey keys the events are spread over")
    parser.add_argument("--reminders", type=int, default=None, help="reminders per lateness phase (300; --quick 100)")
    parser.add_argument("--spread", type=float, default=None, help="seconds their due moments span (30; --quick 10)")
    parser.add_argument("--hold", type=float, default=200.0, help="dead_round: seconds watched")
    parser.add_argument("--hold-events", type=int, default=HOLD_EVENTS, help="dead_round: events (one journey each)")
    parser.add_argument("--parts", default="deliveries,lateness",
                        help="deliveries,lateness (make bench); diagnostics: dead_round, head_of_line")
    parser.add_argument("--profile", action="store_true", help="py-spy on the worker while it delivers (skews it)")
    parser.add_argument("--out", default=None, help="results file name (bench/results/OUT.json)")
    args = parser.parse_args()
    args.events = args.events or (3_000 if args.quick else 20_000)
    args.reminders = args.reminders or (100 if args.quick else 300)
    args.spread = args.spread or (10.0 if args.quick else 30.0)
    args.out = args.out or ("webhooks-quick" if args.quick else "webhooks")
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - {"deliveries", "lateness", "dead_round", "head_of_line"}
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}")
    exit_on_sigterm()
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
