"""Class sessions and bulk actions through the HTTP API on the real dev server, PostgreSQL, an SMTP
sink over a socket and a real local webhook receiver. Timings compressed to seconds."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from activities.webhook import signature
from settings import Settings
from starter.sink import free_port


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret, self.port = secret, free_port()
        self.received: list[dict] = []
        self.answers: list[int] = []  # statuses to answer with first (then 200)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("X-Followups-Signature") != signature(
                self.secret, request.headers["X-Followups-Timestamp"], body):
            return Response(status_code=401)
        if self.answers:
            return Response(status_code=self.answers.pop(0))
        self.received.append(json.loads(body))
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def receiver():
    hook = Receiver("it-secret")
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/hook", hook.handle, methods=["POST"])]),
                                           host="127.0.0.1", port=hook.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield hook
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
async def hooked(local_env, database_url, smtp, receiver):
    """A second API + worker whose settings name the webhook receiver."""
    import worker
    from starter.api import create_app

    port = free_port()
    settings = Settings(database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port, api_port=port,
                        temporal_task_queue=f"hooked-{uuid.uuid4().hex[:8]}", signing_secret="test-secret",
                        api_keys=["test-key"], public_base_url=f"http://127.0.0.1:{port}",
                        webhook_url=f"http://127.0.0.1:{receiver.port}/hook", webhook_secret="it-secret")
    async with worker.running_worker(settings, local_env.client):
        server = uvicorn.Server(uvicorn.Config(create_app(settings, client=local_env.client), host="127.0.0.1",
                                               port=port, log_level="warning"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            yield httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                    headers={"Authorization": "Bearer test-key"}, timeout=30)
        finally:
            server.should_exit = True
            await task


def _session(uid: str, starts_in: float, attendees: list[dict], **fields) -> dict:
    start = datetime.now(timezone.utc) + timedelta(seconds=starts_in)
    return {"session_id": uid, "title": "Algebra 1", "course": f"course-{uid}", "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(seconds=2)).isoformat(), "join_url": "https://lms.example.com/j/1",
            "tutor": {"name": "Tom", "email": f"tutor-{uid}@example.com"}, "attendees": attendees, **fields}


def _attendee(uid: str, name: str, **fields) -> dict:
    return {"attendee_id": name, "name": name.capitalize(), "email": f"{name}-{uid}@example.com", **fields}


async def _until(check, timeout: float = 30.0):
    for _ in range(int(timeout * 10)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("condition never met")


async def test_reminders_by_email_and_webhook_with_a_retried_429(hooked, receiver, smtp, uid):
    receiver.answers[:] = [429]  # the provider bridge is busy once: retried, then delivered once
    # due 12 s from now (the roster change below has that long to land); the retry comes 5 s later,
    # still before the class (the reminder's last moment)
    body = _session(uid, 25, [_attendee(uid, "ann", channels=["email", "webhook"], phone="+4915112345678"),
                              _attendee(uid, "bob")], policy={"reminder_offsets": [13]})
    created = await hooked.post("/v1/sessions", json=body)
    assert created.status_code == 201, created.text
    assert (await hooked.post(f"/v1/sessions/{uid}/attendees",
                              json={"attendee": _attendee(uid, "cy")})).status_code == 200

    async def all_sent():
        rows = (await hooked.get(f"/v1/sessions/{uid}")).json()["messages"]
        return rows if len(rows) == 4 and all(r["status"] == "sent" for r in rows) else None

    rows = await _until(all_sent)
    assert sorted(r["key"].split("/", 2)[2] for r in rows) == ["ann/email", "ann/webhook", "bob/email", "cy/email"]
    webhook_row = next(r for r in rows if r["key"].endswith("/webhook"))
    assert webhook_row["attempts"] == 2
    [hook] = [h for h in receiver.received if h["entity_id"] == uid]
    assert hook["to"]["phone"] == "+4915112345678" and "Algebra 1" in hook["subject"]
    keys = smtp.sink.keys()
    assert [keys[r["key"]] for r in rows if r["key"].endswith("/email")] == [1, 1, 1]


async def test_a_webhook_400_is_final_and_recorded(hooked, receiver, uid):
    receiver.answers[:] = [400]
    body = _session(uid, 3, [_attendee(uid, "ann", channels=["webhook"])], policy={"reminder_offsets": [2]})
    assert (await hooked.post("/v1/sessions", json=body)).status_code == 201

    async def failed():
        rows = (await hooked.get(f"/v1/sessions/{uid}")).json()["messages"]
        return rows if rows and rows[0]["status"] == "failed" else None

    [row] = await _until(failed)
    assert row["attempts"] == 1 and "400" in row["reason"]


async def test_bulk_cancel_of_a_course_reports_matched_and_changed(hooked, uid):
    course = f"bulk-{uid}"
    ids = [f"{uid}-{i}" for i in range(4)]
    for session_id in ids:
        body = _session(session_id, 3600, [_attendee(uid, "ann")], course=course)
        assert (await hooked.post("/v1/sessions", json=body)).status_code == 201
    other = _session(f"{uid}-other", 3600, [], course=f"other-{uid}")
    assert (await hooked.post("/v1/sessions", json=other)).status_code == 201

    async def all_listed():
        report = await hooked.post("/v1/bulk/signal", json={
            "journey": "session", "group": course, "event": {"kind": "feedback", "attendee_id": "probe"}})
        return report.json() if report.json()["matched"] == 4 else None

    await _until(all_listed)  # visibility is eventually consistent
    request = {"group": course, "reason": "course withdrawn", "request_id": f"r-{uid}"}
    first = (await hooked.post("/v1/bulk/cancel", json=request)).json()
    assert (first["matched"], first["changed"]) == (4, 4), first
    assert "JourneyGroup = 'bulk-" in first["query"]
    for session_id in ids:
        state = (await hooked.get(f"/v1/sessions/{session_id}")).json()["state"]
        assert state["status"] == "cancelled", state
    assert (await hooked.get(f"/v1/sessions/{uid}-other")).json()["state"]["status"] == "scheduled"
    again = (await hooked.post("/v1/bulk/cancel", json=request)).json()
    assert again["changed"] == 0


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/bulk/cancel", {}, "journey"),                                                # no filter
    ("/v1/bulk/cancel", {"group": "x' OR 1=1"}, "group"),                              # injection
    ("/v1/bulk/signal", {"group": "g", "event": {"kind": "replied"}}, "journey"),      # kind needed
    ("/v1/bulk/signal", {"journey": "lead", "event": {"kind": "nope"}}, "event.kind"),
    ("/v1/bulk/signal", {"journey": "lead", "event": {"kind": "replied", "event_id": "x"}}, "event.event_id"),
])
async def test_bad_bulk_requests_are_a_clear_422(hooked, path, body, field):
    response = await hooked.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(("change", "field"), [
    (lambda b: b.update(ends_at=b["starts_at"]), "ends_at"),
    (lambda b: b.update(starts_at="2020-01-01T00:00:00+00:00", ends_at="2020-01-01T01:00:00+00:00"), "starts_at"),
    (lambda b: b["attendees"].append(dict(b["attendees"][0])), "attendees"),
    (lambda b: b["attendees"][0].update(phone="12345"), "attendees.0.phone"),
    (lambda b: b["attendees"][0].update(channels=["sms"]), "attendees.0.channels.0"),
    (lambda b: b.update(tutor={"name": "T"}), "tutor.email"),
])
async def test_bad_sessions_are_a_clear_422_and_start_nothing(hooked, uid, change, field):
    body = _session(uid, 3600, [_attendee(uid, "ann")])
    change(body)
    response = await hooked.post("/v1/sessions", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"].startswith(field.split(".")[0]) and field in json.dumps(response.json())
    assert (await hooked.get(f"/v1/sessions/{uid}")).status_code == 404


async def test_a_roster_grows_by_batches_and_reads_back_a_page_at_a_time(hooked, smtp, uid):
    first = [_attendee(uid, f"a{n:04d}") for n in range(300)]
    started = await hooked.post("/v1/sessions", json=_session(uid, 80, first, policy={
        "reminder_offsets": ["PT75S"], "reminder_grace": "PT1M", "fan_out_chunk": 200}))
    assert started.status_code == 201, started.text
    more = [_attendee(uid, f"b{n:04d}") for n in range(1000)]
    batch = await hooked.post(f"/v1/sessions/{uid}/attendees", json={"attendees": more, "event_id": f"b-{uid}"})
    assert batch.status_code == 200, batch.text
    assert batch.json()["event"]["code"] == "applied" and batch.json()["state"]["roster_size"] == 1300
    again = await hooked.post(f"/v1/sessions/{uid}/attendees", json={"attendees": more, "event_id": f"b-{uid}"})
    assert again.json()["event"] == batch.json()["event"]  # a retry answers as the first delivery did
    same = await hooked.post(f"/v1/sessions/{uid}/attendees", json={"attendees": more[:2]})
    assert same.json()["event"]["code"] == "no_change"
    gone = await hooked.delete(f"/v1/sessions/{uid}/attendees/a0001")
    assert gone.status_code == 200 and gone.json()["state"]["roster_size"] == 1299
    both = await hooked.post(f"/v1/sessions/{uid}/attendees", json={"attendee": first[0], "attendees": more[:1]})
    assert both.status_code == 422 and both.json()["field"] == "body", both.text
    too_many = [_attendee(uid, f"c{n:04d}") for n in range(1001)]
    refused = await hooked.post(f"/v1/sessions/{uid}/attendees", json={"attendees": too_many})
    assert refused.status_code == 422 and refused.json()["field"] == "attendees", refused.text

    seen, after = [], None
    while True:
        page = (await hooked.get(f"/v1/sessions/{uid}/attendees", params={"limit": 500, **({"after": after} if after else {})})).json()
        seen += [a["attendee_id"] for a in page["attendees"]]
        if not (after := page["next_after"]):
            break
    assert len(seen) == 1299 and seen == sorted(seen) and "a0001" not in seen

    # the reminder 75 s before, about 5 s from the start call: everyone on the roster gets it once, in
    # chunks of 200; the removed one not. Its grace is a minute (the class is further off), so a busy
    # machine has a minute for the 1,299 mails before the rest would be recorded as too late.
    keys = await _until(lambda: _reminded(smtp, uid, 1299), timeout=90)
    assert not [k for k in keys if "/a0001/" in k]
    await hooked.post(f"/v1/sessions/{uid}/cancel", json={"notify": False})


async def _reminded(smtp, uid: str, expected: int):
    keys = [k for k in smtp.sink.keys() if k.startswith(f"session-{uid}/reminder-1m15s")]
    return keys if len(keys) >= expected else None


async def test_an_event_its_rules_refuse_for_an_unknown_session_creates_nothing(hooked, local_env, uid):
    refused = await hooked.post(f"/v1/sessions/{uid}/recording", json={"recording_url": "https://lms.example.com/r/1"})
    assert refused.status_code == 422 and "not started" in refused.json()["detail"], refused.text
    assert (await hooked.get(f"/v1/sessions/{uid}")).status_code == 404
    started = await hooked.post("/v1/sessions", json=_session(uid, 3600, []))
    assert started.status_code == 201 and started.json()["created"] is True, started.text  # the id was not used up
    await hooked.post(f"/v1/sessions/{uid}/cancel", json={"notify": False})
