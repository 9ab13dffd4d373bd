"""Seeds 003 and 004 for class sessions on the time-skipping server, with the real send step
(PostgreSQL + SMTP) and a real local webhook receiver for the webhook channel."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from activities.webhook import signature
from starter.service import Journeys
from workflows.registry import SESSION
from starter.sink import free_port
from tests.workflow.conftest import Driver, driver_fixture
from workflows.session.models import Attendee, ClassSession, SESSION_CLOSED, SessionEvent, SessionStatus, Tutor, session_event
from workflows.session.workflow import SessionJourney

H = timedelta(hours=1)
M = timedelta(minutes=1)
D = timedelta(days=1)
WEBHOOK_SECRET = "hook-secret"


class Receiver:
    """A real HTTP server on a socket that checks the signature and keeps what it got."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.bad_signatures = 0
        self.port = free_port()

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        expected = signature(WEBHOOK_SECRET, request.headers["X-Followups-Timestamp"], body)
        if request.headers.get("X-Followups-Signature") != expected:
            self.bad_signatures += 1
            return Response(status_code=401)
        self.received.append(json.loads(body))
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def receiver():
    """Served from its own thread and event loop, so fixtures can look it up synchronously."""
    hook = Receiver()
    app = Starlette(routes=[Route("/hook", hook.handle, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=hook.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield hook
    server.should_exit = True
    thread.join(timeout=10)


class SessionScenario(Driver):
    journey = SessionJourney
    closed = SESSION_CLOSED
    prefix = "session"

    def attendee(self, name: str, **fields) -> Attendee:
        return Attendee(attendee_id=name, name=name.capitalize(), email=f"{name}-{self.entity_id}@example.com",
                        **fields)

    async def start(self, starts_in: timedelta, attendees: list[Attendee], **fields) -> None:
        self.anchor = await self.now()
        fields.setdefault("tutor", Tutor(name="Tom", email=f"tutor-{self.entity_id}@example.com"))
        session = ClassSession(session_id=self.entity_id, title="Algebra 1", course="math-101",
                               starts_at=self.anchor + starts_in, ends_at=self.anchor + starts_in + H,
                               join_url="https://lms.example.com/join/1", attendees=attendees, **fields)
        await Journeys(self.client, self.settings, SESSION).start_durably(session)

    async def event(self, kind: str, **fields) -> None:
        await self.signal(session_event(kind=kind, **fields))

    async def by_attendee(self) -> dict[str, list[str]]:
        """attendee → the steps actually delivered to them (email channel)."""
        delivered: dict[str, list[str]] = {}
        for step, _ in await self.sent():
            parts = step.split("/")
            if len(parts) == 3:
                delivered.setdefault(parts[1], []).append(parts[0].split("-")[0] + "-" + parts[0].split("-")[1]
                                                          if parts[0].startswith("reminder") else parts[0])
        return delivered


def _webhook(request) -> dict:
    hook = request.getfixturevalue("receiver")
    return {"webhook_url": f"http://127.0.0.1:{hook.port}/hook", "webhook_secret": WEBHOOK_SECRET}


session = driver_fixture(SessionScenario, settings_from=_webhook)


async def test_roster_changes_between_reminders(session):
    await session.start(2 * D, [session.attendee("ann"), session.attendee("bob")])
    await session.at(2 * D - 20 * H)  # after the 24 h reminder
    await session.event("add_attendee", attendee=session.attendee("cy"))
    await session.event("remove_attendee", attendee_id="bob")
    await session.at(2 * D + 2 * H)
    got = await session.by_attendee()
    assert got == {"ann": ["reminder-1d", "reminder-15m"], "bob": ["reminder-1d"], "cy": ["reminder-15m"]}
    assert (await session.state()).status == SessionStatus.ENDED


async def test_reschedule_after_the_24h_reminder_replans_both(session):
    await session.start(2 * D, [session.attendee("ann")])
    await session.at(2 * D - 23 * H)  # the 24 h reminder went out
    await session.event("reschedule", starts_at=session.anchor + 4 * D, ends_at=session.anchor + 4 * D + H)
    state = await session.state()
    assert state.next_step.at == session.anchor + 3 * D  # the new time's 24 h reminder
    await session.at(4 * D + 2 * H)
    sent = [(step, offset) for step, offset in await session.sent()]
    assert [offset for _, offset in sent] == [1 * D, 3 * D, 4 * D - 15 * M]
    assert sum(1 for step, _ in sent if "reminder-15m" in step) == 1  # none for the old time


async def _on_first_delivery(session, smtp, step: str, event: str, **fields) -> None:
    """Send `event` as soon as the SMTP sink holds the first message of `step`: it lands while
    the fan-out's first chunk is still in flight, whatever the machine's speed."""
    prefix = f"session-{session.entity_id}/{step}"
    for _ in range(600):
        if any(key.startswith(prefix) for key in smtp.sink.keys()):
            await session.event(event, **fields)
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {step} message reached the sink")


CHUNK = 10  # attendees per fan-out activity: 45 attendees take 5 chunks


async def test_cancel_during_fan_out_notifies_everyone_once(session, smtp):
    roster = [session.attendee(f"s{i:02d}") for i in range(45)]
    await session.start(2 * D, roster, policy={"fan_out_chunk": CHUNK})
    await session.at(1 * D - M)
    smtp.sink.delay = 0.3  # a distant server: a chunk's sends are still in flight when the cancel comes
    try:
        cancel = asyncio.create_task(_on_first_delivery(session, smtp, "reminder-1d", "cancel", reason="tutor ill"))
        await session.at(1 * D + timedelta(seconds=1))  # the 24 h reminder fan-out is under way
        await cancel
        final = await session.result()
    finally:
        smtp.sink.delay = 0.0
    assert final.status == SessionStatus.CANCELLED
    got = await session.by_attendee()
    assert set(got) == {a.attendee_id for a in roster}
    for steps in got.values():
        assert steps.count("cancelled") == 1 and steps.count("reminder-1d") <= 1
    reminded = sum("reminder-1d" in steps for steps in got.values())
    # the cut came between chunks: the chunk in flight (and at most the one after it) went out, no more
    assert reminded in (CHUNK, 2 * CHUNK), reminded
    [skip] = [s for s in final.skips if "/reminder-1d" in s.step]
    assert "cancelled or moved" in skip.reason and f"{len(roster) - reminded} attendee(s)" in skip.reason, skip
    assert final.messages_sent == reminded + len(roster)  # the reminders, then everyone's cancellation notice


async def test_complete_during_feedback_fan_out_stops_the_rest(session, smtp):
    roster = [session.attendee(f"s{i:02d}") for i in range(45)]
    await session.start(1 * H, roster, policy={"fan_out_chunk": CHUNK})
    await session.at(2 * H + 24 * H - M)  # just before the feedback reminders
    smtp.sink.delay = 0.3
    try:
        complete = asyncio.create_task(_on_first_delivery(session, smtp, "feedback", "complete"))
        await session.at(2 * H + 24 * H + timedelta(seconds=1))  # the feedback fan-out is under way
        await complete
        final = await session.result()
    finally:
        smtp.sink.delay = 0.0
    assert final.status == SessionStatus.COMPLETED
    asked = [k for k, _ in await session.sent() if k.startswith("feedback/")]
    assert len(asked) in (CHUNK, 2 * CHUNK), asked
    [skip] = [s for s in final.skips if s.step.endswith("/feedback")]
    assert "completed during the fan-out" in skip.reason and f"{len(roster) - len(asked)} attendee(s)" in skip.reason


async def test_recording_feedback_window_and_first_session_checkin_escalation(session):
    tutor = Tutor(name="Tom", email=f"tutor-{session.entity_id}@example.com", first_session=True)
    await session.start(1 * H, [session.attendee("ann"), session.attendee("bob")], tutor=tutor,
                        manager_email=f"manager-{session.entity_id}@example.com",
                        feedback_url="https://lms.example.com/feedback/1")
    await session.at(2 * H + 30 * M)  # ended 30 min ago
    await session.event("recording_available", recording_url="https://lms.example.com/rec/1")
    await session.event("recording_available", recording_url="https://lms.example.com/rec/1")
    await session.event("feedback", attendee_id="ann")
    await session.at(4 * H + 5 * M)  # check-in went out at end + 2 h
    await session.event("checkin_answer", ok=False, comment="students could not hear me")
    final = await session.result()
    assert final.status == SessionStatus.COMPLETED
    sent = dict(await session.sent())
    assert sent["checkin"] == 4 * H and sent["escalation"] > 4 * H
    assert {k for k in sent if k.startswith("recording/")} == {"recording/ann/email", "recording/bob/email"}
    assert [k for k in sent if k.startswith("feedback/")] == ["feedback/bob/email"]
    assert sent["feedback/bob/email"] == 2 * H + 24 * H


async def test_a_checkin_answer_where_none_was_asked_is_refused(session):
    await session.start(1 * H, [session.attendee("ann")], manager_email=f"manager-{session.entity_id}@example.com")
    await session.at(4 * H + 5 * M)  # a first session's check-in would have gone out at end + 2 h
    await session.event("checkin_answer", ok=False, comment="nobody asked me")
    state = await session.state()
    assert not state.events[-1].applied and "no check-in was asked" in state.events[-1].reason
    assert state.checkin_answer is None and not state.escalation_pending
    await session.event("complete")
    await session.result()
    assert not [k for k, _ in await session.sent() if k in ("checkin", "escalation")]


async def test_an_event_id_reused_for_a_cancel_is_refused_and_the_class_goes_on(session):
    """The fuzzer's dropped cancel: an add_attendee's event_id sent again on a cancel. Through a
    signal (no one to answer) it is refused in the log, by name, and the class keeps its plan."""
    await session.start(2 * D, [session.attendee("ann")])
    await session.event("add_attendee", attendee=session.attendee("bob"), event_id="e-1")
    await session.event("cancel", event_id="e-1")
    await session.event("add_attendee", attendee=session.attendee("bob"), event_id="e-1")  # a true retry
    for _ in range(200):  # the roster changes are activities: wait for both outcomes
        state = await session.state()
        if len(state.events) == 2 and state.roster_size == 2:
            break
        await asyncio.sleep(0.05)
    assert state.status == SessionStatus.SCHEDULED and state.roster_size == 2
    assert sorted((e.event, e.code) for e in state.events) == [("e-1", "applied"), ("e-1", "conflict")]
    refused = next(e for e in state.events if e.code == "conflict")
    assert "add_attendee" in refused.reason and refused.field == "event_id"
    await session.at(2 * D + 2 * H)
    assert await session.by_attendee() == {"ann": ["reminder-1d", "reminder-15m"], "bob": ["reminder-1d", "reminder-15m"]}


async def test_feedback_reminder_is_planned_24_to_48h_after_the_end_and_only_once(session):
    await session.start(1 * H, [session.attendee("ann")])
    await session.at(2 * H + M)
    plan = (await session.state()).next_step
    assert (plan.kind, plan.at, plan.not_after) == ("feedback", session.anchor + 2 * H + 24 * H,
                                                    session.anchor + 2 * H + 48 * H)
    final = await session.result()
    assert [k for k, _ in await session.sent() if k.startswith("feedback")] == ["feedback/ann/email"]
    assert final.status == SessionStatus.COMPLETED


async def test_webhook_channel_is_signed_and_keyed(session, receiver):
    receiver.received.clear()
    await session.start(2 * D, [session.attendee("ann", channels=["email", "webhook"], phone="+4915112345678")])
    await session.at(1 * D + M)
    for _ in range(100):
        if receiver.received:
            break
        await asyncio.sleep(0.05)
    [hook] = receiver.received
    assert receiver.bad_signatures == 0
    assert hook["key"].endswith("/ann/webhook") and hook["to"]["phone"] == "+4915112345678"
    assert "Algebra 1" in hook["subject"] and "https://lms.example.com/join/1" in hook["text"]
    assert [step.split("/")[-1] for step, _ in await session.sent()] == ["email", "webhook"]
    # a forced resend goes the way the message first went: by webhook, to the same phone
    from workflows.resend import ResendMessage

    # In real time: waiting with time skipping on would also run the class's 15-minute reminder, whose
    # send, in flight when this worker stops, would hold the shared server's clock for the next tests.
    with session.env.auto_time_skipping_disabled():
        resent = await session.client.execute_workflow(
            ResendMessage.run, args=[hook["key"], hook["key"] + "/resend-1"], id=f"resend-{hook['key']}/resend-1",
            task_queue=session.settings.temporal_task_queue)
    assert resent.status == "sent"
    for _ in range(100):
        if len(receiver.received) > 1:
            break
        await asyncio.sleep(0.05)
    assert [(h["key"], h["to"]["phone"]) for h in receiver.received[1:]] == [(hook["key"] + "/resend-1",
                                                                               "+4915112345678")]
