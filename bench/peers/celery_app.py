"""Peer 1, seeds 001/004: Celery 5 on Redis, one ETA task per reminder.

Configured as the seeds configure it: a broker URL and a result backend on the same Redis, and
nothing else, so Celery's defaults hold: `task_acks_late=False` (a task is acked when it starts),
`worker_prefetch_multiplier=4` (ETA tasks are fetched at once and held in the worker's memory,
unacked, until due), the Redis transport's `visibility_timeout` of 1 hour (an unacked message is
given back to another worker only after that), prefork pool with one process per core. The task
retries on SMTP trouble like seed 004's (3 retries, 60 s apart).

    BENCH_BROKER_URL=redis://... celery -A bench.peers.celery_app worker -l info   # the worker
    python -m bench.peers.celery_app enqueue SPEC                                     # the app's side
"""

from __future__ import annotations

import os
import smtplib
import sys
from datetime import datetime, timezone

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench_reminders", broker=BROKER, backend=BROKER)
app.conf.update(broker_connection_retry_on_startup=True)  # silences a 5.x deprecation warning only


@app.task(name="send_reminder", autoretry_for=(smtplib.SMTPException, OSError), max_retries=3,
          default_retry_delay=60)
def send_reminder(key: str, due_at: str, n: int) -> None:
    from bench.peers import message

    message.send(os.environ["BENCH_SMTP_HOST"], int(os.environ["BENCH_SMTP_PORT"]), key, due_at, n)


def enqueue(spec: str) -> None:
    """What the app does when a booking is made: `apply_async(eta=due)`, one task per reminder."""
    count = 0
    with open(spec) as lines:
        for line in lines:
            key, due, n = line.rstrip("\n").split("\t")
            due_at = datetime.fromtimestamp(float(due), timezone.utc)
            send_reminder.apply_async((key, due_at.isoformat(), int(n)), eta=due_at)
            count += 1
    print(f"enqueued {count}", flush=True)


if __name__ == "__main__":
    assert sys.argv[1] == "enqueue", "usage: python -m bench.peers.celery_app enqueue SPEC"
    enqueue(sys.argv[2])
