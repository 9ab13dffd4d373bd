"""The mechanics every journey workflow shares, held by composition: each journey's workflow
class keeps its own (thin, typed) Temporal handlers and hands them to a `JourneyCore`.

A journey's rules module provides, with these signatures:
  start(state, start, now)                       apply the start input (events held before it keep their effect)
  apply_event(state, event, policy, now)         → EventOutcome
  next_step(state, policy, awaiting_since, now)  → the next PlannedStep, or None once it has ended
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from workflows.contracts import ANNOUNCE_JOURNEY, Announcement
from workflows.core import loop
from workflows.core.events import applied_under, fingerprinted
from workflows.core.fields import with_overrides
from workflows.core.search import publish
from workflows.core.send import Waiting
from workflows.core.steps import REFUSED, EventOutcome, PlannedStep

S = TypeVar("S", bound=BaseModel)

REPLY_TAIL = 20  # outcomes and skips an update's answer carries

# Update failure types the API maps to HTTP: the rules refused the event (422), the journey is over (409).
EVENT_REFUSED = "EventRefused"
JOURNEY_ENDED = "JourneyEnded"
EVENT_ID_REUSED = "EventIdReused"  # 409: the event_id names another event

# Journeys that were running before the backend was told of stages announce nothing in that run
# (their histories replay as they ran); their next run, or a new journey, announces.
ANNOUNCEMENTS = "journey-announcements"
ANNOUNCE_TIMEOUT = timedelta(seconds=10)
ANNOUNCE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


class Reply(BaseModel, Generic[S]):
    """What a start or an event update answers: its outcome and the journey's state with its new plan."""

    created: bool | None = None  # a start: True when this call started the journey
    start: dict[str, Any] | None = None  # a repeated start: the start the journey has (the API compares)
    event: EventOutcome | None = None
    state: S


class Rules(Protocol):
    def start(self, state: Any, start: Any, now: datetime) -> None: ...
    def apply_event(self, state: Any, event: Any, policy: Any, now: datetime) -> EventOutcome: ...
    def next_step(self, state: Any, policy: Any, awaiting_since: datetime, now: datetime) -> PlannedStep | None: ...


Apply = Callable[[Any, Any, bool], EventOutcome]  # (state, event, validating) → outcome


