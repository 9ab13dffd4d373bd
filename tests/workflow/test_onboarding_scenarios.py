"""Seed 003's approval onboarding saga on the time-skipping server, with the real send step
(PostgreSQL + SMTP sink) and a real HTTP backend on a socket that checks every signature: the happy
path, a refused account, undeliverable credentials (the account revoked), a retried account call
that creates one account, and a withdrawal. The temporary password must reach the student's email
and the backend, and nothing else: not the history, the outbox or the logs."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from datetime import timedelta

import asyncpg
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from activities.webhook import signature
from starter.service import Journeys
from starter.sink import free_port
from tests.workflow.conftest import Driver, _terminate_if_running, driver_fixture
from workflows.lead.models import Lead, LeadStatus
from workflows.lead.workflow import LeadJourney
from workflows.onboarding import rules
from workflows.onboarding.models import (
    ONBOARDING_CLOSED, Admin, Approval, OnboardingStatus, SagaStep, Student, WelcomeCall, onboarding_event,
)
from workflows.onboarding.workflow import OnboardingJourney
from workflows.registry import LEAD, ONBOARDING

D = timedelta(days=1)
SECRET = "accounts-secret"
HOOK_SECRET = "hook-secret"


class Backend:
    """The accounts backend and the WhatsApp bridge, on a real socket: every request's signature is
    checked; account.create is idempotent on its key, as the contract asks of a backend."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict] = []  # every signed request, retries included
        self.accounts: dict[str, dict] = {}  # idempotency key → the account it created
        self.refuse: set[str] = set()  # emails refused with a 422
        self.lose_answers: dict[str, int] = {}  # email → answers lost (503) after creating the account
        self.whatsapp: list[dict] = []
        self.bad_signatures = 0

    def _signed(self, request: Request, body: bytes, secret: str) -> bool:
        ok = request.headers.get("X-Followups-Signature") == signature(
            secret, request.headers.get("X-Followups-Timestamp", ""), body)
        self.bad_signatures += not ok
        return ok

    async def accounts_endpoint(self, request: Request) -> Response:
        body = await request.body()
        if not self._signed(request, body, SECRET):
            return Response(status_code=401)
        call = json.loads(body)
        assert call["idempotency_key"] == request.headers["X-Followups-Key"]
        self.requests.append(call)
        if call["type"] == "account.create":
            if call["email"] in self.refuse:
                return JSONResponse({"error": "this email already has an account"}, status_code=422)
            account = self.accounts.setdefault(call["idempotency_key"], {
                "user_id": f"user-{len(self.accounts) + 1}", "email": call["email"],
                "password": call["temporary_password"]})
            if self.lose_answers.get(call["email"], 0) > 0:  # created, but the answer never arrives
                self.lose_answers[call["email"]] -= 1
                return Response("upstream timeout", status_code=503)
            return JSONResponse({"user_id": account["user_id"]})
        return JSONResponse({"ok": True})

    async def whatsapp_endpoint(self, request: Request) -> Response:
        body = await request.body()
        if not self._signed(request, body, HOOK_SECRET):
            return Response(status_code=401)
        self.whatsapp.append(json.loads(body))
        return JSONResponse({"ok": True})

    def of(self, kind: str, onboarding_id: str) -> list[dict]:
        return [r for r in self.requests if r["type"] == kind and r["onboarding_id"] == onboarding_id]


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


def _backend_settings(request) -> dict:
    hook = request.getfixturevalue("backend")
    return {"accounts_webhook_url": f"http://127.0.0.1:{hook.port}/accounts", "accounts_webhook_secret": SECRET,
            "webhook_url": f"http://127.0.0.1:{hook.port}/whatsapp", "webhook_secret": HOOK_SECRET}


