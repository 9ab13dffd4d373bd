"""The digest Schedule and its dispatcher on the real dev server (Schedules do not exist on the
time-skipping one), with the worker, the API, PostgreSQL and the SMTP sink: the worker creates the
Schedule, a backfill of last Monday's slot for Asia/Kathmandu (+05:45) and Asia/Kolkata (+05:30)
sends each due recipient their digest once, nobody else, and a second backfill of the same slot
sends nothing again. A progress callback, signed, serves recipients with no pushed progress."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest_asyncio
from temporalio.client import ScheduleBackfill, ScheduleOverlapPolicy, WorkflowExecutionStatus

import worker
from activities.webhook import signature
from tests.conftest import running_stack
from tests.integration.test_appointment_http import _delivered
from workflows.digest.models import DigestKind, DispatchInput, DispatchPlan, DispatchReport, DueGroup
from workflows.digest.rules import SLOT, WEEKLY, next_due, slot_of
from workflows.digest.workflow import DigestDispatch

CALLBACK_SECRET = "callback-secret"


class ProgressBackend(BaseHTTPRequestHandler):
    """The backend's side of the progress callback: checks the signature, answers per recipient."""

    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = signature(CALLBACK_SECRET, self.headers["X-Followups-Timestamp"], body)
        request = json.loads(body)
        type(self).seen.append({**request, "key": self.headers["X-Followups-Key"],
                                "signed": self.headers["X-Followups-Signature"] == expected})
        if request["recipient"].startswith("pulled-"):
            answer, status = {"headline": "Pulled for you", "summary": f"period {request['period']}"}, 200
        else:
            answer, status = {"error": "unknown"}, 404
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def progress_backend():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ProgressBackend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/progress"
    finally:
        server.shutdown()


@pytest_asyncio.fixture(scope="module")
async def digest_stack(local_env, database_url, smtp):
    schedule_id = f"digest-test-{uuid.uuid4().hex[:8]}"
    # Last Monday's slot is at most a week old: a grace of 8 days lets the backfill send it.
    async with running_stack(local_env, database_url, smtp, digest_schedule_id=schedule_id,
                             digest_grace=timedelta(days=8)) as stack:
        yield stack
        await local_env.client.get_schedule_handle(schedule_id).delete()


@pytest_asyncio.fixture
async def http(digest_stack):
    async with httpx.AsyncClient(base_url=digest_stack.base_url, headers=digest_stack.headers, timeout=30) as client:
        yield client


def last_kathmandu_slot() -> tuple[datetime, str]:
    """The end of the most recent slot in which Monday 09:00 in Kathmandu (03:15 UTC) fell, and its week."""
    week, at = next_due(WEEKLY, "Asia/Kathmandu", datetime.now(timezone.utc) - timedelta(days=7))
    return slot_of(at + SLOT - timedelta(microseconds=1)).end, week


async def backfill_and_wait(stack, slot_end: datetime, runs_before: int) -> DispatchReport:
    handle = stack.temporal.get_schedule_handle(stack.settings.digest_schedule_id)
    await handle.backfill(ScheduleBackfill(start_at=slot_end - timedelta(seconds=1),
                                           end_at=slot_end + timedelta(seconds=1),
                                           overlap=ScheduleOverlapPolicy.ALLOW_ALL))
    for _ in range(300):
        actions = [a for a in (await handle.describe()).info.recent_actions if a.scheduled_at == slot_end]
        if len(actions) > runs_before:
            run = actions[-1].action
            result = await stack.temporal.get_workflow_handle(
                run.workflow_id, run_id=run.first_execution_run_id).result()
            return DispatchReport.model_validate(result)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no dispatch run for the slot ending {slot_end}")


async def test_the_worker_creates_one_schedule_every_half_hour(digest_stack):
    description = await digest_stack.temporal.get_schedule_handle(digest_stack.settings.digest_schedule_id).describe()
    assert [spec.every for spec in description.schedule.spec.intervals] == [timedelta(minutes=30)]
    assert description.schedule.policy.overlap == ScheduleOverlapPolicy.ALLOW_ALL
    assert description.schedule.policy.catchup_window == timedelta(days=8)
    assert description.schedule.action.task_queue == digest_stack.settings.temporal_task_queue
    nxt = description.info.next_action_times[0]
    assert nxt.minute in (0, 30) and nxt.second == 0

    # Another worker starting (a deploy) updates it to its definition and keeps an operator's pause.
    handle = digest_stack.temporal.get_schedule_handle(digest_stack.settings.digest_schedule_id)
    await handle.pause(note="holiday week")
    await worker.ensure_digest_schedule(digest_stack.temporal, digest_stack.settings.model_copy(
        update={"digest_batch_size": 123}))
    after = await handle.describe()
    assert after.schedule.state.paused and after.schedule.state.note == "holiday week"
    [args] = await digest_stack.temporal.data_converter.decode(after.schedule.action.args, [DispatchInput])
    assert args.batch_size == 123
    await worker.ensure_digest_schedule(digest_stack.temporal, digest_stack.settings)
    await handle.unpause()


