"""Bad input through the real HTTP API, as a careless or hostile caller would send it.

Every refusal must be a precise 4xx in the one error shape `{"error", "detail", "field"}` naming
what to fix, and must change nothing: no journey is created, a running journey keeps its plan and
its messages, a tampered unsubscribe link suppresses nobody.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities import tokens
from activities.store import Outbox, Suppressions
from workflows.interview.workflow import workflow_id
from workflows.resend import workflow_id as resend_workflow_id

MISSING = object()  # a field left out of the body


def error(resp: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    """The response is `status` in the one error shape, naming `field`."""
    assert resp.status_code == status, f"{resp.status_code}: {resp.text[:500]}"
    body = resp.json()
    assert set(body) == {"error", "detail", "field"}, body
    assert body["error"] and body["detail"], body
    assert body["field"] == field, body
    return body


def soon(days: float = 3) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


def invitation(interview_id: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid start body; `changes` set (or, with MISSING, remove) dotted paths like `candidate.email`."""
    body: dict[str, Any] = {
        "interview_id": interview_id,
        "candidate": {"email": f"c-{interview_id}@example.com", "name": "Ada Lovelace", "time_zone": "Europe/London"},
        "slot_selection_url": f"https://jobs.example.com/slots/{interview_id}",
        "policy": {},
    }
    for path, value in (changes or {}).items():
        *parents, leaf = path.split(".")
        node = body
        for name in parents:
            node = node[name]
        if value is MISSING:
            del node[leaf]
        else:
            node[leaf] = value
    return body


