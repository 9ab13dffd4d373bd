"""Every seed-000 scenario on the time-skipping server, with the real send step (PostgreSQL + SMTP)."""

from __future__ import annotations

from datetime import datetime, timedelta

from starter.service import Journeys
from workflows.registry import INTERVIEW
from tests.workflow.conftest import Driver, driver_fixture
from workflows.interview.workflow import InterviewJourney, workflow_id
from workflows.contracts import Recipient
from workflows.interview.models import CLOSED_STATUSES, InterviewEvent, InterviewInput, InterviewStatus, Invitation, interview_event

H = timedelta(hours=1)


class Scenario(Driver):
    journey = InterviewJourney
    closed = CLOSED_STATUSES
    prefix = "interview"

    @property
    def interview_id(self) -> str:
        return self.entity_id

    @property
    def invited_at(self) -> datetime | None:
        return self.anchor

    @invited_at.setter
    def invited_at(self, value: datetime) -> None:
        self.anchor = value

    async def start(self, **fields) -> None:
        self.anchor = await self.now()
        invitation = Invitation(
            interview_id=self.entity_id,
            candidate=Recipient(email=f"cand-{self.entity_id}@example.com", name="Ann", time_zone="Europe/Berlin"),
            invited_at=self.anchor,
            slot_selection_url=f"https://jobs.example.com/slots/{self.entity_id}",
            **fields,
        )
        await Journeys(self.client, self.settings, INTERVIEW).start_durably(invitation)

    async def event(self, kind: str, scheduled_at: datetime | None = None, **fields) -> None:
        await self.signal(interview_event(kind=kind, scheduled_at=scheduled_at, **fields))


scenario = driver_fixture(Scenario)


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
        start_signal_args=[interview_event(kind="confirm", scheduled_at=now + 100 * H)],
    )
    assert (await handle.query(InterviewJourney.state_query)).status == InterviewStatus.AWAITING_START
    await scenario.start()
    final = await scenario.result()
    assert final.status == InterviewStatus.COMPLETED
    assert [key.split("-")[0] for key, _ in await scenario.sent()] == ["reminder"]


async def test_start_unconfirmed_then_a_confirm_reminds_once(scenario):
    await scenario.start(scheduled_at=None)
    state = await scenario.state()
    assert state.status == InterviewStatus.PENDING
    await scenario.event("confirm", scenario.invited_at + 30 * H)
    final = await scenario.result()
    assert [offset for _, offset in await scenario.sent()] == [6 * H]
    assert final.status == InterviewStatus.COMPLETED


async def test_start_with_a_confirmed_time(scenario):
    """The invitation already carries the time (the candidate picked it on the spot): no follow-up,
    straight to the reminder a day before."""
    interview_at = await scenario.now() + 30 * H
    await scenario.start(scheduled_at=interview_at)
    state = await scenario.state()
    assert state.status == InterviewStatus.SCHEDULED and state.followups_sent == 0
    assert state.next_step.kind == "reminder" and state.next_step.at == interview_at - 24 * H
    final = await scenario.result()
    assert final.status == InterviewStatus.COMPLETED and final.followups_sent == 0
    sent = await scenario.sent()
    assert [key.split("-")[0] for key, _ in sent] == ["reminder"] and sent[0][1] == 6 * H
