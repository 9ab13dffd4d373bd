"""Broadcast campaigns (workflows/campaign) on the embedded stack: how fast, how evenly throttled, and
what they cost the reminders that run beside them.

    .venv/bin/python -m bench.campaigns [--quick] [--recipients N] [--window S] [--reminders N]
                                        [--parts throughput,rate,priority] [--out NAME]

Every part has its own Temporal dev server (starter/embedded.py: SQLite file, WAL pragmas, fairness
on, as `make dev`) and SMTP sink (starter/sink.py, real SMTP, own process); one embedded PostgreSQL
serves them all. Campaigns are created, filled and scheduled over HTTP (`followups api`:
POST /v1/campaigns, /recipients in JSON chunks of 10,000, /schedule) and sent by `followups worker`
processes; "finished" is a campaign message whose `messages` row is sent, skipped or failed, at its
`updated_at`.

1. throughput: a campaign of N recipients (100,000; --quick 10,000) with
   FOLLOWUPS_CAMPAIGN_RATE_PER_MINUTE=0 (no limit: 100 recipients per send activity), one worker,
   after a 200-recipient warm-up campaign. Timed from the POST /schedule to the last message
   finished: emails/s, against bench.lms.bare_loop (prebuilt messages over 20 persistent aiosmtplib
   connections) sending as many into a fresh sink of its own → ratio (goal ≥ 0.8). Also: seconds to
   add the audience, peak RSS of the worker's process tree (psutil, every 0.25 s), CPU ms per email
   of each process (PostgreSQL: its backends alive when sampled; asyncpg closes idle ones after
   5 minutes, so a long run undercounts it), every run of the campaign's workflow (continue-as-new
   chain, from list_workflows, each described): history events max and count of runs. Checked:
   sent == audience, every audience member's key `campaign-{id}/{email}` has a row, and the sink
   received each key once.
2. rate: three `followups worker` processes with FOLLOWUPS_CAMPAIGN_RATE_PER_MINUTE=125 and a campaign
   three times larger than the window can take. Messages finished in the steady window (from 10 s
   after the first one, past the limiter's first burst, for S seconds: 300; --quick 120) → achieved
   per minute, its deviation from the setting (goal within ±3 %), each minute of the window apart,
   and each worker's share of the send activities (the `identity`, pid@host, of their
   ActivityTaskStarted events). Beside it, the server's side: send activities it started in the
   window (their ActivityTaskStarted times) and DescribeTaskQueue's configured and effective rate,
   backlog and dispatch rate, so a shortfall can be told apart from slow workers.
3. priority: one worker, rate 125/min. R interview journeys (100; --quick 30), each with one
   follow-up due at a known moment (invited_at back-dated by `followup_after` = 600 s, so due =
   invited_at + 600 s), due moments spread evenly over R seconds (--quick R × 2/3), the first
   5 s + R/10 s after the starts begin; lateness = `messages.sent_at − messages.due_at`, split at the
   row's `created_at` (when the send step claimed it) into the way to the send step and the step
   itself; the three latest with their history events from the due moment. First with no
   campaign, then while a 10,000-recipient campaign is being sent at 125/min (the reminders are
   started 10 s after its first message; it is cancelled after them): p50 / p99 / max and the
   ratio of p99s (goal: p99 ≤ 1 s).

Absolute times mean little on a shared 2-core machine: read the ratios. Writes
bench/results/campaigns.json (--quick: campaigns-quick.json).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import (
    CpuClock,
    Proc,
    SinkProcess,
    Temporal,
    exit_on_sigterm,
    load,
    machine_facts,
    now_iso,
    postgres_version,
    postmaster_pid,
    rss_mb,
    say,
    stack_env,
    start_api,
    start_postgres,
    start_temporal,
    start_worker,
    table,
    wait_worker_polling,
    write_results,
)
from bench.lms import CONNECTIONS as BARE_CONNECTIONS
from bench.lms import bare_loop
from settings import Settings

API_KEY = "bench-key"
CHUNK = 10_000  # = starter/routes/campaigns.LIST_LIMIT: recipients in one JSON request
RATE = 125  # the setting's default, emails a minute
STEADY_AFTER = 10.0  # seconds after the first message before the rate is steady
RATE_WORKERS = 3
PRIORITY_CAMPAIGN = 10_000
FOLLOWUP_AFTER = 600  # seconds from a reminder's invited_at to its due moment
GOAL_RATIO = 0.8
GOAL_DEVIATION_PERCENT = 3.0
GOAL_P99_S = 1.0
TEMPLATE = "course_announcement"  # templates/catalog.yaml: course, title, summary, url (+ name)
CONTEXT = {"course": "Orbital Mechanics", "title": "Week 4 notes are online",
           "summary": "The notes cover transfer orbits and the rocket equation.",
           "url": "https://lms.example.com/courses/om/week-4"}
FINISHED = ["sent", "dry_run", "skipped", "failed"]
STALL_S = 180.0  # no message finished for this long: the run failed, say so


def work_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench_campaigns_", dir="/tmp"))
    if not os.environ.get("BENCH_KEEP"):
        atexit.register(shutil.rmtree, path, True)
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class PeakTreeRss:
    """The peak RSS of a process and its children, summed, sampled every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid, self.every, self.peak_mb = pid, every, 0.0
        self.task: asyncio.Task | None = None

    def sample(self) -> float:
        import psutil

        total = 0
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
        return total / 2**20

    async def _loop(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, self.sample())
            await asyncio.sleep(self.every)

    def __enter__(self) -> PeakTreeRss:
        self.task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task:
            self.task.cancel()


