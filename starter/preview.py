"""`followups preview`: the real workflow on the time-skipping server, rendered, delivered nowhere.

The seed's `--dry-run`, made exact: the timings come from the same code that runs in production,
a week passes in a second, and every message is rendered by the send step in dry-run mode.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from settings import Settings
from starter import embedded
from workflows.blocks import when
from workflows.interview import InterviewJourney, workflow_id
from workflows.models import CLOSED_STATUSES, Invitation, InterviewEvent, InterviewState, Recipient


@dataclass
class Scenario:
    scheduled_at: timedelta | None = None
    events: list[tuple[timedelta, str, timedelta | None]] = field(default_factory=list)  # (at, kind, scheduled)
    policy: dict[str, Any] = field(default_factory=dict)


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
    final_state: InterviewState | None = None


def _offset(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f}h" if hours < 48 else f"{hours / 24:.2f}d"


async def run_interview_preview(scenario: Scenario, settings: Settings) -> Preview:
    import worker

    tmp = tempfile.mkdtemp(prefix="followups-preview-")  # a throw-away PostgreSQL, deleted at exit
    settings = settings.model_copy(update={
        "database_url": embedded.start_postgres(Path(tmp) / "pg", cleanup="delete"), "smtp_host": "preview.invalid", "dry_run": True,
        "temporal_task_queue": f"preview-{uuid.uuid4().hex[:8]}",
    })
    env = await embedded.start_time_skipping()
    async with env, worker.running_worker(settings, env.client):
        invited_at = await env.get_current_time()
        interview_id = "preview"
        invitation = Invitation(
            interview_id=interview_id,
            candidate=Recipient(email="candidate@example.com", name="Alex Candidate", time_zone="Europe/Berlin"),
            invited_at=invited_at, slot_selection_url="https://jobs.example.com/slots/preview",
            scheduled_at=invited_at + scenario.scheduled_at if scenario.scheduled_at else None,
            policy=scenario.policy,
        )
        from starter.service import Interviews

        await Interviews(env.client, settings).start(invitation)
        handle = env.client.get_workflow_handle_for(InterviewJourney.run, workflow_id(interview_id))
        lines: list[Line] = []
        for at, kind, scheduled in scenario.events:
            remaining = invited_at + at - await env.get_current_time()
            if remaining > timedelta(0):
                await env.sleep(remaining)
            event = InterviewEvent(kind=kind, scheduled_at=invited_at + scheduled if scheduled else None)
            await handle.signal(InterviewJourney.event, event)
            lines.append(Line(_offset(at), when(invited_at + at), kind, "event",
                              f"for {when(event.scheduled_at)}" if event.scheduled_at else ""))
        for _ in range(60):
            state = await handle.query(InterviewJourney.state_query)
            if state.status in CLOSED_STATUSES:
                break
            await env.sleep(timedelta(days=1))
        state = await handle.result()
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch("SELECT key, due_at, status, subject, reason FROM messages ORDER BY due_at")
        finally:
            await conn.close()
    for row in rows:
        status = "would send" if row["status"] == "dry_run" else row["status"]
        lines.append(Line(_offset(row["due_at"] - invited_at), when(row["due_at"]), row["key"].split("/", 1)[1],
                          status, row["subject"] if row["status"] == "dry_run" else row["reason"] or ""))
    for skip in state.skips:
        if not any(line.step == skip.step.split("/", 1)[1] for line in lines):
            lines.append(Line(_offset(skip.at - invited_at), when(skip.at), skip.step.split("/", 1)[1], "skipped",
                              skip.reason))
    lines.sort(key=lambda line: line.at)
    return Preview(lines=lines, final_status=state.status.value, final_state=state)