@pytest_asyncio.fixture
async def http(stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def pending(http: httpx.AsyncClient, uid: str) -> dict[str, Any]:
    """A started interview (pending, first follow-up two days away) as GET shows it."""
    started = await http.post("/v1/interviews", json=invitation(uid))
    assert started.status_code == 201, started.text
    return await shown(http, uid)


async def shown(http: httpx.AsyncClient, interview_id: str) -> dict[str, Any]:
    resp = await http.get(f"/v1/interviews/{interview_id}")
    assert resp.status_code == 200, resp.text
    view = resp.json()
    assert view["state"] is not None, "no worker answered"
    return view


async def assert_no_journey(http: httpx.AsyncClient, interview_id: str) -> None:
    error(await http.get(f"/v1/interviews/{interview_id}"), 404, "interview_id")


async def assert_no_workflow(stack, workflow: str) -> None:
    """For ids the API cannot even name: ask Temporal directly."""
    with pytest.raises(RPCError) as raised:
        await stack.temporal.get_workflow_handle(workflow).describe()
    assert raised.value.status == RPCStatusCode.NOT_FOUND


# --- POST /v1/interviews: a refused start creates nothing --------------------------------------


@pytest.mark.parametrize(("changes", "field"), [
    pytest.param({"candidate.email": "not-an-email"}, "candidate.email", id="invalid-email"),
    pytest.param({"candidate.email": "c@example.com\r\nBcc: all@example.com"}, "candidate.email",
                 id="email-with-header-injection"),
    pytest.param({"candidate.name": "Ada\r\nBcc: all@example.com"}, "candidate.name", id="name-with-line-break"),
    pytest.param({"candidate.name": ""}, "candidate.name", id="empty-name"),
    pytest.param({"candidate": MISSING}, "candidate", id="missing-candidate"),
    pytest.param({"candidate.time_zone": "Mars/Olympus_Mons"}, "candidate.time_zone", id="unknown-time-zone"),
    pytest.param({"invited_at": "2026-11-20T09:00:00"}, "invited_at", id="naive-invited_at"),
    pytest.param({"scheduled_at": soon().replace("+00:00", "")}, "scheduled_at", id="naive-scheduled_at"),
    pytest.param({"invited_at": soon(5), "scheduled_at": soon(4)}, "scheduled_at",
                 id="scheduled_at-before-invited_at"),
    pytest.param({"slot_selection_url": "javascript:alert(document.cookie)"}, "slot_selection_url",
                 id="javascript-slot-url"),
    pytest.param({"slot_selection_url": "ftp://jobs.example.com/slots"}, "slot_selection_url", id="ftp-slot-url"),
    pytest.param({"policy.followup_after": "PT0S"}, "policy.followup_after", id="zero-duration"),
    pytest.param({"policy.followup_interval": -5}, "policy.followup_interval", id="negative-seconds"),
    pytest.param({"policy.reminder_before": "-PT1H"}, "policy.reminder_before", id="negative-iso-duration"),
    pytest.param({"policy.reminder_grace": "-PT1M"}, "policy.reminder_grace", id="negative-grace"),
    pytest.param({"policy.expire_after": "two weeks"}, "policy.expire_after", id="nonsense-duration"),
    pytest.param({"policy.followup_after": 1e20}, "policy.followup_after", id="absurd-duration"),
    pytest.param({"policy.max_followups": -1}, "policy.max_followups", id="negative-max-followups"),
    pytest.param({"policy.max_followups": 1_000_000}, "policy.max_followups", id="huge-max-followups"),
    pytest.param({"nickname": "Ada"}, "nickname", id="unknown-top-level-field"),
    pytest.param({"candidate.phone": "+44 20 7946 0000"}, "candidate.phone", id="unknown-candidate-field"),
    pytest.param({"policy.hold_early_events_for": "PT1S"}, "policy.hold_early_events_for",
                 id="policy-field-not-overridable"),
])
async def test_a_refused_start_creates_no_journey(http, uid, changes, field):
    error(await http.post("/v1/interviews", json=invitation(uid, changes)), 422, field)
    await assert_no_journey(http, uid)


@pytest.mark.parametrize("bad_id", [
    pytest.param("{uid} x", id="space"),
    pytest.param("{uid}<script>", id="markup"),
    pytest.param("-{uid}", id="leading-dash"),
    pytest.param("{uid}" + "x" * 128, id="too-long"),
    pytest.param("../{uid}", id="path-traversal"),
    pytest.param("", id="empty"),
])
async def test_an_illegal_interview_id_is_refused_everywhere(stack, http, uid, bad_id):
    bad_id = bad_id.format(uid=uid)
    error(await http.post("/v1/interviews", json=invitation(uid, {"interview_id": bad_id})), 422, "interview_id")
    if bad_id and "/" not in bad_id:  # otherwise no route has a place for it
        path = f"/v1/interviews/{quote(bad_id, safe='')}"
        error(await http.get(path), 422, "interview_id")
        error(await http.post(f"{path}/confirm", json={"scheduled_at": soon()}), 422, "interview_id")
    await assert_no_workflow(stack, workflow_id(bad_id))


@pytest.mark.parametrize(("content", "content_type"), [
    pytest.param(lambda body: body[:-7], "application/json", id="not-json"),
    pytest.param(lambda body: f"[{body}]", "application/json", id="json-array"),
    pytest.param(lambda body: body, "text/plain", id="json-sent-as-text"),
    pytest.param(lambda body: body, None, id="no-content-type"),
])
async def test_a_body_that_is_not_a_json_object_is_refused(http, uid, content, content_type):
    headers = {"content-type": content_type} if content_type else {}
    resp = await http.post("/v1/interviews", content=content(json.dumps(invitation(uid))).encode(), headers=headers)
    error(resp, 422, "body")
    await assert_no_journey(http, uid)


@pytest.mark.parametrize("chunked", [pytest.param(False, id="honest-content-length"),
                                     pytest.param(True, id="chunked-no-content-length")])
async def test_an_oversized_body_is_413(stack, http, uid, chunked):
    # A valid invitation padded with whitespace: only its size is wrong, so a missing limit shows as a 201.
    body = (json.dumps(invitation(uid)) + " " * (stack.settings.api_max_body_bytes + 1)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(body), 64 * 1024):
            yield body[at:at + 64 * 1024]

    resp = await http.post("/v1/interviews", content=chunks() if chunked else body,
                           headers={"content-type": "application/json"})
    assert ("content-length" in resp.request.headers) is not chunked
    error(resp, 413, "body")
    await assert_no_journey(http, uid)


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [
    pytest.param(None, id="missing"),
    pytest.param("Bearer wrong-key", id="wrong-key"),
    pytest.param("Basic test-key", id="basic-scheme"),
    pytest.param("Basic " + base64.b64encode(b"test-key:").decode(), id="basic-credentials"),
    pytest.param("test-key", id="no-scheme"),
    pytest.param("Bearer", id="scheme-without-key"),
])
async def test_a_start_without_a_valid_key_is_401(stack, uid, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=30) as anonymous:
        error(await anonymous.post("/v1/interviews", json=invitation(uid)), 401, "authorization")
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as http:
        await assert_no_journey(http, uid)


