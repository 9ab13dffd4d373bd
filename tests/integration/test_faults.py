"""Faults injected into the real things the journeys run on, one at a time:

- the Temporal dev server stopped and started again on the same SQLite file while journeys sleep;
- the SMTP server down for a while (retried with backoff), and a 5xx (recorded once, not retried);
- PostgreSQL restarted in the middle of a burst of sends (its own instance);
- the HTTP API hit by bursts of identical starts and events for the same ids.

The worker SIGKILLed mid-burst is `test_crash.py`. The ground truth is the SMTP sink: deliveries
counted per idempotency key. Each test prints what it observed (run with `-s`). Nothing asserts a
duration: every wait polls with a bounded deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx
import pytest

import worker
from settings import Settings
from starter import embedded
from starter.connect import connect_temporal
from starter.service import Journeys
from workflows.registry import INTERVIEW
from starter.sink import Sink, SinkServer, free_port
from workflows.interview.workflow import InterviewJourney, workflow_id
from workflows.contracts import Recipient
from workflows.interview.models import InterviewEvent, InterviewPolicyOverrides, Invitation, interview_event


async def wait_for(predicate, timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await predicate():
                return
        except Exception as err:  # noqa: BLE001 (a fault is in progress: keep polling until the deadline)
            last = err
        else:
            last = None
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (f" (last error: {last!r})" if last else "")
        await asyncio.sleep(every)


def invitation(interview_id: str, email: str, policy: InterviewPolicyOverrides) -> Invitation:
    return Invitation(interview_id=interview_id, candidate=Recipient(email=email, name="Candidate"),
                      slot_selection_url=f"https://jobs.example.com/slots/{interview_id}", policy=policy)


async def rows_for(database_url: str, keys) -> dict[str, asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM messages WHERE key = ANY($1::text[])", list(keys))
    finally:
        await conn.close()
    return {row["key"]: row for row in rows}


async def followups_sent(client, interview_ids, at_least: int) -> bool:
    for interview_id in interview_ids:
        state = await client.get_workflow_handle(workflow_id(interview_id)).query(InterviewJourney.state_query)
        if state.followups_sent < at_least:
            return False
    return True


async def end_journeys(interviews: Journeys, interview_ids) -> None:
    await asyncio.gather(*(interviews.send_event(i, interview_event(kind="cancel", reason="test over"))
                           for i in interview_ids))


def delivery_figures(counts: Counter[str], expected: set[str]) -> tuple[set[str], dict[str, int]]:
    lost = expected - set(counts)
    duplicated = {key: n for key, n in counts.items() if key in expected and n > 1}
    return lost, duplicated


# --- 1. the Temporal server goes away while journeys sleep ------------------------------------


def server_pids(database_file: Path) -> list[int]:
    """The Temporal dev server process(es) running on this SQLite file (its command line names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(database_file).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


async def stop_temporal(env, database_file: Path, how: str) -> None:
    if how == "shutdown":
        await env.shutdown()  # the server process exits cleanly
        return
    [pid] = server_pids(database_file)
    os.kill(pid, signal.SIGKILL)  # no chance to flush or close anything: as a crashed host would
    for _ in range(100):
        if not server_pids(database_file):
            break
        await asyncio.sleep(0.05)
    assert not server_pids(database_file), "the dev server survived SIGKILL"
    with contextlib.suppress(Exception):  # the SDK's handle on a process that is already gone
        await env.shutdown()


@pytest.mark.parametrize("how", ["shutdown", "sigkill"])
async def test_temporal_restart_on_the_same_file_while_journeys_sleep(database_url, tmp_path: Path, how: str):
    journeys, followups = 20, 2
    run = uuid.uuid4().hex[:8]
    ids = [f"trestart-{run}-{n}" for n in range(journeys)]
    expected = {f"interview-{i}/followup-{k}" for i in ids for k in range(1, followups + 1)}
    database_file, port = tmp_path / "temporal.db", free_port()
    sink = Sink()
    # Follow-up 1 falls due well after the restart below; follow-up 2 a little after it.
    policy = InterviewPolicyOverrides(followup_after=timedelta(seconds=12), followup_interval=timedelta(seconds=2),
                                      max_followups=followups, expire_after=timedelta(minutes=10))
    with SinkServer(sink) as smtp:
        settings = Settings(database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port,
                            temporal_address=f"127.0.0.1:{port}", temporal_task_queue=f"trestart-{run}")
        env = await embedded.start_temporal(database_file, port=port, ui=False)
        try:
            async with worker.running_worker(settings, env.client):
                started = await asyncio.gather(*(
                    Journeys(env.client, settings, INTERVIEW).start(invitation(i, f"{i}@example.com", policy)) for i in ids))
                assert all(answer.created for answer in started)
            delivered_before_stop = sum(sink.keys().values())
            stopped, env = env, None
            await stop_temporal(stopped, database_file, how)  # the sleeping timers live in the file
            await asyncio.sleep(2)
            env = await embedded.start_temporal(database_file, port=port, ui=False)
            client = await connect_temporal(settings)  # a fresh client and worker, as after a redeploy
            async with worker.running_worker(settings, client):
                pending = sum([(await client.get_workflow_handle(workflow_id(i)).query(InterviewJourney.state_query))
                               .status.value == "pending" for i in ids])
                await wait_for(lambda: followups_sent(client, ids, followups), 50,
                               "every follow-up after the restart")
                await end_journeys(Journeys(client, settings, INTERVIEW), ids)
        finally:
            if env is not None:
                await env.shutdown()

    counts = sink.keys()
    lost, duplicated = delivery_figures(counts, expected)
    rows = await rows_for(database_url, expected)
    attempts = Counter(row["attempts"] for row in rows.values())
    print(f"\n[temporal {how} and restart] {journeys} journeys, {len(expected)} follow-ups; delivered before the stop "
          f"{delivered_before_stop}; journeys still pending after the restart {pending}/{journeys}; "
          f"delivered {sum(counts[k] for k in expected)}, lost {len(lost)}, duplicated {len(duplicated)}; "
          f"outbox attempts {dict(attempts)}")
    # the server went away while every journey slept, before any follow-up was due, and came back
    # with all of them still waiting: what follows was done by timers read back from the file
    assert delivered_before_stop == 0 and pending == journeys, (delivered_before_stop, pending)
    assert not lost, f"lost: {sorted(lost)[:5]}"
    assert not duplicated, f"delivered more than once: {duplicated}"
    assert len(rows) == len(expected) and all(row["status"] == "sent" for row in rows.values())


# --- 2. the SMTP server is down for a while; a 5xx is final -----------------------------------


async def test_smtp_outage_is_retried_with_backoff_and_a_5xx_is_recorded_once(local_env, database_url):
    journeys = 8
    run = uuid.uuid4().hex[:8]
    ids = [f"smtpdown-{run}-{n}" for n in range(journeys)]
    expected = {f"interview-{i}/followup-1" for i in ids}
    refused_id = f"smtp550-{run}"
    refused_email = f"{refused_id}@example.com"
    refused_key = f"interview-{refused_id}/followup-1"
    sink = Sink(refuse={refused_email: "550 5.1.1 no such user here"})
    policy = InterviewPolicyOverrides(followup_after=timedelta(seconds=1), max_followups=1,
                                      expire_after=timedelta(minutes=10))
    with SinkServer(sink) as smtp:  # up, then down before anything is due: same host and port later
        host, port = smtp.host, smtp.port
    settings = Settings(database_url=database_url, smtp_host=host, smtp_port=port, temporal_task_queue=f"smtp-{run}")
    client = local_env.client
    interviews = Journeys(client, settings, INTERVIEW)
    async with worker.running_worker(settings, client):
        await asyncio.gather(*(interviews.start(invitation(i, f"{i}@example.com", policy)) for i in ids))

        # The pause before each retry, as the server scheduled it, read off every journey's pending send
        # while it waits: SEND_RETRY doubles from 5 s, so after attempt n it is 5 s × 2^(n-1).
        pauses: dict[int, set[float]] = {}

        async def pauses_after_two_failures_seen() -> bool:
            for interview_id in ids:
                description = await client.get_workflow_handle(workflow_id(interview_id)).describe()
                for pending in description.raw_description.pending_activities:
                    if pending.HasField("next_attempt_schedule_time") and pending.HasField("last_attempt_complete_time"):
                        pause = (pending.next_attempt_schedule_time.ToDatetime()
                                 - pending.last_attempt_complete_time.ToDatetime()).total_seconds()
                        pauses.setdefault(pending.attempt - 1, set()).add(round(pause, 1))
            return {1, 2} <= set(pauses)

        await wait_for(pauses_after_two_failures_seen, 60, "a pause after a first and a second failure", every=0.2)
        during = await rows_for(database_url, expected)
        assert not sink.keys()
        with SinkServer(sink, host=host, port=port):  # back on the same port
            await wait_for(lambda: followups_sent(client, ids, 1), 50, "every follow-up once SMTP is back")
            after = await rows_for(database_url, expected)

            # A permanent refusal, SMTP up: recorded once as failed, never retried.
            await interviews.start(invitation(refused_id, refused_email, policy))

            async def refusal_seen_by_the_journey() -> bool:
                state = await client.get_workflow_handle(workflow_id(refused_id)).query(InterviewJourney.state_query)
                return any(skip.step == refused_key for skip in state.skips)

            await wait_for(refusal_seen_by_the_journey, 30, "the journey to record the refusal")
            refused = (await rows_for(database_url, [refused_key]))[refused_key]
            history = await client.get_workflow_handle(workflow_id(refused_id)).fetch_history()
            send_attempts = [e.activity_task_started_event_attributes.attempt for e in history.events
                             if e.HasField("activity_task_started_event_attributes")]
            await end_journeys(interviews, ids + [refused_id])

    counts = sink.keys()
    lost, duplicated = delivery_figures(counts, expected)
    print(f"\n[smtp outage] {journeys} sends while SMTP was down: outbox attempts when it came back "
          f"{sorted(r['attempts'] for r in during.values())}, after delivery {sorted(r['attempts'] for r in after.values())}; "
          f"last transient reason {next(iter(during.values()))['reason']!r}; lost {len(lost)}, duplicated {len(duplicated)}")
    print(f"[smtp 5xx] {refused_key}: status {refused['status']}, attempts {refused['attempts']}, "
          f"reason {refused['reason']!r}; activity attempts in the history {send_attempts}; "
          f"deliveries at the sink {counts.get(refused_key, 0)}")
    assert all(r["attempts"] >= 2 for r in after.values()), "the outage was not retried"
    print(f"[smtp outage] pauses after each failed attempt, in seconds: {dict(sorted(pauses.items()))}")
    assert all(abs(pause - 5 * 2 ** (n - 1)) < 0.5 for n, seen in pauses.items() for pause in seen), pauses
    assert not lost, f"lost: {sorted(lost)}"
    assert not duplicated, f"delivered more than once: {duplicated}"
    assert all(r["status"] == "sent" for r in after.values())
    assert (refused["status"], refused["attempts"]) == ("failed", 1)
    assert send_attempts == [1], "the permanent refusal was retried"
    assert refused_key not in counts


# --- 3. PostgreSQL restarts in the middle of a burst ------------------------------------------


async def test_postgres_restart_mid_burst_loses_and_duplicates_nothing(local_env, tmp_path: Path):
    journeys = 40
    run = uuid.uuid4().hex[:8]
    ids = [f"pgrestart-{run}-{n}" for n in range(journeys)]
    expected = {f"interview-{i}/followup-1" for i in ids}
    data = tmp_path / "pg"
    database_url = await asyncio.to_thread(embedded.start_postgres, data, "delete")  # this test's own server
    sink = Sink(delay=0.5)  # a distant server: several messages are mid-DATA at any moment of the burst
    client = local_env.client
    try:
        with SinkServer(sink) as smtp:
            settings = Settings(database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port,
                                temporal_task_queue=f"pgrestart-{run}")
            interviews = Journeys(client, settings, INTERVIEW)
            async with worker.running_worker(settings, client):
                # A burst spread over ~4 s: journey n is due 3 s + n × 0.1 s after its start.
                await asyncio.gather(*(
                    interviews.start(invitation(i, f"{i}@example.com", InterviewPolicyOverrides(
                        followup_after=timedelta(seconds=3 + n * 0.1), max_followups=1,
                        expire_after=timedelta(minutes=10))))
                    for n, i in enumerate(ids)))

                async def burst_at_30_percent() -> bool:
                    return sum(sink.keys().values()) >= 0.3 * journeys

                await wait_for(burst_at_30_percent, 45, "the burst to reach 30 %", every=0.01)
                await asyncio.to_thread(embedded.stop_postgres, data)
                delivered_at_stop = sum(sink.keys().values())
                await asyncio.sleep(2)
                await asyncio.to_thread(embedded.restart_postgres, data)
                delivered_at_restart = sum(sink.keys().values())
                await wait_for(lambda: followups_sent(client, ids, 1), 55, "every follow-up after the restart", every=0.2)
                rows = await rows_for(database_url, expected)
                await end_journeys(interviews, ids)
    finally:
        await asyncio.to_thread(embedded.stop_postgres, data)

    counts = sink.keys()
    lost, duplicated = delivery_figures(counts, expected)
    attempts = Counter(row["attempts"] for row in rows.values())
    resent = sorted(k for k, r in rows.items() if r["reason"] == "sent again after an interrupted attempt")
    print(f"\n[postgres restart] {journeys} sends, PostgreSQL stopped after {delivered_at_stop} deliveries, "
          f"{delivered_at_restart - delivered_at_stop} more accepted by SMTP while it was down; lost {len(lost)}, duplicated {len(duplicated)} "
          f"{sorted(duplicated)}; outbox attempts {dict(sorted(attempts.items()))}; "
          f"recorded as sent again after an interrupted attempt {len(resent)}")
    # PostgreSQL went away mid-burst: some deliveries before, some still to come
    assert 0.3 * journeys <= delivered_at_stop < journeys, delivered_at_stop
    assert not lost, f"lost: {sorted(lost)[:5]}"
    assert len(rows) == len(expected) and all(row["status"] == "sent" for row in rows.values())
    assert not duplicated, f"delivered more than once across a PostgreSQL restart: {duplicated}"


# --- 5. the API under bursts of identical requests --------------------------------------------


async def test_api_bursts_of_duplicate_starts_and_events_apply_once(stack, uid):
    ids, copies = [f"burst-{uid}-{n}" for n in range(10)], 20
    at = (datetime.now(timezone.utc) + timedelta(days=5)).replace(microsecond=0).isoformat()

    def body(interview_id: str) -> dict:
        return {"interview_id": interview_id, "candidate": {"email": f"{interview_id}@example.com", "name": "Cy"},
                "slot_selection_url": f"https://jobs.example.com/slots/{interview_id}"}

    # One connection per request, as 200 separate callers would open: no idle keep-alive connection
    # that the server may close just as it is reused (a client-side race, not the API's).
    limits = httpx.Limits(max_connections=len(ids) * copies, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=60, limits=limits) as http:
        starts = await asyncio.gather(*(http.post("/v1/interviews", json=body(i)) for i in ids for _ in range(copies)))
        confirms = await asyncio.gather(*(
            http.post(f"/v1/interviews/{i}/confirm", json={"scheduled_at": at, "event_id": f"ats-{i}"})
            for i in ids for _ in range(copies)))
        shown = {i: (await http.get(f"/v1/interviews/{i}")).json() for i in ids}
        for i in ids:
            await http.post(f"/v1/interviews/{i}/cancel", json={"reason": "test over"})

    start_codes = {i: Counter(r.status_code for r in starts[n * copies:(n + 1) * copies]) for n, i in enumerate(ids)}
    confirm_codes = Counter(r.status_code for r in confirms)
    invited = {i: {r.json()["state"]["invited_at"] for r in starts[n * copies:(n + 1) * copies]
                   if r.status_code < 300 and r.json().get("state")} for n, i in enumerate(ids)}
    applied = {i: [e for e in shown[i]["state"]["events"] if e["event"] == f"ats-{i}"] for i in ids}
    no_state = sum(1 for r in starts if r.status_code < 300 and r.json().get("state") is None)
    no_outcome = sum(1 for r in confirms if r.status_code < 300 and r.json().get("event") is None)
    runs = {}
    for i in ids:
        runs[i] = len([w async for w in stack.temporal.list_workflows(f"WorkflowId = '{workflow_id(i)}'")])
    print(f"\n[api burst] {len(ids)} ids × {copies} concurrent starts: status codes "
          f"{dict(sum(start_codes.values(), Counter()))}, per id {sorted({tuple(sorted(c.items())) for c in start_codes.values()})}; "
          f"distinct invited_at per id {sorted({len(v) for v in invited.values()})}; runs per id {sorted(set(runs.values()))}; "
          f"× {copies} concurrent confirms with one event_id: status codes {dict(confirm_codes)}, "
          f"outcomes logged per event_id {sorted({len(v) for v in applied.values()})}; answered without a state "
          f"(query timed out) {no_state} starts, without an outcome {no_outcome} confirms")
    failures = [r.text for r in list(starts) + list(confirms) if r.status_code >= 500][:3]
    assert not failures, f"5xx under the burst: {failures}"
    for i in ids:
        assert start_codes[i] == Counter({201: 1, 200: copies - 1}), (i, start_codes[i])
        assert len(invited[i]) == 1, (i, invited[i])  # the first start's invitation, applied once
        assert runs[i] == 1, (i, runs[i])
        assert len(applied[i]) == 1 and applied[i][0]["applied"], (i, applied[i])
        assert shown[i]["state"]["status"] == "scheduled" and shown[i]["state"]["scheduled_at"]
    # 20 concurrent copies of one event per journey exceed Temporal's 10 updates in flight per
    # workflow: a copy that gets no reply in time falls back to a signal and is answered 202
    # (accepted). Either way the event applies once (asserted above), and nothing is a 5xx.
    assert set(confirm_codes) <= {200, 202} and sum(confirm_codes.values()) == len(ids) * copies, confirm_codes