class JourneyCore(Generic[S]):
    def __init__(self, name: str, entity_id: str, rules: Rules, policy: BaseModel, state: S,
                 start: BaseModel | None = None, carried: S | None = None,
                 awaiting_since: datetime | None = None, apply: Apply | None = None,
                 details: Callable[[], list[str]] = list, recipient: Callable[[], str | None] = lambda: None,
                 group: Callable[[], str | None] = lambda: None, facts: Callable[[], list[str]] = list) -> None:
        """`details()` → the journey's own lines for the Web UI; `recipient()`, `group()` → search
        attributes; `facts()` → the journey's own event types that now hold (`lead.converted`),
        each told to the backend once."""
        self.name, self.entity_id, self.rules = name, entity_id, rules
        self.facts = facts
        self.announcing: bool | None = None  # decided on the first announcement of the run
        self.details, self.recipient, self.group = details, recipient, group
        self.policy = policy
        self.start: BaseModel | None = None
        self.revision = 0  # moved by every applied event so a sleeping wait re-plans
        self.updates = 0  # update events this run: a run takes at most 2,000
        self.awaiting_since = awaiting_since or workflow.now()
        self._apply = apply or (lambda state, event, validating: rules.apply_event(state, event, self.policy,
                                                                                   workflow.now()))
        if carried is not None:  # a run continued as new: the state is already what it was
            self.state, self.start, self.policy = carried, start, carried.policy  # type: ignore[attr-defined]
        else:
            self.state = state
            if start is not None:
                self.begin(start)

    # --- events -------------------------------------------------------------------------------

    def begin(self, start: BaseModel) -> bool:
        """Apply the start once; True if this call applied it."""
        if self.start is not None:
            return False
        self.start = start
        self.policy = self.state.policy = with_overrides(self.policy, start.policy)  # type: ignore[attr-defined]
        self.rules.start(self.state, start, workflow.now())
        self.revision += 1
        return True

    def apply(self, event: Any) -> EventOutcome:
        outcome = fingerprinted(self.state, event, self._apply(self.state, event, False))
        if outcome.applied:
            self.revision += 1
        workflow.logger.info("%s event %s: %s", self.name, outcome.event, outcome.reason or "applied")
        return outcome

    def screen(self, event: Any) -> None:
        """An update's validator: play the event on a copy of the state and refuse it, before it
        enters history, when the rules would refuse it."""
        outcome = self._apply(self.state.model_copy(deep=True), event, True)
        if outcome.code in REFUSED:
            self.refuse(outcome)

    @staticmethod
    def refuse(outcome: EventOutcome) -> None:
        """Reject an update: the API maps the type to 409 (ended) or 422 (refused, with the field)."""
        kind = {"ended": JOURNEY_ENDED, "conflict": EVENT_ID_REUSED}.get(outcome.code or "", EVENT_REFUSED)
        raise ApplicationError(outcome.reason or "refused", outcome.field, type=kind, non_retryable=True)

    def started(self, start: BaseModel) -> Reply[S]:
        self.updates += 1
        created = self.begin(start)
        held = None if created or self.start is None else self.start.model_dump(mode="json")
        return Reply[type(self.state)](created=created, start=held, state=self._small(self.planned()))  # type: ignore[misc]

    def applied(self, event: Any) -> Reply[S]:
        self.updates += 1
        return self.reply(event, self.apply(event))

    def reply(self, event: Any, outcome: EventOutcome) -> Reply[S]:
        """An update's answer; a retry of an applied `event_id` answers as its first delivery did."""
        if outcome.code == "duplicate" and event.event_id:
            outcome = applied_under(self.state, event.event_id) or outcome
        return Reply[type(self.state)](event=outcome, state=self._small(self.planned()))  # type: ignore[misc]

    @staticmethod
    def _small(state: S) -> S:
        """The state as an update answers with it (and history records it): the latest outcomes and
        skips only; a query (`GET /v1/{kind}/{id}`) shows them all."""
        return state.model_copy(update={"events": state.events[-REPLY_TAIL:],  # type: ignore[attr-defined]
                                        "skips": state.skips[-REPLY_TAIL:]})  # type: ignore[attr-defined]

    def planned(self) -> S:
        """The state with the plan as it now stands (the loop acts on it once the handler returns)."""
        self.state.next_step = self.rules.next_step(  # type: ignore[attr-defined]
            self.state, self.policy, self.awaiting_since, workflow.now())
        return self.state

    # --- the loop -----------------------------------------------------------------------------

    async def run(self, take: Callable[[PlannedStep], Awaitable[None]],
                  carry: Callable[[], BaseModel]) -> None:
        """Plan, wait, take, until the plan is empty (continuing as new when the history budget is spent)."""
        await loop.run_plan(self.plan, take, lambda: self.revision, carry, lambda: self.updates,
                            announce=self.announce)
        self.show(None)
        await self.announce(ended=True)

    # --- the backend's webhooks ---------------------------------------------------------------

    async def announce(self, ended: bool = False) -> None:
        """Tell the backend's webhook endpoints what changed since the last announcement, in one
        local activity: journey.started, journey.stage_changed, the journey's own facts and
        journey.ended. Nothing is said before the start arrives. What was told is kept in the state
        (`announced`), so a continued run never tells it again."""
        if self.announcing is None:
            self.announcing = workflow.patched(ANNOUNCEMENTS)
        state: Any = self.state
        if not self.announcing or state.status.value == "awaiting_start":
            return
        news = self._news(state, ended)
        if news:
            told = len(state.announced)
            info = workflow.info()
            data = {"journey": self.name, "entity_id": self.entity_id, "workflow_id": info.workflow_id,
                    "stage": state.status.value}
            await workflow.execute_local_activity(
                ANNOUNCE_JOURNEY,
                [Announcement(fact=f"{info.first_execution_run_id}/{told + n}/{entry}", type=event_type,
                              journey_key=f"{self.name}/{self.entity_id}", data={**data, **more})
                 for n, (entry, event_type, more) in enumerate(news)],
                start_to_close_timeout=ANNOUNCE_TIMEOUT, retry_policy=ANNOUNCE_RETRY, summary=news[-1][1])
            state.announced.extend(entry for entry, _, _ in news)

    def _news(self, state: Any, ended: bool) -> list[tuple[str, str, dict[str, Any]]]:
        """(entry in `announced`, event type, what its data adds) for each thing not told yet."""
        stage, told = state.status.value, state.announced
        told_stage = next((entry[6:] for entry in reversed(told) if entry.startswith("stage:")), None)
        news: list[tuple[str, str, dict[str, Any]]] = []
        if told_stage is None:
            news.append((f"stage:{stage}", "journey.started", {}))
        elif told_stage != stage:
            news.append((f"stage:{stage}", "journey.stage_changed", {"previous_stage": told_stage}))
        news.extend((f"fact:{fact}", fact, {}) for fact in self.facts() if f"fact:{fact}" not in told)
        if ended and "ended" not in told:
            news.append(("ended", "journey.ended", {"outcome": stage}))
        return news

    def waiting(self, plan_matters: bool = True) -> Waiting:
        """For a send that must wait (quiet hours, a frequency cap): it is dropped when an event
        changes the journey's status (a cancel, a conversion, a payment) or, if `plan_matters`, what
        it plans next (a reschedule); an event that changes neither (another member's submission)
        leaves it waiting. The send's own step is already marked taken by then, in most journeys, so
        "the same next step" means the one after it."""
        def moment() -> Hashable:
            if not plan_matters:
                return self.state.status  # type: ignore[attr-defined]
            planned = self.rules.next_step(self.state, self.policy, self.awaiting_since, workflow.now())
            return (self.state.status,  # type: ignore[attr-defined]
                    None if planned is None else (planned.kind, planned.number, planned.at, planned.not_after))

        return Waiting(lambda: self.revision, moment,
                       latest_templates=getattr(self.policy, "template_versions", "pinned") == "latest")

    def plan(self) -> PlannedStep | None:
        step = self.rules.next_step(self.state, self.policy, self.awaiting_since, workflow.now())
        self.show(step)
        return step

    # --- the Web UI ---------------------------------------------------------------------------

    def show(self, step: PlannedStep | None) -> None:
        """Search attributes and current details, so the Web UI tells the journey's story."""
        state: Any = self.state
        state.next_step = step
        publish(journey=self.name, entity_id=self.entity_id, stage=state.status.value,
                next_action_at=step.at if step else None, recipient=self.recipient(), group=self.group())
        lines = self.details()
        lines.append(f"next: {step.label}" if step else "next: nothing, the journey has ended")
        for skip in state.skips[-3:]:
            lines.append(f"skipped {skip.step}: {skip.reason}")
        workflow.set_current_details("\n\n".join(lines))
