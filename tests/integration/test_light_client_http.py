"""The light client (`followups_client`), sync and async, against the real stack: the API on a
socket, the worker, the Temporal dev server, PostgreSQL and the SMTP sink. A journey started,
steered and read back through the generated models; refusals arrive as FollowupsError with the
status and the field; and `pip install ./client` into a fresh virtualenv brings httpx and pydantic,
not the service, and that install talks to the same stack."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from followups_client import AsyncFollowupsClient, FollowupsClient, FollowupsError, models

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0  # seconds any one awaited thing may take on a loaded 2-core machine


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _invitation(uid: str, email: str) -> models.Invitation:
    return models.Invitation(
        interview_id=uid, candidate=models.Recipient(email=email, name="Ada Light", time_zone="Europe/London"),
        slot_selection_url=f"https://jobs.example.com/slots/{uid}",
        policy=models.InterviewPolicyOverrides(followup_after=timedelta(days=2), max_followups=1))


async def test_the_sync_client_starts_steers_and_reads_an_interview(stack, uid):
    email = f"light-{uid}@example.com"

    def use() -> None:  # the client blocks, and the API serves on this event loop: run it in a thread
        with FollowupsClient(stack.base_url, api_key=stack.settings.api_keys[0], timeout=DEADLINE) as followups:
            started = followups.interviews.start(_invitation(uid, email))
            assert isinstance(started, models.InterviewView) and started.created is True
            assert started.state is not None and started.state.status == "pending"
            assert started.state.policy.max_followups == 1  # what was set; the rest the server's settings
            assert followups.interviews.start(_invitation(uid, email)).created is False  # a safe retry

            interview_at = _now() + timedelta(days=3)
            confirmed = followups.interviews.confirm(uid, scheduled_at=interview_at, event_id=f"ats-{uid}")
            assert confirmed.event is not None and confirmed.event.code == "applied"
            shown = followups.interviews.get(uid)
            assert shown.state is not None and shown.state.status == "scheduled"
            assert shown.state.scheduled_at == interview_at
            assert shown.state.next_step is not None and shown.state.next_step.kind == "reminder"
            assert shown.state.next_step.at == interview_at - timedelta(hours=24)

            with pytest.raises(FollowupsError) as past:  # the journey's rules refuse it: nothing changes
                followups.interviews.reschedule(uid, scheduled_at=_now() - timedelta(hours=1))
            assert (past.value.status, past.value.field) == (422, "scheduled_at"), past.value
            with pytest.raises(FollowupsError) as other:  # a start never changes a journey
                followups.interviews.start(_invitation(uid, f"other-{uid}@example.com"))
            assert other.value.status == 409 and other.value.field == "candidate.email", other.value
            with pytest.raises(FollowupsError) as missing:
                followups.interviews.get(f"missing-{uid}")
            assert (missing.value.status, missing.value.field) == (404, "interview_id")
            with FollowupsClient(stack.base_url, api_key="wrong") as stranger, pytest.raises(FollowupsError) as key:
                stranger.interviews.get(uid)
            assert (key.value.status, key.value.field) == (401, "authorization")

            cancelled = followups.interviews.send(uid, "cancel", reason="the role was filled")
            assert cancelled.state is not None and cancelled.state.status == "cancelled"
            assert followups.health() == {"status": "ok"}

    await asyncio.to_thread(use)


async def test_the_async_client_steers_a_payment_a_roster_and_reads_the_platform(stack, uid):
    async with AsyncFollowupsClient(stack.base_url, api_key=stack.settings.api_keys[0],
                                    timeout=DEADLINE) as followups:
        payment = models.Payment(payment_id=uid, payer=models.Payer(email=f"payer-{uid}@example.com", name="Pat"),
                                 currency="EUR", amount="49.90", payment_url=f"https://pay.example.com/{uid}")
        started = await followups.payments.start(payment)
        assert isinstance(started, models.PaymentView) and started.created
        paid = await followups.payments.paid(uid, reference="ch_1", event_id=f"stripe-{uid}")
        assert paid.event is not None and paid.event.code == "applied"
        key = f"payment-{uid}/confirmation"
        deadline = time.monotonic() + DEADLINE
        while not [m for m in await followups.messages("payment", "sent", uid) if m.key == key]:
            assert time.monotonic() < deadline, f"{key} never sent"
            await asyncio.sleep(0.2)
        message = await followups.message(key)  # a key with a slash, in the path
        assert isinstance(message, models.MessageDetailView) and message.recipient == f"payer-{uid}@example.com"
        with pytest.raises(FollowupsError) as ended:
            await followups.payments.cancel(uid)
        assert ended.value.status == 409, ended.value
        with pytest.raises(FollowupsError) as amount:
            await followups.payments.start(payment.model_copy(update={"payment_id": f"{uid}-bad", "amount": "-5"}))
        assert (amount.value.status, amount.value.field) == (422, "amount")

        starts = _now() + timedelta(days=2)
        session = await followups.sessions.start({
            "session_id": uid, "title": "Algebra 1", "starts_at": starts, "ends_at": starts + timedelta(hours=1),
            "tutor": {"name": "Tom Tutor", "email": f"tutor-{uid}@example.com"},
            "attendees": [{"attendee_id": "ann", "name": "Ann", "email": f"ann-{uid}@example.com"}]})
        assert isinstance(session, models.SessionView) and session.created
        await followups.sessions.add_attendee(
            uid, attendee=models.Attendee(attendee_id="bob", name="Bob", email=f"bob-{uid}@example.com"))
        assert [a.attendee_id for a in (await followups.roster(uid)).attendees] == ["ann", "bob"]
        await followups.sessions.remove_attendee(uid, attendee_id="ann")  # DELETE, the id in the path
        assert [a.attendee_id for a in (await followups.roster(uid)).attendees] == ["bob"]
        await followups.sessions.cancel(uid, reason="the tutor is ill", event_id=f"cancel-{uid}")

        put = await followups.put_progress(f"lee-{uid}", email=f"lee-{uid}@example.com", name="Lee",
                                           time_zone="Europe/Berlin", progress={"lessons": 4})
        assert put.created and (await followups.get_progress(f"lee-{uid}")).progress == {"lessons": 4}
        assert await followups.delete_progress(f"lee-{uid}") is None  # 204
        with pytest.raises(FollowupsError) as gone:
            await followups.get_progress(f"lee-{uid}")
        assert (gone.value.status, gone.value.field) == (404, "recipient")
        assert {"interview_followup", "payment_reminder"} <= {t.name for t in await followups.templates()}
        assert all(isinstance(d, models.DefinitionView) for d in await followups.definitions())


INSTALLED = """
import importlib.util, json, sys
from followups_client import FollowupsClient
with FollowupsClient(sys.argv[1], api_key=sys.argv[2]) as followups:
    view = followups.payments.get(sys.argv[3])