class Stack:
    """One part's dev server, SMTP sink, `followups worker` processes and `followups api`."""

    def __init__(self, work: Path, pg_url: str, name: str, rate: float, workers: int) -> None:
        self.work, self.pg_url, self.name, self.rate, self.n_workers = work, pg_url, name, rate, workers
        self.queue = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        self.send_queue = Settings(temporal_task_queue=self.queue).campaign_queue
        self.temporal: Temporal | None = None
        self.sink: SinkProcess | None = None
        self.workers: list[Proc] = []
        self.api: Proc | None = None
        self.http = None

    async def __aenter__(self) -> Stack:
        import httpx

        self.sink = SinkProcess(self.work).start()
        self.temporal = await start_temporal(self.work, f"temporal-{self.name}")
        env = stack_env(database_url=self.pg_url, temporal=self.temporal, task_queue=self.queue,
                        smtp_port=self.sink.port, FOLLOWUPS_API_KEYS=API_KEY,
                        FOLLOWUPS_CAMPAIGN_RATE_PER_MINUTE=str(self.rate),
                        FOLLOWUPS_DIGEST_SCHEDULE_ID="", FOLLOWUPS_RETENTION_SCHEDULE_ID="")
        first = start_worker(self.work, env, name=f"worker-{self.name}-1")
        self.workers.append(first)
        await wait_worker_polling(self.temporal, self.queue, first)  # the first one migrates alone
        for i in range(2, self.n_workers + 1):
            self.workers.append(start_worker(self.work, env, name=f"worker-{self.name}-{i}"))
        await self.wait_send_pollers()
        self.api, base_url = await start_api(self.work, env, name=f"api-{self.name}")
        self.http = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"},
                                      timeout=300)
        return self

    async def wait_send_pollers(self, timeout: float = 90) -> None:
        """Until every worker polls the campaigns' queue (a send activity waits for none of them)."""
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        assert self.temporal is not None
        client = self.temporal.client
        wanted = {f"{proc.pid}@" for proc in self.workers}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.workers:
                if not proc.running():
                    raise SystemExit(f"{proc.name} exited:\n{proc.tail()}")
            response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=self.send_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
            polling = {p.identity.split("@")[0] + "@" for p in response.pollers}
            if wanted <= polling:
                return
            await asyncio.sleep(0.3)
        raise SystemExit(f"not every worker polled {self.send_queue} within {timeout} s:\n"
                         + "\n".join(proc.tail(5) for proc in self.workers))

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.aclose()
        for proc in (self.api, *self.workers):
            if proc is not None:
                proc.stop()
        if self.temporal is not None:
            await self.temporal.stop()
        if self.sink is not None:
            self.sink.stop()

    def alive(self) -> None:
        for proc in (self.api, *self.workers):
            if proc is not None and not proc.running():
                raise SystemExit(f"{proc.name} exited:\n{proc.tail()}")

    # --- campaigns over HTTP ---------------------------------------------------------------------

    async def create(self, campaign_id: str, n: int) -> float:
        """A draft of `n` recipients (added in chunks of 10,000); the seconds the audience took."""
        answer = await self.http.post("/v1/campaigns", json={
            "campaign_id": campaign_id, "name": f"Bench {campaign_id}", "template": TEMPLATE, "priority": "normal",
            "context": CONTEXT})
        if answer.status_code != 201:
            raise SystemExit(f"POST /v1/campaigns answered {answer.status_code}: {answer.text}")
        began = time.perf_counter()
        for lo in range(0, n, CHUNK):
            people = [{"email": f"r{i}.{campaign_id}@example.com", "name": f"Reader {i}"}
                      for i in range(lo, min(lo + CHUNK, n))]
            answer = await self.http.post(f"/v1/campaigns/{campaign_id}/recipients", json={"recipients": people})
            if answer.status_code != 200 or answer.json()["added"] != len(people):
                raise SystemExit(f"POST …/recipients answered {answer.status_code}: {answer.text[:500]}")
        return time.perf_counter() - began

    async def schedule(self, campaign_id: str) -> datetime:
        """Scheduled now; the moment just before the request."""
        at = datetime.now(timezone.utc)
        answer = await self.http.post(f"/v1/campaigns/{campaign_id}/schedule")
        if answer.status_code != 202:
            raise SystemExit(f"POST …/schedule answered {answer.status_code}: {answer.text}")
        return at

    async def cancel(self, campaign_id: str) -> None:
        answer = await self.http.post(f"/v1/campaigns/{campaign_id}/cancel")
        if answer.status_code != 202:
            raise SystemExit(f"POST …/cancel answered {answer.status_code}: {answer.text}")


