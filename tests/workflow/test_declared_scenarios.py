"""Declared journeys (a journey as data) on the time-skipping server, with the real send step:
the built-in enrollment (seed 001) and assignment deadline (seed 003) definitions as shipped."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from activities.definitions import Version, builtin_definitions, digest
from activities.render import Renderer
from starter.declared import DeclaredJourneys
from tests.workflow.conftest import Driver, driver_fixture, skip_by
from workflows.contracts import Recipient
from workflows.core.timing import when
from workflows.declared.models import DECLARED_CLOSED, DeclaredEvent, DeclaredStart, DeclaredStatus, Member
from workflows.declared.workflow import DeclaredJourney

D = timedelta(days=1)
H = timedelta(hours=1)
BUILTIN = builtin_definitions()


def version(name: str) -> Version:
    return Version(name, 1, BUILTIN[name], digest(BUILTIN[name]), "builtin", datetime.now(timezone.utc))


class DeclaredScenario(Driver):
    journey = DeclaredJourney
    closed = DECLARED_CLOSED
    prefix = "declared"  # the history files' prefix; the workflow id is `{definition}-{id}`
    definition = "enrollment"

    @property
    def workflow_id(self) -> str:
        return f"{self.definition}-{self.entity_id}"

    async def start(self, definition: str, *, anchors: dict[str, timedelta], members: int = 0,
                    **context) -> None:
        """Start `definition` now with its anchors at now + the given offsets."""
        self.definition = definition
        self.anchor = await self.now()
        people = [Member(member_id=f"s{n}", recipient=Recipient(email=f"s{n}-{self.entity_id}@example.com",
                                                                 name=f"Student {n}", time_zone="Europe/Berlin"))
                  for n in range(1, members + 1)]
        start = DeclaredStart(
            id=self.entity_id, anchors={name: self.anchor + offset for name, offset in anchors.items()},
            recipient=None if members else Recipient(email=f"d-{self.entity_id}@example.com", name="Dana",
                                                     time_zone="America/New_York"),
            roster=people or None, context=context, group="algebra-1")
        await DeclaredJourneys(self.client, self.settings, version(definition), Renderer()).start_durably(start)

    async def event(self, kind: str, **fields) -> None:
        await self.signal(DeclaredEvent(kind=kind, **fields))

    async def result(self):
        for _ in range(20):
            if (await self.state()).status in self.closed:
                break
            await skip_by(self.env, 7 * D)
        return await self.client.get_workflow_handle_for(self.journey.run, self.workflow_id).result()

    async def sent(self) -> list[tuple[str, timedelta]]:
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch("SELECT key, due_at FROM messages WHERE journey = $1 AND entity_id = $2 AND "
                                    "status = 'sent' ORDER BY due_at, key", self.definition, self.entity_id)
        finally:
            await conn.close()
        assert self.anchor is not None
        return [(r["key"].split("/", 1)[1].split("-", 1)[0] + r["key"].split("/", 1)[1].partition("Z")[2],
                 timedelta(seconds=round((r["due_at"] - self.anchor).total_seconds()))) for r in rows]


declared = driver_fixture(DeclaredScenario)
COURSE = dict(course_title="Algebra 1", course_url="https://lms.example.com/algebra-1")
ASSIGNMENT = dict(assignment_title="Quadratic equations", submit_url="https://lms.example.com/a/7")


async def test_enrollment_welcome_at_once_then_the_demo_followup(declared, smtp):
    await declared.start("enrollment", anchors={"enrolled_at": timedelta(0)}, **COURSE)
    await declared.at(5 * D)
    await declared.event("demo_attended", event_id="demo-1", at=declared.anchor + 5 * D)
    await declared.event("demo_attended", event_id="demo-1", at=declared.anchor + 5 * D)  # a redelivery
    await declared.at(6 * D)
    state = await declared.state()
    assert state.status == DeclaredStatus.ACTIVE  # still waits: the journey ends at enrolled_at + 90d
    assert await declared.sent() == [("welcome", 0 * D), ("demo_followup", 5 * D)]
    subjects = [m["Subject"] for m in smtp.sink.messages if m["X-Followups-Key"].startswith(declared.workflow_id + "/")]
    assert subjects == ["Welcome to Algebra 1", "Thanks for joining the Algebra 1 demo class"]
    final = await declared.result()
    assert final.status == DeclaredStatus.COMPLETED and final.delivered == 2
    assert [e.event for e in final.events] == ["demo-1"]


async def test_enrollment_unenrolled_before_a_demo_gets_nothing_more(declared):
    await declared.start("enrollment", anchors={"enrolled_at": timedelta(0)}, **COURSE)
    await declared.at(2 * D)
    await declared.event("unenrolled", event_id="u-1")
    final = await declared.result()
    assert (final.status, final.ended_by) == (DeclaredStatus.EXITED, "unenrolled")
    assert await declared.sent() == [("welcome", 0 * D)]


async def test_enrollment_without_a_demo_completes_after_90_days(declared):
    await declared.start("enrollment", anchors={"enrolled_at": timedelta(0)}, **COURSE)
    final = await declared.result()
    assert final.status == DeclaredStatus.COMPLETED
    assert await declared.sent() == [("welcome", 0 * D)]
    assert final.next_step is None


async def test_assignment_reminds_each_student_who_has_not_submitted(declared, smtp):
    await declared.start("assignment_deadline", anchors={"deadline": 5 * D}, members=3, **ASSIGNMENT)
    await declared.at(2 * D)
    await declared.event("submitted", member_id="s2", event_id="sub-2")
    final = await declared.result()
    assert final.status == DeclaredStatus.COMPLETED and final.exited_members == {"s2": "submitted"}
    assert await declared.sent() == [("reminder/m-s1", 3 * D), ("reminder/m-s3", 3 * D)]
    to = sorted(m["To"] for m in smtp.sink.messages if m["X-Followups-Key"].startswith(declared.workflow_id + "/"))
    assert to == [f"Student 1 <s1-{declared.entity_id}@example.com>", f"Student 3 <s3-{declared.entity_id}@example.com>"]


async def test_assignment_deadline_moved_after_the_reminder_reminds_again(declared):
    await declared.start("assignment_deadline", anchors={"deadline": 5 * D}, members=1, **ASSIGNMENT)
    await declared.at(3 * D + H)  # the reminder for the first deadline went out at 3 d
    await declared.event("deadline_moved", at=declared.anchor + 12 * D, event_id="move-1")
    final = await declared.result()
    assert final.status == DeclaredStatus.COMPLETED
    assert await declared.sent() == [("reminder/m-s1", 3 * D), ("reminder/m-s1", 10 * D)]


async def test_assignment_deadline_moved_before_the_reminder_reminds_once_for_the_new_one(declared):
    await declared.start("assignment_deadline", anchors={"deadline": 5 * D}, members=1, **ASSIGNMENT)
    await declared.at(1 * D)
    await declared.event("deadline_moved", at=declared.anchor + 8 * D, event_id="move-1")
    final = await declared.result()
    assert await declared.sent() == [("reminder/m-s1", 6 * D)]
    assert final.anchors["deadline"] == declared.anchor + 8 * D


async def test_assignment_started_inside_its_window_reminds_at_once(declared):
    await declared.start("assignment_deadline", anchors={"deadline": 30 * H}, members=1, **ASSIGNMENT)
    final = await declared.result()
    assert await declared.sent() == [("reminder/m-s1", -18 * H)]  # due 48 h before: already open, sent now
    assert final.skips == []


async def test_assignment_started_after_its_window_skips_the_reminder_with_a_reason(declared):
    await declared.start("assignment_deadline", anchors={"deadline": 20 * H}, members=1, **ASSIGNMENT)
    final = await declared.result()
    assert await declared.sent() == []  # 20 h before the deadline: the 48..24 h window has closed
    due = declared.anchor - 28 * H
    assert [s.reason for s in final.skips] == [f"reminder was due {when(due)}: its window closed"]
    assert final.status == DeclaredStatus.COMPLETED


async def test_assignment_everyone_submitted_completes_before_the_deadline(declared):
    await declared.start("assignment_deadline", anchors={"deadline": 5 * D}, members=2, **ASSIGNMENT)
    await declared.at(1 * D)
    await declared.event("submitted", member_id="s1")
    await declared.event("submitted", member_id="s2")
    final = await declared.result()
    assert final.status == DeclaredStatus.COMPLETED
    assert await declared.sent() == []
    assert await declared.now() < declared.anchor + 2 * D


async def test_cancel_stops_a_declared_journey(declared):
    await declared.start("assignment_deadline", anchors={"deadline": 5 * D}, members=1, **ASSIGNMENT)
    await declared.at(1 * D)
    await declared.event("cancel", event_id="c-1")
    final = await declared.result()
    assert (final.status, final.ended_by) == (DeclaredStatus.CANCELLED, "cancel")
    assert await declared.sent() == []
