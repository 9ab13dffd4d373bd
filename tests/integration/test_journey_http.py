"""The interview journey end to end, as a backend drives it: the real HTTP API on a socket, the real
worker, the Temporal dev server, PostgreSQL and the SMTP sink, with the policy compressed to seconds.

Every test uses its own interview id and candidate address, so the session's shared sink needs no
reset: a test only ever reads the keys and addresses it made, and undoes what it configured.
Waits poll with a deadline; nothing asserts how long a step took.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus

from starter.views import VIEWS, MessageView

InterviewView = VIEWS["interview"]
from starter.client import FollowupsClient, FollowupsError
from workflows.contracts import Recipient
from workflows.core.steps import PlannedStep, StepKind
from workflows.interview.models import InterviewPolicyOverrides, InterviewState, InterviewStatus, Invitation

DEADLINE = 30.0  # seconds any one awaited thing may take on a loaded 2-core machine


def expected_message_id(key: str, domain: str) -> str:
    """The Message-ID format, written out here rather than taken from the code under test: the
    first 32 hex digits of the key's SHA-256 at the sender's domain."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


# --- waiting ----------------------------------------------------------------------------------


async def eventually(probe, what: str, timeout: float = DEADLINE, every: float = 0.1) -> Any:
    """Poll `probe()` (plain or async) until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def fast(**overrides: Any) -> dict[str, Any]:
    """A policy in seconds: follow-up 1 two seconds after the invitation, then every two seconds."""
    return {"followup_after": 2, "followup_interval": 2, "max_followups": 1, "expire_after": 600, **overrides}


# --- the backend's side: HTTP ---------------------------------------------------------------


class Backend:
    """What a backend does over HTTP, plus the few reads the assertions need."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.started: list[str] = []

    async def start(self, interview_id: str, email: str, policy: dict[str, Any], **fields: Any) -> dict:
        body = {
            "interview_id": interview_id,
            "candidate": {"email": email, "name": "Ada Candidate"},
            "slot_selection_url": f"https://jobs.example.com/slots/{interview_id}",
            "policy": policy,
            **fields,
        }
        response = await self.http.post("/v1/interviews", json=body)
        assert response.status_code == 201, response.text
        self.started.append(interview_id)
        return response.json()

    async def show(self, interview_id: str) -> dict:
        response = await self.http.get(f"/v1/interviews/{interview_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def messages(self, interview_id: str) -> list[dict]:
        response = await self.http.get("/v1/messages", params={"journey": "interview", "entity_id": interview_id})
        assert response.status_code == 200, response.text
        return response.json()

    async def message(self, interview_id: str, key: str) -> dict | None:
        return next((m for m in await self.messages(interview_id) if m["key"] == key), None)

    async def state_when(self, interview_id: str, predicate, what: str) -> dict:
        """The live state once `predicate(state)` holds: the journey records a send's outcome only
        after the send step returns, a moment after the outbox row says so."""
        async def probe() -> dict | None:
            state = (await self.show(interview_id))["state"]
            return state if state and predicate(state) else None

        return await eventually(probe, what)

    async def message_when(self, interview_id: str, key: str, status: str) -> dict:
        async def probe() -> dict | None:
            row = await self.message(interview_id, key)
            return row if row and row["status"] == status else None

        return await eventually(probe, f"{key} to be recorded {status}")


@pytest_asyncio.fixture
async def backend(stack) -> Any:
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=DEADLINE) as http:
        backend = Backend(http)
        yield backend
        for interview_id in backend.started:  # leave nothing sending into the next test
            await http.post(f"/v1/interviews/{interview_id}/cancel", json={"reason": "test over"})


# --- the SMTP sink's side -------------------------------------------------------------------


def delivered(stack, key: str) -> list[EmailMessage]:
    return [m for m in list(stack.smtp.sink.messages) if m.get("X-Followups-Key") == key]