# --- what PostgreSQL and Temporal say ---------------------------------------------------------------


async def finished(pool, campaign_id: str) -> Any:
    return await pool.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE status IN ('sent', 'dry_run')) AS sent, "
        "min(updated_at) AS first, max(updated_at) AS last FROM messages "
        "WHERE journey = 'campaign' AND entity_id = $1 AND status = ANY($2)", campaign_id, FINISHED)


async def wait_finished(stack: Stack, pool, campaign_id: str, n: int, every: float = 1.0) -> Any:
    """Until `n` of the campaign's messages are finished; SystemExit when none finishes for STALL_S."""
    seen, moved = -1, time.monotonic()
    while True:
        row = await finished(pool, campaign_id)
        if row["n"] >= n:
            return row
        if row["n"] != seen:
            seen, moved = row["n"], time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            raise SystemExit(f"campaign {campaign_id}: {row['n']} of {n} finished and none for {STALL_S:.0f} s:\n"
                             + "\n".join(proc.tail(10) for proc in stack.workers))
        stack.alive()
        await asyncio.sleep(every)


async def wait_status(pool, campaign_id: str, status: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        found = await pool.fetchval("SELECT status FROM campaigns WHERE campaign_id = $1", campaign_id)
        if found == status:
            break
        await asyncio.sleep(0.5)
    return found


async def workflow_runs(temporal: Temporal, campaign_id: str) -> list[dict[str, Any]]:
    """Every run of the campaign's workflow (the continue-as-new chain), oldest first, each described."""
    from workflows.campaign.workflow import workflow_id

    client = temporal.client
    found = [execution async for execution in client.list_workflows(f"WorkflowId = '{workflow_id(campaign_id)}'")]
    runs = []
    for execution in sorted(found, key=lambda e: e.start_time):
        info = (await client.get_workflow_handle(execution.id, run_id=execution.run_id).describe()
                ).raw_description.workflow_execution_info
        runs.append({"run_id": execution.run_id, "status": execution.status.name if execution.status else None,
                     "history_length": info.history_length, "history_bytes": info.history_size_bytes})
    return runs


async def send_activities(temporal: Temporal, campaign_id: str, runs: list[dict[str, Any]], workers: list[Proc],
                          start: datetime, end: datetime) -> dict[str, Any]:
    """The campaign's send activities as the server dispatched them: how many each worker ran (the
    identity, pid@host, of their ActivityTaskStarted events) and how many started in [start, end)."""
    from workflows.campaign.models import SEND_RANGE
    from workflows.campaign.workflow import workflow_id

    by_pid = {str(proc.pid): proc.name for proc in workers}
    shares = {proc.name: 0 for proc in workers}
    in_window = 0
    for run in runs:
        handle = temporal.client.get_workflow_handle(workflow_id(campaign_id), run_id=run["run_id"])
        sends: set[int] = set()
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                if event.activity_task_scheduled_event_attributes.activity_type.name == SEND_RANGE:
                    sends.add(event.event_id)
            elif event.HasField("activity_task_started_event_attributes"):
                started = event.activity_task_started_event_attributes
                if started.scheduled_event_id in sends:
                    name = by_pid.get(started.identity.split("@")[0], started.identity)
                    shares[name] = shares.get(name, 0) + 1
                    in_window += start <= event.event_time.ToDatetime(tzinfo=timezone.utc) < end
    return {"by_worker": shares, "started_in_window": in_window}


async def queue_view(temporal: Temporal, task_queue: str) -> dict[str, Any]:
    """What the server says of the campaigns' queue: its configured and effective rate, its backlog."""
    from google.protobuf.json_format import MessageToDict
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    client = temporal.client
    response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=task_queue), report_stats=True, report_config=True,
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
    return {"config": MessageToDict(response.config), "effective_rate_limit": MessageToDict(
        response.effective_rate_limit), "stats": MessageToDict(response.stats)}


