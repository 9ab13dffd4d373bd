"""Peer 2, seeds 000/002: a management command run by cron that scans a table for due reminders.

Every PERIOD seconds, on the clock's multiples of it as cron does (`* * * * *`), it selects the rows
due in the window (`due_at <= now() AND due_at > now() - WINDOW AND NOT sent`, seed 002's
10-minute window), and for each one sends the email and then marks the row sent, committing per
row as Django's `save()` does. Nothing else: no lease, no outbox. A row whose email went out but
whose UPDATE did not commit is sent again by the next run; a row whose moment left the window while
nothing ran is never sent.

    python -m bench.peers.polling load DSN TABLE SPEC     # the app's side: one row per reminder
    python -m bench.peers.polling run DSN TABLE           # the scheduled command, forever
"""

from __future__ import annotations

import math
import os
import sys
import time
from datetime import datetime, timezone

import psycopg2

PERIOD = float(os.environ.get("BENCH_POLL_PERIOD", "60"))
WINDOW_MINUTES = 10


def load(dsn: str, table: str, spec: str) -> None:
    conn = psycopg2.connect(dsn, application_name="bench-polling-load")
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"""CREATE TABLE {table} (
                          id serial PRIMARY KEY, key text UNIQUE NOT NULL, n integer NOT NULL,
                          due_at timestamptz NOT NULL, sent boolean NOT NULL DEFAULT false, sent_at timestamptz)""")
        cur.execute(f"CREATE INDEX ON {table} (sent, due_at)")
        with open(spec) as rows:
            tsv = "".join(f"{key}\t{n}\t{datetime.fromtimestamp(float(due), timezone.utc).isoformat()}\n"
                          for key, due, n in (line.rstrip("\n").split("\t") for line in rows))
        import io

        cur.copy_from(io.StringIO(tsv), table, columns=("key", "n", "due_at"))
    conn.close()
    print("loaded", flush=True)


def run_once(conn, table: str, host: str, port: int) -> int:
    from bench.peers import message

    with conn.cursor() as cur:
        cur.execute(f"""SELECT id, key, due_at, n FROM {table}
                        WHERE due_at <= now() AND due_at > now() - interval '{WINDOW_MINUTES} minutes' AND NOT sent
                        ORDER BY due_at""")
        rows = cur.fetchall()
    for row_id, key, due_at, n in rows:
        message.send(host, port, key, due_at, n)
        with conn.cursor() as cur:
            cur.execute(f"UPDATE {table} SET sent = true, sent_at = now() WHERE id = %s", (row_id,))
    return len(rows)


def run(dsn: str, table: str) -> None:
    host, port = os.environ["BENCH_SMTP_HOST"], int(os.environ["BENCH_SMTP_PORT"])
    conn = psycopg2.connect(dsn, application_name="bench-polling")
    conn.autocommit = True  # Django's default: every save() commits
    while True:
        now = time.time()
        time.sleep(math.floor(now / PERIOD + 1) * PERIOD - now)  # cron: on the period's clock ticks
        started = time.time()
        sent = run_once(conn, table, host, port)
        print(f"{datetime.now(timezone.utc):%H:%M:%S} sent {sent} in {time.time() - started:.1f} s", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(*sys.argv[2:5])
    elif sys.argv[1] == "run":
        run(*sys.argv[2:4])
    else:
        raise SystemExit(__doc__)
