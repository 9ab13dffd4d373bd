"""The tutor rescheduling journey (seed 004) through the HTTP API on the real dev server, PostgreSQL
and an SMTP sink over a socket, with windows of seconds: the third reschedule inside the window
sends the supportive email once, the sixth tells the manager; what a backend relies on (a retried
event_id applies once, a reschedule in the future is a 422 naming `at`, 409 once the tutor left);
and the Python client the registry gives the kind."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest_asyncio

from starter.client import FollowupsClient


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


async def _delivered(smtp, prefix: str, timeout: float = 30.0) -> list:
    for _ in range(int(timeout * 10)):
        found = [m for m in smtp.sink.messages if (m.get("X-Followups-Key") or "").startswith(prefix)]
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{prefix}… never arrived; sink has {sorted(smtp.sink.keys())}")


def _tutor(uid: str, **fields) -> dict:
    return {"tutor_id": uid, "tutor": {"email": f"tom-{uid}@example.com", "name": "Tom", "time_zone": "Europe/Berlin"},
            "manager_email": f"mia-{uid}@example.com", "manager_name": "Mia",
            "policy": {"supportive_window": "PT1H", "manager_threshold": 4, "manager_window": "PT1H"}, **fields}


async def test_reschedules_through_the_api_alert_the_tutor_then_the_manager_once_each(stack, http, uid):
    started = await http.post("/v1/tutors", json=_tutor(uid))
    assert started.status_code == 201, started.text
    assert started.json()["state"]["status"] == "watching" and started.json()["workflow_id"] == f"tutor-{uid}"
    assert (await http.post("/v1/tutors", json=_tutor(uid))).status_code == 200  # a safe retry
    moved = await http.post("/v1/tutors", json=_tutor(uid, manager_email=f"other-{uid}@example.com"))
    assert moved.status_code == 409 and moved.json()["field"] == "manager_email", moved.text

    answers = []
    for n in range(3):
        answer = await http.post(f"/v1/tutors/{uid}/rescheduled", json={"session_id": f"s-{n}", "event_id": f"lms-{n}"})
        assert answer.status_code == 200 and answer.json()["event"]["code"] == "applied", answer.text
        answers.append(answer.json())
    assert answers[-1]["state"]["counts"] == {"supportive": 3, "manager": 3}
    retry = await http.post(f"/v1/tutors/{uid}/rescheduled", json={"session_id": "s-2", "event_id": "lms-2"})
    assert retry.status_code == 200 and retry.json()["event"] == answers[-1]["event"]  # as the first delivery
    reused = await http.post(f"/v1/tutors/{uid}/rescheduled", json={"session_id": "s-9", "event_id": "lms-2"})
    assert reused.status_code == 409 and reused.json()["field"] == "event_id", reused.text
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    ahead = await http.post(f"/v1/tutors/{uid}/rescheduled", json={"session_id": "s-8", "at": future})
    assert ahead.status_code == 422 and ahead.json()["field"] == "at", ahead.text
    earlier = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()  # reported late, counted then
    fourth = await http.post(f"/v1/tutors/{uid}/rescheduled", json={"session_id": "s-3", "at": earlier})
    assert fourth.status_code == 200 and fourth.json()["state"]["counts"]["manager"] == 4, fourth.text

    [supportive] = await _delivered(stack.smtp, f"tutor-{uid}/supportive-")
    assert supportive["To"] == f"Tom <tom-{uid}@example.com>" and "can we help" in supportive["Subject"]
    [manager] = await _delivered(stack.smtp, f"tutor-{uid}/manager-")
    assert manager["To"] == f"Mia <mia-{uid}@example.com>"
    assert manager["Subject"] == "Rescheduling: Tom rescheduled 4 sessions in 1h"

    shown = await http.get(f"/v1/tutors/{uid}")
    assert shown.status_code == 200, shown.text
    view = shown.json()
    assert view["state"]["reschedules_total"] == 4 and [a["rule"] for a in view["state"]["alerts"]] == [
        "supportive", "manager"]
    assert sorted(m["key"].split("/")[1].split("-")[0] for m in view["messages"]) == ["manager", "supportive"]
    assert (await http.get(f"/v1/tutors/missing-{uid}")).status_code == 404

    closed = await http.post(f"/v1/tutors/{uid}/close", json={"reason": "left the school"})
    assert closed.status_code == 200 and closed.json()["state"]["status"] == "closed", closed.text
    for _ in range(100):
        if (await stack.temporal.get_workflow_handle(f"tutor-{uid}").describe()).status.name != "RUNNING":
            break
        await asyncio.sleep(0.1)
    late = await http.post(f"/v1/tutors/{uid}/rescheduled", json={"session_id": "s-7"})
    assert late.status_code == 409 and late.json()["field"] == "tutor_id", late.text
    await asyncio.sleep(0.5)
    assert sorted(k for k in stack.smtp.sink.keys() if k.startswith(f"tutor-{uid}/")) == sorted(
        [supportive["X-Followups-Key"], manager["X-Followups-Key"]])  # each once


async def test_the_python_client_has_the_kind_from_the_registry(stack, uid):
    def steer() -> tuple:
        with FollowupsClient(stack.base_url, api_key=stack.settings.api_keys[0]) as followups:
            started = followups.tutors.start(_tutor(uid))
            counted = followups.tutors.rescheduled(uid, session_id="s-1", event_id=f"c-{uid}")
            shown = followups.tutors.get(uid)
            followups.tutors.cancel(uid)
            return started, counted, shown

    started, counted, shown = await asyncio.to_thread(steer)
    assert started.created and counted.event.code == "applied"
    assert shown.state.counts == {"supportive": 1, "manager": 1} and shown.tutor_id == uid
