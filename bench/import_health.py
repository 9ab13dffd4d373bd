"""Does the API keep answering while it validates a large CSV import? GET /healthz, sequentially,
before and during POST /v1/leads/import of a file of bad rows (none starts a journey: what is
measured is the validation and the answer, not Temporal).

    .venv/bin/python -m bench.import_health [--quick] [--rows 400000] [--compare-with PATH]

The embedded stack of the other benchmarks (bench/common.py): PostgreSQL, the Temporal dev server,
the SMTP sink, a worker and a `followups api` process. `--compare-with PATH` starts a second API
from another checkout of this repository with this virtualenv (e.g. `git worktree add
/tmp/before 2c313a8`, the commit before the import was moved off the event loop) on the same
stack, and measures both in one run, one after the other.

Per API: 200 health checks on an idle API (p50, p99, max), then the import of R rows (default
400,000, ≈ 16 MB: the fuzzer's file; --quick 40,000) with health checks one after another for as
long as it runs. Figures: the import's duration and answer size, the health checks answered
meanwhile, their p50 / p99 / max, and the ratio of the slowest to the idle p99. Target: the
slowest under 100 ms. Writes bench/results/import_health.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from bench.common import (
    SinkProcess, load, machine_facts, now_iso, postgres_version, say, stack_env, start_api, start_postgres,
    start_temporal, table, work_dir, write_results, exit_on_sigterm,
)

API_KEY = "bench-key"
IDLE_CHECKS = 200


def bad_rows(n: int) -> bytes:
    """A header and n rows whose email is not one: every row is validated and rejected."""
    lines = ["lead_id,email,name,company"] + [f"lead-{i:07d},not-an-address-{i},Person number {i},Some Company Ltd"
                                               for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"n": len(ms), "p50": round(statistics.median(ordered), 2),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2), "max": round(ordered[-1], 2)}


UPLOAD = """
import sys, time, json, httpx
body = open(sys.argv[2], "rb").read()
began = time.perf_counter()
answer = httpx.post(sys.argv[1] + "/v1/leads/import", params={"campaign": sys.argv[3]}, content=body,
                    headers={"Authorization": "Bearer " + sys.argv[4], "Content-Type": "text/csv"}, timeout=600)
print(json.dumps({"status": answer.status_code, "seconds": time.perf_counter() - began, "bytes": len(answer.content),
                  "rejected": answer.json().get("rejected_count", len(answer.json().get("rejected", [])))}))
"""


async def measure(base_url: str, csv_file: Path, rows: int) -> dict:
    """Idle health checks, then health checks for as long as another process's upload runs (in
    this process, its 30 MB send and the large answer would stall the probe, not the API)."""
    import httpx

    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"},
                                 timeout=600) as http:
        idle = []
        for _ in range(IDLE_CHECKS):
            sent = time.perf_counter()
            (await http.get("/healthz")).raise_for_status()
            idle.append((time.perf_counter() - sent) * 1000)
        upload = await asyncio.create_subprocess_exec(
            sys.executable, "-c", UPLOAD, base_url, str(csv_file), f"bench-{uuid.uuid4().hex[:6]}", API_KEY,
            stdout=asyncio.subprocess.PIPE)
        waiting = asyncio.create_task(upload.communicate())
        during = []
        while not waiting.done():
            sent = time.perf_counter()
            (await http.get("/healthz")).raise_for_status()
            during.append((time.perf_counter() - sent) * 1000)
        out, _ = await waiting
    answer = json.loads(out)
    if answer["status"] != 200 or answer["rejected"] != rows:
        raise SystemExit(f"the import answered {answer}, expected 200 and {rows} rejected rows")
    return {"import_s": round(answer["seconds"], 2), "answer_bytes": answer["bytes"], "idle_ms": summary(idle),
            "during_ms": summary(during) if during else None,
            "slowest_over_idle_p99": round(max(during) / summary(idle)["p99"], 1) if during else None}


async def amain(args: argparse.Namespace) -> None:
    work = work_dir("import_health")
    load_before = load()
    body = bad_rows(args.rows)
    csv_file = work / "leads.csv"
    csv_file.write_bytes(body)
    say(f"import_health: {args.rows} bad rows, {len(body) / 1e6:.1f} MB; load {load_before}")
    pg_url = await start_postgres(work)
    sink = SinkProcess(work).start()
    temporal = await start_temporal(work)
    apis = []
    try:
        env = stack_env(database_url=pg_url, temporal=temporal, task_queue=f"bench-import-{uuid.uuid4().hex[:6]}",
                        smtp_port=sink.port, FOLLOWUPS_API_KEYS=API_KEY,
                        FOLLOWUPS_API_MAX_IMPORT_BYTES=str(len(body) + 1_000_000))
        checkouts = [("this checkout", None)] + ([(f"{args.compare_with}", Path(args.compare_with))]
                                                 if args.compare_with else [])
        results = []
        for label, root in checkouts:
            proc, base_url = await start_api(work, env, name=f"api-{len(apis)}", **({"root": root} if root else {}))
            apis.append(proc)
            say(f"measuring {label}")
            results.append({"api": label, **await measure(base_url, csv_file, args.rows)})
            proc.stop()
        rows = [[r["api"], r["import_s"], f"{r['answer_bytes'] / 1000:.0f} kB", r["idle_ms"]["p99"],
                 r["during_ms"]["n"] if r["during_ms"] else 0,
                 r["during_ms"]["p50"] if r["during_ms"] else "-", r["during_ms"]["p99"] if r["during_ms"] else "-",
                 r["during_ms"]["max"] if r["during_ms"] else "-", r["slowest_over_idle_p99"]] for r in results]
        table(f"GET /healthz while POST /v1/leads/import validates {args.rows:,} bad rows "
              f"({len(body) / 1e6:.1f} MB); target: slowest < 100 ms",
              ["API", "import s", "answer", "idle p99 ms", "checks meanwhile", "p50 ms", "p99 ms", "slowest ms",
               "slowest / idle p99"], rows)
        path = write_results(args.out, {
            "benchmark": "import_health", "mode": "quick" if args.quick else "full", "when": now_iso(),
            "params": {"rows": args.rows, "bytes": len(body), "idle_checks": IDLE_CHECKS},
            "machine": machine_facts(await postgres_version(pg_url)), "load": {"before": load_before, "after": load()},
            "results": results,
        })
        say(f"wrote {path}")
    finally:
        for proc in apis:
            proc.stop()
        await temporal.stop()
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40,000 rows")
    parser.add_argument("--rows", type=int, default=None, help="bad rows in the file (400,000; --quick 40,000)")
    parser.add_argument("--compare-with", default=None, help="another checkout whose API to measure too")
    parser.add_argument("--out", default="import_health", help="results file name (bench/results/OUT.json)")
    args = parser.parse_args()
    args.rows = args.rows or (40_000 if args.quick else 400_000)
    exit_on_sigterm()
    asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
