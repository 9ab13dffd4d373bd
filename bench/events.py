"""How long does an event take through the HTTP API? POST /v1/interviews/{id}/confirm, end to end.

    .venv/bin/python -m bench.events [--quick] [--n 200] [--concurrency 8] [--warmup 50] [--out NAME]

The embedded stack of `make dev`, as the other benchmarks start it (bench/common.py): PostgreSQL,
the Temporal dev server (SQLite file, WAL pragmas), the SMTP sink in its own process, a
`followups worker` and a `followups api` process. This process speaks only plain HTTP to the public
API (httpx, one keep-alive pool), so the same file measures any event path behind the route
(a signal followed by state queries every 50 ms, or an Update answered by the journey):

1. each variant starts its own W + N interview journeys with POST /v1/interviews (8 in flight,
   outside the clock); the API answers a start with the journey's state, so each has run its
   first workflow task before it is confirmed; then 1 s for the starts' tail;
2. warm-up: W confirms (default 50) on the first W journeys, not counted; the timed ones follow
   with no idle gap. Why: on the signal + query path, the first ~30 events after a second or
   more of quiet answered in ~15 ms and every later one in ~50 (the one state query slowed; the
   50 ms re-poll was never reached), so without a warm-up p50 depended on N. The results keep
   every sample in sending order (`warmup_latencies_ms`, `latencies_ms`) to see where such a
   change falls on other code;
3. the timed confirms on the other N journeys (`scheduled_at` 7 days ahead, an `event_id` each),
   each timed from sending the request to reading the whole response: sequential (one at a
   time), then concurrent (C in flight, default 8; --concurrency 0 skips it), each with its own
   journeys and warm-up.

Every confirm must answer 200 with its event applied and the journey `scheduled`: one that does
not fails the run, so no latency is reported for an event the journey was not seen to take.
Beside p50 / p99 / mean / max: confirms per second and the CPU ms per confirm of the API, the
worker, the dev server and PostgreSQL. No email is due during the run (the first follow-up is
48 h away, the reminder 6 days). Default N 200 (--quick 50). Writes bench/results/events.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from bench.common import (
    CpuClock,
    SinkProcess,
    exit_on_sigterm,
    in_flight,
    load,
    machine_facts,
    now_iso,
    postgres_version,
    postmaster_pid,
    say,
    stack_env,
    start_api,
    start_postgres,
    start_temporal,
    start_worker,
    table,
    wait_worker_polling,
    work_dir,
    write_results,
)

API_KEY = "bench-key"
START_CONCURRENCY = 8
REQUEST_TIMEOUT = 30.0  # s: above the API's own wait for an event's outcome (10 s)


class Failed(Exception):
    """A confirm that did not come back as applied: the run cannot report its latency."""


class Api:
    """The public HTTP API, and nothing else: what an integrating backend sees."""

    def __init__(self, http, run_id: str, scheduled_at: datetime) -> None:
        self.http, self.run_id, self.scheduled_at = http, run_id, scheduled_at

    def interview_id(self, variant: str, i: int) -> str:
        return f"ev-{self.run_id}-{variant}-{i}"

    async def start(self, interview_id: str) -> None:
        response = await self.http.post("/v1/interviews", json={
            "interview_id": interview_id,
            "candidate": {"email": f"{interview_id}@example.com", "name": f"Candidate {interview_id}",
                          "time_zone": "Europe/Berlin"},
            "slot_selection_url": f"https://jobs.example.com/slots/{interview_id}"})
        status = (view_of(response).get("state") or {}).get("status")
        if response.status_code != 201 or status != "pending":
            raise Failed(f"start {interview_id}: {response.status_code}, status {status!r}: "
                         f"{response.content[:300]!r}")

    async def confirm(self, interview_id: str) -> float:
        """One timed round trip; seconds."""
        began = time.perf_counter()
        response = await self.http.post(f"/v1/interviews/{interview_id}/confirm", json={
            "scheduled_at": self.scheduled_at.isoformat(), "event_id": f"{interview_id}-confirm"})
        elapsed = time.perf_counter() - began  # not streamed: the body has been read
        view = view_of(response)
        event, state = view.get("event") or {}, view.get("state") or {}
        if response.status_code != 200 or event.get("applied") is not True or state.get("status") != "scheduled":
            raise Failed(f"confirm {interview_id}: {response.status_code}, event {event or None}, "
                         f"status {state.get('status')!r}: {response.content[:300]!r}")
        return elapsed


def view_of(response) -> dict[str, Any]:
    """The JSON object of an answer; {} for anything else (a proxy's or server's plain-text 500)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def summary(ms: list[float]) -> dict[str, float]:
    """Latency figures in ms; percentiles interpolated between the nearest samples."""
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"n": len(ms), "min_ms": round(min(ms), 2), "p50_ms": round(statistics.median(ms), 2),
            "p90_ms": round(cuts[89], 2), "p99_ms": round(cuts[98], 2), "mean_ms": round(statistics.fmean(ms), 2),
            "max_ms": round(max(ms), 2)}