async def timeline(temporal: Temporal, workflow_id: str, since: datetime) -> list[list[Any]]:
    """A journey's history events from `since` on: [event type, seconds after `since`]."""
    from temporalio.api.enums.v1 import EventType

    handle = temporal.client.get_workflow_handle(workflow_id)
    out = []
    async for event in handle.fetch_history_events():
        at = event.event_time.ToDatetime(tzinfo=timezone.utc)
        if at >= since - timedelta(seconds=1):
            out.append([EventType.Name(event.event_type).removeprefix("EVENT_TYPE_"),
                        round((at - since).total_seconds(), 3)])
    return out


# --- 1. throughput ----------------------------------------------------------------------------------


async def throughput(args: argparse.Namespace, work: Path, pg_url: str, pool, run: str) -> dict[str, Any]:
    n = args.recipients
    out: dict[str, Any] = {"recipients": n, "rate_per_minute": 0, "workers": 1}
    async with Stack(work, pg_url, "throughput", rate=0, workers=1) as stack:
        assert stack.temporal is not None and stack.sink is not None and stack.api is not None
        warm = f"warm-{run}"
        await stack.create(warm, 200)
        await stack.schedule(warm)
        await wait_finished(stack, pool, warm, 200)
        await wait_status(pool, warm, "completed")

        campaign = f"tp-{run}"
        say(f"throughput: adding {n:,} recipients")
        out["audience_seconds"] = round(await stack.create(campaign, n), 2)
        sink_before = stack.sink.counts()
        worker = stack.workers[0]
        cpu = CpuClock({"worker": worker.pid, "temporal": stack.temporal.pid, "postgres": await postmaster_pid(pg_url),
                        "sink": stack.sink.proc.pid, "api": stack.api.pid}, trees=frozenset({"postgres", "worker"}))
        say(f"throughput: {n:,} recipients added in {out['audience_seconds']} s; scheduled, no rate limit")
        rss = PeakTreeRss(worker.pid)
        out["worker_rss_before_mb"] = round(rss.sample(), 1)
        with rss:
            cpu.start()
            scheduled_at = await stack.schedule(campaign)
            done = await wait_finished(stack, pool, campaign, n, every=2.0)
            out["cpu_s"] = cpu.since()
        seconds = (done["last"] - scheduled_at).total_seconds()
        out.update(seconds=round(seconds, 2), emails_per_s=round(n / seconds, 1),
                   first_message_after_s=round((done["first"] - scheduled_at).total_seconds(), 2),
                   worker_rss_peak_mb=round(rss.peak_mb, 1),
                   cpu_ms_per_email={k: round(1000 * v / n, 2) for k, v in out["cpu_s"].items()},
                   sink_rss_mb=rss_mb(stack.sink.proc.pid))
        say(f"throughput: {n:,} finished in {seconds:.1f} s = {n / seconds:.0f}/s; "
            f"peak worker RSS {rss.peak_mb:.0f} MB")
        out["final_status"] = await wait_status(pool, campaign, "completed", timeout=120)
        runs = await workflow_runs(stack.temporal, campaign)
        out["runs"] = runs
        out["history"] = {"runs": len(runs), "max_events": max(r["history_length"] for r in runs),
                          "max_bytes": max(r["history_bytes"] for r in runs)}
        row = await pool.fetchrow(
            "SELECT count(*) AS rows, count(DISTINCT m.key) AS keys, "
            "count(*) FILTER (WHERE m.status IN ('sent', 'dry_run')) AS sent, "
            "count(*) FILTER (WHERE m.status = 'skipped') AS skipped, "
            "count(*) FILTER (WHERE m.status = 'failed') AS failed, "
            "(SELECT count(*) FROM campaign_audience a WHERE a.campaign_id = $1 AND NOT EXISTS (SELECT 1 FROM "
            " messages x WHERE x.key = 'campaign-' || a.campaign_id || '/' || a.email)) AS missing "
            "FROM messages m WHERE m.journey = 'campaign' AND m.entity_id = $1", campaign)
        audience = await pool.fetchval("SELECT audience FROM campaigns WHERE campaign_id = $1", campaign)
        sink_after = stack.sink.counts()
        received = sink_after["total"] - sink_before["total"]
        out["check"] = {**dict(row), "audience": audience, "sink_received": received,
                        "sink_duplicated_keys": sink_after["duplicated"] - sink_before["duplicated"]}
        out["check"]["ok"] = (audience == n and row["sent"] == n and row["keys"] == n and row["missing"] == 0
                              and received == n and out["check"]["sink_duplicated_keys"] == 0)
    # the peer gets a sink of its own, empty like the campaign's was (the sink keeps what it receives)
    sink = SinkProcess(work).start()
    try:
        say(f"throughput: bare aiosmtplib loop, {n:,} prebuilt messages over {BARE_CONNECTIONS} connections")
        bare_s = 0.0
        cpu = CpuClock({"bench": os.getpid(), "sink": sink.proc.pid}).start()
        for lo in range(0, n, CHUNK):  # prebuilt a chunk at a time (outside its clock): bounded memory
            bare_s += await bare_loop(sink.port, min(CHUNK, n - lo))
        bare_cpu = cpu.since()  # the bench's share includes building the messages, outside the clock
        received = sink.counts()["total"]
    finally:
        sink.stop()
    out["bare"] = {"seconds": round(bare_s, 2), "emails_per_s": round(n / bare_s, 1), "connections": BARE_CONNECTIONS,
                   "sink_received": received, "cpu_s": bare_cpu,
                   "cpu_ms_per_email": {k: round(1000 * v / n, 2) for k, v in bare_cpu.items()}}
    out["ratio_to_bare"] = round(out["emails_per_s"] / out["bare"]["emails_per_s"], 3)
    out["goal"] = {"ratio": GOAL_RATIO, "met": out["ratio_to_bare"] >= GOAL_RATIO}
    return out