class OnboardingScenario(Driver):
    journey = OnboardingJourney
    closed = ONBOARDING_CLOSED
    prefix = "onboarding"

    @property
    def email(self) -> str:
        return f"student-{self.entity_id}@example.com"

    async def start(self, **fields) -> None:
        self.anchor = await self.now()
        approval = Approval(onboarding_id=self.entity_id, login_url="https://lms.example.com/login",
                            student=fields.pop("student", Student(email=self.email, name="Sam Student")),
                            approved_by=Admin(email=f"admin-{self.entity_id}@example.com", name="Ada Admin"),
                            **fields)
        await Journeys(self.client, self.settings, ONBOARDING).start_durably(approval)

    async def event(self, kind: str, **fields) -> None:
        await self.signal(onboarding_event(kind=kind, **fields))

    def delivered(self, smtp, suffix: str):
        """The messages the SMTP sink received under this saga's key `onboarding-{id}/{suffix}`."""
        return [m for m in smtp.sink.messages if m["X-Followups-Key"] == f"onboarding-{self.entity_id}/{suffix}"]

    async def rows(self, sql: str, *args) -> list:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def stored_anywhere(self) -> str:
        """Everything this saga left in PostgreSQL (its outbox rows, whole) and in its history, with
        every payload decoded: base64 hides nothing from this search."""
        rows = await self.rows("SELECT * FROM messages WHERE journey = 'onboarding' AND entity_id = $1", self.entity_id)
        assert rows, "no outbox rows: the search below would prove nothing"
        history = json.loads((await self.client.get_workflow_handle(self.workflow_id).fetch_history()).to_json())
        texts = [json.dumps([dict(row) for row in rows], default=str), json.dumps(history)]

        def walk(node) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("data"), str) and "metadata" in node:
                    texts.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(history)
        return "\n".join(texts)

    async def secret_left(self) -> bool:
        return bool(await self.rows("SELECT 1 FROM onboarding_secrets WHERE ref = $1",
                                    rules.secret_ref(self.entity_id)))


onboarding = driver_fixture(OnboardingScenario, settings_from=_backend_settings)


def _outcomes(state) -> dict[str, str]:
    return {o.step.value: o.outcome for o in state.outcomes}


async def test_happy_path_onboards_the_student_and_the_password_goes_only_where_it_must(onboarding, backend, smtp,
                                                                                         caplog):
    caplog.set_level(logging.DEBUG)
    lead_id = f"lead-of-{onboarding.entity_id}"
    await Journeys(onboarding.client, onboarding.settings, LEAD).start_durably(Lead(
        lead_id=lead_id, contact={"email": onboarding.email, "name": "Sam Student"}, campaign="spring",
        started_at=await onboarding.now()))
    call_id = f"appointment-{rules.welcome_call_id(onboarding.entity_id)}"
    try:
        await onboarding.start(student=Student(email=onboarding.email, name="Sam Student", phone="+4915112345678"),
                               lead_id=lead_id,
                               welcome_call=WelcomeCall(scheduled_at=await onboarding.now() + 3 * D, host="Alex"))
        final = await onboarding.result()
        assert final.status == OnboardingStatus.COMPLETED, final
        assert _outcomes(final) == {"credentials": "done", "account": "done", "welcome_email": "done",
                                    "whatsapp": "done", "welcome_call": "done", "crm": "done", "lead": "done",
                                    "report": "done"}
        [account] = [a for a in backend.accounts.values() if a["email"] == onboarding.email]
        password = account["password"]
        assert len(password) == 16 and final.user_id == account["user_id"] and backend.bad_signatures == 0

        [welcome] = onboarding.delivered(smtp, "welcome")
        assert password in welcome.get_body(("plain",)).get_content()  # the student got it
        assert password in welcome.get_body(("html",)).get_content()
        [report] = onboarding.delivered(smtp, "admin-report")
        assert report["Subject"].startswith("Onboarded: Sam Student")
        assert password not in report.get_body(("plain",)).get_content()
        [whatsapp] = [w for w in backend.whatsapp if w["key"] == f"onboarding-{onboarding.entity_id}/welcome/webhook"]
        assert whatsapp["to"]["phone"] == "+4915112345678" and password not in json.dumps(whatsapp)
        [crm] = backend.of("crm.log", onboarding.entity_id)
        assert crm["user_id"] == account["user_id"] and password not in json.dumps(crm)

        stored = await onboarding.stored_anywhere()
        assert account["user_id"] in stored and rules.secret_ref(onboarding.entity_id) in stored  # the search works
        assert password not in stored  # ...and finds no password: not in history, not in the outbox
        assert not await onboarding.secret_left()
        # Every log record of the process at DEBUG (the worker, temporalio, httpx, asyncpg...) but the SMTP
        # sink's own (aiosmtpd's `mail.log`): the receiving mail server logs the message it received.
        logged = "\n".join(record.getMessage() for record in caplog.records if record.name != "mail.log")
        assert f"127.0.0.1:{backend.port}/accounts" in logged  # the backend calls were logged (httpx)...
        assert password not in logged  # ...without the password

        lead = await onboarding.client.get_workflow_handle_for(LeadJourney.run, f"lead-{lead_id}").result()
        assert lead.status == LeadStatus.CONVERTED and lead.conversion_reference == onboarding.workflow_id
        call = await onboarding.client.get_workflow_handle(call_id).describe()
        assert call.status.name == "RUNNING"  # the welcome call's reminders outlive the saga (ABANDON)
    finally:
        for workflow_id in (call_id, f"lead-{lead_id}"):
            await _terminate_if_running(onboarding.client, workflow_id)


