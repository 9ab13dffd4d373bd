"""kill -9 the worker in the middle of a burst of sends, start it again, count deliveries per key.

The ground truth is the SMTP sink: every key must arrive (none lost). A duplicate is possible in
exactly one window, which SMTP cannot close (RFC 1047): the server accepted the message and the
worker died before recording it. Every duplicate must come from that window, visible in the
outbox as "sent again after an interrupted attempt"; the figures are printed for the README.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg

from settings import Settings
from starter.service import Journeys
from workflows.registry import INTERVIEW
from starter.sink import Sink, SinkServer
from workflows.interview.workflow import InterviewJourney, workflow_id
from workflows.contracts import Recipient
from workflows.interview.models import InterviewEvent, InterviewPolicyOverrides, Invitation, interview_event

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = 60
FOLLOWUPS_EACH = 2


def spawn_worker(settings: Settings, temporal_address: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "FOLLOWUPS_TEMPORAL_ADDRESS": temporal_address,
        "FOLLOWUPS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "FOLLOWUPS_SMTP_HOST": settings.smtp_host or "",
        "FOLLOWUPS_SMTP_PORT": str(settings.smtp_port),
        "FOLLOWUPS_SIGNING_SECRET": "crash-test",
    }
    return subprocess.Popen([sys.executable, "-c", "import worker, asyncio; asyncio.run(worker.main())"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_sigkill_mid_burst_loses_nothing(local_env, database_url):
    sink = Sink(delay=0.02)  # a little latency, like a real server across a network
    run = uuid.uuid4().hex[:8]
    expected = {f"interview-crash-{run}-{n}/followup-{k}" for n in range(JOURNEYS) for k in range(1, FOLLOWUPS_EACH + 1)}
    with SinkServer(sink) as smtp:
        settings = Settings(database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port,
                            temporal_task_queue=f"crash-{run}")
        address = local_env.client.service_client.config.target_host
        proc = spawn_worker(settings, address)
        interviews = Journeys(local_env.client, settings, INTERVIEW)
        policy = InterviewPolicyOverrides(followup_after=timedelta(seconds=4), followup_interval=timedelta(seconds=1),
                                          max_followups=FOLLOWUPS_EACH, expire_after=timedelta(minutes=10))
        await asyncio.gather(*(
            interviews.start(Invitation(
                interview_id=f"crash-{run}-{n}", candidate=Recipient(email=f"c{n}-{run}@example.com", name="C"),
                slot_selection_url="https://jobs.example.com/slots", policy=policy,
            ))
            for n in range(JOURNEYS)
        ))

        async def burst_at_30_percent() -> bool:
            return sum(sink.keys().values()) >= 0.3 * len(expected)

        await wait_for(burst_at_30_percent, 60, "the burst to reach 30 %")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        delivered_at_kill = sum(sink.keys().values())
        await asyncio.sleep(1)
        proc = spawn_worker(settings, address)
        try:
            async def all_followups_done() -> bool:
                for n in range(JOURNEYS):
                    handle = local_env.client.get_workflow_handle(workflow_id(f"crash-{run}-{n}"))
                    if (await handle.query(InterviewJourney.state_query)).followups_sent < FOLLOWUPS_EACH:
                        return False
                return True

            # in-flight sends are retried once their 30 s start-to-close timeout passes
            await wait_for(all_followups_done, 120, "every follow-up to be taken after the restart")
            for n in range(JOURNEYS):
                await interviews.send_event(f"crash-{run}-{n}", interview_event(kind="cancel", reason="test over"))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    counts = sink.keys()
    delivered = {key for key in counts if key in expected}
    lost = expected - delivered
    duplicated = {key: n for key, n in counts.items() if key in expected and n > 1}
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT key, status, reason FROM messages WHERE key = ANY($1::text[])", list(expected))
    finally:
        await conn.close()
    resent = {r["key"] for r in rows if r["reason"] == "sent again after an interrupted attempt"}
    print(f"\ncrash test: {len(expected)} sends, SIGKILL after {delivered_at_kill} deliveries; "
          f"lost {len(lost)}, duplicated {len(duplicated)}, resent after an interrupted attempt {len(resent)}")
    assert not lost, f"lost: {sorted(lost)[:5]}"
    assert all(r["status"] == "sent" for r in rows) and len(rows) == len(expected)
    assert set(duplicated) <= resent, "a duplicate came from outside the one SMTP window"
