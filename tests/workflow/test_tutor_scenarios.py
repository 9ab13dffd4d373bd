"""Seed 004's tutor rescheduling pattern on the time-skipping server, with the real send step
(PostgreSQL + SMTP): sliding windows exact to the second, one alert per episode, the manager told
at 6 in 14 days, late reports counted at their own time, an early report held for the start."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from starter.service import Journeys
from tests.workflow.conftest import Driver, driver_fixture
from workflows.contracts import Recipient
from workflows.core.steps import StepKind
from workflows.registry import TUTOR
from workflows.tutor import rules
from workflows.tutor.models import TUTOR_CLOSED, Tutor, TutorStatus, tutor_event
from workflows.tutor.workflow import TutorJourney

S, H, D = timedelta(seconds=1), timedelta(hours=1), timedelta(days=1)


class TutorScenario(Driver):
    journey = TutorJourney
    closed = TUTOR_CLOSED
    prefix = "tutor"

    def tutor(self, **fields) -> Tutor:
        return Tutor(tutor_id=self.entity_id, manager_email=f"mia-{self.entity_id}@example.com", manager_name="Mia",
                     tutor=Recipient(email=f"tom-{self.entity_id}@example.com", name="Tom", time_zone="Europe/Berlin"),
                     support_url="https://lms.example.com/help/scheduling", **fields)

    async def start(self, **fields) -> None:
        """Start now; offsets count from the next whole second, so that every `at` is one."""
        self.anchor = (await self.now() + S).replace(microsecond=0)
        await Journeys(self.client, self.settings, TUTOR).start_durably(self.tutor(**fields))

    async def rescheduled(self, offset: timedelta, session: str, reported: timedelta | None = None, **fields) -> None:
        """Session `session` rescheduled at anchor + offset, reported then (or at anchor + `reported`)."""
        assert self.anchor is not None
        await self.state()  # an alert's send finished: a skip now would not skip past it
        await self.at(offset if reported is None else reported)
        await self.signal(tutor_event(kind="rescheduled", session_id=session, at=self.anchor + offset, **fields))

    async def state(self):
        """The live state once no alert is being sent (time does not skip while the send step runs)."""
        for _ in range(100):
            state = await super().state()
            if state.next_step is None or state.next_step.kind not in (StepKind.CHECKIN, StepKind.ESCALATE):
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"an alert still in flight after 5 s: {state.next_step}")

    async def close(self, offset: timedelta) -> None:
        await self.state()
        await self.at(offset)
        await self.signal(tutor_event(kind="close", reason="left the school"))

    def subjects(self, smtp) -> list[str]:
        return [m["Subject"] for m in smtp.sink.messages if m["X-Followups-Key"].startswith(f"tutor-{self.entity_id}/")]

    def stamp(self, offset: timedelta) -> str:
        assert self.anchor is not None
        return rules.supportive_key(self.entity_id, self.anchor + offset).rpartition("-")[2]


tutor = driver_fixture(TutorScenario)


async def test_the_third_reschedule_a_second_inside_a_week_sends_one_supportive_email(tutor, smtp):
    await tutor.start()
    for n, offset in enumerate((0 * D, 3 * D, 7 * D - S, 7 * D - S)):  # the 4th: the same episode
        await tutor.rescheduled(offset, f"s-{n}", event_id=f"lms-{n}")
    state = await tutor.state()
    assert state.counts == {"supportive": 4, "manager": 4}
    assert state.supportive is not None and state.next_step.kind == StepKind.EXPIRE
    assert state.next_step.at == tutor.anchor + 10 * D  # 3 d leaves: the two of 7d−1s remain
    await tutor.close(8 * D)
    final = await tutor.result()
    assert final.status == TutorStatus.CLOSED
    assert await tutor.sent() == [(f"supportive-{tutor.stamp(7 * D - S)}", 7 * D - S)]
    assert tutor.subjects(smtp) == ["We noticed some rescheduling, Tom: can we help?"]


async def test_three_reschedules_exactly_a_week_apart_send_nothing(tutor):
    await tutor.start()
    for n, offset in enumerate((0 * D, 3 * D, 7 * D)):
        await tutor.rescheduled(offset, f"s-{n}")
    assert (await tutor.state()).counts["supportive"] == 2  # the first left the window at 7 d exactly
    await tutor.close(7 * D + H)
    assert (await tutor.result()).alerts == [] and await tutor.sent() == []


async def test_six_in_fourteen_days_tell_the_manager_and_the_tutor_hears_again_after_the_window_cleared(tutor, smtp):
    await tutor.start()
    for n in range(6):  # every 2 days: 3 in 7 days from day 4 until day 13; 6 in 14 days at day 10
        await tutor.rescheduled(n * 2 * D, f"s-{n}")
    state = await tutor.state()
    assert state.manager is not None and state.supportive is not None
    # A second burst after a pause (an hour past the day: a signal landing on a timer's moment trips
    # the time-skipping server): 3 in a week again, a new supportive episode; 4 in 14 days, no manager.
    for n, offset in enumerate((20 * D + H, 21 * D + H, 22 * D + H)):
        await tutor.rescheduled(offset, f"s-{6 + n}")
    await tutor.close(23 * D + H)
    final = await tutor.result()
    assert await tutor.sent() == [(f"supportive-{tutor.stamp(4 * D)}", 4 * D),
                                  (f"manager-{tutor.stamp(10 * D)}", 10 * D),
                                  (f"supportive-{tutor.stamp(22 * D + H)}", 22 * D + H)]
    assert [(a.rule, a.count, a.delivered) for a in final.alerts] == [("supportive", 3, True), ("manager", 6, True),
                                                                       ("supportive", 3, True)]
    manager = [m for m in smtp.sink.messages if m["X-Followups-Key"] == f"tutor-{tutor.entity_id}/manager-"
               f"{tutor.stamp(10 * D)}"]
    assert [m["To"] for m in manager] == [f"Mia <mia-{tutor.entity_id}@example.com>"]
    assert manager[0]["Subject"] == "Rescheduling: Tom rescheduled 6 sessions in 14 days"


async def test_reschedules_reported_late_count_at_their_own_time(tutor):
    await tutor.start()
    for n, offset in enumerate((1 * D, 2 * D, 3 * D)):  # all three reported at day 5, with their own times
        await tutor.rescheduled(offset, f"s-{n}", reported=5 * D)
    await tutor.rescheduled(4 * D, "s-9", reported=5 * D + H, event_id="late-9")
    await tutor.rescheduled(4 * D, "s-9", reported=5 * D + H, event_id="late-9")  # delivered twice
    state = await tutor.state()
    assert state.reschedules_total == 4 and len(state.alerts) == 1
    assert state.alerts[0].key == f"tutor-{tutor.entity_id}/supportive-{tutor.stamp(3 * D)}"
    await tutor.close(6 * D)
    assert [key for key, _ in await tutor.sent()] == [f"supportive-{tutor.stamp(3 * D)}"]


async def test_an_early_reschedule_is_held_until_the_tutor_starts(tutor):
    tutor.anchor = (await tutor.now() + S).replace(microsecond=0)
    journeys = Journeys(tutor.client, tutor.settings, TUTOR)
    await journeys.signal_event(tutor.entity_id, tutor_event(kind="rescheduled", session_id="s-0", at=tutor.anchor))
    assert (await tutor.state()).status == TutorStatus.AWAITING_START
    await tutor.at(H)
    await journeys.start_durably(tutor.tutor(policy={"supportive_threshold": 2}))
    await tutor.rescheduled(2 * H, "s-1")
    state = await tutor.state()
    assert state.status == TutorStatus.WATCHING and state.counts["supportive"] == 2
    await tutor.close(3 * H)
    assert [key for key, _ in await tutor.sent()] == [f"supportive-{tutor.stamp(2 * H)}"]
