"""The approval onboarding saga (seed 003, "CTA approval") through the HTTP API on the real dev
server, PostgreSQL, the SMTP sink and a real signed accounts backend on a socket: an approval runs
to the end in one call's wake, the view never shows the password, repeats and refusals answer as
every kind's do, and a withdrawal inside the undo window does nothing but tell the admin."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from tests.conftest import running_stack
from tests.integration.test_appointment_http import _delivered
from tests.workflow.test_onboarding_scenarios import HOOK_SECRET, SECRET, Backend


@pytest.fixture(scope="module")
def backend():
    hook = Backend()
    app = Starlette(routes=[Route("/accounts", hook.accounts_endpoint, methods=["POST"]),
                            Route("/whatsapp", hook.whatsapp_endpoint, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=hook.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield hook
    server.should_exit = True
    thread.join(timeout=10)


@pytest_asyncio.fixture(scope="module")
async def onboarding_stack(local_env, database_url, smtp, backend):
    async with running_stack(local_env, database_url, smtp,
                             accounts_webhook_url=f"http://127.0.0.1:{backend.port}/accounts",
                             accounts_webhook_secret=SECRET,
                             webhook_url=f"http://127.0.0.1:{backend.port}/whatsapp",
                             webhook_secret=HOOK_SECRET) as running:
        yield running


@pytest_asyncio.fixture
async def http(onboarding_stack):
    async with httpx.AsyncClient(base_url=onboarding_stack.base_url, headers=onboarding_stack.headers,
                                 timeout=30) as client:
        yield client


def _approval(uid: str, **fields) -> dict:
    return {"onboarding_id": uid, "login_url": "https://lms.example.com/login",
            "student": {"email": f"student-{uid}@example.com", "name": "Sam Student", "phone": "+4915112345678"},
            "approved_by": {"email": f"admin-{uid}@example.com", "name": "Ada Admin"}, **fields}


async def _ended(http: httpx.AsyncClient, uid: str) -> dict:
    for _ in range(300):
        view = (await http.get(f"/v1/onboardings/{uid}")).json()
        if view.get("state") and view["state"]["status"] in ("completed", "failed", "cancelled"):
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"onboarding {uid} never ended: {view}")


async def test_an_approval_onboards_the_student_and_the_view_never_shows_the_password(onboarding_stack, http,
                                                                                         backend, uid):
    started = await http.post("/v1/onboardings", json=_approval(uid))
    assert started.status_code == 201, started.text
    assert started.json()["state"]["plan"] == ["credentials", "account", "welcome_email", "whatsapp", "crm"]
    view = await _ended(http, uid)
    assert view["state"]["status"] == "completed", view
    [account] = [a for a in backend.accounts.values() if a["email"] == f"student-{uid}@example.com"]
    assert view["state"]["user_id"] == account["user_id"]
    assert {m["key"]: m["status"] for m in view["messages"]} == {
        f"onboarding-{uid}/welcome": "sent", f"onboarding-{uid}/welcome/webhook": "sent",
        f"onboarding-{uid}/admin-report": "sent"}
    [welcome] = await _delivered(onboarding_stack.smtp, f"onboarding-{uid}/welcome")
    assert account["password"] in welcome.get_body(("plain",)).get_content()
    assert account["password"] not in json.dumps(view)
    messages = (await http.get("/v1/messages", params={"journey": "onboarding", "entity_id": uid})).json()
    assert len(messages) == 3 and account["password"] not in json.dumps(messages)

    again = await http.post("/v1/onboardings", json=_approval(uid))  # a retry of the approval: nothing twice
    assert again.status_code == 200 and again.json()["state"]["status"] == "completed", again.text
    late = await http.post(f"/v1/onboardings/{uid}/cancel", json={"reason": "too late"})
    assert late.status_code == 409 and late.json()["field"] == "onboarding_id", late.text
    assert len(backend.of("account.create", uid)) == 1


async def test_withdrawn_inside_the_undo_window_and_bad_approvals_refused(onboarding_stack, http, backend, uid):
    started = await http.post("/v1/onboardings", json=_approval(uid, policy={"undo_window": "PT1H"}))
    assert started.status_code == 201 and started.json()["state"]["next_step"]["label"].startswith("credentials")
    other = await http.post("/v1/onboardings", json=_approval(uid, login_url="https://other.example.com/login",
                                                             policy={"undo_window": "PT1H"}))
    assert other.status_code == 409 and other.json()["field"] == "login_url", other.text  # a start never changes one
    cancelled = await http.post(f"/v1/onboardings/{uid}/cancel", json={"reason": "mis-click", "event_id": "undo-1"})
    assert cancelled.status_code == 200 and cancelled.json()["event"]["code"] == "applied", cancelled.text
    view = await _ended(http, uid)
    assert view["state"]["status"] == "cancelled" and backend.of("account.create", uid) == []
    [report] = await _delivered(onboarding_stack.smtp, f"onboarding-{uid}/admin-report")
    assert "withdrawn: mis-click" in report.get_body(("plain",)).get_content()

    past = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    for body, field in [
        (_approval(f"{uid}-b", welcome_call={"scheduled_at": past, "host": "Alex"}), "welcome_call.scheduled_at"),
        (_approval(f"{uid}-c", student={"email": "s@example.com", "name": "S", "phone": "0151"}), "student.phone"),
        (_approval("x" * 121), "onboarding_id"),
        (_approval(f"{uid}-d", policy={"undo_window": 0}), "policy.undo_window"),
    ]:
        refused = await http.post("/v1/onboardings", json=body)
        assert refused.status_code == 422 and refused.json()["field"] == field, (field, refused.text)
