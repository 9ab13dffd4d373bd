"""What an outside fuzzer found (issue 13), each over the real HTTP API: input the journey would
choke on is a 4xx naming the field; what the API accepts runs; an event id names one event; a
repeated start is a safe retry or a conflict, never a silent keep.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from tests.integration.test_bad_input import assert_no_workflow, error, invitation


@pytest_asyncio.fixture
async def http(stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


def later(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


def booking(uid: str, **fields: Any) -> dict[str, Any]:
    body = {"appointment_id": uid, "patient": {"email": f"p-{uid}@example.com", "name": "Pat Patient"},
            "scheduled_at": later(3), "doctor": "Dr. Rivera"}
    body.update(fields)
    return body


def lead(uid: str, **fields: Any) -> dict[str, Any]:
    body = {"lead_id": uid, "contact": {"email": f"l-{uid}@example.com", "name": "Lee Lead"}, "campaign": "hardening"}
    body.update(fields)
    return body


def session(uid: str, **fields: Any) -> dict[str, Any]:
    body = {"session_id": uid, "title": "Algebra", "starts_at": later(2), "ends_at": later(2.05),
            "tutor": {"name": "Tom Tutor", "email": f"t-{uid}@example.com"},
            "attendees": [{"attendee_id": "s1", "name": "Sam", "email": f"s1-{uid}@example.com"}]}
    body.update(fields)
    return body


# --- 1 and 2: moments and durations the journey's arithmetic could not hold ---------------------


@pytest.mark.parametrize(("path", "body", "field"), [
    pytest.param("/v1/appointments", lambda uid: booking(uid, scheduled_at="9999-12-31T23:59:59-10:00"),
                 "scheduled_at", id="appointment-overflows-converting-to-utc"),
    pytest.param("/v1/interviews", lambda uid: invitation(uid, {"invited_at": "0001-01-01T00:00:00Z",
                                                                "scheduled_at": "0001-01-01T00:30:00Z"}),
                 "invited_at", id="interview-in-year-1"),
    pytest.param("/v1/appointments", lambda uid: booking(uid, policy={"reminder_offsets": ["P740000D"]}),
                 "policy.reminder_offsets.0", id="offset-of-2000-years"),
    pytest.param("/v1/leads", lambda uid: lead(uid, started_at="9999-12-30T00:00:00Z", policy={"step_grace": "P5D"}),
                 "started_at", id="lead-in-year-9999"),
    pytest.param("/v1/leads", lambda uid: lead(uid, started_at="2199-12-31T00:00:00Z",
                                                policy={"steps": [{"after": "P1831D", "template": "lead_welcome"}]}),
                 "policy.steps.0.after", id="lead-step-past-the-longest-duration"),
    pytest.param("/v1/interviews", lambda uid: invitation(uid, {"scheduled_at": "2200-01-01T00:00:00Z"}),
                 "scheduled_at", id="interview-in-2200"),
])
async def test_a_moment_or_duration_out_of_bounds_is_a_422_and_starts_nothing(stack, http, uid, path, body, field):
    resp = error(await http.post(path, json=body(uid)), 422, field)
    assert "2000" in json.dumps(resp["detail"]) or "1830" in json.dumps(resp["detail"])
    await assert_no_workflow(stack, f"{path.split('/')[2][:-1]}-{uid}")


async def test_the_longest_journey_the_api_accepts_runs(stack, http, uid):
    """At the edges of every bound: the latest moment, the longest offsets. It plans, it is running,
    and it can be cancelled: no workflow task fails on the arithmetic."""
    resp = await http.post("/v1/appointments", json=booking(
        uid, scheduled_at="2199-12-31T23:59:59+14:00",
        policy={"reminder_offsets": ["P1830D", "PT1S"], "reminder_grace": "P1830D"}))
    assert resp.status_code == 201, resp.text
    state = resp.json()["state"]
    assert state["next_step"]["kind"] == "reminder", state
    assert state["policy"]["reminder_offsets"] == ["P1830D", "PT1S"]  # as sent, never P5Y5D
    cancelled = await http.post(f"/v1/appointments/{uid}/cancel", json={"notify": False})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"]["status"] == "cancelled"
    handle = stack.temporal.get_workflow_handle(f"appointment-{uid}")
    await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


LAST = "2199-12-31T23:59:59Z"
LONG = "P1830D"
PERSON = {"name": "Edge Case", "email": "edge@example.com", "time_zone": "Pacific/Kiritimati"}
AT_THE_LATEST = {
    "interviews": lambda uid: {"interview_id": uid, "candidate": PERSON, "slot_selection_url": "https://e.example/s",
                               "invited_at": "2199-12-31T00:00:00Z", "scheduled_at": LAST,
                               "policy": {"followup_after": LONG, "followup_interval": LONG, "max_followups": 20,
                                          "reminder_before": LONG, "reminder_grace": LONG, "expire_after": LONG}},
    "leads": lambda uid: lead(uid, started_at=LAST, policy={
        "steps": [{"after": "PT0S", "template": "lead_welcome"}, {"after": LONG, "template": "lead_final_offer"}],
        "step_grace": LONG}),
    "sessions": lambda uid: session(uid, starts_at="2199-12-31T22:00:00Z", ends_at=LAST, tutor={
        **PERSON, "first_session": True}, policy={
        "reminder_offsets": [LONG, "PT1S"], "reminder_grace": LONG, "feedback_after": LONG, "feedback_window": LONG,
        "checkin_after": LONG, "stay_open_for": LONG}),
    "payments": lambda uid: {"payment_id": uid, "payer": PERSON, "currency": "EUR", "amount": "1.00",
                             "payment_url": "https://e.example/p", "started_at": LAST,
                             "policy": {"reminder_after": ["P1D", "P1829D"], "reminder_grace": LONG,
                                        "close_after": LONG}},
}


@pytest.mark.parametrize("plural", sorted(AT_THE_LATEST))
async def test_every_journey_at_the_latest_moment_plans_and_ends(stack, http, uid, plural):
    """The far edge on the dev server (the time-skipping server times a run out after 10 years):
    the start plans, the journey is running, a cancel ends it, and no workflow task ever failed."""
    resp = await http.post(f"/v1/{plural}", json=AT_THE_LATEST[plural](uid))
    assert resp.status_code == 201, resp.text
    assert resp.json()["state"]["next_step"] is not None, resp.text
    cancelled = await http.post(f"/v1/{plural}/{uid}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"]["status"] == "cancelled"
    handle = stack.temporal.get_workflow_handle(f"{plural[:-1]}-{uid}")
    await handle.result()
    history = await handle.fetch_history()
    assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


async def test_a_duration_reads_back_as_it_was_sent(http, uid):
    resp = await http.post("/v1/appointments", json=booking(uid, scheduled_at=later(500),
                                                            policy={"reminder_offsets": ["P400D", "PT90M"]}))
    assert resp.status_code == 201, resp.text
    assert resp.json()["state"]["policy"]["reminder_offsets"] == ["P400D", "PT1H30M"]


# --- 7: strict types -------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "field"), [
    pytest.param("/v1/interviews", lambda uid: invitation(uid, {"invited_at": 0}), "invited_at", id="moment-as-0"),
    pytest.param("/v1/interviews", lambda uid: invitation(uid, {"invited_at": True}), "invited_at",
                 id="moment-as-true"),
    pytest.param("/v1/leads", lambda uid: lead(uid, policy={"steps": [{"after": False, "template": "lead_welcome"}]}),
                 "policy.steps.0.after", id="duration-as-false"),
    pytest.param("/v1/appointments", lambda uid: booking(uid, confirmed="yes"), "confirmed", id="bool-as-yes"),
    pytest.param("/v1/appointments", lambda uid: booking(uid, policy={"cancellation_notice": 0}),
                 "policy.cancellation_notice", id="bool-as-0"),
    pytest.param("/v1/interviews", lambda uid: invitation(uid, {"policy.max_followups": "3"}),
                 "policy.max_followups", id="count-as-string"),
    pytest.param("/v1/interviews", lambda uid: invitation(uid, {"policy.max_followups": 2.0}),
                 "policy.max_followups", id="count-as-float"),
])
async def test_a_value_of_the_wrong_type_is_refused_not_coerced(stack, http, uid, path, body, field):
    error(await http.post(path, json=body(uid)), 422, field)
    await assert_no_workflow(stack, f"{path.split('/')[2][:-1]}-{uid}")


async def test_event_fields_are_strict_too(http, uid):
    assert (await http.post("/v1/sessions", json=session(uid))).status_code == 201
    error(await http.post(f"/v1/sessions/{uid}/checkin", json={"ok": "no"}), 422, "ok")
    error(await http.post(f"/v1/sessions/{uid}/cancel", json={"notify": 0}), 422, "notify")
    shown = (await http.get(f"/v1/sessions/{uid}")).json()["state"]
    assert shown["status"] == "scheduled"


# --- 1 and 3: text no store, header or key could hold ---------------------------------------------


@pytest.mark.parametrize(("path", "body", "field"), [
    pytest.param("/v1/leads", lambda uid: lead(uid, company="a\u0000b"), "company", id="nul-in-company"),
    pytest.param("/v1/leads", lambda uid: lead(uid, company="a\ud800b"), "company", id="lone-surrogate"),
    pytest.param("/v1/leads", lambda uid: lead(uid, offer_url="https://shop.example.com/\u0000"), "offer_url",
                 id="nul-in-url"),
    pytest.param("/v1/interviews", lambda uid: invitation(uid, {"candidate.name": "Ada\u0085Lovelace"}),
                 "candidate.name", id="c1-control-in-name"),
    pytest.param("/v1/appointments", lambda uid: booking(uid, location="Room 1\u001b[31m"), "location",
                 id="escape-in-location"),
])
async def test_a_control_character_in_text_is_a_422(stack, http, uid, path, body, field):
    resp = await http.post(path, content=json.dumps(body(uid)).encode(), headers={"content-type": "application/json"})
    error(resp, 422, field)
    await assert_no_workflow(stack, f"{path.split('/')[2][:-1]}-{uid}")


async def test_line_breaks_in_free_text_are_kept(http, uid):
    resp = await http.post("/v1/appointments", json=booking(uid, location="Building B\nRoom 12\tleft wing"))
    assert resp.status_code == 201, resp.text


async def test_a_control_character_in_an_event_id_is_a_422(http, uid):
    assert (await http.post("/v1/sessions", json=session(uid))).status_code == 201
    error(await http.post(f"/v1/sessions/{uid}/cancel", json={"event_id": "e\u00001"}), 422, "event_id")


@pytest.mark.parametrize(("url", "field"), [
    pytest.param("/v1/messages?entity_id=a%00b", "entity_id", id="nul-in-query"),
    pytest.param("/v1/messages?journey=a%00", "journey", id="nul-in-journey"),
    pytest.param("/v1/messages?entity_id=a%ff", "query", id="query-not-utf8"),
    pytest.param("/v1/campaigns/a%00b/stats", "path", id="nul-in-path"),
    pytest.param("/v1/messages/a%00b/resend", "path", id="nul-in-message-key"),
    pytest.param("/v1/interviews/a%c0", "path", id="path-not-utf8"),
])
async def test_a_control_character_or_bad_utf8_in_the_url_is_a_422(http, url, field):
    method = "POST" if url.endswith("/resend") else "GET"
    error(await http.request(method, url), 422, field)


@pytest.mark.parametrize(("content", "reason"), [
    pytest.param(b'{"interview_id": "\xff"}', "UTF-8", id="invalid-utf8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nests too deeply", id="100k-deep"),
])
async def test_a_body_that_cannot_be_read_is_a_400_naming_the_body(http, content, reason):
    body = error(await http.post("/v1/interviews", content=content, headers={"content-type": "application/json"}),
                 400, "body")
    assert reason in body["detail"]


# --- 4: an event id names one event ---------------------------------------------------------------


async def test_an_event_id_reused_for_another_event_is_a_409_and_changes_nothing(http, uid):
    assert (await http.post("/v1/sessions", json=session(uid))).status_code == 201
    added = await http.post(f"/v1/sessions/{uid}/attendees", json={
        "event_id": f"ev-{uid}", "attendee": {"attendee_id": "s2", "name": "Sue", "email": f"s2-{uid}@example.com"}})
    assert added.status_code == 200 and added.json()["event"]["applied"] is True, added.text

    reused = error(await http.post(f"/v1/sessions/{uid}/cancel", json={"event_id": f"ev-{uid}"}), 409, "event_id")
    assert "add_attendee" in reused["detail"]
    assert (await http.get(f"/v1/sessions/{uid}")).json()["state"]["status"] == "scheduled"

    other = error(await http.post(f"/v1/sessions/{uid}/attendees", json={
        "event_id": f"ev-{uid}", "attendee": {"attendee_id": "s3", "name": "Sid", "email": f"s3-{uid}@example.com"}}),
        409, "event_id")
    assert "other fields" in other["detail"]

    retried = await http.post(f"/v1/sessions/{uid}/attendees", json={
        "event_id": f"ev-{uid}", "attendee": {"attendee_id": "s2", "name": "Sue", "email": f"s2-{uid}@example.com"}})
    assert retried.status_code == 200, retried.text
    assert retried.json()["event"]["applied"] is True  # a true retry answers as the first delivery did
    assert (await http.get(f"/v1/sessions/{uid}")).json()["state"]["roster_size"] == 2


async def test_an_event_id_reused_after_the_end_is_a_409_too(http, uid):
    assert (await http.post("/v1/payments", json={
        "payment_id": uid, "payer": {"email": f"p-{uid}@example.com", "name": "Pat"}, "currency": "EUR",
        "amount": "10.00", "payment_url": f"https://pay.example.com/{uid}"})).status_code == 201
    paid = await http.post(f"/v1/payments/{uid}/paid", json={"event_id": f"pay-{uid}"})
    assert paid.status_code == 200, paid.text
    again = await http.post(f"/v1/payments/{uid}/paid", json={"event_id": f"pay-{uid}"})
    assert again.status_code == 200 and again.json()["event"]["applied"] is True, again.text
    error(await http.post(f"/v1/payments/{uid}/cancel", json={"event_id": f"pay-{uid}"}), 409, "event_id")


# --- 5 and 7: found when due, now found at the start ------------------------------------------------


async def test_a_lead_step_naming_an_unknown_template_is_a_422_at_the_start(stack, http, uid):
    body = lead(uid, policy={"steps": [{"after": "PT0S", "template": "lead_welcome"},
                                       {"after": "P3D", "template": "no_such_template"}]})
    resp = error(await http.post("/v1/leads", json=body), 422, "policy.steps.1.template")
    assert "no_such_template" in resp["detail"] and "lead_welcome" in resp["detail"]
    await assert_no_workflow(stack, f"lead-{uid}")


async def test_a_repeated_start_is_a_safe_retry_and_a_different_one_a_409(http, uid):
    first = await http.post("/v1/interviews", json=invitation(uid))
    assert first.status_code == 201, first.text
    same = await http.post("/v1/interviews", json=invitation(uid))
    assert same.status_code == 200, same.text
    assert same.json()["created"] is False

    other = error(await http.post("/v1/interviews", json=invitation(uid, {"candidate.email": f"x-{uid}@example.com"})),
                  409, "candidate.email")
    assert "event" in other["detail"]
    kept = (await http.get(f"/v1/interviews/{uid}")).json()["state"]
    assert kept["candidate_email"] == f"c-{uid}@example.com"


async def test_a_repeated_session_start_with_the_same_roster_is_a_retry(http, uid):
    body = session(uid)
    assert (await http.post("/v1/sessions", json=body)).status_code == 201
    again = await http.post("/v1/sessions", json=body)
    assert again.status_code == 200, again.text
    moved = {**body, "starts_at": later(3), "ends_at": later(3.05)}
    error(await http.post("/v1/sessions", json=moved), 409, "starts_at")


async def test_a_start_for_a_time_already_past_is_refused_like_an_event(stack, http, uid):
    past = (datetime.now(timezone.utc) - timedelta(days=365 * 20)).isoformat()
    error(await http.post("/v1/interviews", json=invitation(uid, {"scheduled_at": past})), 422, "scheduled_at")
    error(await http.post("/v1/appointments", json=booking(uid, scheduled_at=past)), 422, "scheduled_at")
    await assert_no_workflow(stack, f"interview-{uid}")


async def test_an_early_event_says_it_created_the_journey(http, uid):
    held = await http.post(f"/v1/interviews/{uid}/confirm", json={"scheduled_at": later(4)})
    assert held.status_code == 200, held.text
    assert held.json()["state"]["status"] == "awaiting_start"
    note = held.json()["created_by_event"]
    assert note and uid in note and "waits for the start" in note and "Check the id" in note

    ended = await http.post(f"/v1/interviews/{uid}-c/cancel", json={})
    assert ended.status_code == 200, ended.text
    assert ended.json()["state"]["status"] == "cancelled"
    assert "cancelled: a start for this id will find it ended" in ended.json()["created_by_event"]

    assert (await http.post("/v1/interviews", json=invitation(f"{uid}-b"))).status_code == 201
    plain = await http.post(f"/v1/interviews/{uid}-b/cancel", json={})
    assert plain.status_code == 200 and plain.json()["created_by_event"] is None


@pytest.mark.parametrize(("path", "allowed"), [
    ("/v1/leads/import", "OPTIONS, POST"),  # its own path, not GET /v1/leads/{lead_id} for a lead "import"
    ("/v1/interviews/x/confirm", "OPTIONS, POST"),
    ("/v1/interviews/x", "GET, OPTIONS"),
])
async def test_options_lists_the_methods_the_api_document_gives_the_path(http, path, allowed):
    resp = await http.options(path)
    assert resp.status_code == 204 and resp.headers["allow"] == allowed