async def test_a_backfilled_slot_sends_each_due_digest_once_and_again_nothing(digest_stack, http, uid):
    slot_end, week = last_kathmandu_slot()
    people = {  # id → (zone, digests, progress)
        f"ann-{uid}": ("Asia/Kathmandu", ["weekly"], {"headline": "Ann's week", "summary": "Four lessons."}),
        f"raj-{uid}": ("Asia/Kolkata", ["weekly", "manager"], {"summary": "Team on track",
                                                              "team": [{"name": "Ann", "summary": "4 lessons"}]}),
        f"ber-{uid}": ("Europe/Berlin", ["weekly"], {"summary": "not due in this slot"}),
        f"mon-{uid}": ("Asia/Kathmandu", ["monthly"], {"summary": "monthly only"}),
        f"nop-{uid}": ("Asia/Kathmandu", ["weekly"], None),
    }
    for rid, (zone, digests, progress) in people.items():
        put = await http.put(f"/v1/progress/{rid}", json={"email": f"{rid}@example.test", "name": rid,
                                                           "time_zone": zone, "digests": digests, "progress": progress})
        assert put.status_code == 201, put.text

    report = await backfill_and_wait(digest_stack, slot_end, 0)
    assert report.slot_end == slot_end and report.slot_start == slot_end - SLOT
    weekly = [g for g in report.groups if g.kind == DigestKind.WEEKLY]
    assert [g.period for g in weekly] == [week] and {"Asia/Kathmandu", "Asia/Kolkata"} <= set(weekly[0].zones)
    assert "Europe/Berlin" not in weekly[0].zones

    sink = digest_stack.smtp.sink
    [ann] = await _delivered(digest_stack.smtp, f"digest/ann-{uid}/{week}")
    assert ann["Subject"] == f"Ann's week ({week})" and "Four lessons." in ann.get_body(("plain",)).get_content()
    [raj] = await _delivered(digest_stack.smtp, f"digest/raj-{uid}/{week}")
    [manager] = await _delivered(digest_stack.smtp, f"digest-manager/raj-{uid}/{week}")
    assert "Ann: 4 lessons" in manager.get_body(("plain",)).get_content()
    assert not [k for k in sink.keys() if f"ber-{uid}" in k or f"mon-{uid}" in k or f"nop-{uid}" in k]
    [nop] = (await http.get("/v1/messages", params={"entity_id": f"nop-{uid}"})).json()
    assert nop["status"] == "skipped" and nop["reason"].startswith("no progress"), nop

    again = await backfill_and_wait(digest_stack, slot_end, 1)
    assert again.totals.get("sent", 0) == 0 and again.totals["already_done"] >= 4, again.totals
    await asyncio.sleep(0.5)
    mine = {k: n for k, n in sink.keys().items() if uid in k}
    assert mine == {f"digest/ann-{uid}/{week}": 1, f"digest/raj-{uid}/{week}": 1,
                    f"digest-manager/raj-{uid}/{week}": 1}, mine


async def test_progress_pulled_from_the_signed_callback(local_env, database_url, smtp, uid):
    ProgressBackend.seen = []
    with progress_backend() as url:
        async with running_stack(local_env, database_url, smtp, digest_schedule_id=f"digest-pull-{uid}",
                                 digest_grace=timedelta(days=8), progress_callback_url=url,
                                 progress_callback_secret=CALLBACK_SECRET) as stack:
            try:
                async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as http:
                    for rid in (f"pulled-{uid}", f"unknown-{uid}"):
                        assert (await http.put(f"/v1/progress/{rid}", json={
                            "email": f"{rid}@example.test", "name": rid, "time_zone": "Asia/Kathmandu"})).status_code == 201
                    slot_end, week = last_kathmandu_slot()
                    await backfill_and_wait(stack, slot_end, 0)
                    [pulled] = await _delivered(smtp, f"digest/pulled-{uid}/{week}")
                    assert pulled["Subject"] == f"Pulled for you ({week})"
                    [unknown] = (await http.get("/v1/messages", params={"entity_id": f"unknown-{uid}"})).json()
                    assert unknown["status"] == "skipped" and "answered 404" in unknown["reason"], unknown
            finally:
                await stack.temporal.get_schedule_handle(f"digest-pull-{uid}").delete()
    mine = [s for s in ProgressBackend.seen if uid in s["recipient"]]
    assert {s["key"] for s in mine} == {f"digest/pulled-{uid}/{week}", f"digest/unknown-{uid}/{week}"}
    assert all(s["signed"] and s["digest"] == "weekly" and s["period"] == week for s in mine), mine


async def test_a_long_dispatch_continues_as_new_where_it_stopped(digest_stack, http, uid):
    """Batches of 2 and a history budget of 10 events: the run continues as new every few batches,
    carrying its cursor and totals; every recipient gets exactly one digest."""
    slot_end, week = last_kathmandu_slot()
    names = [f"cc{n}-{uid}" for n in range(9)]
    for rid in names:
        assert (await http.put(f"/v1/progress/{rid}", json={
            "email": f"{rid}@example.test", "name": rid, "time_zone": "Asia/Colombo",
            "progress": {"summary": "ok"}})).status_code == 201
    plan = DispatchPlan(slot_start=slot_end - SLOT, slot_end=slot_end, zones_known=1,
                        groups=[DueGroup(kind=DigestKind.WEEKLY, period=week, zones=["Asia/Colombo"])])
    handle = await digest_stack.temporal.start_workflow(
        DigestDispatch.run, DispatchInput(plan=plan, batch_size=2, history_budget=10),
        id=f"digest-can-{uid}", task_queue=digest_stack.settings.temporal_task_queue)
    report = await handle.result()
    assert report.totals["recipients"] >= len(names) and report.totals["sent"] >= len(names), report.totals
    first = await digest_stack.temporal.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id).describe()
    assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    for rid in names:
        await _delivered(digest_stack.smtp, f"digest/{rid}/{week}")
    assert {k: n for k, n in digest_stack.smtp.sink.keys().items() if k.startswith("digest/cc")
            and uid in k} == {f"digest/{rid}/{week}": 1 for rid in names}
