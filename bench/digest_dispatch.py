"""How long the digest dispatcher takes to select who is due: 100,000 recipients in ~400 time
zones, in a real PostgreSQL (embedded, throw-away; or DATABASE_URL), through the same code the
activities run (activities/digest.py `DigestRecipients`, workflows/digest/rules.py).

For every 30-minute slot of one week (336 dispatches), and the first of a month for the monthly
summary, it times what one dispatch does before sending: the distinct zones (loose index scan),
the due zones per kind (pure rules), and every keyset batch of due recipients (500 a batch, as
the dispatcher's activities page them). It checks that every weekly recipient was selected exactly
once in the week, and compares with the naive way: every recipient's local time computed per slot.

    .venv/bin/python -m bench.digest_dispatch [--recipients 100000] [--zones 400] [--send 5000]

`--send N` then runs one real dispatch on the Temporal dev server that sends N digests through the
send step to the SMTP sink, and the same slot again (nothing is sent twice).

Writes bench/results/digest_dispatch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import zoneinfo
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from activities.digest import DigestRecipients  # noqa: E402
from activities.store import connect, migrate  # noqa: E402
from workflows.digest.models import Cursor, DigestKind  # noqa: E402
from workflows.digest.rules import SLOT, Slot, due_zones, slot_of  # noqa: E402

BATCH = 500
UTC = timezone.utc


async def fill(recipients: DigestRecipients, count: int, zones: list[str], seed: int) -> Counter:
    """`count` recipients over `zones`, skewed as real audiences are (a few zones hold most):
    weights 1/rank. Every one gets the weekly digest, one in 5 the monthly, one in 50 the manager digest."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(zones))]
    chosen = rng.choices(zones, weights=weights, k=count)
    rows = []
    for n, zone in enumerate(chosen):
        digests = ["weekly"] + (["monthly"] if n % 5 == 0 else []) + (["manager"] if n % 50 == 0 else [])
        rows.append((f"r{n:07d}", f"r{n}@example.com", f"Recipient {n}", zone, digests,
                     json.dumps({"summary": f"{n % 7} lessons this week"})))
    async with recipients.pool.acquire() as conn:
        await conn.execute("TRUNCATE digest_recipients")
        await conn.copy_records_to_table("digest_recipients", records=rows,
                                         columns=("recipient", "email", "name", "time_zone", "digests", "progress"))
        await conn.execute("ANALYZE digest_recipients")
    return Counter(chosen)


async def select_due(recipients: DigestRecipients, slot: Slot) -> tuple[dict[str, float], Counter]:
    """One dispatch's selection: plan, then every batch of every group. Times in ms, and how many
    recipients each (kind, recipient) was selected."""
    started = time.perf_counter()
    zones = await recipients.zones()
    after_zones = time.perf_counter()
    groups = [(kind, period, due) for kind in DigestKind
              for period, due in due_zones(kind.cadence, zones, slot).items()]
    after_rules = time.perf_counter()
    selected: Counter = Counter()
    batches = 0
    for kind, period, due in groups:
        after: Cursor | None = None
        while True:
            rows = await recipients.page(kind.value, due, after, BATCH + 1)
            batches += 1
            more, rows = len(rows) > BATCH, rows[:BATCH]
            selected.update((kind.value, period, row["recipient"]) for row in rows)
            if not more:
                break
            after = Cursor(time_zone=rows[-1]["time_zone"], recipient=rows[-1]["recipient"])
    done = time.perf_counter()
    return {"total_ms": (done - started) * 1000, "zones_ms": (after_zones - started) * 1000,
            "rules_ms": (after_rules - after_zones) * 1000, "batches_ms": (done - after_rules) * 1000,
            "batches": batches, "recipients": sum(selected.values())}, selected


async def naive(recipients: DigestRecipients, slot: Slot) -> float:
    """The way without zones: every recipient read, its local time computed, per slot (ms)."""
    started = time.perf_counter()
    rows = await recipients.pool.fetch("SELECT recipient, time_zone FROM digest_recipients WHERE 'weekly' = ANY(digests)")
    due = 0
    for row in rows:
        local = slot.end.astimezone(zoneinfo.ZoneInfo(row["time_zone"]))
        due += local.isoweekday() == 1 and local.hour == 9 and local.minute < 30
    return (time.perf_counter() - started) * 1000


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2), "p95": round(ordered[int(len(ordered) * 0.95) - 1], 2),
            "max": round(ordered[-1], 2), "sum": round(sum(ordered), 1)}