async def test_no_key_reads_or_steers_nothing(stack, http, uid, pending):
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as anonymous:
        error(await anonymous.get(f"/v1/interviews/{uid}"), 401, "authorization")
        error(await anonymous.get("/v1/messages", params={"entity_id": uid}), 401, "authorization")
        error(await anonymous.post(f"/v1/interviews/{uid}/cancel"), 401, "authorization")
        error(await anonymous.post(f"/v1/interviews/{uid}/confirm", json={"scheduled_at": soon()}),
              401, "authorization")
        error(await anonymous.post(f"/v1/messages/interview-{uid}/followup-1/resend"), 401, "authorization")
    assert await shown(http, uid) == pending


# --- events on a running journey: refused, the plan stays as it was ----------------------------


@pytest.mark.parametrize(("path", "body", "field"), [
    pytest.param("confirm", {"scheduled_at": soon(-1)}, "scheduled_at", id="confirm-in-the-past"),
    pytest.param("reschedule", {"scheduled_at": soon(-1 / 24)}, "scheduled_at", id="reschedule-in-the-past"),
    pytest.param("confirm", {"scheduled_at": soon().replace("+00:00", "")}, "scheduled_at", id="confirm-naive"),
    pytest.param("confirm", {}, "scheduled_at", id="confirm-without-time"),
    pytest.param("confirm", {"scheduled_at": "next tuesday"}, "scheduled_at", id="confirm-nonsense-time"),
    pytest.param("confirm", {"scheduled_at": soon(), "kind": "cancel"}, "kind", id="confirm-smuggling-a-kind"),
    pytest.param("confirm", {"scheduled_at": soon(), "event_id": ""}, "event_id", id="confirm-empty-event-id"),
    pytest.param("cancel", {"scheduled_at": soon()}, "scheduled_at", id="cancel-with-a-time"),
    pytest.param("cancel", {"reason": "x" * 501}, "reason", id="cancel-reason-too-long"),
])
async def test_a_refused_event_leaves_the_journey_as_it_was(http, uid, pending, path, body, field):
    error(await http.post(f"/v1/interviews/{uid}/{path}", json=body), 422, field)
    assert await shown(http, uid) == pending


async def test_a_confirm_before_the_invitation_is_refused_and_changes_no_plan(http, uid):
    invited_at = datetime.now(timezone.utc) + timedelta(days=5)
    started = await http.post("/v1/interviews", json=invitation(uid, {"invited_at": invited_at.isoformat()}))
    assert started.status_code == 201, started.text
    before = await shown(http, uid)
    error(await http.post(f"/v1/interviews/{uid}/confirm", json={"scheduled_at": soon(4)}), 422, "scheduled_at")
    after = await shown(http, uid)
    # The workflow's validator refused it: it never entered history, and nothing moved.
    assert after["state"]["events"] == []
    for view in (before, after):
        view["state"].pop("events")
    assert after == before


# --- unknown and ended journeys ----------------------------------------------------------------


async def test_an_unknown_interview_is_404(http, uid):
    await assert_no_journey(http, uid)


@pytest.mark.parametrize("kind", ["confirm", "reschedule"])
async def test_a_refused_event_for_an_unknown_id_creates_no_journey(http, uid, kind):
    error(await http.post(f"/v1/interviews/{uid}/{kind}", json={"scheduled_at": soon(-1)}), 422, "scheduled_at")
    await assert_no_journey(http, uid)


@pytest.mark.parametrize("kind", ["confirm", "reschedule"])
async def test_an_event_before_the_start_is_held_not_refused(http, uid, kind):
    """By design (README, starter/service.py): an early event waits in `awaiting_start`, sending
    nothing, and the start applies it. So an unknown id on an event is not a 404."""
    at = soon()
    held = await http.post(f"/v1/interviews/{uid}/{kind}", json={"scheduled_at": at})
    assert held.status_code == 200, held.text
    assert held.json()["state"]["status"] == "awaiting_start"
    assert held.json()["event"]["applied"] is True
    assert held.json()["messages"] == []
    started = await http.post("/v1/interviews", json=invitation(uid))
    assert started.status_code == 201 and started.json()["created"] is True, started.text  # the start is what begins it
    state = (await shown(http, uid))["state"]
    assert state["status"] == "scheduled"
    assert datetime.fromisoformat(state["scheduled_at"]) == datetime.fromisoformat(at)


@pytest.mark.parametrize(("path", "body"), [
    pytest.param("confirm", {"scheduled_at": soon()}, id="confirm"),
    pytest.param("reschedule", {"scheduled_at": soon()}, id="reschedule"),
    pytest.param("complete", None, id="complete"),
])
async def test_an_event_for_a_cancelled_interview_is_409(stack, http, uid, pending, path, body):
    cancelled = await http.post(f"/v1/interviews/{uid}/cancel", json={"reason": "position filled"})
    assert cancelled.status_code == 200, cancelled.text
    handle = stack.temporal.get_workflow_handle(workflow_id(uid))
    for _ in range(200):  # the journey ends right after the cancel; wait for Temporal to close it
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
        await asyncio.sleep(0.05)
    before = await shown(http, uid)
    assert before["state"]["status"] == "cancelled"
    error(await http.post(f"/v1/interviews/{uid}/{path}", json=body), 409, "interview_id")
    assert await shown(http, uid) == before


