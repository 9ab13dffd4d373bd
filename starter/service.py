"""What the API and the CLI do to journeys: start them, send them events, read their state.

Starts and events are signal-with-start on the journey's id, so neither is ever lost: an event
that arrives before its start creates the journey in `awaiting_start` and is applied when the
start comes. A closed journey's id is never reused (a finished interview never restarts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from settings import Settings
from workflows import search
from workflows.blocks import when
from workflows.appointment import AppointmentJourney
from workflows.interview import InterviewJourney
from workflows.lead import LeadJourney
from workflows.session import SessionJourney
from workflows.models import (
    AppointmentEvent,
    AppointmentInput,
    AppointmentState,
    Booking,
    ClassSession,
    EventOutcome,
    Invitation,
    InterviewEvent,
    InterviewInput,
    InterviewPolicy,
    InterviewState,
    Lead,
    LeadEvent,
    LeadInput,
    LeadState,
    SessionEvent,
    SessionInput,
    SessionState,
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


EVENT_REPORT_WAIT = 10.0  # seconds an event's HTTP call waits for the journey to report its new plan


@dataclass(frozen=True)
class Kind:
    """What the service needs to know about one kind of journey."""

    name: str  # "interview": the workflow id prefix, the Journey search attribute, the outbox's journey
    workflow: type  # the @workflow.defn class: has an `event` signal and a `state_query` query
    start_signal: str  # the signal that carries the start input ("invite", "book"…)
    empty_input: Callable[[str, Settings], Any]  # the workflow input before the start arrives
    event_type: type  # the pydantic model its `event` signal takes

    def workflow_id(self, entity_id: str) -> str:
        return f"{self.name}-{entity_id}"


class Journeys:
    """Start, steer and read the journeys of one kind. Starts and events are both signal-with-start:
    whichever arrives first creates the journey, and neither is lost."""

    def __init__(self, client: Client, settings: Settings, kind: Kind) -> None:
        self.client, self.settings, self.kind = client, settings, kind

    def _handle(self, entity_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(self.kind.workflow_id(entity_id))

    async def _signal_with_start(self, entity_id: str, signal: str, arg: object, summary: str) -> WorkflowHandle:
        return await self.client.start_workflow(
            self.kind.workflow.run,
            self.kind.empty_input(entity_id, self.settings),
            id=self.kind.workflow_id(entity_id),
            task_queue=self.settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            start_signal=signal,
            start_signal_args=[arg],
            search_attributes=search.at_start(self.kind.name, entity_id),
            static_summary=summary,
        )

    async def begin(self, entity_id: str, start: object, summary: str, *, wait: bool = True) -> tuple[bool, Any]:
        """(created, state). Starting the same id again changes nothing. With `wait=False` (bulk
        imports) the state is not read back and is None."""
        try:
            handle = await self._signal_with_start(entity_id, self.kind.start_signal, start, summary)
        except WorkflowAlreadyStartedError:  # it existed and has ended
            return False, (await self.state(entity_id, wait=False) if wait else None)
        created = bool(getattr(getattr(handle, "_start_workflow_response", None), "started", False))
        return created, (await self.state(entity_id) if wait else None)

    async def send_event(self, entity_id: str, event: Any) -> tuple[EventOutcome | None, Any]:
        """Deliver one event and, when a worker is up, return its outcome and the new plan."""
        if "received_at" in type(event).model_fields:
            event = event.model_copy(update={"received_at": utc_now()})
        try:
            await self._signal_with_start(entity_id, "event", event,
                                          f"{self.kind.name.capitalize()} {entity_id} (created by an early {event.kind})")
        except WorkflowAlreadyStartedError as err:
            state = await self.state(entity_id, wait=False)
            status = state.status.value if state else "closed"
            raise Conflict(f"{self.kind.name} {entity_id} has already ended ({status})",
                           field=f"{self.kind.name}_id") from err
        key = event.dedupe_key()
        state = None
        deadline = asyncio.get_running_loop().time() + EVENT_REPORT_WAIT
        while asyncio.get_running_loop().time() < deadline:  # the signal is durable; this only waits to report
            state = await self.state(entity_id, wait=False)
            if state is None:  # no worker answered: the event waits in the journey's history
                return None, None
            outcome = next((o for o in reversed(state.events) if o.event == key), None)
            if outcome is not None:
                return outcome, state
            await asyncio.sleep(0.05)
        return None, state

    async def state(self, entity_id: str, wait: bool = True) -> Any:
        """Live state by query (needs a worker); None when no worker answered in time."""
        try:
            return await asyncio.wait_for(self._handle(entity_id).query(self.kind.workflow.state_query),
                                          timeout=5 if wait else 2)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"no {self.kind.name} {entity_id!r}", field=f"{self.kind.name}_id") from err
            raise Unavailable(f"Temporal could not answer: {err.message}") from err
        except asyncio.TimeoutError:
            return None


INTERVIEW = Kind("interview", InterviewJourney, "invite",
                 lambda entity_id, settings: InterviewInput(interview_id=entity_id,
                                                            policy=default_interview_policy(settings)),
                 InterviewEvent)
APPOINTMENT = Kind("appointment", AppointmentJourney, "book",
                   lambda entity_id, settings: AppointmentInput(appointment_id=entity_id), AppointmentEvent)


LEAD = Kind("lead", LeadJourney, "begin", lambda entity_id, settings: LeadInput(lead_id=entity_id), LeadEvent)
SESSION = Kind("session", SessionJourney, "begin", lambda entity_id, settings: SessionInput(session_id=entity_id),
               SessionEvent)
KINDS = {kind.name: kind for kind in (INTERVIEW, APPOINTMENT, LEAD, SESSION)}


class Interviews(Journeys):
    def __init__(self, client: Client, settings: Settings) -> None:
        super().__init__(client, settings, INTERVIEW)

    async def start(self, invitation: Invitation, *, wait: bool = True) -> tuple[bool, InterviewState | None]:
        if invitation.invited_at is None:
            invitation = invitation.model_copy(update={"invited_at": utc_now()})
        assert invitation.invited_at is not None
        summary = (f"Interview {invitation.interview_id} with {invitation.candidate.name} "
                   f"<{invitation.candidate.email}>, invited {when(invitation.invited_at)}")
        return await self.begin(invitation.interview_id, invitation, summary, wait=wait)


class Appointments(Journeys):
    def __init__(self, client: Client, settings: Settings) -> None:
        super().__init__(client, settings, APPOINTMENT)

    async def start(self, booking: Booking, *, wait: bool = True) -> tuple[bool, AppointmentState | None]:
        summary = (f"Appointment {booking.appointment_id}: {booking.patient.name} <{booking.patient.email}> "
                   f"with {booking.doctor} at {when(booking.scheduled_at)}")
        return await self.begin(booking.appointment_id, booking, summary, wait=wait)


class LeadJourneys(Journeys):
    def __init__(self, client: Client, settings: Settings) -> None:
        super().__init__(client, settings, LEAD)

    async def start(self, lead: Lead, *, wait: bool = True) -> tuple[bool, LeadState | None]:
        lead = self._stamped(lead)
        return await self.begin(lead.lead_id, lead, self._summary(lead), wait=wait)

    async def start_imported(self, lead: Lead) -> bool:
        """A lead the import has not seen before: a plain start that carries the lead in its input,
        one request and no signal event (the dev server's CPU per start bounds an import). If the
        id exists after all (an early event made it wait for its start, or it ran before), the
        usual signal-with-start decides. True if this call started it."""
        lead = self._stamped(lead)
        try:
            await self.client.start_workflow(
                LeadJourney.run, LeadInput(lead_id=lead.lead_id, lead=lead), id=self.kind.workflow_id(lead.lead_id),
                task_queue=self.settings.temporal_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=search.at_start(self.kind.name, lead.lead_id),
                static_summary=self._summary(lead),
            )
            return True
        except WorkflowAlreadyStartedError:
            created, _ = await self.begin(lead.lead_id, lead, self._summary(lead), wait=False)
            return created

    @staticmethod
    def _stamped(lead: Lead) -> Lead:
        return lead if lead.started_at is not None else lead.model_copy(update={"started_at": utc_now()})

    @staticmethod
    def _summary(lead: Lead) -> str:
        return f"Lead {lead.lead_id}: {lead.contact.name} <{lead.contact.email}>, campaign {lead.campaign}"


class Sessions(Journeys):
    def __init__(self, client: Client, settings: Settings) -> None:
        super().__init__(client, settings, SESSION)

    async def start(self, session: ClassSession, *, wait: bool = True) -> tuple[bool, SessionState | None]:
        summary = (f"Session {session.session_id} \"{session.title}\" with {session.tutor.name}, "
                   f"{when(session.starts_at)}, {len(session.attendees)} attendee(s)")
        return await self.begin(session.session_id, session, summary, wait=wait)