print(json.dumps({"service": {name: importlib.util.find_spec(name) is not None
                              for name in ("temporalio", "asyncpg", "jinja2", "fastapi", "starter", "workflows")},
                  "httpx": importlib.util.find_spec("httpx") is not None,
                  "status": view.state.status, "from": followups.__module__}))
"""


async def _run(*command: str | Path, cwd: Path | None = None) -> str:
    process = await asyncio.create_subprocess_exec(*map(str, command), cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, f"{command}: {err.decode()[-2000:]}"
    return out.decode()


async def test_pip_install_client_in_a_fresh_venv_brings_httpx_and_pydantic_not_the_service(stack, uid, tmp_path):
    """What a backend does: `pip install ./client` (a copy here, so the work tree gets no build files)
    into its own virtualenv, fetching httpx and pydantic (or taking them from pip's cache)."""
    source, venv = tmp_path / "client", tmp_path / "venv"
    shutil.copytree(ROOT / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # No pip of its own in the venv (Python's bundled one is old and slow): this venv's pip installs into it.
    await _run(sys.executable, "-m", "venv", "--without-pip", venv)
    await _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet",
               "--disable-pip-version-check", source)
    async with AsyncFollowupsClient(stack.base_url, api_key=stack.settings.api_keys[0]) as followups:
        await followups.payments.start({"payment_id": uid, "payer": {"email": f"p-{uid}@example.com", "name": "P"},
                                        "currency": "EUR", "amount": "10.00", "payment_url": "https://pay.example.com/p",
                                        "policy": {"reminder_after": ["P3D"]}})
    # run from the venv's own directory: nothing of the work tree on its path
    answer = json.loads(await _run(venv / "bin" / "python", "-c", INSTALLED, stack.base_url,
                                   stack.settings.api_keys[0], uid, cwd=venv))
    assert answer == {"service": dict.fromkeys(("temporalio", "asyncpg", "jinja2", "fastapi", "starter", "workflows"),
                                               False),
                      "httpx": True, "status": "pending", "from": "followups_client.client"}, answer
    async with AsyncFollowupsClient(stack.base_url, api_key=stack.settings.api_keys[0]) as followups:
        await followups.payments.cancel(uid)