# --- 2. rate across workers -------------------------------------------------------------------------


async def rate(args: argparse.Namespace, work: Path, pg_url: str, pool, run: str) -> dict[str, Any]:
    window = args.window
    audience = math.ceil(RATE * (window + STEADY_AFTER + 60) / 60 * 3)
    out: dict[str, Any] = {"rate_per_minute": RATE, "workers": RATE_WORKERS, "window_s": window,
                           "steady_after_s": STEADY_AFTER, "audience": audience}
    async with Stack(work, pg_url, "rate", rate=RATE, workers=RATE_WORKERS) as stack:
        assert stack.temporal is not None
        campaign = f"rate-{run}"
        await stack.create(campaign, audience)
        say(f"rate: {audience:,} recipients, {RATE}/min over {RATE_WORKERS} workers; watching {window:.0f} s")
        scheduled_at = await stack.schedule(campaign)
        while (first := (await finished(pool, campaign))["first"]) is None:
            stack.alive()
            if (datetime.now(timezone.utc) - scheduled_at).total_seconds() > 120:
                raise SystemExit(f"rate: nothing sent within 120 s:\n{stack.workers[0].tail()}")
            await asyncio.sleep(0.5)
        start = first + timedelta(seconds=STEADY_AFTER)
        end = start + timedelta(seconds=window)
        while datetime.now(timezone.utc) < end + timedelta(seconds=2):  # a finish in flight at the end commits
            stack.alive()
            await asyncio.sleep(1.0)
        counted = await pool.fetchval(
            "SELECT count(*) FROM messages WHERE journey = 'campaign' AND entity_id = $1 AND status = ANY($2) "
            "AND updated_at >= $3 AND updated_at < $4", campaign, FINISHED, start, end)
        minutes = await pool.fetch(
            "SELECT floor(extract(epoch FROM updated_at - $3) / 60)::int AS minute, count(*) AS n FROM messages "
            "WHERE journey = 'campaign' AND entity_id = $1 AND status = ANY($2) AND updated_at >= $3 "
            "AND updated_at < $4 GROUP BY 1 ORDER BY 1", campaign, FINISHED, start, end)
        first_s = await pool.fetchval(
            "SELECT count(*) FROM messages WHERE journey = 'campaign' AND entity_id = $1 AND status = ANY($2) "
            "AND updated_at < $3", campaign, FINISHED, start)
        total = (await finished(pool, campaign))["n"]
        runs = await workflow_runs(stack.temporal, campaign)
        dispatched = await send_activities(stack.temporal, campaign, runs, stack.workers, start, end)
        out["worker_shares"] = dispatched["by_worker"]
        out["server_started_per_minute"] = round(dispatched["started_in_window"] / window * 60, 2)
        out["queue"] = await queue_view(stack.temporal, stack.send_queue)
        await stack.cancel(campaign)
        per_minute = counted / window * 60
        out.update(counted=counted, achieved_per_minute=round(per_minute, 2),
                   deviation_percent=round(100 * (per_minute - RATE) / RATE, 2),
                   per_minute_slices=[{"minute": r["minute"] + 1, "finished": r["n"],
                                       "per_minute": round(r["n"] * 60 / min(60.0, window - 60 * r["minute"]), 1)}
                                      for r in minutes],
                   finished_in_first_steady_after_s=first_s, finished_when_measured=total,
                   audience_ran_out=total >= audience, history={"runs": len(runs)})
        out["goal"] = {"deviation_percent": GOAL_DEVIATION_PERCENT,
                       "met": abs(out["deviation_percent"]) <= GOAL_DEVIATION_PERCENT and not out["audience_ran_out"]}
        say(f"rate: {counted} finished in {window:.0f} s = {per_minute:.1f}/min ({out['deviation_percent']:+.2f} %)")
    return out


