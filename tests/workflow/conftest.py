"""A driver for journeys on the time-skipping server: skip to an offset, send events, read state
and what was actually delivered (from the outbox)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

import worker

HISTORIES = Path(__file__).resolve().parent.parent / "histories"

# The time-skipping server skips only while no activity or workflow task is outstanding, so on a
# loaded machine one skip can take minutes of real time: it gets 5 (the client's default is 30 s).
# A call that fails in transport ("h2 protocol error", a timeout) changed nothing the test relies
# on, so it is asked again, with what is left of the skip (three times at most).
SKIP_RPC_TIMEOUT = timedelta(minutes=5)
QUERY_RPC_TIMEOUT = timedelta(seconds=60)
TRANSIENT = ("timeout expired", "h2 protocol error", "transport error", "connection reset", "broken pipe")


def transient(err: RPCError) -> bool:
    message = str(err).lower()
    return err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED) or any(
        text in message for text in TRANSIENT)


async def again(call, attempts: int = 3):
    """`await call()`, asked again after a transient transport failure."""
    for attempt in range(attempts):
        try:
            return await call()
        except RPCError as err:
            if not transient(err) or attempt == attempts - 1:
                raise


async def skip_to(env, until: datetime) -> None:
    """Move the test server's clock to `until` (nothing if it is already there)."""
    async def skip() -> None:
        remaining = until - await env.get_current_time()
        if remaining > timedelta(0):
            request = SleepRequest()
            request.duration.FromTimedelta(remaining)
            await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SKIP_RPC_TIMEOUT)

    await again(skip)


async def skip_by(env, duration: timedelta) -> None:
    await skip_to(env, await again(env.get_current_time) + duration)


async def ask(handle, query):
    """A query, answered by a worker that may be busy: asked again after a transient failure."""
    return await again(lambda: handle.query(query, rpc_timeout=QUERY_RPC_TIMEOUT))


class Driver:
    journey: type  # the workflow class
    closed: frozenset
    prefix: str  # workflow id = f"{prefix}-{entity_id}"
    records_history = True  # False: a driver that only sets the scene (its journey is not the scenario)

    def __init__(self, env, settings, entity_id: str, database_url: str) -> None:
        self.env, self.settings, self.entity_id, self.database_url = env, settings, entity_id, database_url
        self.client = env.client
        self.anchor: datetime | None = None  # offsets are measured from here (the invite, the booking…)

    @property
    def workflow_id(self) -> str:
        return f"{self.prefix}-{self.entity_id}"

    async def now(self) -> datetime:
        return await again(self.env.get_current_time)

    async def at(self, offset: timedelta) -> None:
        """Skip time to anchor + offset."""
        assert self.anchor is not None
        await skip_to(self.env, self.anchor + offset)

    async def signal(self, event) -> None:
        await self.client.get_workflow_handle(self.workflow_id).signal(self.journey.event, event)

    async def state(self):
        """The journey's state by query."""
        return await ask(self.client.get_workflow_handle(self.workflow_id), self.journey.state_query)

    async def result(self):
        """Skip time, a day at a time, until the journey ends (at most 30 days)."""
        handle = self.client.get_workflow_handle_for(self.journey.run, self.workflow_id)
        for _ in range(30):
            if (await self.state()).status in self.closed:
                break
            await skip_by(self.env, timedelta(days=1))
        return await handle.result()

    async def sent(self) -> list[tuple[str, timedelta]]:
        """(key suffix, due at − anchor, to the second) for every message actually delivered.
        A follow-up keeps ≥ interval from the previous *send*, which fired some ms after its due time."""
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch(
                "SELECT key, due_at FROM messages WHERE journey = $1 AND entity_id = $2 AND status = 'sent' "
                "ORDER BY due_at, key",
                self.prefix, self.entity_id,
            )
        finally:
            await conn.close()
        assert self.anchor is not None
        return [(r["key"].split("/", 1)[1], timedelta(seconds=round((r["due_at"] - self.anchor).total_seconds())))
                for r in rows]


async def _terminate_if_running(client, workflow_id: str) -> None:
    """Terminate a journey the test left running, once the worker has answered a query (so no
    workflow task of it is in flight): the time-skipping server locks its clock while a task runs
    and, when the task's completion finds the run terminated ("Task not found"), never unlocks it, so
    every later skip on that server stalls (the server does not show the task in a describe)."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        described = await client.workflow_service.describe_workflow_execution(DescribeWorkflowExecutionRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)))
        if described.workflow_execution_info.status != WorkflowExecutionStatus.RUNNING:
            return
        await ask(handle, "__stack_trace")
        await handle.terminate("test finished")
    except RPCError as err:  # NOT_FOUND: it had already ended, as most do
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


def driver_fixture(driver_class: type[Driver], settings_from=None):
    """`settings_from(request)` may return settings overrides (e.g. a webhook URL from a fixture)."""

    @pytest.fixture
    async def fixture(ts_env, make_settings, uid, database_url, request):
        settings = make_settings(**(settings_from(request) if settings_from else {}))
        async with worker.running_worker(settings, ts_env.client):
            driver = driver_class(ts_env, settings, f"{driver_class.prefix[:2]}-{uid}", database_url)
            yield driver
            if os.environ.get("FOLLOWUPS_RECORD_HISTORIES") and driver.records_history:
                # `FOLLOWUPS_RECORD_HISTORIES=1 pytest tests/workflow` refreshes tests/histories/ for the
                # replay test; only new files are written: old ones are the histories sleeping journeys have.
                # FOLLOWUPS_RECORD_SUFFIX=@name records every scenario again beside them, after a
                # patched change (e.g. `@local-send`: the send step as a local activity).
                suffix = os.environ.get("FOLLOWUPS_RECORD_SUFFIX", "")
                target = HISTORIES / f"{driver_class.prefix}-{request.node.name.removeprefix('test_')}{suffix}.json"
                if not target.exists():
                    history = await ts_env.client.get_workflow_handle(driver.workflow_id).fetch_history()
                    target.write_text(history.to_json())
            # A journey left running would hold the shared time-skipping server's clock: its next timer
            # schedules a workflow task nobody polls once this worker is gone, and time stops skipping.
            await _terminate_if_running(ts_env.client, driver.workflow_id)

    return fixture
