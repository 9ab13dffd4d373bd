"""`followups preview`: the real workflow on the time-skipping server, rendered, delivered nowhere.

The seed's `--dry-run`, made exact: the timings come from the same code that runs in production,
a week passes in a second, and every message is rendered by the send step in dry-run mode. Any
kind with a `preview` sample in the registry can be played: its sample start, the user's fields
over it, and events at offsets from the anchor (the moment the journey starts).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig

from settings import Settings
from workflows.core.timing import when
from workflows.registry import JourneyKind, PreviewSample

PREVIEW_ID = "preview"
EVENT_NUDGE = timedelta(seconds=1)
PLAY_DAYS = 60  # a journey still running after this is shown as it is then


@dataclass(frozen=True)
class Later:
    """A time given as an offset from the anchor, which is known only once the server runs."""

    delta: timedelta

    def __add__(self, other: timedelta) -> Later:
        return Later(self.delta + other)


def at_anchor(value: Any, anchor: datetime) -> Any:
    """`value` with every `Later` in it made a time."""
    if isinstance(value, Later):
        return anchor + value.delta
    if isinstance(value, dict):
        return {key: at_anchor(item, anchor) for key, item in value.items()}
    if isinstance(value, list):
        return [at_anchor(item, anchor) for item in value]
    return value


def _over(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, nested objects merged (a given `tutor.first_session` keeps the sample tutor)."""
    merged = dict(base)
    for key, value in top.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _over(merged[key], value) if nested else value
    return merged


@dataclass
class Scenario:
    """One journey to play: the kind's sample start with `start` over it, and events, each
    (offset from the anchor, event kind, the fields given; the sample fills what it needs more)."""

    kind: JourneyKind
    start: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[timedelta, str, dict[str, Any]]] = field(default_factory=list)
    service: Callable[..., Any] | None = None  # (client, settings, kind) → its Journeys; default: Journeys

    @property
    def sample(self) -> PreviewSample:
        if self.kind.preview is None:
            raise ValueError(f"{self.kind.name} has no preview sample in the registry")
        return self.kind.preview

    def start_at(self, anchor: datetime) -> BaseModel:
        body = _over(self.sample.start(anchor), at_anchor(self.start, anchor))
        return self.kind.start_model.model_validate({**body, self.kind.id_field: PREVIEW_ID})

    def event_at(self, event_kind: str, fields: dict[str, Any], anchor: datetime) -> BaseModel:
        given = at_anchor(fields, anchor)
        fill = self.sample.events.get(event_kind)
        return self.kind.event({**(fill(given) if fill else {}), **given, "kind": event_kind})


@dataclass
class Line:
    offset: str
    at: str
    step: str
    status: str
    text: str


@dataclass
class Preview:
    lines: list[Line]
    final_status: str
    final_state: Any = None
    ended: bool = True


def offset(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f}h" if hours < 48 else f"{hours / 24:.2f}d"


class WithoutHeartbeatCapabilityWarning(logging.Filter):
    """Core warns, once per worker, that the server did not advertise the
    activity_failure_include_heartbeat capability: the time-skipping test server never does, and it
    costs nothing here (no activity heartbeats). Every other line Core logs still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "activity_failure_include_heartbeat" not in record.getMessage()


CORE_LOG = logging.getLogger("followups.preview.temporal")
CORE_LOG.addFilter(WithoutHeartbeatCapabilityWarning())


def _preview_runtime() -> Runtime:
    """The default runtime's logging (Core at WARN, the rest at ERROR), but forwarded to CORE_LOG
    instead of written to stderr by Core itself, so that one known line can be dropped."""
    forwarded = LoggingConfig(filter=LoggingConfig.default.filter, forwarding=LogForwardingConfig(logger=CORE_LOG))
    return Runtime(telemetry=TelemetryConfig(logging=forwarded))


async def play(scenario: Scenario, settings: Settings) -> Preview:
    """Start one journey at the time-skipping server's now (the anchor), send each event at its
    offset, skip time a day at a time until the journey ends, then read what the send step did."""
    import asyncpg

    import worker
    from starter import embedded
    from starter.service import Journeys

    kind = scenario.kind
    tmp = tempfile.mkdtemp(prefix="followups-preview-")  # a throw-away PostgreSQL, deleted at exit
    settings = settings.model_copy(update={
        "database_url": embedded.start_postgres(Path(tmp) / "pg", cleanup="delete"), "smtp_host": "preview.invalid",
        "dry_run": True, "temporal_task_queue": f"preview-{uuid.uuid4().hex[:8]}",
    })
    env = await embedded.start_time_skipping(runtime=_preview_runtime())
    async with env, worker.running_worker(settings, env.client):
        anchor = await env.get_current_time()
        journeys = (scenario.service or Journeys)(env.client, settings, kind)
        await journeys.start_durably(scenario.start_at(anchor))  # signals: updates are unreliable on this server
        handle = env.client.get_workflow_handle(kind.workflow_id(PREVIEW_ID))
        lines: list[Line] = []
        state = None
        for at, event_kind, fields in sorted(scenario.events, key=lambda item: item[0]):
            # A second early: the time-skipping server fails a workflow task that cancels a timer firing
            # while the task runs (the real server retries it), and round offsets often hit a timer.
            remaining = anchor + at - EVENT_NUDGE - await env.get_current_time()
            if remaining > timedelta(0):
                await env.sleep(remaining)
            event = scenario.event_at(event_kind, fields, anchor)
            await handle.signal("event", event)
            moment = next((value for _, value in event if isinstance(value, datetime)), None)
            lines.append(Line(offset(at), when(anchor + at), event.kind, "event",
                              f"for {when(moment)}" if moment else ""))
        for _ in range(PLAY_DAYS):
            if (await handle.query(kind.workflow.state_query)).status in kind.closed:
                break
            await env.sleep(timedelta(days=1))
        else:  # still running (an appointment in a year): what it did so far
            state = await handle.query(kind.workflow.state_query)
        if state is None or state.status in kind.closed:
            final = env.client.get_workflow_handle_for(kind.workflow.run, kind.workflow_id(PREVIEW_ID))
            state = await final.result()  # the journey returns its final state: no query on a closed workflow
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch("SELECT key, due_at, status, subject, reason FROM messages ORDER BY due_at")
        finally:
            await conn.close()
    for row in rows:
        status = "would send" if row["status"] == "dry_run" else row["status"]
        lines.append(Line(offset(row["due_at"] - anchor), when(row["due_at"]), row["key"].split("/", 1)[1],
                          status, row["subject"] if row["status"] == "dry_run" else row["reason"] or ""))
    for skip in state.skips:
        if not any(line.step == skip.step.split("/", 1)[1] for line in lines):
            lines.append(Line(offset(skip.at - anchor), when(skip.at), skip.step.split("/", 1)[1], "skipped",
                              skip.reason))
    lines.sort(key=lambda line: line.at)
    return Preview(lines=lines, final_status=state.status.value, final_state=state, ended=state.status in kind.closed)