# --- 3. reminders during a throttled campaign -------------------------------------------------------


async def reminders(stack: Stack, pool, tag: str, n: int, spread: float) -> dict[str, Any]:
    """`n` interview journeys whose one follow-up is due at evenly spread moments; their lateness."""
    lead = 5.0 + 0.1 * n  # the starts' time, with room: every journey runs before its follow-up is due
    first_due = datetime.now(timezone.utc) + timedelta(seconds=lead)
    step = spread / max(n - 1, 1)
    due = {f"{tag}-{i}": first_due + timedelta(seconds=i * step) for i in range(n)}
    gate = asyncio.Semaphore(8)

    async def start(interview_id: str, at: datetime) -> None:
        body = {"interview_id": interview_id, "slot_selection_url": f"https://jobs.example.com/slots/{interview_id}",
                "candidate": {"email": f"c.{interview_id}@example.com", "name": f"Candidate {interview_id}"},
                "invited_at": (at - timedelta(seconds=FOLLOWUP_AFTER)).isoformat(),
                "policy": {"followup_after": FOLLOWUP_AFTER, "max_followups": 1}}
        async with gate:
            answer = await stack.http.post("/v1/interviews", json=body)
        if answer.status_code not in (201, 202):
            raise SystemExit(f"POST /v1/interviews answered {answer.status_code}: {answer.text}")

    await asyncio.gather(*(start(interview_id, at) for interview_id, at in due.items()))
    started_late = datetime.now(timezone.utc) > first_due
    last_due = max(due.values())
    deadline = last_due + timedelta(seconds=60)
    rows: list[Any] = []
    while datetime.now(timezone.utc) < deadline:
        stack.alive()
        rows = await pool.fetch(
            "SELECT entity_id, status, due_at, created_at, sent_at FROM messages WHERE journey = 'interview' "
            "AND entity_id = ANY($1) AND status = ANY($2)", list(due), FINISHED)
        if len(rows) >= n:
            break
        await asyncio.sleep(1.0)
    sent = [row for row in rows if row["sent_at"] is not None]
    late = [(row["sent_at"] - row["due_at"]).total_seconds() for row in sent]
    # where a late one lost its time: before its send step claimed the row (timer, workflow task,
    # activity dispatch) or in it (render, gate, SMTP)
    to_step = [(row["created_at"] - row["due_at"]).total_seconds() for row in sent]
    in_step = [(row["sent_at"] - row["created_at"]).total_seconds() for row in sent]
    off_due = sum(1 for row in rows if row["due_at"] is not None and abs((row["due_at"] - due[row["entity_id"]])
                                                                          .total_seconds()) > 0.001)
    out = {"reminders": n, "spread_s": round(spread, 1), "sent": len(late),
           "not_sent": {row["entity_id"]: row["status"] for row in rows if row["sent_at"] is None},
           "missing": n - len(rows), "due_at_differs_from_planned": off_due, "started_after_first_due": started_late}
    if late:
        out.update(p50_s=round(percentile(late, 0.5), 3), p99_s=round(percentile(late, 0.99), 3),
                   max_s=round(max(late), 3), min_s=round(min(late), 3),
                   due_to_send_step_s={"p50": round(percentile(to_step, 0.5), 3),
                                       "p99": round(percentile(to_step, 0.99), 3), "max": round(max(to_step), 3)},
                   in_send_step_s={"p50": round(percentile(in_step, 0.5), 3),
                                   "p99": round(percentile(in_step, 0.99), 3), "max": round(max(in_step), 3)})
        worst = sorted(sent, key=lambda row: row["sent_at"] - row["due_at"], reverse=True)[:3]
        out["latest"] = [{"interview_id": row["entity_id"], "late_s": round((row["sent_at"] - row["due_at"])
                                                                            .total_seconds(), 3),
                          "history_after_due": await timeline(stack.temporal, f"interview-{row['entity_id']}",
                                                              row["due_at"])}
                         for row in worst]
    return out


