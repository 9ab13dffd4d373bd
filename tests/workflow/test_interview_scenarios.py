"""Every seed-000 scenario on the time-skipping server, with the real send step (PostgreSQL + SMTP)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import worker
from starter.service import Interviews
from workflows.interview import InterviewJourney, workflow_id
from workflows.models import CLOSED_STATUSES, Invitation, InterviewEvent, InterviewInput, InterviewState, InterviewStatus, Recipient

H = timedelta(hours=1)


class Scenario:
    def __init__(self, env, settings, interview_id: str, database_url: str) -> None:
        self.env, self.settings, self.interview_id, self.database_url = env, settings, interview_id, database_url
        self.client = env.client
        self.invited_at: datetime | None = None

    async def start(self, **fields) -> None:
        self.invited_at = await self.env.get_current_time()
        invitation = Invitation(
            interview_id=self.interview_id,
            candidate=Recipient(email=f"cand-{self.interview_id}@example.com", name="Ann", time_zone="Europe/Berlin"),
            invited_at=self.invited_at,
            slot_selection_url=f"https://jobs.example.com/slots/{self.interview_id}",
            **fields,
        )
        await Interviews(self.client, self.settings).start(invitation)

    async def at(self, offset: timedelta) -> None:
        """Skip time to invited_at + offset."""
        assert self.invited_at is not None
        remaining = self.invited_at + offset - await self.env.get_current_time()
        if remaining > timedelta(0):
            await self.env.sleep(remaining)

    async def event(self, kind: str, scheduled_at: datetime | None = None, **fields) -> None:
        handle = self.client.get_workflow_handle(workflow_id(self.interview_id))
        await handle.signal(InterviewJourney.event, InterviewEvent(kind=kind, scheduled_at=scheduled_at, **fields))

    async def state(self) -> InterviewState:
        handle = self.client.get_workflow_handle(workflow_id(self.interview_id))
        return await handle.query(InterviewJourney.state_query)

    async def result(self) -> InterviewState:
        """Skip time, a day at a time, until the journey ends (at most 30 days)."""
        handle = self.client.get_workflow_handle_for(InterviewJourney.run, workflow_id(self.interview_id))
        for _ in range(30):
            if (await handle.query(InterviewJourney.state_query)).status in CLOSED_STATUSES:
                break
            await self.env.sleep(timedelta(days=1))
        return await handle.result()

    async def sent(self) -> list[tuple[str, timedelta]]:
        """(key suffix, due at − invited at, to the second) for every message actually delivered.
        A follow-up keeps ≥ interval from the previous *send*, which fired some ms after its due time."""
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch(
                "SELECT key, due_at FROM messages WHERE entity_id = $1 AND status = 'sent' ORDER BY due_at",
                self.interview_id,
            )
        finally:
            await conn.close()
        assert self.invited_at is not None
        return [(r["key"].split("/", 1)[1], timedelta(seconds=round((r["due_at"] - self.invited_at).total_seconds())))
                for r in rows]


HISTORIES = Path(__file__).resolve().parent.parent / "histories"


@pytest.fixture
async def scenario(ts_env, make_settings, uid, database_url, request):
    settings = make_settings()
    async with worker.running_worker(settings, ts_env.client):
        scenario = Scenario(ts_env, settings, f"iv-{uid}", database_url)
        yield scenario
        if os.environ.get("FOLLOWUPS_RECORD_HISTORIES"):
            # `FOLLOWUPS_RECORD_HISTORIES=1 pytest tests/workflow` refreshes tests/histories/ for the
            # replay test; commit new files only: old ones are the histories sleeping journeys have.
            target = HISTORIES / f"interview-{request.node.name.removeprefix('test_')}.json"
            if not target.exists():
                history = await ts_env.client.get_workflow_handle(workflow_id(scenario.interview_id)).fetch_history()
                target.write_text(history.to_json())


async def test_no_answer_gets_three_followups_then_expires(scenario, smtp):
    await scenario.start()
    final = await scenario.result()
    assert final.status == InterviewStatus.EXPIRED
    assert await scenario.sent() == [("followup-1", 48 * H), ("followup-2", 72 * H), ("followup-3", 96 * H)]
    keys = smtp.sink.keys()
    assert all(keys[f"interview-{scenario.interview_id}/followup-{n}"] == 1 for n in (1, 2, 3))


async def test_confirm_after_first_followup_reminds_a_day_before_then_completes(scenario):
    await scenario.start()
    await scenario.at(60 * H)
    interview_at = scenario.invited_at + 200 * H
    await scenario.event("confirm", interview_at)
    state = await scenario.state()
    assert state.status == InterviewStatus.SCHEDULED
    assert state.next_step.kind == "reminder" and state.next_step.at == interview_at - 24 * H
    final = await scenario.result()
    assert final.status == InterviewStatus.COMPLETED
    sent = await scenario.sent()
    assert sent[0] == ("followup-1", 48 * H)
    assert [key for key, _ in sent][1].startswith("reminder-") and sent[1][1] == 176 * H
    assert len(sent) == 2


async def test_confirm_inside_the_reminder_window(scenario):
    await scenario.start()
    await scenario.at(10 * H)
    await scenario.event("confirm", scenario.invited_at + 33 * H)  # reminder due at +9 h: 1 h late, within grace
    other = await scenario.result()
    assert other.status == InterviewStatus.COMPLETED
    assert [key.split("-")[0] for key, _ in await scenario.sent()] == ["reminder"]


async def test_confirm_too_late_for_a_reminder_skips_it_with_a_reason(scenario):
    await scenario.start()
    await scenario.at(10 * H)
    await scenario.event("confirm", scenario.invited_at + 20 * H)  # reminder due at −4 h: beyond the 2 h grace
    final = await scenario.result()
    assert final.status == InterviewStatus.COMPLETED
    assert await scenario.sent() == []
    assert len(final.skips) == 1 and "beyond the grace" in final.skips[0].reason


async def test_reschedule_twice_only_reminds_for_the_final_time(scenario):
    await scenario.start()
    await scenario.at(1 * H)
    await scenario.event("confirm", scenario.invited_at + 100 * H)
    await scenario.at(50 * H)
    await scenario.event("reschedule", scenario.invited_at + 150 * H)
    await scenario.at(100 * H)  # the first time's reminder (+76 h) must not have gone out
    await scenario.event("reschedule", scenario.invited_at + 130 * H)
    final = await scenario.result()
    assert final.status == InterviewStatus.COMPLETED
    sent = await scenario.sent()
    assert len(sent) == 1 and sent[0][1] == 106 * H


async def test_reschedule_after_the_reminder_went_out_reminds_again_for_the_new_time(scenario):
    await scenario.start(scheduled_at=None)
    await scenario.event("confirm", scenario.invited_at + 30 * H)
    await scenario.at(8 * H)  # reminder at +6 h went out
    await scenario.event("reschedule", scenario.invited_at + 80 * H)
    await scenario.result()
    assert [offset for _, offset in await scenario.sent()] == [6 * H, 56 * H]


async def test_cancel_while_pending_sends_nothing_more(scenario):
    await scenario.start()
    await scenario.at(50 * H)
    await scenario.event("cancel", reason="position filled")
    final = await scenario.result()
    assert final.status == InterviewStatus.CANCELLED
    assert [key for key, _ in await scenario.sent()] == ["followup-1"]


async def test_cancel_while_scheduled_sends_no_reminder(scenario):
    await scenario.start(scheduled_at=None)
    await scenario.event("confirm", scenario.invited_at + 100 * H)
    await scenario.at(50 * H)
    await scenario.event("cancel")
    final = await scenario.result()
    assert final.status == InterviewStatus.CANCELLED
    assert await scenario.sent() == []


async def test_past_interview_sends_nothing_and_completes(scenario):
    await scenario.start()
    await scenario.at(5 * H)
    # a confirm for a time already past is rejected and changes nothing
    await scenario.event("confirm", scenario.invited_at + 2 * H)
    state = await scenario.state()
    assert state.status == InterviewStatus.PENDING
    assert state.events[-1].applied is False and "past" in state.events[-1].reason
    await scenario.event("complete")
    final = await scenario.result()
    assert final.status == InterviewStatus.COMPLETED
    assert await scenario.sent() == []


async def test_duplicate_events_apply_once(scenario):
    await scenario.start()
    at = scenario.invited_at + 100 * H
    await scenario.event("confirm", at, event_id="c-1")
    await scenario.event("confirm", at, event_id="c-1")
    await scenario.event("cancel", event_id="x-1")
    await scenario.event("cancel", event_id="x-1")
    final = await scenario.result()
    assert [(e.event, e.applied) for e in final.events] == [("c-1", True), ("x-1", True)]
    assert final.status == InterviewStatus.CANCELLED


async def test_event_before_the_start_is_held_and_applied(scenario):
    """A confirm that reaches us before the start creates the journey in awaiting_start; the start
    then finds it already scheduled, so no follow-up is ever sent."""
    now = await scenario.env.get_current_time()
    scenario.invited_at = now
    handle = await scenario.client.start_workflow(
        InterviewJourney.run, InterviewInput(interview_id=scenario.interview_id), id=workflow_id(scenario.interview_id),
        task_queue=scenario.settings.temporal_task_queue, start_signal="event",
        start_signal_args=[InterviewEvent(kind="confirm", scheduled_at=now + 100 * H)],
    )
    assert (await handle.query(InterviewJourney.state_query)).status == InterviewStatus.AWAITING_START
    await scenario.start()
    final = await scenario.result()
    assert final.status == InterviewStatus.COMPLETED
    assert [key.split("-")[0] for key, _ in await scenario.sent()] == ["reminder"]


async def test_start_with_a_confirmed_time(scenario):
    await scenario.start(scheduled_at=None)
    state = await scenario.state()
    assert state.status == InterviewStatus.PENDING
    await scenario.event("confirm", scenario.invited_at + 30 * H)
    final = await scenario.result()
    assert [offset for _, offset in await scenario.sent()] == [6 * H]
    assert final.status == InterviewStatus.COMPLETED
