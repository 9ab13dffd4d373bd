"""The appointment journey (seed 002) through the HTTP API and the Python client, on the real dev
server, PostgreSQL and an SMTP sink over a socket. Timings are compressed to seconds."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx

from starter.client import FollowupsClient
from workflows.appointment.models import Booking
from workflows.contracts import Recipient


def _booking(uid: str, in_seconds: float, **fields) -> dict:
    at = datetime.now(timezone.utc) + timedelta(seconds=in_seconds)
    return {
        "appointment_id": uid,
        "patient": {"email": f"p-{uid}@example.com", "name": "Pat", "time_zone": "America/New_York"},
        "scheduled_at": at.isoformat(),
        "doctor": "Dr. Rivera",
        "clinic": "Northside Clinic",
        **fields,
    }


async def _delivered(smtp, key: str, timeout: float = 30.0):
    for _ in range(int(timeout * 10)):
        found = [m for m in smtp.sink.messages if m.get("X-Followups-Key") == key]
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key} never arrived; sink has {sorted(smtp.sink.keys())}")


async def _state(http: httpx.AsyncClient, uid: str, until, timeout: float = 30.0) -> dict:
    for _ in range(int(timeout * 10)):
        body = (await http.get(f"/v1/appointments/{uid}")).json()
        if body.get("state") and until(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"appointment {uid} never reached the expected state: {body}")


async def test_reminder_is_branded_in_the_patients_zone_then_completes(stack, uid):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers) as http:
        body = _booking(uid, 6, policy={"reminder_offsets": [3]})
        created = await http.post("/v1/appointments", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["state"]["next_step"]["kind"] == "reminder"
        assert (await http.post("/v1/appointments", json=body)).status_code == 200
        [message] = await _delivered(stack.smtp, f"appointment-{uid}/reminder-3s-" +
                                     datetime.fromisoformat(body["scheduled_at"]).strftime("%Y%m%dT%H%M%SZ"))
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        local = datetime.fromisoformat(body["scheduled_at"]).astimezone(
            __import__("zoneinfo").ZoneInfo("America/New_York"))
        for part in (text, html):
            assert "Dr. Rivera" in part and "Northside Clinic" in part
            assert local.strftime("%H:%M") in part
        final = await _state(http, uid, lambda b: b["state"]["status"] == "completed")
        assert [m["status"] for m in final["messages"]] == ["sent"]


async def test_reschedule_replans_and_cancel_sends_one_notice(stack, uid):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers) as http:
        body = _booking(uid, 3600, policy={"reminder_offsets": [1800, 600]})
        assert (await http.post("/v1/appointments", json=body)).status_code == 201
        new_at = datetime.now(timezone.utc) + timedelta(hours=5)
        moved = await http.post(f"/v1/appointments/{uid}/reschedule", json={"scheduled_at": new_at.isoformat()})
        assert moved.status_code == 200, moved.text
        plan = moved.json()["state"]["next_step"]
        assert datetime.fromisoformat(plan["at"]) == new_at - timedelta(seconds=1800)
        cancelled = await http.post(f"/v1/appointments/{uid}/cancel", json={"reason": "patient called"})
        assert cancelled.status_code == 200, cancelled.text
        [notice] = await _delivered(stack.smtp, f"appointment-{uid}/cancellation")
        assert "cancel" in notice["Subject"].lower()
        final = await _state(http, uid, lambda b: b["state"]["status"] == "cancelled" and b["messages"])
        assert [m["key"].split("/", 1)[1] for m in final["messages"]] == ["cancellation"]
        await asyncio.sleep(0.5)
        again = await http.post(f"/v1/appointments/{uid}/reschedule",
                                json={"scheduled_at": (new_at + timedelta(hours=1)).isoformat()})
        assert again.status_code == 409, again.text  # the README's promise: an event on an ended journey
        assert again.json()["field"] == "appointment_id" and "ended" in again.json()["detail"]
        assert stack.smtp.sink.keys()[f"appointment-{uid}/cancellation"] == 1


async def test_forced_resend_and_the_python_client(stack, uid):
    booking = Booking(
        appointment_id=uid, patient=Recipient(email=f"py-{uid}@example.com", name="Py"),
        scheduled_at=datetime.now(timezone.utc) + timedelta(days=2), doctor="Dr. Chen",
    )

    def steer() -> tuple:
        with FollowupsClient(stack.base_url, api_key=stack.settings.api_keys[0]) as client:
            started = client.appointments.start(booking)
            confirmed = client.appointments.confirm(uid, event_id=f"confirm-{uid}")
            resent = client.appointments.resend_reminder(uid, event_id=f"resend-{uid}")
            again = client.appointments.resend_reminder(uid, event_id=f"resend-{uid}")  # a retry: once
            return started, confirmed, resent, again

    started, confirmed, resent, again = await asyncio.to_thread(steer)
    assert started.created is True and started.state.status.value == "scheduled"
    assert confirmed.state.status.value == "confirmed"
    assert resent.event.applied and again.event == resent.event  # a retry answers as the first did
    assert again.state.resends_requested == 1
    [message] = await _delivered(stack.smtp, f"appointment-{uid}/reminder-resend-1")
    assert "Dr. Chen" in message.get_body(("plain",)).get_content()
    await asyncio.sleep(1)
    assert stack.smtp.sink.keys()[f"appointment-{uid}/reminder-resend-1"] == 1
    assert not any(key.startswith(f"appointment-{uid}/reminder-resend-2") for key in stack.smtp.sink.keys())


async def test_bad_appointment_input_is_a_clear_422_and_starts_nothing(stack, uid):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers) as http:
        cases = {
            "scheduled_at": _booking(uid, -60),
            "policy.reminder_offsets": _booking(uid, 3600, policy={"reminder_offsets": [0]}),
            "doctor": {k: v for k, v in _booking(uid, 3600).items() if k != "doctor"},
            "patient.email": _booking(uid, 3600, patient={"email": "nope", "name": "X"}),
        }
        for field, body in cases.items():
            response = await http.post("/v1/appointments", json=body)
            assert response.status_code == 422, (field, response.text)
            assert response.json()["field"].startswith(field), (field, response.json())
        assert (await http.get(f"/v1/appointments/{uid}")).status_code == 404
