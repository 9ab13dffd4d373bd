"""Events as Temporal Updates, end to end on the real dev server: every kind's start and events
through the API leave histories that replay on today's code (recorded beside the signal-era ones
with FOLLOWUPS_RECORD_HISTORIES=1), and with no worker up a start and an event are accepted (202),
then applied exactly once when a worker arrives."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import uvicorn
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

import worker
from settings import Settings
from starter.api import create_app
from starter.sink import free_port
from workflows.registry import KINDS

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


def soon(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def start_body(kind: str, uid: str) -> dict:
    person = {"email": f"{kind}-{uid}@example.test", "name": "Pat Example"}
    return {
        "interview": {"interview_id": uid, "candidate": person, "slot_selection_url": "https://jobs.example.com/s/1"},
        "appointment": {"appointment_id": uid, "patient": person, "scheduled_at": soon(3600), "doctor": "Dr. Rivera"},
        "lead": {"lead_id": uid, "contact": person, "campaign": "spring"},
        "session": {"session_id": uid, "title": "Algebra 1", "starts_at": soon(3600), "ends_at": soon(7200),
                    "tutor": {"name": "Tom", "email": f"tutor-{uid}@example.test"},
                    "attendees": [{"attendee_id": "ann", "name": "Ann", "email": f"ann-{uid}@example.test"}]},
        "payment": {"payment_id": uid, "payer": person, "amount": "49.90", "currency": "EUR",
                    "payment_url": "https://pay.example.com/1"},
        "tutor": {"tutor_id": uid, "tutor": person, "manager_email": f"manager-{uid}@example.test"},
        "onboarding": {"onboarding_id": uid, "student": person, "login_url": "https://lms.example.com/login",
                       "approved_by": {"email": f"admin-{uid}@example.test", "name": "Ada Admin"},
                       "policy": {"undo_window": "PT1H"}},  # so that the cancel comes before any step
    }[kind]


# Two events per kind: one that changes the plan (or the roster), then one that ends the journey.
EVENTS = {
    "interview": [("confirm", {"scheduled_at": soon(7200)}), ("cancel", {"reason": "filled"})],
    "appointment": [("confirm", {}), ("cancel", {"notify": False})],
    "lead": [("converted", {"reference": "order-1"})],
    "session": [("attendees", {"attendee": {"attendee_id": "bob", "name": "Bob", "email": "bob@example.test"}}),
                ("cancel", {"notify": False})],
    "payment": [("paid", {"reference": "ch_1"})],
    "tutor": [("rescheduled", {"session_id": "s-1"}), ("close", {"reason": "left"})],
    "onboarding": [("cancel", {"reason": "approved by mistake"})],
}


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_every_kind_through_updates_leaves_a_history_that_replays(stack, kind):
    uid = f"up-{uuid.uuid4().hex[:10]}"
    journey = KINDS[kind]
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as http:
        started = await http.post(f"/v1/{journey.plural}", json=start_body(kind, uid))
        assert started.status_code == 201, started.text
        for path, body in EVENTS[kind]:
            answer = await http.post(f"/v1/{journey.plural}/{uid}/{path}", json=body)
            assert answer.status_code == 200 and answer.json()["event"]["code"] == "applied", answer.text
    handle = stack.temporal.get_workflow_handle(journey.workflow_id(uid))
    await asyncio.wait_for(handle.result(), 30)
    history = await handle.fetch_history()
    accepted = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    assert len(accepted) == 1 + len(EVENTS[kind])  # the start and each event went in as updates
    replayer = Replayer(workflows=worker.WORKFLOWS, data_converter=pydantic_data_converter,
                        workflow_runner=worker.RUNNER)
    await replayer.replay_workflow(history)
    if os.environ.get("FOLLOWUPS_RECORD_HISTORIES"):
        target = HISTORIES / f"{kind}-started_and_steered_through_the_api@updates.json"
        if not target.exists():
            target.write_text(history.to_json())


async def test_with_no_worker_a_start_and_an_event_are_accepted_then_applied_once(local_env, database_url, smtp):
    port, uid = free_port(), f"nw-{uuid.uuid4().hex[:10]}"
    settings = Settings(database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port, api_port=port,
                        temporal_task_queue=f"noworker-{uuid.uuid4().hex[:8]}", signing_secret="test-secret",
                        api_keys=["test-key"], public_base_url=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(create_app(settings, client=local_env.client), host="127.0.0.1",
                                           port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer test-key"},
                                     timeout=30) as http:
            started = await http.post("/v1/interviews", json=start_body("interview", uid))
            assert started.status_code == 202 and started.json()["accepted"] is True, started.text
            assert started.json()["state"] is None
            at = soon(7200)
            confirmed = await http.post(f"/v1/interviews/{uid}/confirm", json={"scheduled_at": at, "event_id": "c-1"})
            assert confirmed.status_code == 202 and confirmed.json()["event"] is None, confirmed.text

            async with worker.running_worker(settings, local_env.client):  # the worker arrives
                for _ in range(300):
                    view = (await http.get(f"/v1/interviews/{uid}")).json()
                    if view.get("state") and view["state"]["status"] == "scheduled":
                        break
                    await asyncio.sleep(0.1)
                state = view["state"]
                assert state["status"] == "scheduled" and state["scheduled_at"] is not None, view
                # the timed-out update and the fallback signal carried the same event id: applied once
                assert [(e["event"], e["code"]) for e in state["events"] if e["applied"]] == [("c-1", "applied")]
                again = await http.post(f"/v1/interviews/{uid}/confirm", json={"scheduled_at": at, "event_id": "c-1"})
                assert again.status_code == 200 and again.json()["event"]["code"] == "applied"  # as the first
                await http.post(f"/v1/interviews/{uid}/cancel", json={})
    finally:
        server.should_exit = True
        await task
