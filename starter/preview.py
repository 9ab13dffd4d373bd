"""`followups preview`: the real workflow on the time-skipping server, rendered, delivered nowhere.

The seed's `--dry-run`, made exact: the timings come from the same code that runs in production,
a week passes in a second, and every message is rendered by the send step in dry-run mode.
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

import asyncpg
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig

from settings import Settings
from starter import embedded
from starter.service import Journeys
from workflows.appointment.models import appointment_event
from workflows.contracts import Recipient
from workflows.core.timing import when
from workflows.interview.models import Invitation, interview_event
from workflows.lead.models import Lead, lead_event
from workflows.appointment.models import Booking
from workflows.registry import APPOINTMENT, INTERVIEW, LEAD, SESSION, JourneyKind
from workflows.session.models import Attendee, ClassSession, Tutor, session_event

PREVIEW_ID = "preview"
EVENT_NUDGE = timedelta(seconds=1)


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
    final_state: Any = None


def _offset(delta: timedelta) -> str:
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


EventAt = tuple[timedelta, Callable[[datetime], Any]]  # (offset from the anchor, anchor -> event)


async def _play(settings: Settings, kind: JourneyKind, make_start: Callable[[datetime], Any],
                events: list[EventAt]) -> Preview:
    """Start one journey at the time-skipping server's now (the anchor), send each event at its
    offset, skip time a day at a time until the journey ends, then read what the send step did."""
    import worker

    tmp = tempfile.mkdtemp(prefix="followups-preview-")  # a throw-away PostgreSQL, deleted at exit
    settings = settings.model_copy(update={
        "database_url": embedded.start_postgres(Path(tmp) / "pg", cleanup="delete"), "smtp_host": "preview.invalid",
        "dry_run": True, "temporal_task_queue": f"preview-{uuid.uuid4().hex[:8]}",
    })
    env = await embedded.start_time_skipping(runtime=_preview_runtime())
    async with env, worker.running_worker(settings, env.client):
        anchor = await env.get_current_time()
        journeys = Journeys(env.client, settings, kind)
        await journeys.start_durably(make_start(anchor))  # signals: updates are unreliable on this server
        handle = env.client.get_workflow_handle(journeys.kind.workflow_id(PREVIEW_ID))
        lines: list[Line] = []
        for at, make_event in sorted(events, key=lambda item: item[0]):
            # A second early: the time-skipping server fails a workflow task that cancels a timer firing
            # while the task runs (the real server retries it), and round offsets often hit a timer.
            remaining = anchor + at - EVENT_NUDGE - await env.get_current_time()
            if remaining > timedelta(0):
                await env.sleep(remaining)
            event = make_event(anchor)
            await handle.signal("event", event)
            scheduled = getattr(event, "scheduled_at", None)
            lines.append(Line(_offset(at), when(anchor + at), event.kind, "event",
                              f"for {when(scheduled)}" if scheduled else ""))
        for _ in range(60):
            if (await handle.query(journeys.kind.workflow.state_query)).status in kind.closed:
                break
            await env.sleep(timedelta(days=1))
        final = env.client.get_workflow_handle_for(journeys.kind.workflow.run, journeys.kind.workflow_id(PREVIEW_ID))
        state = await final.result()  # the journey returns its final state: no query on a closed workflow
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = await conn.fetch("SELECT key, due_at, status, subject, reason FROM messages ORDER BY due_at")
        finally:
            await conn.close()
    for row in rows:
        status = "would send" if row["status"] == "dry_run" else row["status"]
        lines.append(Line(_offset(row["due_at"] - anchor), when(row["due_at"]), row["key"].split("/", 1)[1],
                          status, row["subject"] if row["status"] == "dry_run" else row["reason"] or ""))
    for skip in state.skips:
        if not any(line.step == skip.step.split("/", 1)[1] for line in lines):
            lines.append(Line(_offset(skip.at - anchor), when(skip.at), skip.step.split("/", 1)[1], "skipped",
                              skip.reason))
    lines.sort(key=lambda line: line.at)
    return Preview(lines=lines, final_status=state.status.value, final_state=state)


async def run_interview_preview(scenario: Scenario, settings: Settings) -> Preview:
    """Offsets are from the invitation."""
    def invitation(anchor: datetime) -> Invitation:
        return Invitation(
            interview_id=PREVIEW_ID,
            candidate=Recipient(email="candidate@example.com", name="Alex Candidate", time_zone="Europe/Berlin"),
            invited_at=anchor, slot_selection_url="https://jobs.example.com/slots/preview",
            scheduled_at=anchor + scenario.scheduled_at if scenario.scheduled_at else None, policy=scenario.policy,
        )

    def event(kind: str, scheduled: timedelta | None) -> Callable[[datetime], Any]:
        return lambda anchor: interview_event(kind=kind, scheduled_at=anchor + scheduled if scheduled else None)

    return await _play(settings, INTERVIEW, invitation,
                       [(at, event(kind, scheduled)) for at, kind, scheduled in scenario.events])


async def run_appointment_preview(scenario: Scenario, settings: Settings) -> Preview:
    """Offsets are from the booking; `scenario.scheduled_at` is the appointment (required)."""
    assert scenario.scheduled_at is not None

    def booking(anchor: datetime) -> Booking:
        return Booking(
            appointment_id=PREVIEW_ID,
            patient=Recipient(email="patient@example.com", name="Pat Patient", time_zone="Europe/Berlin"),
            scheduled_at=anchor + scenario.scheduled_at, doctor="Dr. Rivera", clinic="Northside Clinic",
            policy=scenario.policy,
        )

    def event(kind: str, scheduled: timedelta | None) -> Callable[[datetime], Any]:
        return lambda anchor: appointment_event(kind=kind, scheduled_at=anchor + scheduled if scheduled else None)

    return await _play(settings, APPOINTMENT, booking,
                       [(at, event(kind, scheduled)) for at, kind, scheduled in scenario.events])


async def run_lead_preview(scenario: Scenario, settings: Settings) -> Preview:
    """Offsets are from day 0; events are (at, "converted" | "replied" | "cancel", None)."""
    def lead(anchor: datetime) -> Lead:
        return Lead(lead_id=PREVIEW_ID, contact=Recipient(email="lead@example.com", name="Lee Lead"),
                    campaign="preview", company="Acme", offer_url="https://shop.example.com/offer",
                    started_at=anchor, policy=scenario.policy)

    def event(kind: str) -> Callable[[datetime], Any]:
        return lambda anchor: lead_event(kind=kind)

    return await _play(settings, LEAD, lead, [(at, event(kind)) for at, kind, _ in scenario.events])


async def run_session_preview(scenario: Scenario, settings: Settings, attendees: int = 2,
                              first_session: bool = False) -> Preview:
    """Offsets are from the booking of the session; `scenario.scheduled_at` is its start (1 h long).
    Events: (at, "cancel" | "recording_available" | "checkin_negative" | "feedback", None) or
    (at, "reschedule", new start)."""
    assert scenario.scheduled_at is not None
    start_in = scenario.scheduled_at

    def session(anchor: datetime) -> ClassSession:
        return ClassSession(
            session_id=PREVIEW_ID, title="Algebra 1", course="preview", starts_at=anchor + start_in,
            ends_at=anchor + start_in + timedelta(hours=1), join_url="https://lms.example.com/join/preview",
            feedback_url="https://lms.example.com/feedback/preview",
            tutor=Tutor(name="Tom Tutor", email="tutor@example.com", first_session=first_session),
            manager_email="manager@example.com", policy=scenario.policy,
            attendees=[Attendee(attendee_id=f"student-{n}", name=f"Student {n}", email=f"student{n}@example.com",
                                time_zone="Europe/Berlin") for n in range(1, attendees + 1)],
        )

    def event(kind: str, when_: timedelta | None) -> Callable[[datetime], Any]:
        def make(anchor: datetime) -> SessionEvent:
            if kind == "reschedule":
                assert when_ is not None
                return session_event(kind="reschedule", starts_at=anchor + when_,
                                    ends_at=anchor + when_ + timedelta(hours=1))
            if kind == "recording_available":
                return session_event(kind=kind, recording_url="https://lms.example.com/recordings/preview")
            if kind == "checkin_negative":
                return session_event(kind="checkin_answer", ok=False, comment="the students could not hear me")
            if kind == "feedback":
                return session_event(kind="feedback", attendee_id="student-1")
            return session_event(kind=kind)
        return make

    return await _play(settings, SESSION, session,
                       [(at, event(kind, when_)) for at, kind, when_ in scenario.events])
