"""The recipes in examples/, each run as its README says, in its own process, against the real
stack: the Django app (seed 000's Interview, a journey started by post_save, the row kept up to
date by the event webhooks) and the FastAPI receiver (verify, keep once, refuse forgeries and
replays). Their own processes keep Django's settings out of this one."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from followups_client import AsyncFollowupsClient
from standardwebhooks.webhooks import Webhook

from starter.sink import free_port
from tests.conftest import ROOT, running_stack

pytestmark = pytest.mark.integration

DJANGO_APP = ROOT / "examples" / "django_interviews"
FASTAPI_APP = ROOT / "examples" / "fastapi_receiver"
INTERVIEW_EVENTS = ["journey.started", "journey.stage_changed", "journey.ended", "message.sent"]


@pytest_asyncio.fixture(scope="module")
async def stack(local_env, database_url, smtp):
    async with running_stack(local_env, database_url, smtp) as running:
        yield running


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def app_env(**values: str) -> dict[str, str]:
    """This environment without anything a recipe reads (a developer's FOLLOWUPS_URL, a
    DJANGO_SETTINGS_MODULE), plus `values`."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("FOLLOWUPS_", "DJANGO_")) and name not in ("DATABASE_URL", "INTERVIEWS_DB")}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **values}


@contextlib.asynccontextmanager
async def serving(app: str, cwd: Path, env: dict[str, str], port: int, log: Path) -> AsyncIterator[str]:
    """`python -m uvicorn app` in `cwd` on `port`, as its README runs it; yields its base URL."""
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
                                    "--log-level", "warning"], cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            assert process.poll() is None, f"{app} exited with {process.returncode}:\n{log.read_text()}"
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{app} never listened on {port}:\n{log.read_text()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


async def manage(env: dict[str, str], *args: str) -> str:
    """`python manage.py …` of the Django example (in a thread: the stack it calls runs on this loop)."""
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "manage.py", *args], cwd=DJANGO_APP, env=env,
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def rows(database: Path, sql: str, *params: object) -> list[dict]:
    """What a recipe stored, read from its SQLite file (read-only, as a second reader)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, params)]


def utc(stored: str | None) -> datetime | None:
    """A datetime as Django keeps it in SQLite: UTC, without its offset."""
    return None if stored is None else datetime.fromisoformat(stored).replace(tzinfo=timezone.utc)


async def until(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    for _ in range(int(timeout * 10)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


@contextlib.asynccontextmanager
async def endpoint(http: httpx.AsyncClient, url: str, secret: str, event_types: list[str]) -> AsyncIterator[str]:
    """A webhook endpoint registered with the recipe's own secret, deleted afterwards (the test
    database is shared by every test of this process)."""
    created = await http.post("/v1/webhook-endpoints", json={"url": url, "secret": secret, "event_types": event_types,
                                                             "description": "a recipe under test"})
    assert created.status_code == 201, created.text
    try:
        yield created.json()["id"]
    finally:
        await http.delete(f"/v1/webhook-endpoints/{created.json()['id']}")


async def deliveries(http: httpx.AsyncClient, endpoint_id: str, journey_key: str) -> list[dict]:
    page = (await http.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params={"limit": 500})).json()
    return [d for d in page["deliveries"] if d["journey_key"] == journey_key]


async def settled(http: httpx.AsyncClient, endpoint_id: str, journey_key: str) -> list[dict]:
    """A journey's deliveries once none is pending: an answer is recorded a moment after the
    receiver kept the event."""
    for _ in range(100):
        found = await deliveries(http, endpoint_id, journey_key)
        if all(d["status"] != "pending" for d in found):
            break
        await asyncio.sleep(0.1)
    return found


async def delivered_again(http: httpx.AsyncClient, endpoint_id: str, journey_key: str, chosen: list[dict]) -> None:
    """Send deliveries once more by hand (same webhook-id) and wait until the receiver answered 2xx."""
    for delivery in chosen:
        retried = await http.post(f"/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery['id']}/retry")
        assert retried.status_code == 200, retried.text
    before = {d["id"]: d["delivered_at"] for d in chosen}
    for _ in range(300):
        now = {d["id"]: d for d in await deliveries(http, endpoint_id, journey_key) if d["id"] in before}
        if all(d["status"] == "delivered" and d["delivered_at"] != before[i] for i, d in now.items()):
            assert all(d["last_status"] == 200 for d in now.values())
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the deliveries sent again were never acknowledged")


def signed(secret: str, webhook_id: str, at: datetime, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "webhook-id": webhook_id,
            "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": Webhook(secret).sign(webhook_id, at, body)}


# --- Django: seed 000's Interview row follows its journey ---------------------------------------

async def test_a_django_interview_starts_its_journey_on_save_and_follows_it_through_webhooks(stack, http, tmp_path, uid):
    secret, port = new_secret(), free_port()
    database = tmp_path / "interviews.sqlite3"
    prefix = f"dj-{uid}-"
    env = app_env(INTERVIEWS_DB=str(database), FOLLOWUPS_URL=stack.base_url, FOLLOWUPS_API_KEY=stack.settings.api_keys[0],
                  FOLLOWUPS_WEBHOOK_SECRET=secret, FOLLOWUPS_ID_PREFIX=prefix, SITE_URL=f"http://127.0.0.1:{port}",
                  FOLLOWUPS_INTERVIEW_POLICY=json.dumps({"followup_after": "PT2S", "max_followups": 1,
                                                         "reminder_before": "PT4S"}))
    await manage(env, "migrate", "--verbosity", "0")

    def interview(pk: int) -> dict:
        [row] = rows(database, "SELECT * FROM interviews_interview WHERE id = ?", pk)
        return row

    def processed() -> list[str]:
        return [row["type"] for row in rows(database, "SELECT type FROM interviews_processedevent ORDER BY received_at")]

    async with (serving("interviews_site.asgi:application", DJANGO_APP, env, port, tmp_path / "django.log") as site,
                endpoint(http, f"{site}/webhooks/followups", secret, INTERVIEW_EVENTS) as endpoint_id,
                httpx.AsyncClient(timeout=30) as candidate):
        email = f"ada-{uid}@example.com"
        created = await manage(env, "invite_candidate", email, "Ada Lovelace")
        pk = int(re.match(r"interview (\d+):", created)[1])
        journey_id, journey_key = f"{prefix}{pk}", f"interview/{prefix}{pk}"
        # post_save started the journey, which told the app (the row was pending already)
        assert (await http.get(f"/v1/interviews/{journey_id}")).json()["state"]["status"] == "pending"
        await until(lambda: "journey.started" in processed(), what="journey.started applied")

        # follow-up 1 two seconds after the invitation: the row counts it, the email links the app's slot page
        await until(lambda: interview(pk)["followup_count"] == 1, what="the follow-up counted from message.sent")
        followup_sent_at = utc(interview(pk)["last_followup_sent_at"])
        assert followup_sent_at is not None and interview(pk)["status"] == "pending"
        [mail] = [m for m in list(stack.smtp.sink.messages) if m["X-Followups-Key"] == f"interview-{journey_id}/followup-1"]
        text = mail.get_body(("plain",)).get_content()
        link = re.search(r"http://127\.0\.0\.1:\d+/interviews/\d+/slot", text)[0]
        assert link == f"{site}/interviews/{pk}/slot"

        # the candidate picks a time 8 s ahead on that page (a real form, with Django's CSRF token)
        page = await candidate.get(link)
        assert page.status_code == 200, page.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
        past = await candidate.post(link, data={"csrfmiddlewaretoken": token, "scheduled_at": "2001-01-01T09:00:00Z"})
        assert past.status_code == 400 and "past" in past.text and interview(pk)["scheduled_at"] is None
        at = (datetime.now(timezone.utc) + timedelta(seconds=8)).replace(microsecond=0)
        picked = await candidate.post(link, data={"csrfmiddlewaretoken": token, "scheduled_at": at.isoformat()})
        assert picked.status_code == 200 and "Thank you" in picked.text, picked.text

        # the reminder 4 s before, then completed at the time itself: no cron marks it, the webhooks do
        await until(lambda: "journey.ended" in processed(), what="journey.ended applied")
        row = interview(pk)
        assert row["status"] == "completed"
        assert utc(row["scheduled_at"]) == at
        reminded = utc(row["pre_interview_reminder_sent_at"])
        assert reminded is not None and reminded > at - timedelta(seconds=5)  # not before its moment
        assert (row["followup_count"], utc(row["last_followup_sent_at"])) == (1, followup_sent_at)
        assert sorted(processed()) == sorted(["journey.started", "message.sent", "journey.stage_changed",
                                              "message.sent", "journey.stage_changed", "journey.ended"])

        # the same deliveries again (same webhook-id): acknowledged, applied never twice — neither the
        # follow-up counted again nor the status back to scheduled
        sent = await settled(http, endpoint_id, journey_key)
        assert [d["status"] for d in sent] == ["delivered"] * 6
        first_followup = next(d for d in sent if d["type"] == "message.sent")
        to_scheduled = next(d for d in sent if d["type"] == "journey.stage_changed")
        await delivered_again(http, endpoint_id, journey_key, [first_followup, to_scheduled])
        assert interview(pk) == row and len(processed()) == 6

        # a forged or unsigned delivery is refused and changes nothing
        body = json.dumps({"type": "journey.stage_changed", "timestamp": at.isoformat(),
                           "data": {"journey": "interview", "entity_id": journey_id, "stage": "cancelled"}}).encode()
        forged = await candidate.post(f"{site}/webhooks/followups", content=body,
                                      headers=signed(new_secret(), "evt_forged", datetime.now(timezone.utc), body))
        assert forged.status_code == 401
        unsigned = await candidate.post(f"{site}/webhooks/followups", content=body)
        assert unsigned.status_code == 400
        assert interview(pk) == row and len(processed()) == 6


# --- FastAPI: verify, keep once ---------------------------------------------------------------

async def test_the_fastapi_receiver_keeps_each_delivery_once_and_refuses_forgeries_and_replays(stack, http, tmp_path, uid):
    secret, port = new_secret(), free_port()
    database = tmp_path / "events.sqlite3"
    env = app_env(FOLLOWUPS_WEBHOOK_SECRET=secret, RECEIVER_DB=str(database))

    def kept(webhook_id: str | None = None) -> list[dict]:
        if webhook_id is None:
            return rows(database, "SELECT * FROM events ORDER BY received_at")
        return rows(database, "SELECT * FROM events WHERE webhook_id = ?", webhook_id)

    def ended(journey_id: str) -> bool:
        return any(json.loads(row["body"])["data"].get("entity_id") == journey_id and row["type"] == "journey.ended"
                   for row in kept())

    async with (serving("receiver:app", FASTAPI_APP, env, port, tmp_path / "receiver.log") as site,
                endpoint(http, f"{site}/webhooks/followups", secret, []) as endpoint_id,
                AsyncFollowupsClient(stack.base_url, stack.settings.api_keys[0]) as followups,
                httpx.AsyncClient(base_url=site, timeout=30) as attacker):
        journey_id = f"rx-{uid}"
        at = datetime.now(timezone.utc) + timedelta(seconds=8)
        await followups.interviews.start({
            "interview_id": journey_id, "candidate": {"email": f"grace-{uid}@example.com", "name": "Grace"},
            "slot_selection_url": "https://jobs.example.com/slots/1", "scheduled_at": at,
            "policy": {"reminder_before": "PT4S"}})
        await until(lambda: ended(journey_id), what="journey.ended kept by the receiver")
        sent = await settled(http, endpoint_id, f"interview/{journey_id}")
        assert [d["type"] for d in sent] == ["journey.started", "message.sent", "journey.stage_changed", "journey.ended"]
        assert all(d["status"] == "delivered" and d["last_status"] == 200 for d in sent), sent
        assert all(len(kept(d["event_id"])) == 1 for d in sent)

        # a real delivery again (same webhook-id): acknowledged, not kept twice
        count = len(kept())
        await delivered_again(http, endpoint_id, f"interview/{journey_id}", [sent[0]])
        assert len(kept()) == count

        # deliveries made here: with the secret and a fresh timestamp it is kept, once
        body = kept(sent[-1]["event_id"])[0]["body"].encode()
        now = datetime.now(timezone.utc)
        fresh = await attacker.post("/webhooks/followups", content=body, headers=signed(secret, f"msg_{uid}", now, body))
        assert (fresh.status_code, fresh.json()) == (200, {"kept": True})
        again = await attacker.post("/webhooks/followups", content=body, headers=signed(secret, f"msg_{uid}", now, body))
        assert (again.status_code, again.json()) == (200, {"kept": False})
        assert len(kept(f"msg_{uid}")) == 1

        forged = body.replace(b'"completed"', b'"cancelled"')
        assert forged != body
        refused = {
            "forged body": (forged, signed(secret, f"msg_{uid}_b", now, body)),
            "wrong secret": (body, signed(new_secret(), f"msg_{uid}_s", now, body)),
            "replayed 10 minutes later": (body, signed(secret, f"msg_{uid}_r", now - timedelta(minutes=10), body)),
            "signed for another id": (body, {**signed(secret, f"msg_{uid}_i", now, body), "webhook-id": f"msg_{uid}_j"}),
        }
        for what, (content, headers) in refused.items():
            answer = await attacker.post("/webhooks/followups", content=content, headers=headers)
            assert answer.status_code == 401, (what, answer.text)
        assert "too old" in (await attacker.post("/webhooks/followups", content=body,
                                                 headers=refused["replayed 10 minutes later"][1])).json()["error"]
        for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            headers = {k: v for k, v in signed(secret, f"msg_{uid}_h", now, body).items() if k != header}
            answer = await attacker.post("/webhooks/followups", content=body, headers=headers)
            assert answer.status_code == 400 and header in answer.json()["error"], answer.text
        assert len(kept()) == count + 1
