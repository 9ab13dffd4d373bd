"""What the API and the CLI do to journeys: start them, send them events, read their state.

Starts and events are signal-with-start on the journey's id, so neither is ever lost: an event
that arrives before its start creates the journey in `awaiting_start` and is applied when the
start comes. A closed journey's id is never reused (a finished interview never restarts).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from settings import Settings
from workflows import search
from workflows.blocks import when
from workflows.interview import InterviewJourney, workflow_id
from workflows.models import (
    EventOutcome,
    Invitation,
    InterviewEvent,
    InterviewInput,
    InterviewPolicy,
    InterviewState,
)


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


def default_interview_policy(settings: Settings) -> InterviewPolicy:
    return InterviewPolicy(
        followup_after=settings.interview_followup_after,
        followup_interval=settings.interview_followup_interval,
        max_followups=settings.interview_max_followups,
        reminder_before=settings.interview_reminder_before,
        reminder_grace=settings.interview_reminder_grace,
        expire_after=settings.interview_expire_after,
    )


class Interviews:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def _handle(self, interview_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(workflow_id(interview_id))

    async def _signal_with_start(self, interview_id: str, signal: str, arg: object, summary: str):
        return await self.client.start_workflow(
            InterviewJourney.run,
            InterviewInput(interview_id=interview_id, policy=default_interview_policy(self.settings)),
            id=workflow_id(interview_id),
            task_queue=self.settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            start_signal=signal,
            start_signal_args=[arg],
            search_attributes=search.at_start("interview", interview_id),
            static_summary=summary,
        )

    async def start(self, invitation: Invitation) -> tuple[bool, InterviewState | None]:
        """(created, state). Starting the same id again changes nothing."""
        if invitation.invited_at is None:
            invitation = invitation.model_copy(update={"invited_at": utc_now()})
        assert invitation.invited_at is not None
        summary = (f"Interview {invitation.interview_id} with {invitation.candidate.name} "
                   f"<{invitation.candidate.email}>, invited {when(invitation.invited_at)}")
        try:
            handle = await self._signal_with_start(invitation.interview_id, "invite", invitation, summary)
        except WorkflowAlreadyStartedError:
            return False, await self.state(invitation.interview_id, wait=False)
        created = bool(getattr(getattr(handle, "_start_workflow_response", None), "started", False))
        return created, await self.state(invitation.interview_id)

    async def send_event(self, interview_id: str, event: InterviewEvent) -> tuple[EventOutcome | None, InterviewState | None]:
        """Deliver one event and, when a worker is up, return its outcome and the new plan."""
        event = event.model_copy(update={"received_at": utc_now()})
        try:
            await self._signal_with_start(interview_id, "event", event,
                                          f"Interview {interview_id} (created by an early {event.kind})")
        except WorkflowAlreadyStartedError as err:
            state = await self.state(interview_id, wait=False)
            status = state.status.value if state else "closed"
            raise Conflict(f"interview {interview_id} has already ended ({status})") from err
        key = event.dedupe_key()
        for _ in range(40):  # the signal is durable; this only waits to report the new plan
            state = await self.state(interview_id, wait=False)
            if state is None:  # no worker answered: the event waits in the journey's history
                return None, None
            outcome = next((o for o in reversed(state.events) if o.event == key), None)
            if outcome is not None:
                return outcome, state
            await asyncio.sleep(0.05)
        return None, state

    async def state(self, interview_id: str, wait: bool = True) -> InterviewState | None:
        """Live state by query (needs a worker); None when no worker answered in time."""
        handle = self._handle(interview_id)
        try:
            return await asyncio.wait_for(handle.query(InterviewJourney.state_query), timeout=5 if wait else 2)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"no interview {interview_id!r}", field="interview_id") from err
            raise Unavailable(f"Temporal could not answer: {err.message}") from err
        except asyncio.TimeoutError:
            return None