async def priority(args: argparse.Namespace, work: Path, pg_url: str, pool, run: str) -> dict[str, Any]:
    n, spread = args.reminders, args.spread
    out: dict[str, Any] = {"rate_per_minute": RATE, "workers": 1, "campaign": PRIORITY_CAMPAIGN}
    async with Stack(work, pg_url, "priority", rate=RATE, workers=1) as stack:
        await reminders(stack, pool, f"warm-{run}", 5, 2.0)  # the interview journey's first run, templates, pools
        say(f"priority: {n} reminders over {spread:.0f} s, no campaign")
        out["alone"] = await reminders(stack, pool, f"alone-{run}", n, spread)
        campaign = f"prio-{run}"
        await stack.create(campaign, PRIORITY_CAMPAIGN)
        scheduled_at = await stack.schedule(campaign)
        while (await finished(pool, campaign))["first"] is None:
            stack.alive()
            if (datetime.now(timezone.utc) - scheduled_at).total_seconds() > 120:
                raise SystemExit(f"priority: the campaign sent nothing within 120 s:\n{stack.workers[0].tail()}")
            await asyncio.sleep(0.5)
        await asyncio.sleep(STEADY_AFTER)
        say(f"priority: {n} reminders over {spread:.0f} s, a {PRIORITY_CAMPAIGN:,}-recipient campaign at {RATE}/min")
        began = datetime.now(timezone.utc)
        out["with_campaign"] = await reminders(stack, pool, f"with-{run}", n, spread)
        ended = datetime.now(timezone.utc)
        sent = await pool.fetchval(
            "SELECT count(*) FROM messages WHERE journey = 'campaign' AND entity_id = $1 AND status = ANY($2) "
            "AND updated_at >= $3 AND updated_at < $4", campaign, FINISHED, began, ended)
        out["with_campaign"]["campaign_per_minute_meanwhile"] = round(sent / (ended - began).total_seconds() * 60, 1)
        out["with_campaign"]["campaign_status"] = await pool.fetchval(
            "SELECT status FROM campaigns WHERE campaign_id = $1", campaign)
        await stack.cancel(campaign)
    alone, busy = out["alone"].get("p99_s"), out["with_campaign"].get("p99_s")
    out["p99_ratio"] = round(busy / alone, 2) if alone and busy is not None else None
    out["goal"] = {"p99_s": GOAL_P99_S, "met": busy is not None and busy <= GOAL_P99_S
                   and out["with_campaign"]["sent"] == n}
    return out


# --- the run ----------------------------------------------------------------------------------------


def print_tables(results: dict[str, Any], load_before: dict[str, Any]) -> None:
    if tp := results.get("throughput"):
        cpu = " ".join(f"{k} {v:.1f}" for k, v in tp["cpu_ms_per_email"].items())
        table(f"A {tp['recipients']:,}-recipient campaign, no rate limit, into the SMTP sink",
              ["path", "emails", "s", "emails/s", "ratio"],
              [["Followups: POST /schedule → last message finished (1 worker)", tp["recipients"], tp["seconds"],
                tp["emails_per_s"], tp["ratio_to_bare"]],
               [f"bare aiosmtplib loop, prebuilt, {tp['bare']['connections']} persistent connections",
                tp["recipients"], tp["bare"]["seconds"], tp["bare"]["emails_per_s"], 1.0]],
              caption=f"Goal: ratio ≥ {GOAL_RATIO}: {'met' if tp['goal']['met'] else 'NOT met'}. Audience added "
                      f"(10,000 per request) in {tp['audience_seconds']} s. CPU ms per email, Followups: {cpu}; "
                      f"bare: sink {tp['bare']['cpu_ms_per_email']['sink']:.1f}. Load before: "
                      f"{load_before['loadavg_1m']} (1-min avg), {load_before['cpu_busy_percent_1s']} % busy.")
        check, history = tp["check"], tp["history"]
        table("The same campaign: memory, history, correctness", ["measure", "value"],
              [["worker RSS before → peak (process tree), MB",
                f"{tp['worker_rss_before_mb']} → {tp['worker_rss_peak_mb']}"],
               ["workflow runs (continue-as-new)", history["runs"]],
               ["history events, max of a run", history["max_events"]],
               ["history bytes, max of a run", history["max_bytes"]],
               ["first message after schedule, s", tp["first_message_after_s"]],
               ["campaign status", tp["final_status"]],
               ["audience / sent / skipped / failed", f"{check['audience']} / {check['sent']} / {check['skipped']} / "
                                                      f"{check['failed']}"],
               ["message rows / distinct keys / audience keys with no row", f"{check['rows']} / {check['keys']} / "
                                                                            f"{check['missing']}"],
               ["sink received / duplicated keys", f"{check['sink_received']} / {check['sink_duplicated_keys']}"],
               ["correct", "yes" if check["ok"] else "NO"]])
    if rt := results.get("rate"):
        rows = [[f"whole window ({rt['window_s']:.0f} s from {rt['steady_after_s']:.0f} s after the first message)",
                 rt["counted"], rt["achieved_per_minute"], rt["rate_per_minute"], f"{rt['deviation_percent']:+.2f}"]]
        for s in rt["per_minute_slices"]:
            rows.append([f"  minute {s['minute']}", s["finished"], s["per_minute"], rt["rate_per_minute"],
                         f"{100 * (s['per_minute'] - rt['rate_per_minute']) / rt['rate_per_minute']:+.1f}"])
        shares = ", ".join(f"{k.rsplit('-', 1)[-1]}: {v}" for k, v in rt["worker_shares"].items())
        setting = rt["rate_per_minute"]
        table(f"Campaign rate over {rt['workers']} workers (FOLLOWUPS_CAMPAIGN_RATE_PER_MINUTE={setting})",
              ["window", "finished", "achieved/min", "setting", "deviation %"], rows,
              caption=f"Goal: within ±{GOAL_DEVIATION_PERCENT} %: {'met' if rt['goal']['met'] else 'NOT met'}. "
                      f"Send activities started by the server in the window: {rt['server_started_per_minute']}/min; "
                      f"effective queue limit {rt['queue']['effective_rate_limit']}; by worker (whole run so far): "
                      f"{shares}. Audience {rt['audience']:,}{' (ran out!)' if rt['audience_ran_out'] else ''}.")
    if pr := results.get("priority"):
        rows = []
        for label, key in (("no campaign", "alone"),
                           (f"a {pr['campaign']:,}-recipient campaign at {pr['rate_per_minute']}/min",
                            "with_campaign")):
            r = pr[key]
            rows.append([label, r["reminders"], r["sent"], r.get("p50_s", "–"), r.get("p99_s", "–"),
                         r.get("max_s", "–"), r.get("due_to_send_step_s", {}).get("max", "–"),
                         r.get("in_send_step_s", {}).get("max", "–"), r.get("campaign_per_minute_meanwhile", "–")])
        table("Reminder lateness (messages.sent_at − due_at), interview follow-ups, one worker",
              ["beside", "reminders", "sent", "p50 s", "p99 s", "max s", "max due → send step s",
               "max in send step s", "campaign/min meanwhile"], rows,
              caption=f"p99 ratio (with / without) = {pr['p99_ratio']}. Goal: p99 ≤ {GOAL_P99_S} s with the "
                      f"campaign: {'met' if pr['goal']['met'] else 'NOT met'}.")
        if latest := pr["with_campaign"].get("latest"):
            table(f"The latest reminder beside the campaign ({latest[0]['interview_id']}, {latest[0]['late_s']} s "
                  "late): its history from its due moment", ["event", "s after due"], latest[0]["history_after_due"])


