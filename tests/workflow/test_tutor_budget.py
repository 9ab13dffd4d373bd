"""A tutor's journey lives for years: past the history budget it continues as new, carrying its
counts, its open alert episodes and its event log, so an episode alerted before stays alerted (no
second email) and a retried event is still a duplicate. The budget is lowered here (the
`workflows` package is passed through the sandbox, so the worker sees the patched value); the
scenario has no recorded history, since a replay runs with the real budget."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from tests.workflow.conftest import driver_fixture
from tests.workflow.test_tutor_scenarios import TutorScenario
from workflows.core import loop
from workflows.tutor.models import TutorStatus, tutor_event

H, D = timedelta(hours=1), timedelta(days=1)
RESCHEDULES = 30


class BudgetScenario(TutorScenario):
    records_history = False

    async def signal(self, event) -> None:
        await super().signal(event)
        # The time-skipping server can hold a query or a skip sent while a run is continuing as new
        # until its deadline: give the new run a moment to take its first workflow task.
        await asyncio.sleep(0.1)


tutor = driver_fixture(BudgetScenario)


async def test_a_tutor_with_many_reschedules_continues_as_new_and_keeps_its_counts(tutor, monkeypatch):
    monkeypatch.setattr(loop, "HISTORY_EVENTS_BUDGET", 60)
    await tutor.start()
    first_run = (await tutor.client.get_workflow_handle(tutor.workflow_id).describe()).run_id
    for n in range(RESCHEDULES):  # one every 8 hours for 10 days: both thresholds reached early, never cleared
        await tutor.rescheduled(n * 8 * H + H, f"s-{n}", event_id=f"lms-{n}")
    await tutor.signal(tutor_event(kind="rescheduled", session_id="s-0", at=tutor.anchor + H, event_id="lms-0"))
    state = await tutor.state()
    handle = tutor.client.get_workflow_handle(tutor.workflow_id)
    assert (await handle.describe()).run_id != first_run
    history = await tutor.client.get_workflow_handle(tutor.workflow_id, run_id=first_run).fetch_history()
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    latest = await handle.fetch_history()
    assert len(latest.events) < 2 * 60  # the latest run: within the budget and one wait
    assert state.reschedules_total == RESCHEDULES  # the retry of lms-0 counted once, across runs
    now = tutor.anchor + (RESCHEDULES - 1) * 8 * H + H
    assert state.counts == {"supportive": 21, "manager": 30}  # 7 days of one every 8 h; all 9.7 days
    assert all(r.at > now - 14 * D for r in state.reschedules)
    assert [(a.rule, a.count) for a in state.alerts] == [("supportive", 3), ("manager", 6)]
    await tutor.close((RESCHEDULES - 1) * 8 * H + 2 * H)
    final = await tutor.result()
    assert final.status == TutorStatus.CLOSED
    assert [key for key, _ in await tutor.sent()] == [f"supportive-{tutor.stamp(17 * H)}",
                                                      f"manager-{tutor.stamp(41 * H)}"]