# --- unsubscribe links -------------------------------------------------------------------------


def _flip(text: str, at: int) -> str:
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1:]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def signed(secret: str, uid: str) -> str:
    return tokens.sign(secret, f"u-{uid}@example.com", f"interview-{uid}/followup-1")


def genuine_token(stack, uid: str) -> str:
    return signed(stack.settings.signing_secret.get_secret_value(), uid)


TAMPERINGS = {
    "flipped-address": lambda token, uid: _flip(token, 2),
    "flipped-signature": lambda token, uid: ".".join(token.split(".")[:2] + [_flip(token.split(".")[2], 10)]),
    "other-address": lambda token, uid: ".".join([_b64(f"victim-{uid}@example.com")] + token.split(".")[1:]),
    "truncated": lambda token, uid: token[:-3],
    "signature-removed": lambda token, uid: token.rpartition(".")[0],
    "padded": lambda token, uid: token + "==",
    "other-secret": lambda token, uid: signed("not-our-secret", uid),
    "garbage": lambda token, uid: "not-a-token",
}


async def opted_out(stack, uid: str) -> list[tuple[str, str]]:
    """Every trace an unsubscribe could leave for this test's addresses: (address, what)."""
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        return [(row["email"], row["what"]) for row in await conn.fetch(
            "SELECT email, 'suppressed' AS what FROM suppressions WHERE email LIKE $1 "
            "UNION ALL SELECT email, 'unsubscribed from everything' FROM recipient_settings "
            "WHERE email LIKE $1 AND unsubscribed_all "
            "UNION ALL SELECT email, 'unsubscribed from ' || category FROM preferences WHERE email LIKE $1 "
            "AND NOT subscribed", f"%{uid}%")]
    finally:
        await conn.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("tampering", TAMPERINGS)
async def test_a_tampered_unsubscribe_link_is_404_and_unsubscribes_nobody(stack, uid, method, tampering):
    token = TAMPERINGS[tampering](genuine_token(stack, uid), uid)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as browser:  # no API key: a mail client
        resp = await browser.request(method, f"/v1/unsubscribe/{token}")
    assert resp.status_code == 404, resp.text  # a person followed the link: a page, not JSON
    assert resp.headers["content-type"].startswith("text/html")
    assert "This unsubscribe link is not valid" in resp.text and "<form" not in resp.text
    assert await opted_out(stack, uid) == []


async def test_the_genuine_unsubscribe_link_does_unsubscribe(stack, uid):
    """The control for the test above: the same check sees a real unsubscribe. The link names a
    message no longer in the log, so it means everything but critical messages (issue 10: a
    one-click unsubscribe records a preference; it no longer suppresses the address)."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as browser:
        resp = await browser.post(f"/v1/unsubscribe/{genuine_token(stack, uid)}")
    assert resp.status_code == 200, resp.text
    assert await opted_out(stack, uid) == [(f"u-{uid}@example.com", "unsubscribed from everything")]
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        assert await Suppressions(conn).reason_for(f"U-{uid}@example.com") is None
    finally:
        await conn.close()


# --- messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "field"), [
    pytest.param({"status": "lost"}, "status", id="unknown-status"),
    pytest.param({"limit": 0}, "limit", id="zero-limit"),
    pytest.param({"limit": 1001}, "limit", id="limit-too-large"),
    pytest.param({"limit": "all"}, "limit", id="nonsense-limit"),
])
async def test_a_bad_message_query_is_422(http, params, field):
    error(await http.get("/v1/messages", params=params), 422, field)


async def test_a_resend_of_an_unknown_message_is_404_and_sends_nothing(stack, http, uid, pending):
    key = f"interview-{uid}/followup-1"  # the journey exists, but that follow-up is two days away
    error(await http.post(f"/v1/messages/{key}/resend"), 404, "key")
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        outbox = Outbox(conn)
        assert await outbox.get(key) is None and await outbox.get(f"{key}/resend-1") is None
    finally:
        await conn.close()
    await assert_no_workflow(stack, resend_workflow_id(f"{key}/resend-1"))
    assert await shown(http, uid) == pending
