"""The learning-platform parts of issue 9, measured on the embedded stack (PostgreSQL, the Temporal
dev server, the SMTP sink in its own process, `followups worker` and `followups api` processes):

1. A new-content announcement to N recipients (default 10,000; --quick 1,000), from the POST until
   the counts say done: emails/s end to end, against a bare aiosmtplib loop sending the same number
   of prebuilt messages over 20 persistent connections into the same sink (ratio).
2. A declared journey's start over HTTP (`POST /v1/journeys/enrollment`: a definition read from
   PostgreSQL, the template variables checked, update-with-start) against a hand-written kind's
   (`POST /v1/payments`): S sequential starts each (default 300; --quick 60), p50 / p99 ms, ratio.

    .venv/bin/python -m bench.lms [--quick] [--recipients N] [--starts S]

Writes bench/results/lms.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

from bench.common import (
    SinkProcess, exit_on_sigterm, load, machine_facts, now_iso, postgres_version, say, stack_env, start_api,
    start_postgres, start_temporal, start_worker, table, wait_worker_polling, work_dir, write_results,
)

API_KEY = "bench-key"
CONNECTIONS = 20


async def bare_loop(port: int, n: int) -> float:
    """N prebuilt messages of an announcement's size over CONNECTIONS persistent connections."""
    import aiosmtplib
    from email.message import EmailMessage

    def message(i: int) -> bytes:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "Followups <noreply@example.com>", f"p{i}@example.com", "New in c"
        mail["X-Followups-Key"] = f"bare-{i}"
        mail.set_content("Hello,\n\nThere is something new: Lesson 7\n\nhttps://lms.example.com/v/7\n" * 3)
        mail.add_alternative("<p>Hello,</p><p>There is something new: <a href='https://x'>Lesson 7</a></p>" * 3,
                             subtype="html")
        return mail.as_bytes()

    prebuilt = [message(i) for i in range(n)]
    queue: asyncio.Queue = asyncio.Queue()
    for _ in range(CONNECTIONS):
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await smtp.connect()
        queue.put_nowait(smtp)

    async def one(i: int) -> None:
        smtp = await queue.get()
        try:
            await smtp.sendmail("noreply@example.com", [f"p{i}@example.com"], prebuilt[i])
        finally:
            queue.put_nowait(smtp)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    seconds = time.perf_counter() - began
    while not queue.empty():
        await queue.get_nowait().quit()
    return seconds


async def announcement(http, n: int, run: str) -> float:
    people = [{"email": f"s{i}-{run}@example.com", "name": f"Student {i}"} for i in range(n)]
    began = time.perf_counter()
    posted = await http.post(f"/v1/courses/bench-{run}/announcements", json={
        "announcement_id": "a1", "title": "Lesson 7", "url": "https://lms.example.com/v/7", "recipients": people})
    posted.raise_for_status()
    while True:
        body = (await http.get(f"/v1/courses/bench-{run}/announcements/a1")).json()
        if body["done"]:
            break
        await asyncio.sleep(0.2)
    seconds = time.perf_counter() - began
    if body["sent"] != n:
        raise SystemExit(f"the announcement ended with {body}, expected {n} sent")
    return seconds


async def starts(http, kind: str, s: int, run: str) -> list[float]:
    now = datetime.now(timezone.utc).isoformat()
    later = (datetime.now(timezone.utc) + timedelta(days=10)).isoformat()
    ms = []
    for i in range(s):
        if kind == "assignment":
            path, body = "/v1/journeys/assignment_deadline", {
                "id": f"{run}-{i}", "anchors": {"deadline": later}, "group": f"bench-{run}",
                "roster": [{"member_id": "s1", "recipient": {"email": f"a{i}-{run}@example.com", "name": f"Al {i}"}}],
                "context": {"assignment_title": "Quiz", "submit_url": "https://lms.example.com/q"}}
        elif kind == "declared":
            path, body = "/v1/journeys/enrollment", {
                "id": f"{run}-{i}", "anchors": {"enrolled_at": now}, "group": f"bench-{run}",
                "recipient": {"email": f"e{i}-{run}@example.com", "name": f"Eve {i}"},
                "context": {"course_title": "Algebra", "course_url": "https://lms.example.com/a"}}
        else:
            path, body = "/v1/payments", {
                "payment_id": f"{run}-{i}", "currency": "EUR", "amount": "49.90", "payment_url": "https://pay.example.com/x",
                "payer": {"email": f"p{i}-{run}@example.com", "name": f"Pat {i}"}}
        sent = time.perf_counter()
        answer = await http.post(path, json=body)
        ms.append((time.perf_counter() - sent) * 1000)
        if answer.status_code != 201:
            raise SystemExit(f"{path} answered {answer.status_code}: {answer.text}")
    return ms