async def amain(args: argparse.Namespace) -> int:
    import asyncpg

    work = work_dir()
    run = uuid.uuid4().hex[:6]
    load_before = load()
    say(f"campaigns: work dir {work}; parts {', '.join(args.parts)}; load {load_before}")
    pg_url = await start_postgres(work)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=4)
    results: dict[str, Any] = {}
    try:
        for part, measure in (("throughput", throughput), ("rate", rate), ("priority", priority)):
            if part in args.parts:
                began = time.monotonic()
                results[part] = await measure(args, work, pg_url, pool, run)
                results[part]["part_seconds"] = round(time.monotonic() - began, 1)
        print_tables(results, load_before)
        path = write_results(args.out, {
            "benchmark": "campaigns", "mode": "quick" if args.quick else "full", "when": now_iso(),
            "command": " ".join([".venv/bin/python", "-m", "bench.campaigns", *sys.argv[1:]]),
            "params": {"recipients": args.recipients, "window_s": args.window, "reminders": args.reminders,
                       "spread_s": args.spread, "parts": args.parts, "rate_per_minute": RATE, "template": TEMPLATE},
            "machine": machine_facts(await postgres_version(pg_url)),
            "load": {"before": load_before, "after": load()},
            **results,
        })
        say(f"wrote {path}")
    finally:
        await pool.close()
    checks = [results.get("throughput", {}).get("check", {}).get("ok", True)]
    return 0 if all(checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 recipients, a 2-minute rate window, 30 reminders")
    parser.add_argument("--recipients", type=int, default=None, help="throughput campaign's audience")
    parser.add_argument("--window", type=float, default=None, help="seconds the rate is measured over")
    parser.add_argument("--reminders", type=int, default=None, help="reminders per priority phase")
    parser.add_argument("--parts", default="throughput,rate,priority")
    parser.add_argument("--out", default=None, help="results file name (bench/results/OUT.json)")
    args = parser.parse_args()
    args.recipients = args.recipients or (10_000 if args.quick else 100_000)
    args.window = args.window or (120.0 if args.quick else 300.0)
    args.reminders = args.reminders or (30 if args.quick else 100)
    args.spread = args.reminders * (2 / 3 if args.quick else 1.0)
    args.out = args.out or ("campaigns-quick" if args.quick else "campaigns")
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - {"throughput", "rate", "priority"}
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}")
    exit_on_sigterm()
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
