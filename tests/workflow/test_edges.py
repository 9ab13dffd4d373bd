"""Every journey at the edges of what the API accepts runs to its end (issue 13): the earliest
moment, the longest durations and the largest counts, on the time-skipping server.
A workflow task that fails on the arithmetic would retry for ever; here it fails the test."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

import worker
from starter.service import Journeys
from tests.workflow.conftest import again, ask, skip_to
from workflows.core.fields import EARLIEST, LONGEST
from workflows.registry import KINDS

LONG = f"P{LONGEST.days}D"
PERSON = {"name": "Edge Case", "email": "edge@example.com", "time_zone": "Pacific/Kiritimati"}


def _starts(uid: str, now: datetime) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(kind, start, events sent once it runs): back-dated to the earliest moment, or spread over the
    longest durations from now. (The latest moments are planned on the dev server, in
    tests/integration/test_hardening.py: this server times a run out after 10 years.)"""
    far = now + LONGEST
    return [
        ("interview", {"interview_id": f"long-{uid}", "candidate": PERSON, "slot_selection_url": "https://e.example/s",
                       "policy": {"followup_after": LONG, "max_followups": 20, "reminder_before": LONG,
                                  "reminder_grace": LONG, "expire_after": LONG}},
         [{"kind": "confirm", "scheduled_at": (far - timedelta(hours=1)).isoformat()}]),
        ("interview", {"interview_id": f"early-{uid}", "candidate": PERSON, "slot_selection_url": "https://e.example/s",
                       "invited_at": EARLIEST.isoformat(), "policy": {"max_followups": 20}}, []),
        ("appointment", {"appointment_id": f"long-{uid}", "patient": PERSON, "doctor": "Dr. Edge",
                         "scheduled_at": (far + timedelta(days=1)).isoformat(),
                         "policy": {"reminder_offsets": [LONG, "PT1S"], "reminder_grace": LONG}}, []),
        ("lead", {"lead_id": f"long-{uid}", "contact": PERSON, "campaign": "edges",
                  "policy": {"steps": [{"after": "PT0S", "template": "lead_welcome"},
                                       {"after": LONG, "template": "lead_final_offer"}], "step_grace": LONG}}, []),
        ("lead", {"lead_id": f"early-{uid}", "contact": PERSON, "campaign": "edges", "started_at": EARLIEST.isoformat(),
                  "policy": {"step_grace": LONG}}, []),
        ("session", {"session_id": f"long-{uid}", "title": "Edge", "starts_at": (now + timedelta(days=2)).isoformat(),
                     "ends_at": (now + timedelta(days=2, hours=1)).isoformat(),
                     "tutor": {**PERSON, "first_session": True}, "attendees": [{"attendee_id": "a1", **PERSON}],
                     "policy": {"reminder_offsets": [LONG, "PT1S"], "reminder_grace": LONG, "feedback_after": LONG,
                                "feedback_window": LONG, "checkin_after": LONG, "stay_open_for": LONG,
                                "fan_out_chunk": 1000}},
         [{"kind": "recording_available", "recording_url": "https://e.example/r"}]),
        ("payment", {"payment_id": f"long-{uid}", "payer": PERSON, "currency": "JPY", "amount": "999999999999",
                     "payment_url": "https://e.example/p",
                     "policy": {"reminder_after": ["P1D", f"P{LONGEST.days - 1}D"], "reminder_grace": LONG,
                                "close_after": LONG}}, []),
        ("payment", {"payment_id": f"early-{uid}", "payer": PERSON, "currency": "EUR", "amount": "1.00",
                     "payment_url": "https://e.example/p", "started_at": EARLIEST.isoformat()}, []),
    ]


@pytest.mark.parametrize("case", range(8), ids=["interview-longest", "interview-earliest", "appointment-longest",
                                                "lead-longest", "lead-earliest", "session-longest", "payment-longest",
                                                "payment-earliest"])
async def test_a_journey_at_the_edges_of_every_bound_runs_to_its_end(ts_env, make_settings, uid, case):
    now = await ts_env.get_current_time()
    name, body, events = _starts(uid, now)[case]
    kind = KINDS[name]
    start = kind.start_model.model_validate(body)  # what the API would accept, validated the same way
    settings = make_settings(dry_run=True)
    async with worker.running_worker(settings, ts_env.client):
        await Journeys(ts_env.client, settings, kind).start_durably(start)
        handle = ts_env.client.get_workflow_handle(kind.workflow_id(kind.entity_id(start)))
        for fields in events:
            await handle.signal("event", kind.event(fields))
        state, between = None, 0
        for _ in range(60):  # from one planned step to the next, however far apart
            state = await ask(handle, kind.workflow.state_query)
            if state.status in kind.closed:
                break
            step = state.next_step
            if step is None:  # caught between two steps (a send or an announcement under way)
                between += 1
                assert between < 50, state
                await asyncio.sleep(0.2)
                continue
            await skip_to(ts_env, max(step.at, await again(ts_env.get_current_time)) + timedelta(seconds=2))
        history = await handle.fetch_history()
        failed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
        assert not failed, failed[0].workflow_task_failed_event_attributes.failure.message
        assert state is not None and state.status in kind.closed, (state.status, state.next_step)
        final = await ts_env.client.get_workflow_handle_for(kind.workflow.run, handle.id).result()
        assert final.status in kind.closed
        assert all(skip.reason for skip in final.skips)
        if name != "interview" and body.get("started_at") == EARLIEST.isoformat():
            assert final.skips, "every step of a journey back-dated to 2000 is past its grace"
