"""What the API and the CLI do to journeys of any kind: start them, send them events, read them.

A start and an event are each one Temporal Update-with-start on the journey's id: whichever comes
first creates the journey (an event before its start waits in `awaiting_start`), the workflow's
validator refuses a bad event before it enters history, and the reply carries the outcome and the
new plan: one round trip. When no worker answers in time the same input goes in as a signal
(durable without a worker) and the caller hears `accepted`: it will be applied, exactly once,
since every event carries an id. A closed journey's id is never reused.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel
from temporalio.client import (
    Client, WithStartWorkflowOperation, WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.render import TEMPLATES_DIR
from settings import Settings
from workflows.core import search
from workflows.core.events import applied_under, reused_id
from workflows.core.shell import EVENT_ID_REUSED, EVENT_REFUSED, JOURNEY_ENDED
from workflows.core.steps import EventOutcome
from workflows.registry import JourneyKind


class ServiceError(Exception):
    status_code = 400

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Rejected(ServiceError):
    status_code = 422


class Unavailable(ServiceError):
    status_code = 503


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


REPLY_WAIT = 5.0  # seconds a start or event waits for a worker's reply before it is only accepted
# Temporal takes 10 updates in flight per workflow and refuses the rest (RESOURCE_EXHAUSTED, retried
# by the SDK with backoff): this process sends at most this many to one journey at a time, the rest
# queue here (within the same reply wait).
UPDATES_IN_FLIGHT_PER_JOURNEY = 4
TIMED_FIELDS = ("scheduled_at", "starts_at")  # an event moving a journey to a past time is refused at the edge


@dataclass(frozen=True)
class Answer:
    """What a start or an event came to. `accepted`: no worker answered in time; the input is
    durably in the journey's history and will be applied (state is then None)."""

    state: Any | None
    created: bool | None = None
    event: EventOutcome | None = None
    accepted: bool = False
    created_by_event: str | None = None  # the id had no journey: what this event made of the one it created