def p(ms: list[float], q: float) -> float:
    ordered = sorted(ms)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1)


async def amain(args: argparse.Namespace) -> None:
    import httpx

    work = work_dir("lms")
    load_before = load()
    pg_url = await start_postgres(work)
    sink = SinkProcess(work).start()
    temporal = await start_temporal(work)
    queue = f"bench-lms-{uuid.uuid4().hex[:6]}"
    env = stack_env(database_url=pg_url, temporal=temporal, task_queue=queue, smtp_port=sink.port,
                    FOLLOWUPS_API_KEYS=API_KEY, FOLLOWUPS_API_MAX_BODY_BYTES=str(200 * args.recipients + 100_000),
                    FOLLOWUPS_DIGEST_SCHEDULE_ID="")
    worker = start_worker(work, env)
    api = None
    try:
        await wait_worker_polling(temporal, queue, worker)
        api, base_url = await start_api(work, env)
        run = uuid.uuid4().hex[:6]
        async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"},
                                     timeout=120) as http:
            await announcement(http, 50, f"warm-{run}")
            await starts(http, "declared", 10, f"warm-d-{run}")
            await starts(http, "payment", 10, f"warm-p-{run}")
            await starts(http, "assignment", 10, f"warm-a-{run}")
            say(f"announcement to {args.recipients:,} recipients")
            followups_s = await announcement(http, args.recipients, run)
            say(f"bare aiosmtplib loop, {args.recipients:,} messages")
            bare_s = await bare_loop(sink.port, args.recipients)
            say(f"{args.starts} starts each: declared enrollment, payment")
            declared_ms = await starts(http, "declared", args.starts, f"d-{run}")
            payment_ms = await starts(http, "payment", args.starts, f"p-{run}")
            assignment_ms = await starts(http, "assignment", args.starts, f"a-{run}")
        n = args.recipients
        table(f"A new-content announcement to {n:,} recipients, POST to done (into the same SMTP sink)",
              ["system", "seconds", "emails/s", "ratio to bare"],
              [["Followups (API → workflow → batches of 200 through the send step)", round(followups_s, 1),
                round(n / followups_s), round(bare_s / followups_s, 2)],
               [f"bare aiosmtplib, {CONNECTIONS} connections, prebuilt", round(bare_s, 1), round(n / bare_s), 1.0]])
        table(f"{args.starts} sequential starts over HTTP", ["journey", "p50 ms", "p99 ms", "p50 ratio to payment"],
              [["declared: enrollment (the welcome is sent at once)", p(declared_ms, 0.5), p(declared_ms, 0.99),
                round(statistics.median(declared_ms) / statistics.median(payment_ms), 2)],
               ["declared: assignment_deadline (first step in 8 days)", p(assignment_ms, 0.5), p(assignment_ms, 0.99),
                round(statistics.median(assignment_ms) / statistics.median(payment_ms), 2)],
               ["payment, a registry kind (first step in 3 days)", p(payment_ms, 0.5), p(payment_ms, 0.99), 1.0]])
        path = write_results(args.out, {
            "benchmark": "lms", "mode": "quick" if args.quick else "full", "when": now_iso(),
            "params": {"recipients": n, "starts": args.starts, "connections": CONNECTIONS},
            "machine": machine_facts(await postgres_version(pg_url)), "load": {"before": load_before, "after": load()},
            "announcement": {"followups_s": round(followups_s, 2), "bare_s": round(bare_s, 2),
                             "ratio": round(bare_s / followups_s, 3)},
            "starts_ms": {"declared": {"p50": p(declared_ms, 0.5), "p99": p(declared_ms, 0.99)},
                          "assignment": {"p50": p(assignment_ms, 0.5), "p99": p(assignment_ms, 0.99)},
                          "payment": {"p50": p(payment_ms, 0.5), "p99": p(payment_ms, 0.99)}},
        })
        say(f"wrote {path}")
    finally:
        if api is not None:
            api.stop()
        worker.stop()
        await temporal.stop()
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 recipients, 60 starts")
    parser.add_argument("--recipients", type=int, default=None)
    parser.add_argument("--starts", type=int, default=None)
    parser.add_argument("--out", default="lms")
    args = parser.parse_args()
    args.recipients = args.recipients or (1_000 if args.quick else 10_000)
    args.starts = args.starts or (60 if args.quick else 300)
    exit_on_sigterm()
    asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
