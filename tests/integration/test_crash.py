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


def spawn_worker(settings: Settings, temporal_address: str, log: Path) -> subprocess.Popen:
    """The worker in its own process; what it prints goes to `log` (a pipe nobody reads would fill
    and block a chatty worker), shown when the test fails."""
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
                            cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class KillingSink(Sink):
    """The sink that pulls the trigger: on the DATA that brings deliveries to `kill_at`, it SIGKILLs
    the worker before answering, so the kill lands mid-burst and mid-send by construction."""

    kill_at: int = 0
    victim: subprocess.Popen | None = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        if self.victim is not None and len(self.messages) + 1 >= self.kill_at:
            self.victim.send_signal(signal.SIGKILL)
            self.victim = None
        return await super().handle_DATA(server, session, envelope)


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


async def test_sigkill_mid_burst_loses_nothing(local_env, database_url, tmp_path):
    sink = KillingSink(delay=0.02)  # a little latency, like a real server across a network
    run = uuid.uuid4().hex[:8]
    expected = {f"interview-crash-{run}-{n}/followup-{k}" for n in range(JOURNEYS) for k in range(1, FOLLOWUPS_EACH + 1)}
    with SinkServer(sink) as smtp:
        settings = Settings(database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port,
                            temporal_task_queue=f"crash-{run}")
        address = local_env.client.service_client.config.target_host
        log = tmp_path / "worker.log"
        proc = spawn_worker(settings, address, log)
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

        sink.kill_at, sink.victim = int(0.3 * len(expected)), proc

        async def worker_killed() -> bool:
            return proc.poll() is not None

        await wait_for(worker_killed, 60, f"the burst to reach 30 % (worker log:\n{tail(log)})")
        assert proc.returncode == -signal.SIGKILL, tail(log)
        conn = await asyncpg.connect(database_url)
        try:  # nothing writes now: these rows were mid-send when the worker died
            sending_at_kill = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE key = ANY($1::text[]) AND status = 'sending'", list(expected))
        finally:
            await conn.close()
        delivered_at_kill = sum(sink.keys().values())
        await asyncio.sleep(1)
        proc = spawn_worker(settings, address, log)
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
    print(f"\ncrash test: {len(expected)} sends, SIGKILL after {delivered_at_kill} deliveries with "
          f"{sending_at_kill} mid-send; "
          f"lost {len(lost)}, duplicated {len(duplicated)}, resent after an interrupted attempt {len(resent)}")
    # the kill came mid-burst, and mid-send: at least the message whose DATA pulled the trigger
    assert 0 < delivered_at_kill < len(expected) and sending_at_kill >= 1, (delivered_at_kill, sending_at_kill)
    assert not lost, f"lost: {sorted(lost)[:5]}"
    assert all(r["status"] == "sent" for r in rows) and len(rows) == len(expected)
    assert set(duplicated) <= resent, "a duplicate came from outside the one SMTP window"
    # only a message in flight at the kill can go out twice, and only twice
    assert len(duplicated) <= sending_at_kill and all(n == 2 for n in duplicated.values()), duplicated