def first_difference(given: Any, kept: Any, path: str = "") -> str | None:
    """The first field (dotted path) where a repeated start's body differs from the start the
    journey has; only the fields the caller gave are compared (unset ones took defaults)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        for name, value in given.items():
            if (found := first_difference(value, kept.get(name), f"{path}.{name}" if path else name)) is not None:
                return found
        return None
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        for n, (one, other) in enumerate(zip(given, kept)):
            if (found := first_difference(one, other, f"{path}.{n}")) is not None:
                return found
        return None
    return None if given == kept else path or "body"


def template_names(directory: Any = TEMPLATES_DIR) -> frozenset[str]:
    """The templates a step may name: each has an HTML and a text part in `templates/`."""
    html = {path.stem for path in directory.glob("*.html")}
    return frozenset(name for name in html if (directory / f"{name}.txt").exists() and name != "base")


def default_policy(kind: JourneyKind, settings: Settings) -> BaseModel:
    """The kind's policy with the deployment's defaults (`FOLLOWUPS_INTERVIEW_MAX_FOLLOWUPS`…)."""
    values = {name: getattr(settings, f"{kind.name}_{name}") for name in kind.policy_model.model_fields
              if hasattr(settings, f"{kind.name}_{name}")}
    return kind.policy_model(**values)


class Journeys:
    """Start, steer and read the journeys of one kind."""

    def __init__(self, client: Client, settings: Settings, kind: JourneyKind, reply_wait: float = REPLY_WAIT,
                 templates: frozenset[str] | None = None) -> None:
        self.client, self.settings, self.kind, self.reply_wait = client, settings, kind, reply_wait
        self._gates: dict[str, tuple[asyncio.Semaphore, int]] = {}  # entity id → (gate, callers holding or waiting)
        self.templates = templates if templates is not None else template_names()

    def _handle(self, entity_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(self.kind.workflow_id(entity_id))

    def prepare(self, start: BaseModel) -> BaseModel:
        """Stamp what the edge fills in (invited_at = now) and refuse what no journey could use."""
        now = utc_now()
        start = self.kind.stamp(start, now)
        if (problem := self.kind.check(start, now)) is not None:
            raise Rejected(problem[1], field=problem[0])
        for where, name in self.kind.chosen_templates(start):
            if name not in self.templates:
                raise Rejected(f"no template {name!r}: the templates are {', '.join(sorted(self.templates))}",
                               field=where)
        return start

    def _start_options(self, entity_id: str, summary: str) -> dict[str, Any]:
        return dict(
            id=self.kind.workflow_id(entity_id),
            task_queue=self.settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search.at_start(self.kind.name, entity_id),
            static_summary=summary,
        )

    def _empty_input(self, entity_id: str) -> BaseModel:
        return self.kind.empty_input(entity_id, default_policy(self.kind, self.settings))

    async def _update_with_start(self, entity_id: str, update: Any, arg: BaseModel, summary: str) -> Any:
        """The update's reply, creating the journey if it does not exist; None when no worker
        answered within `reply_wait`."""
        operation = WithStartWorkflowOperation(self.kind.workflow.run, self._empty_input(entity_id),
                                               **self._start_options(entity_id, summary))
        # The SDK settles the operation's handle with the start's failure (the journey had ended)
        # and nobody else reads it: read it here, or asyncio logs "exception was never retrieved".
        operation._workflow_handle.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await self._update(entity_id, lambda: self.client.execute_update_with_start_workflow(
            update, arg, start_workflow_operation=operation))

    async def _update(self, entity_id: str, call: Any) -> Any:
        """Run one update call through this journey's gate; map its failures to service errors."""
        async def gated() -> Any:
            gate, users = self._gates.get(entity_id) or (asyncio.Semaphore(UPDATES_IN_FLIGHT_PER_JOURNEY), 0)
            self._gates[entity_id] = (gate, users + 1)
            try:
                async with gate:
                    return await call()
            finally:
                gate, users = self._gates[entity_id]
                if users <= 1:
                    del self._gates[entity_id]
                else:
                    self._gates[entity_id] = (gate, users - 1)

        try:
            return await asyncio.wait_for(gated(), timeout=self.reply_wait)
        except (asyncio.TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):  # no worker took it in time
            return None
        except WorkflowAlreadyStartedError as err:
            raise await self._ended(entity_id) from err
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == JOURNEY_ENDED:
                raise Conflict(cause.message, field=self.kind.id_field) from err
            if isinstance(cause, ApplicationError) and cause.type == EVENT_ID_REUSED:
                raise Conflict(cause.message, field="event_id") from err
            if isinstance(cause, ApplicationError) and cause.type == EVENT_REFUSED:
                field = cause.details[0] if cause.details else None
                raise Rejected(cause.message, field=field) from err
            raise Unavailable(f"the journey could not take it: {cause or err}") from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # no such journey, or it has ended
                raise NotFound(f"no running {self.kind.name} {entity_id!r}", field=self.kind.id_field) from err
            raise Unavailable(f"Temporal could not answer: {err.message}") from err

    async def _ended(self, entity_id: str) -> Conflict:
        state = await self.state(entity_id, wait=False)
        status = state.status.value if state else "closed"
        return Conflict(f"{self.kind.name} {entity_id} has already ended ({status})", field=self.kind.id_field)

    async def _signal_with_start(self, entity_id: str, signal: str, arg: BaseModel, summary: str) -> None:
        try:
            await self.client.start_workflow(self.kind.workflow.run, self._empty_input(entity_id), start_signal=signal,
                                             start_signal_args=[arg], **self._start_options(entity_id, summary))
        except WorkflowAlreadyStartedError as err:
            raise await self._ended(entity_id) from err
        except RPCError as err:
            raise Unavailable(f"Temporal could not take it: {err.message}") from err

    # --- starts ---------------------------------------------------------------------------------

    async def start(self, start: BaseModel) -> Answer:
        """Start (or find) the journey; `created` is True when this call started it. A repeat whose
        body differs from the start the journey has is a Conflict: a start never changes a journey."""
        given = start.model_dump(mode="json", exclude_unset=True)
        start = self.prepare(start)
        entity_id = self.kind.entity_id(start)
        try:
            reply = await self._update_with_start(entity_id, self.kind.workflow.start_journey, start,
                                                  self.kind.summary(start))
        except Conflict:  # it existed and has ended: starting it again changes nothing
            return Answer(state=await self.state(entity_id, wait=False), created=False)
        if reply is None:
            await self.start_durably(start)
            return Answer(state=None, accepted=True)
        if reply.start is not None and (differs := first_difference(given, reply.start)) is not None:
            raise Conflict(f"{self.kind.name} {entity_id} was started with another {differs}: a start never changes "
                           "a journey; send an event (reschedule, cancel…) or start a new id", field=differs)
        return Answer(state=reply.state, created=reply.created)

    async def start_durably(self, start: BaseModel) -> None:
        """The start as signal-with-start: durable with no worker up (bulk imports, the fallback)."""
        start = self.prepare(start)
        try:
            await self._signal_with_start(self.kind.entity_id(start), self.kind.start_signal, start,
                                          self.kind.summary(start))
        except Conflict:
            pass  # it ran before: a closed journey is never started again

    async def start_new(self, start: BaseModel) -> bool:
        """An id never seen (a fresh import row): a plain start carrying the start in its input, one
        request and no event. If the id exists after all, the usual start decides. True if started."""
        start = self.prepare(start)
        entity_id = self.kind.entity_id(start)
        workflow_input = self.kind.input_model(**{**self._empty_input(entity_id).model_dump(),
                                                  self.kind.input_field: start})
        try:
            await self.client.start_workflow(self.kind.workflow.run, workflow_input,
                                             **{**self._start_options(entity_id, self.kind.summary(start)),
                                                "id_conflict_policy": WorkflowIDConflictPolicy.FAIL})
            return True
        except WorkflowAlreadyStartedError:
            await self.start_durably(start)
            return False

    # --- events ---------------------------------------------------------------------------------

    def _checked(self, event: BaseModel) -> BaseModel:
        for name in TIMED_FIELDS:
            moment = getattr(event, name, None)
            if moment is not None and moment <= utc_now():
                raise Rejected(f"{name} is in the past", field=name)
        if event.event_id is None:  # an id makes a fallback signal and a late update apply once
            event = event.model_copy(update={"event_id": f"api-{uuid.uuid4().hex}"})
        return event

    async def send_event(self, entity_id: str, event: BaseModel) -> Answer:
        """Apply one event and answer with its outcome and the new plan; refused → Rejected (422),
        the journey is over → Conflict (409). A journey that does not exist yet is created by the
        event (it waits for its start), unless the journey's rules would refuse the event anyway."""
        retry_of = event.event_id  # the caller's own id: a retry after the end answers as the first did
        event = self._checked(event)
        try:
            try:
                reply = await self._update(entity_id, lambda: self._handle(entity_id).execute_update(
                    self.kind.workflow.apply_event, event))
            except NotFound:
                if await self._exists(entity_id):
                    raise await self._ended(entity_id) from None
                self._screen_early(entity_id, event)
                summary = f"{self.kind.name.capitalize()} {entity_id} (created by an early {event.kind})"
                reply = await self._update_with_start(entity_id, self.kind.workflow.apply_event, event, summary)
                if reply is not None:
                    return Answer(state=reply.state, event=reply.event, created_by_event=self._created_by(entity_id, reply))
        except Conflict:
            if retry_of and (answer := await self._recorded(entity_id, event)) is not None:
                return answer
            raise
        if reply is None:
            await self.signal_event(entity_id, event)
            return Answer(state=None, accepted=True)
        return Answer(state=reply.state, event=reply.event)

    async def _exists(self, entity_id: str) -> bool:
        try:
            await self._handle(entity_id).describe()
            return True
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise Unavailable(f"Temporal could not answer: {err.message}") from err

    def _screen_early(self, entity_id: str, event: BaseModel) -> None:
        """An event for an id with no journey: refused here, before anything is created, when the
        rules would refuse it on a journey still waiting for its start."""
        policy = default_policy(self.kind, self.settings)
        waiting = self.kind.state_model(**{self.kind.id_field: entity_id, "status": "awaiting_start",
                                           "policy": policy})
        outcome = self.kind.rules.apply_event(waiting, event, policy, utc_now())
        if outcome.code == "invalid":
            raise Rejected(outcome.reason or "refused", field=outcome.field)

    async def _recorded(self, entity_id: str, event: BaseModel) -> Answer | None:
        """The outcome an ended journey recorded for this event id, if it applied it to this event."""
        state = await self.state(entity_id, wait=False)
        outcome = applied_under(state, event.event_id) if state else None
        if outcome is not None and (reused := reused_id(outcome, event)) is not None:
            raise Conflict(reused.reason or "event_id reused", field="event_id")
        return Answer(state=state, event=outcome) if outcome is not None else None

    def _created_by(self, entity_id: str, reply: Any) -> str:
        """Word that the id had no journey (a mistyped id shows here), and what waits now."""
        state, step = reply.state, reply.state.next_step
        if state.status.value == "awaiting_start":
            until = f" until {step.at.isoformat()}" if step is not None else ""
            now = f"it waits for the start{until} and keeps this event's effect (then it gives up)"
        else:
            now = f"it is {state.status.value}: a start for this id will find it ended"
        return (f"no {self.kind.name} {entity_id!r} had started: this event created the journey; {now}. "
                "Check the id if you expected a running journey.")

    async def signal_event(self, entity_id: str, event: BaseModel) -> None:
        """The event as signal-with-start: durable with no worker up; no reply."""
        await self._signal_with_start(entity_id, "event", event,
                                      f"{self.kind.name.capitalize()} {entity_id} (created by an early {event.kind})")

    # --- reading --------------------------------------------------------------------------------

    async def state(self, entity_id: str, wait: bool = True) -> Any:
        """Live state by query (needs a worker); None when no worker answered in time."""
        try:
            return await asyncio.wait_for(self._handle(entity_id).query(self.kind.workflow.state_query),
                                          timeout=5 if wait else 2)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"no {self.kind.name} {entity_id!r}", field=self.kind.id_field) from err
            raise Unavailable(f"Temporal could not answer: {err.message}") from err
        except asyncio.TimeoutError:
            return None
