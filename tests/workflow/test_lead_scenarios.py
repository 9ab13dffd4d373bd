"""Seed 003's lead nurture on the time-skipping server, with the real send step (PostgreSQL + SMTP)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from activities.store import Suppressions
from starter.service import Journeys
from workflows.registry import LEAD
from tests.workflow.conftest import Driver, driver_fixture
from workflows.lead.workflow import LeadJourney
from workflows.contracts import Recipient
from workflows.lead.models import LEAD_CLOSED, Lead, LeadEvent, LeadStatus, lead_event

D = timedelta(days=1)
H = timedelta(hours=1)


class LeadScenario(Driver):
    journey = LeadJourney
    closed = LEAD_CLOSED
    prefix = "lead"

    async def start(self, **fields) -> None:
        self.anchor = await self.now()
        lead = Lead(lead_id=self.entity_id, contact=Recipient(email=f"l-{self.entity_id}@example.com", name="Lee"),
                    campaign=f"spring-{self.entity_id}", company="Acme", offer_url="https://shop.example.com/offer",
                    started_at=self.anchor, **fields)
        await Journeys(self.client, self.settings, LEAD).start_durably(lead)

    async def event(self, kind: str, **fields) -> None:
        await self.signal(lead_event(kind=kind, **fields))

    async def recorded(self) -> asyncpg.Record:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetchrow("SELECT * FROM leads WHERE lead_id = $1", self.entity_id)
        finally:
            await conn.close()


lead = driver_fixture(LeadScenario)


async def test_no_answer_gets_day_0_3_and_7_then_finishes(lead, smtp):
    await lead.start()
    final = await lead.result()
    assert final.status == LeadStatus.FINISHED
    assert await lead.sent() == [("step-1", 0 * D), ("step-2", 3 * D), ("step-3", 7 * D)]
    subjects = [m["Subject"] for m in smtp.sink.messages if m["X-Followups-Key"].startswith(f"lead-{lead.entity_id}/")]
    assert subjects[1] == "Still interested, Lee?" and "last offer" in subjects[2]
    assert (await lead.recorded())["status"] == "finished"


async def test_converted_before_day_3_gets_nothing_more_and_is_recorded(lead):
    await lead.start()
    await lead.at(2 * D)
    await lead.event("converted", reference="order-991", event_id="conv-1")
    await lead.event("converted", reference="order-991", event_id="conv-1")  # at-least-once delivery
    final = await lead.result()
    assert final.status == LeadStatus.CONVERTED and final.conversion_reference == "order-991"
    assert [e.event for e in final.events] == ["conv-1"]
    assert await lead.sent() == [("step-1", 0 * D)]
    row = await lead.recorded()
    assert (row["status"], row["conversion_reference"]) == ("converted", "order-991")


async def test_conversion_between_day_3_and_day_7(lead):
    await lead.start()
    await lead.at(5 * D)
    await lead.event("converted")
    final = await lead.result()
    assert final.status == LeadStatus.CONVERTED
    assert [key for key, _ in await lead.sent()] == ["step-1", "step-2"]


async def test_a_reply_stops_it_like_a_conversion(lead):
    await lead.start()
    await lead.at(1 * H)
    await lead.event("replied")
    assert (await lead.result()).status == LeadStatus.REPLIED
    assert [key for key, _ in await lead.sent()] == ["step-1"]


async def test_unsubscribed_after_day_0_stops_at_the_next_step(lead):
    await lead.start()
    await lead.at(1 * D)
    pool = await asyncpg.create_pool(lead.database_url, min_size=1, max_size=1)
    try:
        await Suppressions(pool).add(f"l-{lead.entity_id}@example.com", "unsubscribe", "one-click from step-1")
    finally:
        await pool.close()
    final = await lead.result()
    assert final.status == LeadStatus.SUPPRESSED
    assert [skip.step.split("/")[1] for skip in final.skips] == ["step-2"]
    assert [key for key, _ in await lead.sent()] == ["step-1"]


async def test_custom_steps_from_the_start_input(lead):
    await lead.start(policy={"steps": [{"after": 0, "template": "lead_welcome"},
                                       {"after": 3600, "template": "lead_final_offer"}]})
    final = await lead.result()
    assert final.status == LeadStatus.FINISHED
    assert await lead.sent() == [("step-1", 0 * H), ("step-2", 1 * H)]
