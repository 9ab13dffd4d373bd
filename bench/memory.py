"""How much memory do sleeping journeys take? The worker, the dev server, SQLite and PostgreSQL.

    .venv/bin/python -m bench.memory [--quick] [--journeys 1000,10000] [--messages 1000]

A `followups worker` process (its RSS alone, sampled with psutil) on the Temporal dev server of
starter/embedded.py (SQLite file, WAL pragmas, as `make dev`) and an embedded PostgreSQL:

1. stages of sleeping journeys (default 1,000 then 10,000 in all; --quick 500): appointments
   booked through starter/service.Journeys.start_durably (signal-with-start, the API's durable path), confirmed,
   7 days away, so each one's reminder timer is ~7 days off. After each stage, once every
   journey's first workflow task has run (its Stage search attribute says `confirmed`): worker
   RSS (now and peak during the stage), dev server RSS, the SQLite files' size and growth per
   journey. The worker keeps its default journey cache (FOLLOWUPS_MAX_CACHED_WORKFLOWS, settings.py),
   so beyond that many journeys older ones are evicted (LRU) and replayed from history when their
   timer fires.
2. messages: M lead journeys (default 1,000; --quick 100) whose day-0 email goes out through that
   worker to the project's SMTP sink (starter/sink.py, own process); then the worker's RSS again
   and the PostgreSQL size per message: pg_total_relation_size('messages') / count(*), with the
   heap, index and TOAST parts.

Goal: worker RSS flat across stages, ≤ 250 MB. Writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from settings import Settings
from bench.common import (
    CpuClock,
    PeakRss,
    Proc,
    PySpy,
    SinkProcess,
    exit_on_sigterm,
    load,
    machine_facts,
    now_iso,
    postgres_version,
    postmaster_pid,
    rss_mb,
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

GOAL_RSS_MB = 250
CONCURRENCY = 200
DEFAULT_CACHE = Settings.model_fields["max_cached_workflows"].default  # FOLLOWUPS_MAX_CACHED_WORKFLOWS


async def count(client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def wait_for(client, query: str, target: int, timeout: float) -> tuple[int, float]:
    started = time.perf_counter()
    seen = 0
    while time.perf_counter() - started < timeout:
        seen = await count(client, query)
        if seen >= target:
            break
        await asyncio.sleep(0.5)
    return seen, time.perf_counter() - started


async def book(appointments, run_id: str, first: int, last: int, at: datetime) -> float:
    from workflows.appointment.models import Booking
    from workflows.contracts import Recipient

    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        booking = Booking(appointment_id=f"m{run_id}-{i}", scheduled_at=at, doctor="Dr Jane Smith",
                          clinic="Riverside Clinic", location="12 River Road", confirmed=True,
                          patient=Recipient(email=f"patient{i}@example.com", name=f"Patient {i}",
                                            time_zone="Europe/Berlin"))
        async with gate:
            await appointments.start_durably(booking)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(first, last)))
    return time.perf_counter() - started


async def start_leads(leads, run_id: str, n: int) -> float:
    from workflows.contracts import Recipient
    from workflows.lead.models import Lead

    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        lead = Lead(lead_id=f"l{run_id}-{i}", campaign="bench-memory", company=f"Company {i % 97}",
                    offer_url=f"https://shop.example.com/offer/{i}",
                    contact=Recipient(email=f"lead{i}@example.com", name=f"Lead {i}", time_zone="Europe/Berlin"))
        async with gate:
            await leads.start_durably(lead)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


async def postgres_sizes(url: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE messages")
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM messages) AS n, pg_total_relation_size('messages') AS total, "
            "pg_relation_size('messages') AS heap, pg_indexes_size('messages') AS indexes, "
            "coalesce(pg_total_relation_size(nullif(reltoastrelid, 0)), 0) AS toast, "
            "(SELECT avg(pg_column_size(m.*)) FROM messages m) AS avg_row, "
            "(SELECT avg(pg_column_size(m.context)) FROM messages m) AS avg_context "
            "FROM pg_class WHERE relname = 'messages'")
        statuses = dict(await conn.fetch("SELECT status, count(*) FROM messages GROUP BY 1"))
    finally:
        await conn.close()
    n = row["n"] or 1
    return {"messages": row["n"], "statuses": statuses, "total_bytes": row["total"], "heap_bytes": row["heap"],
            "index_bytes": row["indexes"], "toast_bytes": row["toast"],
            "bytes_per_message": round(row["total"] / n), "heap_bytes_per_message": round(row["heap"] / n),
            "index_bytes_per_message": round(row["indexes"] / n),
            "avg_row_bytes": round(float(row["avg_row"] or 0)), "avg_context_bytes": round(float(row["avg_context"] or 0))}


def worker_label(args: argparse.Namespace) -> str:
    if args.cache is None:
        label = f"`followups worker`, max_cached_workflows={DEFAULT_CACHE} (the settings default)"
    else:
        label = f"worker.main() with max_cached_workflows={args.cache} (bench override)"
    return label + (f", MALLOC_ARENA_MAX={args.malloc_arena_max}" if args.malloc_arena_max else "")


async def amain(args: argparse.Namespace) -> None:
    from settings import Settings
    from starter.service import Journeys
    from workflows.registry import APPOINTMENT, LEAD

    work = work_dir("memory")
    run_id = uuid.uuid4().hex[:6]
    task_queue = f"bench-memory-{run_id}"
    load_before = load()
    say(f"memory: work dir {work}; stages {args.journeys}, {args.messages} messages; load {load_before}")
    pg_url = await start_postgres(work)
    sink = SinkProcess(work).start()
    temporal = await start_temporal(work)
    worker = None
    try:
        env = stack_env(database_url=pg_url, temporal=temporal, task_queue=task_queue, smtp_port=sink.port)
        if args.malloc_arena_max:
            env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
        if args.cache is None:
            worker = start_worker(work, env)
        else:  # diagnosis: the same worker.main() with another cache size (worker.py has no setting for it)
            code = ("import asyncio, functools, worker; "
                    f"worker.Worker = functools.partial(worker.Worker, max_cached_workflows={args.cache}); "
                    "asyncio.run(worker.main())")
            worker = Proc("worker", [sys.executable, "-c", code], env, work / "worker.log").start()
        await wait_worker_polling(temporal, task_queue, worker)
        await asyncio.sleep(1.0)
        baseline = {"worker_rss_mb": rss_mb(worker.pid), "temporal_rss_mb": rss_mb(temporal.pid),
                    "sqlite": temporal.sqlite_bytes()}
        say(f"  idle worker {baseline['worker_rss_mb']} MB, dev server {baseline['temporal_rss_mb']} MB")
        settings = Settings(temporal_task_queue=task_queue)
        appointments = Journeys(temporal.client, settings, APPOINTMENT)
        at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
        ready_query = f"TaskQueue = '{task_queue}' AND Journey = 'appointment' AND Stage = 'confirmed'"
        stages: list[dict[str, Any]] = []
        done = 0
        previous_db = baseline["sqlite"]["db"] + baseline["sqlite"]["db-wal"]
        pids = {"worker": worker.pid, "temporal": temporal.pid, "postgres": await postmaster_pid(pg_url),
                "bench": os.getpid()}
        for target in args.journeys:
            cpu = CpuClock(pids).start()
            spy = PySpy(worker.pid, work / f"pyspy-worker-{target}.txt") if args.profile else None
            if spy:
                spy.__enter__()
            with PeakRss(worker.pid) as peak:
                booking_s = await book(appointments, run_id, done, target, at)
                ready, ready_s = await wait_for(temporal.client, ready_query, target, timeout=args.timeout)
                await asyncio.sleep(1.0)
            if spy:
                spy.__exit__(None, None, None)
            if not worker.running():
                raise SystemExit(f"the worker died:\n{worker.tail()}")
            sqlite = temporal.sqlite_bytes()
            db = sqlite["db"] + sqlite["db-wal"]
            stage = {"journeys": target, "ready": ready, "booked_s": round(booking_s, 1),
                     "booked_per_s": round((target - done) / booking_s, 1),
                     "first_tasks_done_after_s": round(ready_s, 1), "cpu_s": cpu.since(),
                     "worker_rss_mb": rss_mb(worker.pid), "worker_peak_rss_mb": peak.peak,
                     "temporal_rss_mb": rss_mb(temporal.pid), "sqlite": sqlite,
                     "sqlite_bytes_per_journey": round(db / target),
                     "sqlite_growth_bytes_per_journey": round((db - previous_db) / (target - done))}
            if spy:
                stage["worker_profile"] = spy.top(15)
            stages.append(stage)
            say(f"  {target:>7} journeys: booked at {stage['booked_per_s']}/s, first tasks done {ready_s:.1f} s later; "
                f"worker {stage['worker_rss_mb']} MB (peak {peak.peak}), dev server {stage['temporal_rss_mb']} MB, "
                f"SQLite {db / 2**20:.1f} MB")
            if ready < target:
                stage["problem"] = f"only {ready} of {target} journeys had run their first task after {args.timeout} s"
            done, previous_db = target, db

        messages: dict[str, Any] = {}
        if args.messages:
            leads = Journeys(temporal.client, settings, LEAD)
            cpu = CpuClock(pids).start()
            with PeakRss(worker.pid) as peak:
                sent_before = sink.counts()["total"]
                started_s = await start_leads(leads, run_id, args.messages)
                t0 = time.perf_counter()
                sent = 0
                while time.perf_counter() - t0 < args.timeout:
                    sent = sink.counts()["total"] - sent_before
                    if sent >= args.messages:
                        break
                    await asyncio.sleep(0.5)
                drain_s = time.perf_counter() - t0
                await asyncio.sleep(1.0)
            messages = {"leads": args.messages, "started_s": round(started_s, 1), "emails_received": sent,
                        "emails_done_after_s": round(drain_s, 1), "cpu_s": cpu.since(),
                        "worker_rss_mb": rss_mb(worker.pid),
                        "worker_peak_rss_mb": peak.peak, "temporal_rss_mb": rss_mb(temporal.pid),
                        "sqlite": temporal.sqlite_bytes(), "postgres": await postgres_sizes(pg_url),
                        "sink": sink.counts()}
            pg = messages["postgres"]
            say(f"  {args.messages} lead journeys: {sent} day-0 emails {drain_s:.1f} s after their start; worker "
                f"{messages['worker_rss_mb']} MB (peak {peak.peak}); PostgreSQL {pg['bytes_per_message']} B/message")

        load_after = load()
        rss_values = [s["worker_rss_mb"] for s in stages] + ([messages["worker_rss_mb"]] if messages else [])
        peaks = [s["worker_peak_rss_mb"] for s in stages] + ([messages["worker_peak_rss_mb"]] if messages else [])
        verdict = {"goal_rss_mb": GOAL_RSS_MB, "max_worker_rss_mb": max(rss_values + peaks),
                   "met": max(rss_values + peaks) <= GOAL_RSS_MB,
                   "growth_first_to_last_stage_mb": round(stages[-1]["worker_rss_mb"] - stages[0]["worker_rss_mb"], 1)
                   if len(stages) > 1 else None}
        rows = [["idle worker", "0", baseline["worker_rss_mb"], "–", baseline["temporal_rss_mb"],
                 f"{(baseline['sqlite']['db'] + baseline['sqlite']['db-wal']) / 2**20:.1f}", "–", "–"]]
        previous = 0
        for s in stages:
            added = s["journeys"] - previous
            s["worker_cpu_ms_per_journey"] = round(1000 * s["cpu_s"].get("worker", 0) / added, 2)
            s["server_cpu_ms_per_journey"] = round(1000 * s["cpu_s"].get("temporal", 0) / added, 2)
            s["journeys_per_s_end_to_end"] = round(added / (s["booked_s"] + s["first_tasks_done_after_s"]), 1)
            rows.append(["sleeping appointments", f"{s['journeys']:,}", s["worker_rss_mb"],
                         s["worker_peak_rss_mb"], s["temporal_rss_mb"],
                         f"{(s['sqlite']['db'] + s['sqlite']['db-wal']) / 2**20:.1f}",
                         f"{s['sqlite_growth_bytes_per_journey'] / 1024:.1f}",
                         f"{s['booked_per_s']:.0f} / {s['journeys_per_s_end_to_end']:.0f}",
                         f"{s['worker_cpu_ms_per_journey']:.1f} / {s['server_cpu_ms_per_journey']:.1f}"])
            previous = s["journeys"]
        if messages:
            rows.append([f"+ {args.messages:,} leads, day-0 sent", f"{stages[-1]['journeys'] + args.messages:,}"
                         if stages else str(args.messages), messages["worker_rss_mb"], messages["worker_peak_rss_mb"],
                         messages["temporal_rss_mb"],
                         f"{(messages['sqlite']['db'] + messages['sqlite']['db-wal']) / 2**20:.1f}", "–",
                         f"– / {args.messages / (messages['started_s'] + messages['emails_done_after_s']):.0f}",
                         f"{1000 * messages['cpu_s'].get('worker', 0) / args.messages:.1f} / "
                         f"{1000 * messages['cpu_s'].get('temporal', 0) / args.messages:.1f}"])
        if stages and stages[-1]["journeys"] < 100_000:
            last = stages[-1]
            verdict["not_run_100k"] = {
                "why": "beyond the time budget",
                "estimated_minutes": round((100_000 - last["journeys"]) / last["journeys_per_s_end_to_end"] / 60, 1),
                "estimated_sqlite_gib": round(100_000 * last["sqlite_growth_bytes_per_journey"] / 2**30, 2),
                "bound": "journeys started and first-task-run per second on this machine (dev server + worker CPU)"}
        table("Memory with sleeping journeys", ["stage", "journeys", "worker RSS MB", "worker peak MB",
                                                 "dev server RSS MB", "SQLite db+wal MB", "SQLite KiB/journey added",
                                                 "booked/s / end-to-end/s", "CPU ms/journey worker / server"], rows,
              caption=(f"Worker: {worker_label(args)}. "
                       f"Goal: flat, ≤ {GOAL_RSS_MB} MB: {'met' if verdict['met'] else 'NOT met'} "
                       f"(max {verdict['max_worker_rss_mb']} MB). Load before: {load_before['loadavg_1m']} (1-min avg)."
                       + (f" 100,000 not run: ~{verdict['not_run_100k']['estimated_minutes']} min more at the last "
                          f"stage's rate, ~{verdict['not_run_100k']['estimated_sqlite_gib']} GiB of SQLite."
                          if "not_run_100k" in verdict else "")))
        if messages:
            pg = messages["postgres"]
            table("PostgreSQL per message (messages table)", ["messages", "total B/msg", "heap B/msg", "index B/msg",
                                                              "TOAST B", "avg row B", "avg context B"],
                  [[pg["messages"], pg["bytes_per_message"], pg["heap_bytes_per_message"],
                    pg["index_bytes_per_message"], pg["toast_bytes"], pg["avg_row_bytes"], pg["avg_context_bytes"]]],
                  caption=f"statuses {pg['statuses']}; the sink received {messages['sink']}")
        path = write_results(args.out, {
            "benchmark": "memory", "mode": "quick" if args.quick else "full", "when": now_iso(),
            "params": {"journeys": args.journeys, "messages": args.messages, "concurrency": CONCURRENCY,
                       "max_cached_workflows": DEFAULT_CACHE if args.cache is None else args.cache,
                       "malloc_arena_max": args.malloc_arena_max, "worker": worker_label(args),
                       "appointment_in_days": 7},
            "machine": machine_facts(await postgres_version(pg_url)),
            "load": {"before": load_before, "after": load_after},
            "verdict": verdict, "baseline": baseline, "stages": stages, "messages": messages,
        })
        say(f"wrote {path}")
    finally:
        if worker is not None:
            worker.stop()
        await temporal.stop()
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 journeys, 100 messages")
    parser.add_argument("--journeys", default=None, help="cumulative stages, e.g. 1000,10000,100000")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=300.0, help="per stage, for the first tasks to run")
    parser.add_argument("--out", default="memory", help="results file name (bench/results/OUT.json)")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during each stage")
    parser.add_argument("--cache", type=int, default=None,
                        help="diagnosis: run worker.main() with this max_cached_workflows instead of the default")
    parser.add_argument("--malloc-arena-max", type=int, default=None,
                        help="diagnosis: MALLOC_ARENA_MAX for the worker process (glibc)")
    args = parser.parse_args()
    args.journeys = [int(x) for x in (args.journeys or ("500" if args.quick else "1000,10000")).split(",")]
    if args.journeys != sorted(args.journeys):
        parser.error("--journeys: increasing cumulative totals")
    args.messages = args.messages if args.messages is not None else (100 if args.quick else 1000)
    exit_on_sigterm()
    asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
