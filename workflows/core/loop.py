"""The loop every journey runs, and its history budget.

plan the next step → sleep until it is due unless an event changes the plan → take it; until the
plan is empty. Before each wait the journey checks its history: past the budget (or when the
server suggests it) it continues as new, carrying its state, once every handler has finished.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow

from workflows.core.steps import PlannedStep

# Far below Temporal's 51,200-event limit and its own suggestion (at ~4k+ events, or 4 MB): a
# journey that continues as new at 10,000 events replays quickly and never nears the limit.
HISTORY_EVENTS_BUDGET = 10_000
UPDATES_BUDGET = 1_000  # Temporal accepts 2,000 updates per run


def over_budget(updates_seen: int = 0) -> bool:
    info = workflow.info()
    return (info.get_current_history_length() > HISTORY_EVENTS_BUDGET or info.is_continue_as_new_suggested()
            or updates_seen >= UPDATES_BUDGET)


# Journeys whose histories were recorded before the budget existed replay without it (a long one
# would otherwise continue as new where its history has a timer or an activity).
HISTORY_BUDGET = "history-budget"


class Durable:
    """What the loop asks of Temporal: the clock, a durable wait, the budget, patches, continuing
    as new. The journeys run it on these; the rules' tests run the very same loop on a fake clock
    (tests/unit/journey_clock.py) whose events arrive during waits and sends."""

    def now(self) -> datetime:
        return workflow.now()

    async def wait_condition(self, changed: Callable[[], bool], timeout: timedelta, summary: str) -> None:
        """Return once `changed()` is true; raise TimeoutError when `timeout` passes first."""
        await workflow.wait_condition(changed, timeout=timeout, timeout_summary=summary)

    def over_budget(self, updates_seen: int) -> bool:
        return over_budget(updates_seen)

    def patched(self, patch_id: str) -> bool:
        return workflow.patched(patch_id)

    async def continue_as_new(self, carry: Callable[[], Any]) -> NoReturn:
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(carry())


TEMPORAL = Durable()


async def run_plan(plan: Callable[[], PlannedStep | None], take: Callable[[PlannedStep], Awaitable[None]],
                   revision: Callable[[], int], carry: Callable[[], Any],
                   updates_seen: Callable[[], int] = lambda: 0, durable: Durable = TEMPORAL,
                   announce: Callable[[], Awaitable[None]] | None = None) -> None:
    """`revision()` moves whenever an event changed the journey; `carry()` is the input of the
    next run when the history budget is spent. A wait also wakes when updates alone spend their
    budget (duplicates and refusals do not move `revision`; a run takes at most 2,000 updates).
    Only updates wake it: histories recorded before the budget have none, so they replay as they ran.
    `announce()` tells the backend what changed, before each plan."""
    budget = True  # False once replay shows this run began before the budget
    while True:
        if announce is not None:
            await announce()
        if (step := plan()) is None:
            break
        if budget and durable.over_budget(updates_seen()):
            if durable.patched(HISTORY_BUDGET):
                await durable.continue_as_new(carry)
            budget = False
        seen = revision()
        if not await wait_for_step_or_change(
                step.at, lambda: revision() != seen or updates_seen() >= UPDATES_BUDGET, step.label, durable):
            continue  # an event changed the plan (or the budget is spent): plan again
        await take(step)


async def wait_for_step_or_change(due: datetime, changed: Callable[[], bool], summary: str,
                                  durable: Durable = TEMPORAL) -> bool:
    """Sleep durably until `due`; return True when it is reached, False when `changed()` became true
    first (an event re-planned the journey). The timer carries `summary` for the Web UI."""
    remaining = due - durable.now()
    if remaining <= timedelta(0):
        return not changed()
    try:
        await durable.wait_condition(changed, remaining, summary)
    except TimeoutError:
        return True
    return False
