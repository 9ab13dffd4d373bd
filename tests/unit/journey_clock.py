"""The journeys' own loop on a fake clock, without Temporal: what the rules' property tests run.

`workflows.core.loop.run_plan` (plan → wait for the step or an event → take it) runs here as it
runs in a workflow, with `FakeTemporal` as its primitives, and each test passes the journey's own
`take` from `workflows/<kind>/workflow.py` with a fake send step. So a property judges the code
that runs in production, not a copy of it. On the fake clock:

* an event arrives at its moment: during a wait (which wakes when the event changed the journey:
  an applied event, or the first start), or while a send step is in flight (handled at its own
  moment, before the workflow sees the send's result);
* everything that came in by a moment is handled before the workflow goes on at that moment, so
  a tie between an event and a step goes to the event;
* the history budget is never spent and every patch is taken: a journey begun on today's code.

Nothing here ever suspends: a journey runs to its end in one step of its coroutine, and one that
waited on anything else (a real timer, a task) fails loudly instead of hanging.

`tell` labels an example with `hypothesis.event` (see `--hypothesis-show-statistics`); `tally`
counts the labels over a derandomized sample of a strategy, so a test can require that what the
properties are about (a cancel during a send, a reminder sent, a skip) really happens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, seed, settings
from hypothesis import strategies as st

from workflows.core.loop import Durable, run_plan
from workflows.core.steps import PlannedStep


class FakeTemporal(Durable):
    """`arrivals`: (moment, order, item) of everything that comes in while the journey runs;
    `handle(item)` applies one and says whether it changed the journey (moves the revision)."""

    def __init__(self, started_at: datetime, arrivals: Iterable[tuple[datetime, int, Any]],
                 handle: Callable[[Any], bool]) -> None:
        self.moment = started_at
        self.arrivals = sorted(arrivals, key=lambda arrival: (arrival[0], arrival[1]))
        self.handle = handle
        self.revision = 0
        self.in_flight = False  # a send step is running: what arrives now arrives during it
        self.exhausted = False

    # --- the primitives `run_plan` asks for -------------------------------------------------------

    def now(self) -> datetime:
        return self.moment

    async def wait_condition(self, changed: Callable[[], bool], timeout: timedelta, summary: str) -> None:
        deadline = self.moment + timeout
        while self.arrivals and self.arrivals[0][0] <= deadline:
            self._arrive(self.arrivals[0][0])
            if changed():
                return
        self.moment = deadline
        raise TimeoutError

    def over_budget(self, updates_seen: int) -> bool:
        return False

    def patched(self, patch_id: str) -> bool:
        return True

    async def continue_as_new(self, carry: Callable[[], Any]) -> NoReturn:
        raise AssertionError("the history budget is never spent on the fake clock")

    # --- what the tests' send steps and drivers use -----------------------------------------------

    async def activity(self, took: timedelta) -> None:
        """An activity in flight for `took`: everything that arrives meanwhile is handled at its own moment."""
        end = self.moment + took
        self.in_flight = True
        while self.arrivals and self.arrivals[0][0] <= end:
            self._arrive(self.arrivals[0][0])
        self.in_flight = False
        self.moment = end

    def run(self, plan: Callable[[], PlannedStep | None], take: Callable[[PlannedStep], Awaitable[None]],
            limit: int) -> None:
        """The journey's loop to its end; `exhausted` when it planned more than `limit` steps."""
        planned = 0

        def bounded() -> PlannedStep | None:
            nonlocal planned
            planned += 1
            if planned > limit:
                self.exhausted = True
                return None
            return plan()

        self._arrive(self.moment)  # what came in with the start
        drive(run_plan(bounded, take, lambda: self.revision, lambda: None, durable=self))

    def _arrive(self, at: datetime) -> None:
        self.moment = max(self.moment, at)
        while self.arrivals and self.arrivals[0][0] <= self.moment:
            _, _, item = self.arrivals.pop(0)
            if self.handle(item):
                self.revision += 1


def drive(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise AssertionError("the journey waited on something the fake clock does not provide")


def tell(labels: Iterable[str]) -> None:
    """Label the running example (outside a property, e.g. in an example test, nothing happens)."""
    if currently_in_test_context():
        for label in sorted(set(labels)):
            event(label)


def shortfall(strategy: st.SearchStrategy, labels: Callable[[Any], Iterable[str]], at_least: dict[str, int],
              examples: int = 300, samples: int = 6) -> dict[str, int]:
    """The labels of `at_least` that fewer journeys drawn from `strategy` carry than required, after
    up to `samples` samples of `examples` each (fixed seeds, one after another until every bound is
    met). Which journeys a seed gives depends on Hypothesis (its version, and the constants it mines
    from whichever modules the suite has loaded): one sample of 300 showed a label 17 times in one
    suite and never in another, so the bounds hold over the samples together, never one by chance."""
    seen: Counter = Counter()
    for number in range(samples):

        @seed(20261203 + number)
        @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def sample(journey: Any) -> None:
            seen.update(set(labels(journey)))

        sample()
        missing = {label: seen[label] for label, least in at_least.items() if seen[label] < least}
        if not missing:
            return {}
    return missing