async def main(count: int, zone_count: int, seed: int, send: int = 0) -> dict:
    import os

    from starter import embedded

    url = os.environ.get("DATABASE_URL")
    if not url:
        url = embedded.start_postgres(Path(tempfile.mkdtemp(prefix="digest-bench-")) / "data", cleanup="delete")
    pool = await connect(url, 4)
    try:
        await migrate(pool)
        recipients = DigestRecipients(pool)
        zones = sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})
        zones = random.Random(seed).sample(zones, zone_count)
        t0 = time.perf_counter()
        per_zone = await fill(recipients, count, zones, seed)
        fill_s = time.perf_counter() - t0
        pg_version = await pool.fetchval("SHOW server_version")
        plan = [r[0] for r in await pool.fetch(
            "EXPLAIN ANALYZE SELECT recipient, email, name, time_zone, progress FROM digest_recipients "
            "WHERE time_zone = ANY($1::text[]) AND $2 = ANY(digests) AND (time_zone, recipient) > ($3, $4) "
            "ORDER BY time_zone, recipient LIMIT 501", zones[:3], "weekly", sorted(zones[:3])[0], "r0050000")]

        monday = datetime(2026, 12, 7, tzinfo=UTC)
        week = [Slot(end - SLOT, end) for end in (monday - timedelta(hours=12) + SLOT * n for n in range(336))]
        for slot in week[:5]:  # warm the pool, the plan cache and the zone cache
            await select_due(recipients, slot)
        timings, seen = [], Counter()
        for slot in week:
            timing, selected = await select_due(recipients, slot)
            timings.append({"slot_end": slot.end.isoformat(), **timing})
            seen.update(selected)
        weekly = Counter(r for (kind, _, r), n in seen.items() if kind == "weekly" for _ in range(n))
        assert len(weekly) == count and set(weekly.values()) == {1}, "each weekly recipient selected exactly once"
        busiest = max(timings, key=lambda t: t["recipients"])

        first = slot_of(datetime(2027, 1, 1, 3, 30, tzinfo=UTC))  # the monthly summary in +05:30/+05:45 zones among others
        monthly_timing, _ = await select_due(recipients, first)
        naive_ms = [await naive(recipients, week[n]) for n in range(3)]
        result = {
            "recipients": count, "zones": zone_count, "batch": BATCH, "postgres": pg_version,
            "largest_zone": per_zone.most_common(1)[0], "fill_seconds": round(fill_s, 2),
            "dispatch_ms_over_336_slots": {k: summary([t[k] for t in timings])
                                           for k in ("total_ms", "zones_ms", "rules_ms", "batches_ms")},
            "busiest_slot": busiest, "first_of_month_slot": monthly_timing,
            "naive_scan_ms_per_slot": round(statistics.median(naive_ms), 1),
            "page_query_plan": plan,
        }
        if send:
            result["one_dispatch_sending"] = await send_for_real(url, send)
    finally:
        await pool.close()
    return result


async def send_for_real(url: str, count: int) -> dict:
    """One dispatch that really sends: `count` recipients due in one slot, the dispatcher on the
    Temporal dev server, the worker in this process, the SMTP sink; wall time and history size."""
    import uuid

    import worker
    from settings import Settings, apply_process_settings
    from starter import embedded
    from starter.sink import Sink, SinkServer
    from workflows.digest.models import DispatchInput
    from workflows.digest.workflow import DigestDispatch

    apply_process_settings(Settings(allow_test_domains=True))
    slot = slot_of(datetime(2026, 12, 7, 3, 30, tzinfo=UTC))  # Kathmandu's and Kolkata's Monday 09:00
    pool = await connect(url, 4)
    recipients = DigestRecipients(pool)
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE digest_recipients")
        await conn.execute("DELETE FROM messages WHERE journey = 'digest'")
        await conn.copy_records_to_table("digest_recipients", columns=(
            "recipient", "email", "name", "time_zone", "digests", "progress"), records=[
            (f"s{n:06d}", f"s{n}@example.test", f"Student {n}", ("Asia/Kathmandu", "Asia/Kolkata")[n % 2], ["weekly"],
             json.dumps({"summary": "ok", "items": [{"label": "Lessons", "value": n % 7}]})) for n in range(count)])
    env = await embedded.start_temporal(None, ui=False)
    try:
        with SinkServer(Sink()) as smtp:
            settings = Settings(database_url=url, smtp_host=smtp.host, smtp_port=smtp.port, digest_schedule_id="",
                                temporal_task_queue=f"bench-{uuid.uuid4().hex[:6]}", digest_grace=timedelta(days=3650))
            async with worker.running_worker(settings, env.client):
                started = time.perf_counter()
                handle = await env.client.start_workflow(
                    DigestDispatch.run, DispatchInput(slot=slot.end), id=f"digest-bench-{uuid.uuid4().hex[:6]}",
                    task_queue=settings.temporal_task_queue)
                report = await handle.result()
                elapsed = time.perf_counter() - started
                history = await handle.fetch_history()
                again_started = time.perf_counter()
                again = await env.client.execute_workflow(
                    DigestDispatch.run, DispatchInput(slot=slot.end), id=f"digest-bench-{uuid.uuid4().hex[:6]}",
                    task_queue=settings.temporal_task_queue)
                again_elapsed = time.perf_counter() - again_started
            delivered = smtp.sink.keys()
    finally:
        await env.shutdown()
        await pool.close()
    return {"recipients": count, "seconds": round(elapsed, 2), "per_second": round(count / elapsed, 1),
            "history_events": len(history.events), "totals": report.totals,
            "delivered": sum(delivered.values()), "duplicates": sum(n - 1 for n in delivered.values() if n > 1),
            "same_slot_again_seconds": round(again_elapsed, 2), "same_slot_again_totals": again.totals}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--zones", type=int, default=400)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--send", type=int, default=0, help="then one dispatch that really sends to this many")
    args = parser.parse_args()
    out = asyncio.run(main(args.recipients, args.zones, args.seed, args.send))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "digest_dispatch.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "page_query_plan"}, indent=2, default=str))
    print("\n".join(out["page_query_plan"]))
