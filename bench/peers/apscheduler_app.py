"""Peer 3, seed 003: APScheduler 3.x, one DateTrigger job per reminder in a persistent
SQLAlchemyJobStore (on the same PostgreSQL, through psycopg2).

Seed 003 runs a BackgroundScheduler inside its Flask app with APScheduler's defaults and names no
job store; a persistent one is what a reminder needs to survive a restart, so here it is
SQLAlchemy's. Everything else is APScheduler's default: a ThreadPoolExecutor of 10 threads,
`misfire_grace_time=1` s (a job that starts more than 1 s after its moment is skipped and logged
as missed, also when the pool was merely busy), `coalesce=False`. A due job is removed from the
store when it is handed to the pool, before it runs.

APScheduler 3 does not notice jobs another process adds to its store while it sleeps, so the app's
side adds them before the scheduler process starts:

    python -m bench.peers.apscheduler_app load URL TABLE SPEC   # add_job(date) per reminder
    python -m bench.peers.apscheduler_app run URL TABLE         # the scheduler, forever
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler


def send_reminder(key: str, due_at: str, n: int) -> None:
    from bench.peers import message

    message.send(os.environ["BENCH_SMTP_HOST"], int(os.environ["BENCH_SMTP_PORT"]), key, due_at, n)


def jobstore(url: str, table: str) -> SQLAlchemyJobStore:
    return SQLAlchemyJobStore(url=url, tablename=table)


def load(url: str, table: str, spec: str) -> None:
    scheduler = BackgroundScheduler(jobstores={"default": jobstore(url, table)}, timezone=timezone.utc)
    scheduler.start(paused=True)  # paused: stores the jobs, runs none
    scheduler.remove_all_jobs()
    count = 0
    with open(spec) as lines:
        for line in lines:
            key, due, n = line.rstrip("\n").split("\t")
            due_at = datetime.fromtimestamp(float(due), timezone.utc)
            scheduler.add_job(send_reminder, "date", run_date=due_at, args=(key, due_at.isoformat(), int(n)), id=key)
            count += 1
    scheduler.shutdown(wait=False)
    print(f"loaded {count}", flush=True)


def run(url: str, table: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    scheduler = BlockingScheduler(jobstores={"default": jobstore(url, table)}, timezone=timezone.utc)
    scheduler.start()


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(*sys.argv[2:5])
    elif sys.argv[1] == "run":
        run(*sys.argv[2:4])
    else:
        raise SystemExit(__doc__)
