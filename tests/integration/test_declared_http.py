"""Declared journeys through the HTTP API on the real dev server, PostgreSQL and an SMTP sink:
definitions saved as YAML or JSON in immutable versions, a running journey keeping its version,
events steering it, and every refusal naming its field."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest_asyncio

from tests.integration.test_appointment_http import _delivered


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


QUIZ = """
description: a nudge a few seconds before the quiz closes
anchors:
  deadline: start
roster: true
steps:
  - name: nudge
    at: deadline - {before}
    template: assignment_reminder
events:
  submitted: {{member_exits: true}}
"""
YAML = {"Content-Type": "application/yaml"}
CONTEXT = {"assignment_title": "Quiz 3", "submit_url": "https://lms.example.com/quiz/3"}


def _roster(uid: str, *names: str) -> list[dict]:
    return [{"member_id": name, "recipient": {"email": f"{name}-{uid}@example.com", "name": name.title()}}
            for name in names]


def _soon(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


async def _state(http: httpx.AsyncClient, path: str, until, timeout: float = 30.0) -> dict:
    for _ in range(int(timeout * 10)):
        body = (await http.get(path)).json()
        if body.get("state") and until(body["state"]):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never reached the expected state: {body}")


async def test_a_running_journey_keeps_its_version_and_members_who_submitted_get_nothing(stack, http, uid):
    name = f"quiz_{uid}"
    first = await http.put(f"/v1/journey-definitions/{name}", content=QUIZ.format(before="3s"), headers=YAML)
    assert first.status_code == 201, first.text
    assert (first.json()["version"], first.json()["created"]) == (1, True)
    assert first.json()["definition"]["steps"][0]["at"] == "deadline - 3s"
    again = await http.put(f"/v1/journey-definitions/{name}", content=QUIZ.format(before="3s"), headers=YAML)
    assert (again.status_code, again.json()["version"], again.json()["created"]) == (200, 1, False)

    a = await http.post(f"/v1/journeys/{name}", json={
        "id": f"a-{uid}", "anchors": {"deadline": _soon(6)}, "roster": _roster(uid, "ann", "bob"), "context": CONTEXT})
    assert a.status_code == 201, a.text
    assert a.json()["state"]["version"] == 1 and a.json()["workflow_id"] == f"{name}-a-{uid}"

    second = await http.put(f"/v1/journey-definitions/{name}", json={
        "anchors": {"deadline": "start"}, "roster": True, "events": {"submitted": {"member_exits": True}},
        "steps": [{"name": "early", "at": "deadline - 4s", "template": "assignment_reminder"}]})
    assert (second.status_code, second.json()["version"]) == (201, 2), second.text
    b = await http.post(f"/v1/journeys/{name}", json={
        "id": f"b-{uid}", "anchors": {"deadline": _soon(6)}, "roster": _roster(uid, "cy"), "context": CONTEXT})
    assert b.json()["state"]["version"] == 2

    left = await http.post(f"/v1/journeys/{name}/a-{uid}/events/submitted", json={"member_id": "bob"})
    assert left.status_code == 200 and left.json()["event"]["code"] == "applied", left.text
    assert left.json()["state"]["exited_members"] == {"bob": "submitted"}

    done_a = await _state(http, f"/v1/journeys/{name}/a-{uid}", lambda s: s["status"] == "completed")
    done_b = await _state(http, f"/v1/journeys/{name}/b-{uid}", lambda s: s["status"] == "completed")
    assert [m["key"].split("/", 1)[1].split("-")[0] + "/" + m["key"].rsplit("/", 1)[1]
            for m in done_a["messages"] if m["status"] == "sent"] == ["nudge/m-ann"]
    assert [m["key"].split("/", 1)[1].split("-")[0] for m in done_b["messages"]] == ["early"]
    [ann] = await _delivered(stack.smtp, done_a["messages"][0]["key"])
    assert ann["Subject"] == "Assignment due soon: Quiz 3" and ann["To"] == f"Ann <ann-{uid}@example.com>"

    late = await http.post(f"/v1/journeys/{name}/a-{uid}/events/submitted", json={"member_id": "ann"})
    assert late.status_code == 409, late.text
    history = (await http.get(f"/v1/journey-definitions/{name}")).json()
    assert [v["version"] for v in history["versions"]] == [1, 2] and history["latest"]["version"] == 2
    v1 = (await http.get(f"/v1/journey-definitions/{name}/versions/1")).json()
    assert v1["definition"]["steps"][0]["name"] == "nudge"


async def test_every_problem_of_a_definition_is_a_422_with_its_field(http, uid):
    bad = await http.put(f"/v1/journey-definitions/bad_{uid}", json={
        "anchors": {"deadline": "start"},
        "steps": [{"name": "b", "at": "deadline - 24h", "template": "assignment_reminder"},
                  {"name": "a", "at": "deadline - 48h", "template": "no_such_template"},
                  {"name": "c", "at": "deadlin + 1h", "template": "assignment_reminder"}]})
    assert bad.status_code == 422, bad.text
    fields = {p["field"]: p["reason"] for p in bad.json()["detail"]}
    assert set(fields) == {"steps.1.at", "steps.2.at"} and "out of order" in fields["steps.1.at"]
    assert "unknown anchor 'deadlin'" in fields["steps.2.at"]
    unknown = await http.put(f"/v1/journey-definitions/bad_{uid}", json={
        "anchors": {"deadline": "start"}, "steps": [{"name": "a", "at": "deadline", "template": "no_such_template"}]})
    assert unknown.status_code == 422 and unknown.json()["field"] == "steps.0.template", unknown.text
    broken = await http.put(f"/v1/journey-definitions/bad_{uid}", content=b"anchors: {deadline: start\nsteps: [", headers=YAML)
    assert broken.status_code == 422 and broken.json()["field"] == "body" and "line" in broken.text, broken.text
    taken = await http.put("/v1/journey-definitions/lead", json={
        "anchors": {"a": "start"}, "steps": [{"name": "a", "at": "a", "template": "assignment_reminder"}]})
    assert taken.status_code == 422 and taken.json()["field"] == "name", taken.text
    assert (await http.get(f"/v1/journey-definitions/bad_{uid}")).status_code == 404  # nothing was saved
    missing = await http.post(f"/v1/journeys/none_{uid}", json={"id": "x", "recipient": {"email": "a@example.com",
                                                                                        "name": "A"}})
    assert missing.status_code == 404 and missing.json()["field"] == "name", missing.text


async def test_a_start_the_definition_cannot_run_is_refused_before_anything_starts(stack, http, uid):
    start = {"id": f"s-{uid}", "anchors": {"deadline": _soon(3600)}, "roster": _roster(uid, "ann"), "context": CONTEXT}
    cases = [
        ({**start, "anchors": {}}, "anchors.deadline"),
        ({**start, "anchors": {"deadline": _soon(3600), "opens_at": _soon(60)}}, "anchors.opens_at"),
        ({**start, "context": {"submit_url": "https://lms.example.com/a"}}, "context.assignment_title"),
        ({**start, "roster": None, "recipient": {"email": "a@example.com", "name": "A"}}, "roster"),
        ({**start, "context": {**CONTEXT, "note": "a\x00b"}}, "context"),
        ({**start, "roster": _roster(uid, "ann", "ann")}, "roster"),
    ]
    for body, field in cases:
        refused = await http.post("/v1/journeys/assignment_deadline", json=body)
        assert refused.status_code == 422 and refused.json()["field"] == field, (field, refused.text)
    started = await http.post("/v1/journeys/assignment_deadline", json=start)
    assert started.status_code == 201, started.text
    path = f"/v1/journeys/assignment_deadline/s-{uid}/events"
    assert (await http.post(f"{path}/graded", json={})).json()["field"] == "event"
    assert (await http.post(f"{path}/submitted", json={})).json()["field"] == "member_id"
    assert (await http.post(f"{path}/submitted", json={"member_id": "zed"})).status_code == 422
    moved = await http.post(f"{path}/deadline_moved", json={"at": _soon(7200), "event_id": f"m-{uid}"})
    assert moved.status_code == 200 and moved.json()["event"]["code"] == "applied", moved.text
    assert (await http.post(f"{path}/cancel")).json()["state"]["status"] == "cancelled"


async def test_the_built_in_enrollment_journey_welcomes_then_follows_up_after_the_demo(stack, http, uid):
    listed = {d["name"]: d for d in (await http.get("/v1/journey-definitions")).json()["definitions"]}
    assert listed["enrollment"]["source"] == listed["assignment_deadline"]["source"] == "builtin"
    started = await http.post("/v1/journeys/enrollment", json={
        "id": uid, "anchors": {"enrolled_at": datetime.now(timezone.utc).isoformat()}, "group": "algebra-1",
        "recipient": {"email": f"e-{uid}@example.com", "name": "Eve", "time_zone": "Europe/Berlin"},
        "context": {"course_title": "Algebra 1", "course_url": "https://lms.example.com/algebra-1"}})
    assert started.status_code == 201, started.text
    assert started.json()["state"]["next_step"]["kind"] == "step"
    await _state(http, f"/v1/journeys/enrollment/{uid}", lambda s: s["delivered"] == 1)
    demo = await http.post(f"/v1/journeys/enrollment/{uid}/events/demo_attended")  # no body: attended now
    assert demo.status_code == 200 and demo.json()["event"]["code"] == "applied", demo.text
    body = await _state(http, f"/v1/journeys/enrollment/{uid}", lambda s: s["delivered"] == 2)
    assert body["state"]["status"] == "active"  # it waits 90 days for events, then completes
    [followup] = await _delivered(stack.smtp, [m["key"] for m in body["messages"] if "/demo_followup-" in m["key"]][0])
    assert followup["Subject"] == "Thanks for joining the Algebra 1 demo class"
    described = await stack.temporal.get_workflow_handle(f"enrollment-{uid}").describe()
    assert described.typed_search_attributes is not None
    assert described.search_attributes["Journey"] == ["enrollment"] and described.search_attributes["JourneyGroup"] == ["algebra-1"]
    await stack.temporal.get_workflow_handle(f"enrollment-{uid}").terminate("test finished")


async def test_a_declared_journey_through_updates_leaves_a_history_that_replays(stack, http, uid):
    """Recorded (FOLLOWUPS_RECORD_HISTORIES=1) as declared-started_and_steered_through_the_api@updates."""
    import os
    from pathlib import Path

    from temporalio.api.enums.v1 import EventType
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    import worker

    started = await http.post("/v1/journeys/assignment_deadline", json={
        "id": f"up-{uid}", "anchors": {"deadline": _soon(7 * 86400)}, "roster": _roster(uid, "ann", "bob"),
        "context": CONTEXT})
    assert started.status_code == 201, started.text
    path = f"/v1/journeys/assignment_deadline/up-{uid}/events"
    for event, body in (("submitted", {"member_id": "bob"}), ("deadline_moved", {"at": _soon(9 * 86400)}),
                        ("withdrawn", {})):
        answer = await http.post(f"{path}/{event}", json=body)
        assert answer.status_code == 200 and answer.json()["event"]["code"] == "applied", answer.text
    handle = stack.temporal.get_workflow_handle(f"assignment_deadline-up-{uid}")
    final = await asyncio.wait_for(handle.result(), 30)
    assert final["status"] == "exited"  # no result type given: the state as JSON
    history = await handle.fetch_history()
    accepted = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    assert len(accepted) == 4  # the start and each event went in as updates
    await Replayer(workflows=worker.WORKFLOWS, data_converter=pydantic_data_converter,
                   workflow_runner=worker.RUNNER).replay_workflow(history)
    if os.environ.get("FOLLOWUPS_RECORD_HISTORIES"):
        target = Path(__file__).resolve().parent.parent / "histories" / "declared-started_and_steered_through_the_api@updates.json"
        if not target.exists():
            target.write_text(history.to_json())