async def test_account_refused_sends_no_credentials_and_tells_the_admin(onboarding, backend, smtp):
    backend.refuse.add(onboarding.email)
    await onboarding.start()
    final = await onboarding.result()
    assert final.status == OnboardingStatus.FAILED and final.user_id is None
    assert _outcomes(final) == {"credentials": "done", "account": "failed", "report": "done"}
    assert "422" in final.failure and "already has an account" in final.failure
    assert backend.of("account.revoke", onboarding.entity_id) == []  # a refusal created nothing to undo
    assert onboarding.delivered(smtp, "welcome") == []
    [report] = onboarding.delivered(smtp, "admin-report")
    text = report.get_body(("plain",)).get_content()
    assert report["Subject"].startswith("Onboarding FAILED: Sam Student")
    assert "create the account: account.create: the backend answered 422" in text
    assert "email the credentials: not attempted" in text and "log to the CRM: not attempted" in text
    assert not await onboarding.secret_left()


async def test_welcome_email_refused_for_good_revokes_the_account(onboarding, backend, smtp):
    smtp.sink.refuse[onboarding.email] = "550 5.1.1 no such user"
    try:
        await onboarding.start()
        final = await onboarding.result()
    finally:
        smtp.sink.refuse.pop(onboarding.email, None)
    assert final.status == OnboardingStatus.FAILED
    assert _outcomes(final) == {"credentials": "done", "account": "done", "welcome_email": "failed",
                                "revoke": "done", "report": "done"}
    [account] = [a for a in backend.accounts.values() if a["email"] == onboarding.email]
    [revoke] = backend.of("account.revoke", onboarding.entity_id)
    assert revoke["user_id"] == account["user_id"] == final.user_id
    assert revoke["account_key"] == rules.account_key(onboarding.entity_id)
    [report] = onboarding.delivered(smtp, "admin-report")
    text = report.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "failed: email the credentials: the credentials were not delivered" in text and "550" in text
    assert f"Undone:\n  - revoke the account: user {account['user_id']}" in text
    assert account["password"] not in await onboarding.stored_anywhere()
    assert not await onboarding.secret_left()


async def test_a_retried_account_creation_creates_one_account(onboarding, backend):
    backend.lose_answers[onboarding.email] = 2  # created at once, but the first two answers are lost
    await onboarding.start()
    final = await onboarding.result()
    assert final.status == OnboardingStatus.COMPLETED
    creates = backend.of("account.create", onboarding.entity_id)
    assert len(creates) == 3  # two lost answers, then the one that arrived
    assert {c["idempotency_key"] for c in creates} == {rules.account_key(onboarding.entity_id)}
    assert len({c["temporary_password"] for c in creates}) == 1  # a retry never issues a second password
    assert [a["user_id"] for a in backend.accounts.values() if a["email"] == onboarding.email] == [final.user_id]


async def test_withdrawn_inside_the_undo_window_does_nothing_and_tells_the_admin(onboarding, backend, smtp):
    await onboarding.start(policy={"undo_window": "PT1H"})
    await onboarding.at(timedelta(minutes=10))
    assert (await onboarding.state()).next_step.label.startswith("credentials")
    await onboarding.event("cancel", reason="approved by mistake", event_id="admin-undo-1")
    final = await onboarding.result()
    assert final.status == OnboardingStatus.CANCELLED
    assert _outcomes(final) == {"report": "done"} and backend.of("account.create", onboarding.entity_id) == []
    [report] = onboarding.delivered(smtp, "admin-report")
    assert "withdrawn: approved by mistake" in report.get_body(("plain",)).get_content()
    assert SagaStep.CREDENTIALS not in {o.step for o in final.outcomes}
