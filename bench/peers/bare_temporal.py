"""The bare-Temporal peer: what a Followups reminder costs with nothing of Followups around it.

One workflow per reminder, started with one `start_workflow`: it sleeps until the due moment, runs
one activity that renders and sends the same message as every peer (bench/peers/message.py, so the
sink reads the same X-Followups-Key) over aiosmtplib, then sleeps on until the appointment (due +
1 h) so it stays open as a Followups journey does. SDK defaults (data converter, retry policy,
worker slots and cache) but one: like Followups' worker, the sandbox passes `bench` through, so
this module is imported once, not again for every workflow (measured on a busy machine: 3.6
instead of 6.4 ms of worker CPU per start). No database, no outbox, no search attributes.

Its SMTP sessions are kept open and reused, up to 10 idle (Followups' `smtp_pool_size` default): the
ratio to bare should measure what Followups adds around Temporal, not TCP and EHLO per message.

    BENCH_SMTP_HOST=... BENCH_SMTP_PORT=... python -m bench.peers.bare_temporal worker ADDRESS QUEUE
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import aiosmtplib

    from bench.peers import message

START_TO_CLOSE = timedelta(seconds=30)  # Followups' send timeout: after a crash both retry as late
APPOINTMENT_AFTER = timedelta(hours=1)
IDLE_CONNECTIONS = 10


@dataclass(frozen=True)
class Reminder:
    key: str
    n: int
    due_at: str  # ISO 8601, UTC: the default converter's dataclass fields stay plain JSON


def workflow_id(prefix: str, i: int) -> str:
    return f"bare-{prefix}-{i}"


class Smtp:
    """Open sessions to the sink, reused by the next send; a failed one is dropped, not reused."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[aiosmtplib.SMTP] = []

    async def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        smtp = self.idle.pop() if self.idle else None
        if smtp is None or not smtp.is_connected:
            smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=30)
            await smtp.connect()
        try:
            await smtp.sendmail(sender, recipients, data)
        except BaseException:
            smtp.close()
            raise
        if len(self.idle) < IDLE_CONNECTIONS:
            self.idle.append(smtp)
        else:
            smtp.close()


class Sends:
    def __init__(self, smtp: Smtp) -> None:
        self.smtp = smtp

    @activity.defn(name="send_reminder")
    async def send_reminder(self, reminder: Reminder) -> None:
        out = message.reminder(reminder.key, datetime.fromisoformat(reminder.due_at), reminder.n)
        await self.smtp.send(out.sender, out.recipients, out.data)


@workflow.defn(name="BareReminder")
class BareReminder:
    @workflow.run
    async def run(self, reminder: Reminder) -> None:
        due = datetime.fromisoformat(reminder.due_at)
        await _sleep_until(due)
        await workflow.execute_activity("send_reminder", reminder, start_to_close_timeout=START_TO_CLOSE)
        await _sleep_until(due + APPOINTMENT_AFTER)


async def _sleep_until(moment: datetime) -> None:
    # a journey whose first task runs after its moment (a backlog) sends at once
    wait = moment - workflow.now()
    if wait > timedelta(0):
        await workflow.sleep(wait)


def reminder(key: str, n: int, due: float) -> Reminder:
    return Reminder(key, n, datetime.fromtimestamp(due, timezone.utc).isoformat())


async def serve(address: str, task_queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    client = await Client.connect(address)
    sends = Sends(Smtp(os.environ["BENCH_SMTP_HOST"], int(os.environ["BENCH_SMTP_PORT"])))
    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("bench"))
    async with Worker(client, task_queue=task_queue, workflows=[BareReminder], activities=[sends.send_reminder],
                      workflow_runner=runner):
        await asyncio.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "worker":
        raise SystemExit(__doc__)
    asyncio.run(serve(sys.argv[2], sys.argv[3]))
