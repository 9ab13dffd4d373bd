"""A driver for journeys on the time-skipping server: skip to an offset, send events, read state
and what was actually delivered (from the outbox)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from temporalio.service import RPCError, RPCStatusCode

import worker

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


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
        return await self.env.get_current_time()

    async def at(self, offset: timedelta) -> None:
        """Skip time to anchor + offset. The server skips only while no activity runs: a skip over a
        large fan-out waits for its sends, and with three test processes on two cores the call may
        time out; asked again, it skips what is left (twice at most)."""
        assert self.anchor is not None
        for attempt in range(3):
            remaining = self.anchor + offset - await self.now()
            if remaining <= timedelta(0):
                return
            try:
                await self.env.sleep(remaining)
                return
            except RPCError as err:
                if "Timeout expired" not in str(err) or attempt == 2:
                    raise

    async def signal(self, event) -> None:
        await self.client.get_workflow_handle(self.workflow_id).signal(self.journey.event, event)

    async def state(self):
        """The journey's state by query. A query is answered by the worker: with three test processes
        on two cores a busy worker may let one time out, so a timed-out query is asked again (twice)."""
        handle = self.client.get_workflow_handle(self.workflow_id)
        for attempt in range(3):
            try:
                return await handle.query(self.journey.state_query, rpc_timeout=timedelta(seconds=30))
            except RPCError as err:
                if "Timeout expired" not in str(err) or attempt == 2:
                    raise

    async def result(self):
        """Skip time, a day at a time, until the journey ends (at most 30 days)."""
        handle = self.client.get_workflow_handle_for(self.journey.run, self.workflow_id)
        for _ in range(30):
            if (await self.state()).status in self.closed:
                break
            await self.env.sleep(timedelta(days=1))
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
    handle = client.get_workflow_handle(workflow_id)
    try:
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