def deliveries_for(stack, interview_id: str) -> Counter[str]:
    prefix = f"interview-{interview_id}/"
    return Counter({k: n for k, n in stack.smtp.sink.keys().items() if k.startswith(prefix)})


async def arrival(stack, key: str) -> EmailMessage:
    found = await eventually(lambda: delivered(stack, key), f"{key} to reach the SMTP sink")
    return found[0]


def raw_header(msg: EmailMessage, name: str) -> str:
    """The header as it was on the wire, unfolded (RFC 5322 §2.2.3): what a mail client parses."""
    values = [value for key, value in msg.raw_items() if key.lower() == name.lower()]
    assert len(values) == 1, f"{name}: {values}"
    return re.sub(r"\r?\n(?=[ \t])", "", values[0]).strip()


def unsubscribe_url(msg: EmailMessage) -> str:
    """The one-click URL, from the decoded List-Unsubscribe header."""
    found = re.fullmatch(r"\s*<([^>]+)>\s*", str(msg["List-Unsubscribe"]))
    assert found, msg["List-Unsubscribe"]
    return found[1]


def parts(msg: EmailMessage) -> tuple[str, str]:
    """(text, html) of a multipart/alternative message, checking the order: text first, HTML last."""
    assert msg.get_content_type() == "multipart/alternative", msg.get_content_type()
    children = list(msg.iter_parts())
    assert [p.get_content_type() for p in children] == ["text/plain", "text/html"]
    return children[0].get_content(), children[1].get_content()


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.forms: list[dict[str, str | None]] = []
        self.buttons = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]
        elif tag == "form":
            self.forms.append(dict(attrs))
        elif tag == "button" or (tag == "input" and ("type", "submit") in attrs):
            self.buttons += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def html_of(markup: str) -> _Html:
    parsed = _Html()
    parsed.feed(markup)
    parsed.close()
    return parsed


