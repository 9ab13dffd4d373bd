"""A class session of 10,000 attendees on the time-skipping server: a start with 1,000, nine batches
of 1,000 more, a reschedule and two reminders. The roster lives in PostgreSQL, each fan-out sends
a chunk per activity, so the history stays far below Temporal's limits and the live state small.
The send step runs in dry-run mode (rendered and recorded, not delivered): this is about the
journey's shape at scale, the SMTP path has its own tests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from tests.workflow.conftest import driver_fixture
from tests.workflow.test_session_scenarios import SessionScenario
from workflows.core.loop import HISTORY_EVENTS_BUDGET
from workflows.session.models import SessionStatus
from workflows.session.rules import reminder_step

S, M, H, D = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
ATTENDEES, BATCH = 10_000, 1_000

async def until_sent(session, count: int) -> None:
    for _ in range(1200):
        if (await session.state()).messages_sent >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} messages after 120 s")


big_session = driver_fixture(SessionScenario, settings_from=lambda request: {"dry_run": True})


async def test_ten_thousand_attendees_two_reminders_and_a_reschedule(big_session, database_url):
    session = big_session
    everyone = [session.attendee(f"a{n:05d}") for n in range(ATTENDEES)]
    await session.start(3 * D, everyone[:BATCH])
    for begin in range(BATCH, ATTENDEES, BATCH):
        await session.event("add_attendee", attendees=everyone[begin:begin + BATCH], event_id=f"batch-{begin}")
    await session.event("remove_attendee", attendee_id="a00007")
    moved = session.anchor + 4 * D
    await session.event("reschedule", starts_at=moved, ends_at=moved + H)

    # Skip to just past each reminder, then let its fan-out run in real time (time does not skip while
    # activities run: one long skip across both fan-outs would outlast the test server's RPC timeout).
    await session.at(3 * D + S)
    await until_sent(session, ATTENDEES - 1)
    middle = await session.state()  # the live state answers, and stays small
    assert middle.roster_size == ATTENDEES - 1 and middle.roster == []
    assert len(middle.model_dump_json()) < 20_000

    await session.at(4 * D - 15 * M + S)
    await until_sent(session, 2 * (ATTENDEES - 1))
    await session.at(4 * D + 2 * H)  # the end
    state = await session.state()
    assert state.status == SessionStatus.ENDED
    assert state.messages_sent == 2 * (ATTENDEES - 1)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT split_part(key, '/', 2) AS step, count(*) AS n FROM messages "
                                "WHERE entity_id = $1 AND status = 'dry_run' GROUP BY 1 ORDER BY 1", session.entity_id)
        removed = await conn.fetchval("SELECT count(*) FROM messages WHERE entity_id = $1 AND key LIKE '%/a00007/%'",
                                      session.entity_id)
    finally:
        await conn.close()
    # one reminder per offset, each for the new time only, to everyone but the one removed
    assert {row["step"]: row["n"] for row in rows} == {reminder_step(moved, offset): ATTENDEES - 1
                                                       for offset in (D, timedelta(minutes=15))}
    assert removed == 0

    history = await session.client.get_workflow_handle(session.workflow_id).fetch_history()
    events = len(history.events)
    print(f"10,000-attendee session: {events} history events after two reminders to {ATTENDEES - 1}")
    assert events < HISTORY_EVENTS_BUDGET
