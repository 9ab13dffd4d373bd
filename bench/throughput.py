"""How fast do journeys start and emails go out? Followups' own paths against the bare libraries.

    .venv/bin/python -m bench.throughput [--quick] [--rows N] [--emails N] [--variants a,b]
                                         [--parts emails,imports] [--drain S] [--profile] [--out NAME]

1. Imports: journeys started per second for an N-lead CSV (10,000; --quick 1,000), each variant on
   a fresh Temporal dev server (starter/embedded.py: SQLite file + WAL pragmas, as `make dev`) and
   the same embedded PostgreSQL, 200 starts in flight (= starter/lead_import.CONCURRENT_STARTS):
   - bare: `client.start_workflow(LeadJourney.run, LeadInput(lead=...))` for the parsed leads, no
     search attributes, no summary, no leads table: the server's start capacity as a plain
     temporalio user sees it;
   - project: `lead_import.parse` + `start_all(Journeys(LEAD), Leads)` in this process (CSV parse,
     validation, known-leads query, signal-with-start with search attributes and a summary, leads
     rows written per 1,000);
   - http: POST /v1/leads/import (text/csv) to a `followups api` process (uvicorn), timed from the
     request to the response;
   - +worker: the same with a `followups worker` process on the journeys' task queue (their day-0
     email is due at once, so the worker competes with the import for the server); afterwards the
     day-0 emails are watched for --drain seconds (full: 10);
   - diagnosis only (not run by default): sws = the bare loop sending the service's exact request
     (Journeys._signal_with_start); sws-plain = signal-with-start with no search attributes or
     summary; sws-sa = the service's request without its summary; start-meta = a plain start of
     LeadInput(lead=...) with the service's id policies, search attributes and summary;
     start-sa / start-summary = the same with only one of the two.
   Default variants: full bare, http, bare+worker, http+worker; quick bare, http (add project
   with --variants: it costs another import). Ratio = variant / the mean of the bare runs under
   the same worker condition; goal ≥ 0.9.
2. Emails: SendActivities.send_message called in this process (temporalio.testing.ActivityEnvironment,
   real Outbox / Suppressions / Renderer / SmtpTransport, the default pool of 10) with 50 concurrent,
   against a bare aiosmtplib loop sending the same messages prebuilt (one connection per message,
   like the transport and aiosmtplib.send; and over 50 persistent connections), all to the
   project's SMTP sink (starter/sink.py) in its own process; 3,000 emails (--quick 300) each.
   Goal: ≥ 200 emails/s and ≥ 0.5 × bare. Then each piece of the step alone, one at a time
   (wall and CPU ms per call), to show where an email's time goes.

--profile: py-spy records the process doing the work (this one, the API, the worker while the
day-0 emails drain) and the top costs go into the tables and the results file.
Writes bench/results/throughput.json (or OUT.json).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import (
    CpuClock,
    PySpy,
    SinkProcess,
    exit_on_sigterm,
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

CONCURRENCY = 200  # = starter/lead_import.CONCURRENT_STARTS
EMAIL_CONCURRENCY = 50
GOAL_IMPORT_RATIO = 0.9
GOAL_EMAIL_RATIO = 0.5
GOAL_EMAILS_PER_S = 200
CAMPAIGN = "bench"
API_KEY = "bench-key"
VARIANTS = ("bare", "project", "http", "bare+worker", "project+worker", "http+worker",
            "sws", "sws-plain", "sws-sa", "start-meta", "start-sa", "start-summary")


def lead_csv(n: int, prefix: str) -> str:
    lines = ["lead_id,email,name,company,time_zone,offer_url"]
    for i in range(n):
        lines.append(f"{prefix}-{i},lead{i}.{prefix}@example.com,Lead {i},Company {i % 97},Europe/Berlin,"
                     f"https://shop.example.com/offer/{i}")
    return "\n".join(lines) + "\n"


# --- 1. imports --------------------------------------------------------------------------------


class Imports:
    def __init__(self, args: argparse.Namespace, work: Path, pg_url: str, sink: SinkProcess, run_id: str) -> None:
        self.args, self.work, self.pg_url, self.sink, self.run_id = args, work, pg_url, sink, run_id
        self.postmaster: int | None = None

    async def variant(self, index: int, name: str) -> dict[str, Any]:
        import httpx

        from activities.store import Leads, connect, migrate
        from settings import Settings
        from starter import lead_import
        from starter.service import Journeys
        from workflows.registry import LEAD
        from workflows.lead.workflow import LeadJourney, workflow_id
        from workflows.lead.models import LeadInput

        kind, with_worker = name.split("+")[0], name.endswith("+worker")
        n = self.args.rows
        label = f"{index}-{name.replace('+', '-')}"
        prefix = f"{label}-{self.run_id}"
        text = lead_csv(n, prefix)
        task_queue = f"bench-{prefix}"
        temporal = await start_temporal(self.work, f"temporal-{label}")
        env = stack_env(database_url=self.pg_url, temporal=temporal, task_queue=task_queue, smtp_port=self.sink.port,
                        FOLLOWUPS_API_KEYS=API_KEY)
        worker = api = None
        pool = None
        result: dict[str, Any] = {"variant": name, "rows": n, "worker": with_worker,
                                  "concurrency": self.args.concurrency}
        try:
            if with_worker:
                worker = start_worker(self.work, env, name=f"worker-{label}")
                await wait_worker_polling(temporal, task_queue, worker)
            pids = {"bench": os.getpid(), "temporal": temporal.pid, "postgres": self.postmaster}
            settings = Settings(database_url=self.pg_url, temporal_task_queue=task_queue, api_keys=[API_KEY])
            if kind == "http":
                api, base_url = await start_api(self.work, env, name=f"api-{label}")
                pids["api"] = api.pid
            else:
                pool = await connect(self.pg_url, settings.database_pool_size)
                await migrate(pool)
            if worker:
                pids["worker"] = worker.pid
            parsed, _ = lead_import.parse(text, CAMPAIGN)  # for bare: the parsed leads, outside the clock
            now = datetime.now(timezone.utc)
            inputs = [LeadInput(lead_id=lead.lead_id, lead=lead.model_copy(update={"started_at": now}))
                      for _, lead in parsed]
            sent_before = self.sink.counts()["total"]
            profile = PySpy(pids["api"] if kind == "http" else pids["bench"],
                            self.work / f"pyspy-{label}.txt") if self.args.profile and kind != "bare" else None
            if profile:
                profile.__enter__()
            cpu = CpuClock(pids).start()
            started = time.perf_counter()
            if kind == "bare":
                gate = asyncio.Semaphore(self.args.concurrency)

                async def one(journey: LeadInput) -> None:
                    async with gate:
                        await temporal.client.start_workflow(LeadJourney.run, journey, id=workflow_id(journey.lead_id),
                                                             task_queue=task_queue)

                await asyncio.gather(*(one(journey) for journey in inputs))
                result["started"] = n
            elif kind == "sws":  # diagnosis: the service's exact request shape, none of its other work
                gate = asyncio.Semaphore(self.args.concurrency)
                journeys = Journeys(temporal.client, settings, LEAD)

                async def one_sws(journey: LeadInput) -> None:
                    lead = journey.lead
                    async with gate:
                        await journeys._signal_with_start(lead.lead_id, LEAD.start_signal, lead, LEAD.summary(lead))

                await asyncio.gather(*(one_sws(journey) for journey in inputs))
                result["started"] = n
            elif kind in ("sws-plain", "sws-sa", "start-meta", "start-sa", "start-summary"):  # which part costs
                from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

                from workflows.core import search

                gate = asyncio.Semaphore(self.args.concurrency)

                async def one_part(journey: LeadInput) -> None:
                    lead = journey.lead
                    async with gate:
                        if kind == "sws-plain":  # signal-with-start alone: no search attributes, no summary
                            await temporal.client.start_workflow(
                                LeadJourney.run, LeadInput(lead_id=lead.lead_id), id=workflow_id(lead.lead_id),
                                task_queue=task_queue, start_signal="begin", start_signal_args=[lead])
                        elif kind == "sws-sa":  # the service's request without its summary
                            await temporal.client.start_workflow(
                                LeadJourney.run, LeadInput(lead_id=lead.lead_id), id=workflow_id(lead.lead_id),
                                task_queue=task_queue, start_signal="begin", start_signal_args=[lead],
                                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                                search_attributes=search.at_start("lead", lead.lead_id))
                        else:  # a plain start carrying the lead, with the service's policies and metadata
                            summary = f"Lead {lead.lead_id}: {lead.contact.name} <{lead.contact.email}>, " \
                                      f"campaign {lead.campaign}"
                            await temporal.client.start_workflow(
                                LeadJourney.run, journey, id=workflow_id(lead.lead_id), task_queue=task_queue,
                                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                                search_attributes=search.at_start("lead", lead.lead_id)
                                if kind in ("start-meta", "start-sa") else None,
                                static_summary=summary if kind in ("start-meta", "start-summary") else None)

                await asyncio.gather(*(one_part(journey) for journey in inputs))
                result["started"] = n
            elif kind == "project":
                rows, report = lead_import.parse(text, CAMPAIGN)
                parsed_at = time.perf_counter()
                lead_import.CONCURRENT_STARTS = self.args.concurrency  # the default (200) unless --concurrency
                await lead_import.start_all(Journeys(temporal.client, settings, LEAD), Leads(pool), rows, report)
                result["parse_s"] = round(parsed_at - started, 3)
                result["started"] = report.started
                result["rejected"] = len(report.rejected)
            else:
                async with httpx.AsyncClient(timeout=None) as http:
                    response = await http.post(f"{base_url}/v1/leads/import", params={"campaign": CAMPAIGN},
                                               content=text.encode(), headers={
                                                   "Content-Type": "text/csv", "Authorization": f"Bearer {API_KEY}"})
                body = response.json()
                if response.status_code != 200:
                    raise SystemExit(f"import failed: {response.status_code} {body}")
                result["started"] = body["started"]
                result["rejected"] = len(body["rejected"])
            elapsed = time.perf_counter() - started
            result["cpu_s"] = cpu.since()
            if profile:
                profile.__exit__(None, None, None)
                result["profile"] = profile.top()
            if result["cpu_s"].get("temporal"):
                result["server_cpu_ms_per_row"] = round(1000 * result["cpu_s"]["temporal"] / n, 2)
            result["seconds"] = round(elapsed, 2)
            result["rows_per_s"] = round(n / elapsed, 1)
            result["emails_sent_during_import"] = self.sink.counts()["total"] - sent_before
            if result["started"] != n:
                result["problem"] = f"started {result['started']} of {n}"
            say(f"  {name:15s} {n} rows in {elapsed:6.1f} s = {n / elapsed:6.0f}/s"
                + (f"  ({result['emails_sent_during_import']} day-0 emails sent meanwhile)" if with_worker else ""))
            if with_worker and self.args.drain:
                spy = PySpy(worker.pid, self.work / f"pyspy-{label}-worker.txt") if self.args.profile else None
                if spy:
                    spy.__enter__()
                cpu = CpuClock(pids).start()
                result["after_import"] = await self.drain(n, sent_before + result["emails_sent_during_import"],
                                                          result["emails_sent_during_import"], started + elapsed)
                result["after_import"]["cpu_s"] = cpu.since()
                if spy:
                    spy.__exit__(None, None, None)
                    result["after_import"]["worker_profile"] = spy.top()
        finally:
            if pool is not None:
                await pool.close()
            for proc in (api, worker):
                if proc is not None:
                    proc.stop()
            await temporal.stop()
        return result

    async def drain(self, n: int, sent_before: int, sent_already: int, import_done: float) -> dict[str, Any]:
        """After the import, with the worker on: how fast do the remaining day-0 emails follow
        (watched for at most --drain seconds)?"""
        deadline = import_done + self.args.drain
        first = None
        sent = 0
        while time.perf_counter() < deadline:
            sent = self.sink.counts()["total"] - sent_before
            if first is None and sent > 0:
                first = time.perf_counter() - import_done
            if sent + sent_already >= n:
                break
            await asyncio.sleep(0.2)
        window = time.perf_counter() - import_done
        out = {"watched_s": round(window, 1), "emails_sent": sent, "emails_per_s": round(sent / window, 1),
               "first_email_after_s": round(first, 2) if first is not None else None,
               "all_sent": sent + sent_already >= n}
        say(f"  {'':15s} then {sent} day-0 emails in the {window:.1f} s after it = {sent / window:.0f}/s")
        return out

    async def run(self) -> list[dict[str, Any]]:
        self.postmaster = await postmaster_pid(self.pg_url)
        return [await self.variant(i, name) for i, name in enumerate(self.args.variants)]


def import_ratios(results: list[dict[str, Any]]) -> None:
    runs: dict[bool, list[float]] = {}
    for r in results:
        if r["variant"].split("+")[0] == "bare":
            runs.setdefault(r["worker"], []).append(r["rows_per_s"])
    bare = {worker: sum(rates) / len(rates) for worker, rates in runs.items()}  # several bare runs: their mean
    for r in results:
        if r["worker"] in bare:
            r["ratio_to_bare"] = round(r["rows_per_s"] / bare[r["worker"]], 3)


# --- 2. emails ---------------------------------------------------------------------------------


async def emails(args: argparse.Namespace, work: Path, pg_url: str, sink: SinkProcess, run_id: str) -> dict[str, Any]:
    import os

    import aiosmtplib
    from temporalio.testing import ActivityEnvironment

    from activities.mail import Envelope, SmtpSettings, SmtpTransport, build, message_id
    from activities.render import Renderer
    from activities.outgoing import Sender
    from activities.send import SendActivities
    import worker
    from activities.store import Outbox, connect, migrate
    from settings import Settings
    from workflows.contracts import MessageCategory, Recipient, SendRequest

    n, concurrency = args.emails, EMAIL_CONCURRENCY
    settings = Settings(database_url=pg_url)
    pool = await connect(pg_url, settings.database_pool_size)
    await migrate(pool)
    sender = Sender(settings.sender_email, settings.sender_name, settings.postal_address, settings.public_base_url,
                    "bench-secret")
    renderer = Renderer()
    # The send step as the worker builds it: templates from PostgreSQL, preferences and caps, tracked
    # links and the open pixel (FOLLOWUPS_TRACKING is on by default), the same render sandbox.
    activities = SendActivities(Outbox(pool), renderer, SmtpTransport(SmtpSettings(host="127.0.0.1", port=sink.port)),
                                sender, worker.platform(settings, pool, renderer))
    environment = ActivityEnvironment()
    now = datetime.now(timezone.utc)

    def request(tag: str, i: int) -> SendRequest:
        return SendRequest(
            key=f"lead-{tag}-{run_id}-{i}/step-1", journey="lead", entity_id=f"{tag}-{run_id}-{i}",
            template="lead_welcome", recipient=Recipient(email=f"lead{i}@example.com", name=f"Lead {i}",
                                                         time_zone="Europe/Berlin"),
            category=MessageCategory.MARKETING,
            context={"name": f"Lead {i}", "company": f"Company {i % 97}",
                     "offer_url": f"https://shop.example.com/offer/{i}", "campaign": CAMPAIGN, "step": 1, "steps": 3},
            due_at=now)

    async def run_all(jobs, fn) -> float:
        gate = asyncio.Semaphore(concurrency)

        async def one(job) -> None:
            async with gate:
                await fn(job)

        started = time.perf_counter()
        await asyncio.gather(*(one(job) for job in jobs))
        return time.perf_counter() - started

    statuses: dict[str, int] = {}

    async def send(req: SendRequest) -> None:
        result = await environment.run(activities.send_message, req)
        statuses[result.status.value] = statuses.get(result.status.value, 0) + 1

    # Prebuilt for the bare loops: what the send step would put on the wire for the same requests.
    def wire(req: SendRequest) -> tuple[str, list[str], bytes]:
        context = {**req.context, "recipient_name": req.recipient.name, "time_zone": req.recipient.time_zone,
                   "sender_name": sender.name, "postal_address": sender.postal_address,
                   "unsubscribe_url": sender.unsubscribe_url(str(req.recipient.email), req.key)}
        envelope = Envelope(sender.email, sender.name, str(req.recipient.email), req.recipient.name,
                            message_id(req.key, sender.domain), sender.unsubscribe_url(str(req.recipient.email), req.key),
                            req.key)
        out = build(envelope, renderer.render(req.template, context))
        return out.sender, out.recipients, out.data

    async def bare_per_message(item: tuple[str, list[str], bytes]) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, timeout=30)
        await smtp.connect()
        await smtp.sendmail(*item)
        await smtp.quit()

    connections: asyncio.Queue = asyncio.Queue()

    async def bare_persistent(item: tuple[str, list[str], bytes]) -> None:
        smtp = await connections.get()
        try:
            await smtp.sendmail(*item)
        finally:
            connections.put_nowait(smtp)

    warm = max(20, n // 50)
    await run_all([request("warm", i) for i in range(warm)], send)  # pool, templates, first connections
    statuses.clear()
    pids = {"bench": os.getpid(), "sink": sink.proc.pid, "postgres": await postmaster_pid(pg_url)}
    out: dict[str, Any] = {"emails": n, "concurrency": concurrency, "pool_size": settings.database_pool_size,
                           "warmup": warm}

    requests = [request("send", i) for i in range(n)]
    before = sink.counts()
    profile = PySpy(os.getpid(), work / "pyspy-emails.txt") if args.profile else None
    if profile:
        profile.__enter__()
    cpu = CpuClock(pids).start()
    seconds = await run_all(requests, send)
    send_cpu = cpu.since()
    if profile:
        profile.__exit__(None, None, None)
        out["profile"] = profile.top()
    after = sink.counts()
    rows = await pool.fetchrow("SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) AS total "
                               "FROM messages WHERE key LIKE $1", f"lead-send-{run_id}-%")
    out["followups"] = {"seconds": round(seconds, 2), "emails_per_s": round(n / seconds, 1), "cpu_s": send_cpu,
                        "statuses": dict(statuses), "outbox_sent_rows": rows["sent"],
                        "sink_received": after["total"] - before["total"],
                        "sink_duplicated_keys": after["duplicated"]}
    say(f"  followups send step   {n} emails in {seconds:5.1f} s = {n / seconds:6.0f}/s")

    async def bare(tag: str, fn, label: str) -> dict[str, Any]:
        """A bare aiosmtplib loop over prebuilt bytes (built outside the clock) into the same sink."""
        prebuilt = [wire(request(tag, i)) for i in range(n)]
        before = sink.counts()
        cpu = CpuClock(pids).start()
        seconds = await run_all(prebuilt, fn)
        say(f"  {label:21s} {n} emails in {seconds:5.1f} s = {n / seconds:6.0f}/s")
        return {"seconds": round(seconds, 2), "emails_per_s": round(n / seconds, 1), "cpu_s": cpu.since(),
                "sink_received": sink.counts()["total"] - before["total"]}

    out["bare_connection_per_message"] = await bare("bare", bare_per_message, "bare, conn/message")
    for _ in range(concurrency):
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, timeout=30)
        await smtp.connect()
        connections.put_nowait(smtp)
    out["bare_persistent_connections"] = await bare("bare2", bare_persistent, f"bare, {concurrency} connections")
    while not connections.empty():
        await connections.get_nowait().quit()

    # Where one email's time goes: each piece of the send step alone, one at a time (no
    # concurrency), wall ms and this process's CPU ms per call.
    k = max(50, n // 10)
    outbox, platform = Outbox(pool), activities  # the send step's own template store, gate and tracker
    sample = [request("piece", i) for i in range(k)]
    contexts = [{**r.context, "recipient_name": r.recipient.name, "time_zone": r.recipient.time_zone,
                 "sender_name": sender.name, "postal_address": sender.postal_address,
                 "unsubscribe_url": sender.unsubscribe_url(str(r.recipient.email), r.key)} for r in sample]
    rendered = [renderer.render(r.template, c) for r, c in zip(sample, contexts)]
    envelopes = [Envelope(sender.email, sender.name, str(r.recipient.email), r.recipient.name,
                          message_id(r.key, sender.domain), c["unsubscribe_url"], r.key)
                 for r, c in zip(sample, contexts)]
    built = [build(e, x) for e, x in zip(envelopes, rendered)]
    wire_bytes = [(out.sender, out.recipients, out.data) for out in built]
    import socket as _socket

    local = _socket.getfqdn()

    async def smtp_session(item, local_hostname=None) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, timeout=30, local_hostname=local_hostname)
        await smtp.connect()
        await smtp.sendmail(*item)
        await smtp.quit()

    async def noop(_: str) -> None:
        return None

    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=sink.port))
    whole = [request("whole", i) for i in range(k)]
    pieces = [
        ("render (Renderer.render)", lambda i: renderer.render(sample[i].template, contexts[i]), False),
        ("build (MIME message + headers, serialised)", lambda i: build(envelopes[i], rendered[i]), False),
        ("outbox.claim (PostgreSQL)", lambda i: outbox.claim(
            key=sample[i].key, journey="lead", entity_id=sample[i].entity_id, template=sample[i].template,
            recipient=str(sample[i].recipient.email), recipient_name=sample[i].recipient.name,
            category="marketing", context=sample[i].context, message_id=envelopes[i].message_id,
            due_at=now, lease=timedelta(seconds=30)), True),
        ("templates.resolve (version, variant, category)", lambda i: platform.templates.resolve(
            sample[i].template, as_of=now, recipient=str(sample[i].recipient.email)), True),
        ("gate.verdict (suppression, preferences, window, cap)", lambda i: platform.gate.verdict(
            email=str(sample[i].recipient.email), category="marketing", channel="email", zone="Europe/Berlin",
            now=now, not_after=None, deferrable=True, key=sample[i].key), True),
        ("tracker.instrument (links + pixel)", lambda i: platform.tracker.instrument(rendered[i].html, sample[i].key),
         False),
        ("tracking.save_links (PostgreSQL)", lambda i: platform.tracking.save_links(
            sample[i].key, platform.tracker.instrument(rendered[i].html, sample[i].key).links), True),
        ("outbox.finish (PostgreSQL)", lambda i: outbox.finish(sample[i].key, "sent", subject="s", smtp_response="250"),
         True),
        ("SMTP session, prebuilt bytes (connect … QUIT)", lambda i: smtp_session(wire_bytes[i]), True),
        ("  same, local_hostname given (no getfqdn thread hop)", lambda i: smtp_session(wire_bytes[i], local), True),
        ("SmtpTransport.deliver (kept connection)", lambda i: transport.deliver(built[i], noop), True),
        ("send_message, whole step (ActivityEnvironment)", lambda i: environment.run(
            activities.send_message, whole[i]), True),
    ]
    breakdown = []
    for label, fn, awaited in pieces:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(k):
            result = fn(i)
            if awaited:
                await result
        breakdown.append({"piece": label, "calls": k, "wall_ms": round(1000 * (time.perf_counter() - wall0) / k, 3),
                          "cpu_ms": round(1000 * (time.process_time() - cpu0) / k, 3)})
    out["one_at_a_time"] = breakdown
    await pool.close()

    f = out["followups"]["emails_per_s"]
    out["ratio_to_bare_connection_per_message"] = round(f / out["bare_connection_per_message"]["emails_per_s"], 3)
    out["ratio_to_bare_persistent"] = round(f / out["bare_persistent_connections"]["emails_per_s"], 3)
    out["goal"] = {"emails_per_s": GOAL_EMAILS_PER_S, "ratio": GOAL_EMAIL_RATIO,
                   "met": f >= GOAL_EMAILS_PER_S and out["ratio_to_bare_connection_per_message"] >= GOAL_EMAIL_RATIO}
    return out


# --- the run -----------------------------------------------------------------------------------


def print_tables(imports: list[dict[str, Any]], mail: dict[str, Any] | None, load_before: dict) -> None:
    if imports:
        rows = []
        for r in imports:
            cpu = r.get("cpu_s", {})
            after = r.get("after_import")
            rows.append([r["variant"], r["rows"], r["seconds"], r["rows_per_s"], r.get("ratio_to_bare", "–"),
                         "yes" if r["worker"] else "no", r.get("server_cpu_ms_per_row", "–"),
                         r.get("emails_sent_during_import", 0) if r["worker"] else "–",
                         f"{after['emails_sent']} in {after['watched_s']} s = {after['emails_per_s']}/s" if after else "–",
                         " ".join(f"{k} {v:.1f}" for k, v in cpu.items())])
        table("Journeys started per second (CSV lead import)",
              ["variant", "rows", "s", "rows/s", "ratio to bare", "worker", "server CPU ms/row",
               "emails during import", "day-0 emails after it", "CPU s during import"], rows,
              caption=f"Goal: ratio ≥ {GOAL_IMPORT_RATIO} (same worker condition). Concurrency {imports[0]['concurrency']}. "
                      f"Fresh dev server per variant. Load before: {load_before['loadavg_1m']} (1-min avg).")
        for r in imports:
            if "profile" in r:
                top = r["profile"].get("inclusive_percent_ours", [])[:8]
                table(f"py-spy, {r['variant']}: our functions, % of {r['profile'].get('samples')} busy samples",
                      ["function", "% inclusive"], top)
                table(f"py-spy, {r['variant']}: hottest frames (self)", ["function", "% self"],
                      r["profile"].get("self_percent", [])[:10])
    if mail:
        rows = []
        for label, key in (("followups send step (ActivityEnvironment)", "followups"),
                           ("bare aiosmtplib, connection per message", "bare_connection_per_message"),
                           (f"bare aiosmtplib, {mail['concurrency']} persistent connections", "bare_persistent_connections")):
            m = mail[key]
            rows.append([label, mail["emails"], m["seconds"], m["emails_per_s"],
                         " ".join(f"{k} {v:.1f}" for k, v in m["cpu_s"].items())])
        table("Emails per second to the SMTP sink", ["path", "emails", "s", "emails/s", "CPU s"], rows,
              caption=(f"Concurrency {mail['concurrency']}, pool {mail['pool_size']}. Ratio followups / bare "
                       f"(conn per message) = {mail['ratio_to_bare_connection_per_message']}, / persistent = "
                       f"{mail['ratio_to_bare_persistent']}. Goal ≥ {GOAL_EMAILS_PER_S}/s and ≥ {GOAL_EMAIL_RATIO}: "
                       f"{'met' if mail['goal']['met'] else 'NOT met'}. Statuses {mail['followups']['statuses']}, "
                       f"outbox rows sent {mail['followups']['outbox_sent_rows']}, "
                       f"duplicated keys at the sink {mail['followups']['sink_duplicated_keys']}."))
        table("One email, piece by piece (one at a time, no concurrency)", ["piece", "calls", "wall ms", "CPU ms"],
              [[p["piece"], p["calls"], p["wall_ms"], p["cpu_ms"]] for p in mail["one_at_a_time"]],
              caption="CPU ms = this process only (PostgreSQL and the sink run elsewhere).")
        if "profile" in mail:
            table(f"py-spy, send step: our functions, % of {mail['profile'].get('samples')} busy samples",
                  ["function", "% inclusive"], mail["profile"].get("inclusive_percent_ours", [])[:10])
            table("py-spy, send step: hottest frames (self)", ["function", "% self"],
                  mail["profile"].get("self_percent", [])[:12])


async def amain(args: argparse.Namespace) -> None:
    work = work_dir("throughput")
    run_id = uuid.uuid4().hex[:6]
    load_before = load()
    say(f"throughput: work dir {work}; {args.rows} rows per import, {args.emails} emails; load {load_before}")
    pg_url = await start_postgres(work)
    sink = SinkProcess(work).start()
    imports: list[dict[str, Any]] = []
    mail = None
    try:
        if "emails" in args.parts:
            mail = await emails(args, work, pg_url, sink, run_id)
        if "imports" in args.parts:
            imports = await Imports(args, work, pg_url, sink, run_id).run()
            import_ratios(imports)
        load_after = load()
        print_tables(imports, mail, load_before)
        path = write_results(args.out, {
            "benchmark": "throughput", "mode": "quick" if args.quick else "full", "when": now_iso(),
            "params": {"rows": args.rows, "emails": args.emails, "variants": args.variants, "profile": args.profile,
                       "import_concurrency": args.concurrency, "email_concurrency": EMAIL_CONCURRENCY},
            "machine": machine_facts(await postgres_version(pg_url)),
            "load": {"before": load_before, "after": load_after},
            "imports": imports, "emails": mail,
        })
        say(f"wrote {path}")
    finally:
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1,000 rows (bare and http, no worker), 300 emails")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--emails", type=int, default=None)
    parser.add_argument("--parts", default="emails,imports")
    parser.add_argument("--variants", default=None, help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--profile", action="store_true", help="py-spy the project/http/email runs")
    parser.add_argument("--out", default="throughput", help="results file name (bench/results/OUT.json)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help="starts in flight for bare/project/diagnosis variants (http: the API's own, 200)")
    parser.add_argument("--drain", type=float, default=None,
                        help="with a worker: watch the day-0 emails for this many seconds after the import")
    args = parser.parse_args()
    args.rows = args.rows or (1000 if args.quick else 10_000)
    args.emails = args.emails or (300 if args.quick else 3000)
    args.parts = args.parts.split(",")
    if args.drain is None:
        args.drain = 0.0 if args.quick else 10.0
    default = "bare,http" if args.quick else "bare,http,bare+worker,http+worker"
    args.variants = [v for v in (args.variants or default).split(",") if v]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}")
    exit_on_sigterm()
    asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