class Refusals:
    """Makes the shared sink refuse this test's addresses, always or only the first `times`
    attempts; `attempts` is the sink's count of RCPTs per address, refused or not."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.attempts = sink.rcpt_attempts
        self._configured: set[str] = set()

    def refuse(self, address: str, reply: str, times: int | None = None) -> None:
        address = address.lower()
        self.sink.refuse[address] = reply
        if times is not None:
            self.sink.refuse_times[address] = times
        self._configured.add(address)

    def undo(self) -> None:
        for address in self._configured:
            self.sink.refuse.pop(address, None)
            self.sink.refuse_times.pop(address, None)


@pytest.fixture
def refusals(stack) -> Iterator[Refusals]:
    spy = Refusals(stack.smtp.sink)
    try:
        yield spy
    finally:
        spy.undo()


async def workflow_closed(stack, workflow_id: str) -> WorkflowExecutionStatus:
    handle = stack.temporal.get_workflow_handle(workflow_id)

    async def probe() -> WorkflowExecutionStatus | None:
        status = (await handle.describe()).status
        return status if status != WorkflowExecutionStatus.RUNNING else None

    return await eventually(probe, f"workflow {workflow_id} to close")


# --- 1. a follow-up as it arrives ---------------------------------------------------------------


async def test_followup_arrives_multipart_with_slot_link_one_click_unsubscribe_and_postal_address(stack, backend, uid):
    email = f"ada-{uid}@example.com"
    slot_url = f"https://jobs.example.com/slots/{uid}?lang=en&source=mail"  # '&': escaped in HTML, not in text
    started = await backend.start(uid, email, fast(), slot_selection_url=slot_url)
    assert started["state"]["status"] == "pending"
    assert started["state"]["next_step"]["kind"] == "followup"
    key = f"interview-{uid}/followup-1"

    msg = await arrival(stack, key)
    text, html = parts(msg)
    page = html_of(html)
    assert slot_url in text
    # The button goes through the signed click redirect (tracking), which leads to the slot URL intact
    # ('&' autoescaped in the markup, decoded once parsed and stored).
    [tracked] = [href for href in page.hrefs if href.startswith(f"{stack.settings.public_base_url}/t/c/")]
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(tracked)).headers["location"] == slot_url

    domain = stack.settings.sender_email.rpartition("@")[2]
    assert msg["Message-ID"] == expected_message_id(key, domain)  # derived from the key: a duplicate is recognisable
    assert email in msg["To"]
    assert stack.settings.sender_email in msg["From"]

    # RFC 2369 / 8058, read as a mail client reads the wire: `<URL>`, never RFC 2047 encoded-words.
    list_unsubscribe = raw_header(msg, "List-Unsubscribe")
    assert "=?" not in list_unsubscribe, f"List-Unsubscribe went out as encoded-words: {list_unsubscribe!r}"
    found = re.fullmatch(r"<(https?://[^\s<>]+)>", list_unsubscribe)
    assert found, list_unsubscribe
    url = found[1]
    assert url.startswith(f"{stack.settings.public_base_url}/v1/unsubscribe/")
    assert url == unsubscribe_url(msg)
    assert raw_header(msg, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"

    postal = stack.settings.postal_address
    assert postal in text
    assert postal in "".join(page.text)
    assert url in text and url in page.hrefs  # the footer's opt-out link is the header's

    row = await backend.message_when(uid, key, "sent")
    assert row["recipient"] == email
    assert row["template"] == "interview_followup"
    assert row["subject"] == msg["Subject"]
    assert row["message_id"] == msg["Message-ID"]
    assert row["attempts"] == 1
    assert at(row["sent_at"]) is not None
    assert [m["key"] for m in await backend.messages(uid)] == [key]
    assert deliveries_for(stack, uid) == {key: 1}


# --- 2. one-click unsubscribe -----------------------------------------------------------------


async def test_one_click_unsubscribe_stops_the_next_followup_and_a_get_changes_nothing(stack, backend, uid):
    # Follow-up 2 comes 12 s after follow-up 1: the unsubscribe (or the GET) lands in between, with
    # room for a loaded machine (a few hundred ms is what it takes when idle).
    policy = fast(max_followups=2, followup_interval=12)
    leaving, staying = f"leaving-{uid}", f"staying-{uid}"
    leaving_email, staying_email = f"leave-{uid}@example.com", f"stay-{uid}@example.com"
    await backend.start(leaving, leaving_email, policy)
    await backend.start(staying, staying_email, policy)

    first = await arrival(stack, f"interview-{leaving}/followup-1")
    async with httpx.AsyncClient(timeout=DEADLINE) as mail_client:  # no API key, no cookie
        response = await mail_client.post(
            unsubscribe_url(first),
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert response.status_code == 200, response.text

        # A link scanner's GET shows a page with a button that POSTs, and unsubscribes nobody.
        other = await arrival(stack, f"interview-{staying}/followup-1")
        page = await mail_client.get(unsubscribe_url(other), follow_redirects=False)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        markup = html_of(page.text)
        assert markup.buttons >= 1
        assert [(f.get("method") or "").lower() for f in markup.forms] == ["post"]

    second = f"interview-{leaving}/followup-2"
    skipped = await backend.message_when(leaving, second, "skipped")
    assert "unsubscribe" in (skipped["reason"] or ""), skipped
    assert skipped["sent_at"] is None
    assert not delivered(stack, second)
    state = await backend.state_when(leaving, lambda s: any(k["step"] == second for k in s["skips"]),
                                     "the journey to record follow-up 2's skip")
    assert any(s["step"] == second and "unsubscribe" in s["reason"] for s in state["skips"]), state["skips"]

    kept = await backend.message_when(staying, f"interview-{staying}/followup-2", "sent")
    assert kept["reason"] is None
    assert deliveries_for(stack, staying) == {f"interview-{staying}/followup-1": 1, f"interview-{staying}/followup-2": 1}
    assert deliveries_for(stack, leaving) == {f"interview-{leaving}/followup-1": 1}


# --- 3. a hard bounce -------------------------------------------------------------------------


async def test_550_5_1_1_is_failed_once_not_retried_and_suppresses_the_address(stack, backend, refusals, uid):
    email = f"nobody-{uid}@example.com"
    refusals.refuse(email, "550 5.1.1 <%s>: no such user here" % email)
    await backend.start(uid, email, fast(max_followups=2))
    first, second = f"interview-{uid}/followup-1", f"interview-{uid}/followup-2"

    failed = await backend.message_when(uid, first, "failed")
    assert "550" in failed["reason"] and "5.1.1" in failed["reason"] and "no such user" in failed["reason"], failed
    assert failed["attempts"] == 1
    assert failed["sent_at"] is None

    # Follow-up 2 is only planned once follow-up 1's send step has ended for good: no retry is left.
    skipped = await backend.message_when(uid, second, "skipped")
    assert "suppressed" in (skipped["reason"] or "") and "5.1.1" in skipped["reason"], skipped
    assert refusals.attempts[email] == 1  # the sink saw one attempt, for follow-up 1 only
    assert (await backend.message(uid, first))["attempts"] == 1
    assert deliveries_for(stack, uid) == {}

    state = await backend.state_when(uid, lambda s: len(s["skips"]) == 2, "the journey to record both skips")
    reasons = {s["step"]: s["reason"] for s in state["skips"]}
    assert "550" in reasons[first] and "5.1.1" in reasons[first], reasons
    assert "suppressed" in reasons[second], reasons


# --- 4. a soft refusal ------------------------------------------------------------------------


async def test_451_is_retried_then_delivered_exactly_once(stack, backend, refusals, uid):
    email = f"busy-{uid}@example.com"
    refusals.refuse(email, "451 4.3.0 mailbox busy, try again later", times=1)
    await backend.start(uid, email, fast())
    key = f"interview-{uid}/followup-1"

    sent = await backend.message_when(uid, key, "sent")  # the first retry comes 5 s after the refusal
    assert sent["attempts"] == 2, sent
    assert sent["reason"] is None  # delivered cleanly, not "sent again after an interrupted attempt"
    assert refusals.attempts[email] == 2
    assert len(delivered(stack, key)) == 1
    state = await backend.state_when(uid, lambda s: s["followups_sent"] == 1, "the journey to count the follow-up")
    assert state["skips"] == [], state
    assert len(delivered(stack, key)) == 1


# --- 5. confirm, then reschedule ----------------------------------------------------------------


async def test_confirm_then_reschedule_returns_the_new_plan_and_reminds_only_for_the_final_time(
    stack, backend, uid
):
    email = f"moved-{uid}@example.com"
    before = timedelta(seconds=3)
    # No follow-up in the way; reminders 3 s before the interview. The first time's reminder would
    # be due 13 s from now: the confirm and the reschedule have that long to land, not 5 s.
    await backend.start(uid, email, fast(followup_after=3600, reminder_before=3))
    now = utc_now().replace(microsecond=0)
    first_time, final_time = now + timedelta(seconds=16), now + timedelta(seconds=20)

    confirmed = await backend.http.post(f"/v1/interviews/{uid}/confirm", json={"scheduled_at": first_time.isoformat()})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["event"]["applied"] is True
    assert confirmed.json()["state"]["next_step"]["kind"] == "reminder"
    assert at(confirmed.json()["state"]["next_step"]["at"]) == first_time - before

    moved = await backend.http.post(f"/v1/interviews/{uid}/reschedule",
                                    json={"scheduled_at": final_time.isoformat(), "event_id": f"ats-{uid}-1"})
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["event"] == {"event": f"ats-{uid}-1", "applied": True, "reason": None, "code": "applied", "field": None,
                             "fingerprint": body["event"]["fingerprint"]}
    assert body["event"]["fingerprint"].startswith("reschedule:")  # what the id names: a reuse for another event is a 409
    assert body["state"]["status"] == "scheduled"
    assert at(body["state"]["scheduled_at"]) == final_time
    plan = body["state"]["next_step"]
    assert plan["kind"] == "reminder"
    assert at(plan["at"]) == final_time - before
    assert at(plan["not_after"]) <= final_time

    # literal formats: a change of key (or Message-ID) breaks dedupe across a deploy and must fail here
    final_key = f"interview-{uid}/reminder-{final_time.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}"
    first_key = f"interview-{uid}/reminder-{first_time.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}"
    reminder = await arrival(stack, final_key)
    assert reminder["Subject"].startswith("Reminder")
    row = await backend.message_when(uid, final_key, "sent")
    assert row["template"] == "interview_reminder"
    shown = (await backend.show(uid))["state"]
    if shown["status"] == "scheduled":  # between the reminder and the interview: only completion is left
        assert shown["next_step"]["kind"] == "complete"
        assert at(shown["next_step"]["at"]) == final_time

    async def completed() -> dict | None:
        state = (await backend.show(uid))["state"]
        return state if state["status"] == "completed" else None

    final = await eventually(completed, "the journey to complete at the interview time")
    assert final["reminders_sent"] == [final_key]
    assert final["next_step"] is None
    # The first time's reminder moment passed while the journey waited; it was never sent or recorded.
    assert deliveries_for(stack, uid) == {final_key: 1}
    assert not delivered(stack, first_key)
    assert [m["key"] for m in await backend.messages(uid)] == [final_key]
    assert await workflow_closed(stack, f"interview-{uid}") == WorkflowExecutionStatus.COMPLETED


# --- 6. cancel while pending --------------------------------------------------------------------


async def test_cancel_while_pending_sends_nothing_more_and_a_later_event_is_refused(stack, backend, uid):
    email = f"cancelled-{uid}@example.com"
    await backend.start(uid, email, fast(max_followups=3, followup_interval=8))  # 8 s for the cancel to land
    first = f"interview-{uid}/followup-1"
    await arrival(stack, first)
    await backend.message_when(uid, first, "sent")
    plan = (await backend.show(uid))["state"]["next_step"]
    assert plan["kind"] == "followup" and plan["number"] == 2, plan

    cancelled = await backend.http.post(f"/v1/interviews/{uid}/cancel", json={"reason": "position filled"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"]["status"] == "cancelled"
    assert cancelled.json()["state"]["next_step"] is None
    assert cancelled.json()["event"]["applied"] is True

    # Once the workflow has closed nothing can be sent; wait past follow-up 2's old moment to see it.
    assert await workflow_closed(stack, f"interview-{uid}") == WorkflowExecutionStatus.COMPLETED
    due = at(plan["at"])
    await eventually(lambda: utc_now() > due + timedelta(seconds=1), "follow-up 2's old due time to pass")
    assert deliveries_for(stack, uid) == {first: 1}
    assert [m["key"] for m in await backend.messages(uid)] == [first]
    state = (await backend.show(uid))["state"]
    assert state["status"] == "cancelled" and state["followups_sent"] == 1 and state["next_step"] is None

    late = await backend.http.post(f"/v1/interviews/{uid}/confirm",
                                   json={"scheduled_at": (utc_now() + timedelta(days=2)).isoformat()})
    assert late.status_code == 409, late.text
    assert late.json()["error"] == "Conflict"
    assert "ended" in late.json()["detail"] and "cancelled" in late.json()["detail"], late.json()
    again = await backend.http.post(f"/v1/interviews/{uid}/complete")
    assert again.status_code == 409, again.text
    assert deliveries_for(stack, uid) == {first: 1}


# --- 7. forced resend ---------------------------------------------------------------------------


async def test_forced_resend_goes_out_once_under_a_new_key_and_leaves_the_original_alone(stack, backend, uid):
    email = f"resend-{uid}@example.com"
    await backend.start(uid, email, fast())
    key = f"interview-{uid}/followup-1"
    await arrival(stack, key)
    original = await backend.message_when(uid, key, "sent")

    response = await backend.http.post(f"/v1/messages/{key}/resend")
    assert response.status_code == 202, response.text
    new_key = f"{key}/resend-1"
    assert response.json()["original_key"] == key
    assert response.json()["new_key"] == new_key

    again = await arrival(stack, new_key)
    resent = await backend.message_when(uid, new_key, "sent")
    assert await workflow_closed(stack, response.json()["workflow_id"]) == WorkflowExecutionStatus.COMPLETED
    assert len(delivered(stack, new_key)) == 1
    assert len(delivered(stack, key)) == 1
    domain = stack.settings.sender_email.rpartition("@")[2]
    assert again["Message-ID"] == resent["message_id"] == expected_message_id(new_key, domain) != original["message_id"]
    assert resent["recipient"] == email and resent["template"] == original["template"]
    assert resent["attempts"] == 1
    text, _ = parts(again)
    assert f"https://jobs.example.com/slots/{uid}" in text
    assert await backend.message(uid, key) == original  # every field as it was

    missing = await backend.http.post(f"/v1/messages/interview-{uid}/followup-9/resend")
    assert missing.status_code == 404, missing.text


# --- 8. the Python client -----------------------------------------------------------------------


async def test_python_client_start_confirm_show_and_messages_are_typed(stack, backend, uid):
    email = f"client-{uid}@example.com"
    invitation = Invitation(
        interview_id=uid,
        candidate=Recipient(email=email, name="Ada Client", time_zone="Europe/London"),
        slot_selection_url=f"https://jobs.example.com/slots/{uid}",
        policy=InterviewPolicyOverrides(followup_after=timedelta(seconds=2), max_followups=1,
                                        expire_after=timedelta(minutes=10)),
    )
    client = FollowupsClient(stack.base_url, api_key=stack.settings.api_keys[0], timeout=DEADLINE)
    backend.started.append(uid)  # cancelled at the end like every other
    try:
        # The client is synchronous and the API serves on this event loop: call it from a thread.
        started = await asyncio.to_thread(client.interviews.start, invitation)
        assert isinstance(started, InterviewView) and started.created is True
        assert isinstance(started.state, InterviewState)
        assert started.state.status is InterviewStatus.PENDING
        assert started.state.policy.followup_after == timedelta(seconds=2)
        again = await asyncio.to_thread(client.interviews.start, invitation)
        assert again.created is False

        key = f"interview-{uid}/followup-1"
        await backend.message_when(uid, key, "sent")
        await backend.state_when(uid, lambda s: s["followups_sent"] == 1, "the journey to count the follow-up")

        interview_at = (utc_now() + timedelta(days=3)).replace(microsecond=0)
        confirmed = await asyncio.to_thread(client.interviews.confirm, uid, scheduled_at=interview_at, event_id=f"ats-{uid}")
        assert isinstance(confirmed, InterviewView)
        assert confirmed.event is not None and confirmed.event.applied
        assert confirmed.state is not None and confirmed.state.status is InterviewStatus.SCHEDULED
        assert confirmed.state.scheduled_at == interview_at
        step = confirmed.state.next_step
        assert isinstance(step, PlannedStep) and step.kind is StepKind.REMINDER
        assert step.at == interview_at - timedelta(hours=24)  # the settings' default reminder_before

        shown = await asyncio.to_thread(client.interviews.get, uid)
        assert shown.state is not None and shown.state.status is InterviewStatus.SCHEDULED
        assert shown.state.followups_sent == 1
        assert [m.key for m in shown.messages] == [key]

        messages = await asyncio.to_thread(client.messages, "interview", "sent", uid)
        assert [type(m) for m in messages] == [MessageView]
        assert messages[0].key == key and messages[0].recipient == email
        assert isinstance(messages[0].sent_at, datetime) and messages[0].sent_at.tzinfo is not None

        with pytest.raises(FollowupsError) as missing:
            await asyncio.to_thread(client.interviews.get, f"missing-{uid}")
        assert missing.value.status == 404 and missing.value.field == "interview_id"
    finally:
        client.__exit__(None, None, None)