async def variant(api: Api, name: str, n: int, concurrency: int, warmup: int,
                  pids: dict[str, int | None]) -> dict[str, Any]:
    ids = [api.interview_id(name, i) for i in range(warmup + n)]
    started = time.perf_counter()
    await in_flight(START_CONCURRENCY, ids, api.start)
    say(f"  {name}: {len(ids)} journeys started in {time.perf_counter() - started:.1f} s")
    await asyncio.sleep(1.0)  # the starts' own tail (visibility, history writes) out of the way
    warm = await in_flight(concurrency, ids[:warmup], api.confirm)  # the timed ones follow with no idle gap
    cpu = CpuClock(pids).start()
    began = time.perf_counter()
    latencies = await in_flight(concurrency, ids[warmup:], api.confirm)
    wall = time.perf_counter() - began
    cpu_s = cpu.since()
    ms = [1000 * s for s in latencies]
    result = {"variant": name, "confirms": n, "in_flight": concurrency, "seconds": round(wall, 2),
              "confirms_per_s": round(n / wall, 1), **summary(ms),
              "cpu_s": cpu_s, "cpu_ms_per_confirm": {k: round(1000 * v / n, 2) for k, v in cpu_s.items()},
              # every sample in sending order: where a change of regime falls, before and after
              "warmup_latencies_ms": [round(1000 * s, 2) for s in warm], "latencies_ms": [round(v, 2) for v in ms]}
    say(f"  {name}: {n} confirms, {concurrency} in flight: p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, mean {result['mean_ms']:.1f} ms, max {result['max_ms']:.1f} ms")
    return result


def print_table(results: list[dict[str, Any]], facts: dict[str, Any], load_before: dict[str, float]) -> None:
    rows = []
    for r in results:
        cpu = r["cpu_ms_per_confirm"]
        rows.append([r["variant"], r["confirms"], r["in_flight"], f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                     f"{r['mean_ms']:.1f}", f"{r['max_ms']:.1f}", f"{r['confirms_per_s']:.1f}",
                     " / ".join(f"{cpu.get(k, 0):.1f}" for k in ("api", "worker", "temporal", "postgres"))])
    git = facts.get("git") or {}
    modified = git.get("modified") or []
    table("Event round trip through the HTTP API (POST /v1/interviews/{id}/confirm)",
          ["variant", "confirms", "in flight", "p50 ms", "p99 ms", "mean ms", "max ms", "confirms/s",
           "CPU ms/confirm api / worker / server / pg"], rows,
          caption=(f"Each confirm on its own freshly started interview journey; every one answered 200, "
                   f"applied, scheduled. Code at {git.get('commit') or '?'}"
                   + (f" with {len(modified)} modified file(s)" if modified else "")
                   + f". Load before: {load_before['loadavg_1m']} (1-min avg)."))


async def amain(args: argparse.Namespace) -> None:
    import httpx

    work = work_dir("events")
    run_id = uuid.uuid4().hex[:6]
    task_queue = f"bench-events-{run_id}"
    load_before = load()
    say(f"events: work dir {work}; {args.n} confirms per variant, warm-up {args.warmup}; load {load_before}")
    pg_url = await start_postgres(work)
    sink = SinkProcess(work).start()
    temporal = await start_temporal(work)
    worker = api_proc = None
    try:
        env = stack_env(database_url=pg_url, temporal=temporal, task_queue=task_queue, smtp_port=sink.port,
                        FOLLOWUPS_API_KEYS=API_KEY)
        worker = start_worker(work, env)
        await wait_worker_polling(temporal, task_queue, worker)
        api_proc, base_url = await start_api(work, env)
        pids = {"api": api_proc.pid, "worker": worker.pid, "temporal": temporal.pid,
                "postgres": await postmaster_pid(pg_url), "bench": os.getpid()}
        scheduled_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
        limits = httpx.Limits(max_connections=max(args.concurrency, START_CONCURRENCY, 1))
        async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"},
                                     timeout=REQUEST_TIMEOUT, limits=limits) as http:
            api = Api(http, run_id, scheduled_at)
            results = []
            try:
                results.append(await variant(api, "sequential", args.n, 1, args.warmup, pids))
                if args.concurrency > 1:
                    results.append(await variant(api, "concurrent", args.n, args.concurrency, args.warmup, pids))
            except Failed as err:
                for proc in (api_proc, worker):
                    if not proc.running():
                        say(f"{proc.name} exited:\n{proc.tail()}")
                raise SystemExit(f"events: {err}") from err
        for proc in (api_proc, worker):
            if not proc.running():
                raise SystemExit(f"{proc.name} died during the run:\n{proc.tail()}")
        load_after = load()
        facts = machine_facts(await postgres_version(pg_url))
        print_table(results, facts, load_before)
        path = write_results(args.out, {
            "benchmark": "events", "mode": "quick" if args.quick else "full", "when": now_iso(),
            "params": {"n": args.n, "concurrency": args.concurrency, "warmup": args.warmup,
                       "start_concurrency": START_CONCURRENCY, "route": "POST /v1/interviews/{id}/confirm",
                       "scheduled_in_days": 7},
            "machine": facts, "load": {"before": load_before, "after": load_after}, "variants": results,
        })
        say(f"wrote {path}")
    finally:
        for proc in (api_proc, worker):
            if proc is not None:
                proc.stop()
        await temporal.stop()
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 confirms per variant")
    parser.add_argument("--n", type=int, default=None, help="confirms per variant (200; --quick 50)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="confirms in flight in the concurrent variant; 0 or 1: sequential only")
    parser.add_argument("--warmup", type=int, default=50,
                        help="uncounted confirms just before each variant's timed ones")
    parser.add_argument("--out", default="events", help="results file name (bench/results/OUT.json)")
    args = parser.parse_args()
    args.n = args.n or (50 if args.quick else 200)
    if args.n < 1 or args.concurrency < 0 or args.warmup < 0:
        parser.error("--n ≥ 1, --concurrency ≥ 0, --warmup ≥ 0")
    exit_on_sigterm()
    asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
