"""The HTTP API backends call (OpenAPI at /docs). Writes need `Authorization: Bearer <api key>`.

Every error has one shape: `{"error": Name, "detail": ..., "field": ...}`; validation errors list
each field with its reason.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import datetime
from html import escape
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import AwareDatetime, BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from activities import tokens
from activities.store import Leads, Outbox, Suppressions, connect, migrate
from settings import Settings
from starter.connect import connect_temporal
from starter import bulk, lead_import
from starter.service import (
    Appointments,
    Conflict,
    Interviews,
    Journeys,
    KINDS,
    LeadJourneys,
    NotFound,
    Rejected,
    ServiceError,
    Sessions,
    utc_now,
)
from workflows.models import (
    AppointmentEvent,
    AppointmentState,
    Booking,
    EntityId,
    EventOutcome,
    Invitation,
    InterviewEvent,
    InterviewState,
    Lead,
    LeadEvent,
    LeadState,
    Attendee,
    ClassSession,
    SessionEvent,
    SessionState,
    ShortText,
)
from workflows.resend import ResendMessage
from workflows.resend import workflow_id as resend_workflow_id


class ErrorBody(BaseModel):
    error: str
    detail: Any
    field: str | None = None


class InterviewView(BaseModel):
    interview_id: str
    workflow_id: str
    created: bool | None = None
    state: InterviewState | None = Field(None, description="null when no worker answered in time")
    event: EventOutcome | None = None
    messages: list[MessageView] = []


class AppointmentView(BaseModel):
    appointment_id: str
    workflow_id: str
    created: bool | None = None
    state: AppointmentState | None = Field(None, description="null when no worker answered in time")
    event: EventOutcome | None = None
    messages: list[MessageView] = []


class LeadView(BaseModel):
    lead_id: str
    workflow_id: str
    created: bool | None = None
    state: LeadState | None = Field(None, description="null when no worker answered in time")
    event: EventOutcome | None = None
    messages: list[MessageView] = []


class RowProblemView(BaseModel):
    line: int
    field: str
    reason: str


class ImportView(BaseModel):
    campaign: str | None
    rows: int = Field(description="data rows read (blank lines not counted)")
    started: int = Field(description="new journeys started")
    already_imported: int = Field(description="rows whose lead already had a journey: nothing started")
    rejected: list[RowProblemView] = Field(description="bad rows, skipped: line number, field and reason")
    ignored_columns: list[str]


class CampaignStatsView(BaseModel):
    campaign: str
    started: int
    emailed_per_step: dict[str, int]
    converted: int
    replied: int
    unsubscribed: int
    conversion_rate: float


class SessionView(BaseModel):
    session_id: str
    workflow_id: str
    created: bool | None = None
    state: SessionState | None = Field(None, description="null when no worker answered in time")
    event: EventOutcome | None = None
    messages: list[MessageView] = []


class MessageView(BaseModel):
    key: str
    journey: str
    entity_id: str
    template: str
    recipient: str
    status: str
    subject: str | None
    reason: str | None
    attempts: int
    message_id: str
    due_at: datetime | None
    created_at: datetime
    sent_at: datetime | None


MessageView.model_rebuild()
InterviewView.model_rebuild()
AppointmentView.model_rebuild()
LeadView.model_rebuild()
SessionView.model_rebuild()


class ScheduleBody(BaseModel):
    scheduled_at: AwareDatetime
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    model_config = {"extra": "forbid"}


class ReasonBody(BaseModel):
    reason: ShortText | None = None
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    model_config = {"extra": "forbid"}


class EventIdBody(BaseModel):
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    model_config = {"extra": "forbid"}


class CancelBody(ReasonBody):
    notify: bool | None = Field(None, description="send the cancellation notice (default: the policy's)")


class ConvertedBody(EventIdBody):
    reference: ShortText | None = Field(None, description="e.g. the order or contract id")


class AttendeeBody(EventIdBody):
    attendee: Attendee


class SessionScheduleBody(EventIdBody):
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class SessionCancelBody(ReasonBody):
    notify: bool = Field(True, description="tell every attendee on the roster (once)")


class RecordingBody(EventIdBody):
    recording_url: Annotated[str, Field(max_length=2000, pattern=r"^https?://\S+$")]


class FeedbackBody(EventIdBody):
    attendee_id: EntityId


class CheckinBody(EventIdBody):
    ok: bool = Field(description="did the tutor's first session go well? false escalates to the manager")
    comment: ShortText | None = None


GroupName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$")]


class BulkFilter(BaseModel):
    """Which running journeys: at least one of journey, group, recipient."""

    journey: Literal["interview", "appointment", "lead", "session"] | None = None
    group: GroupName | None = Field(None, description="a session's course or a lead's campaign")
    recipient: Annotated[str, Field(max_length=320, pattern=r"^[^'\s]+@[^'\s]+$")] | None = Field(
        None, description="the journey's recipient (a session's tutor)")
    stage: Annotated[str, Field(max_length=32, pattern=r"^[a-z_]+$")] | None = None
    model_config = {"extra": "forbid"}

    def selector(self) -> bulk.Selector:
        if not (self.journey or self.group or self.recipient):
            raise Rejected("give at least one of journey, group, recipient: a bulk action never means everything",
                           field="journey")
        return bulk.Selector(self.journey, self.group, self.recipient, self.stage)


class BulkCancelBody(BulkFilter):
    reason: ShortText | None = None
    request_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = Field(
        None, description="send the same id again to retry safely: each journey applies it once")


class BulkSignalBody(BulkCancelBody):
    event: dict[str, Any] = Field(description="an event of the `journey` kind, e.g. {\"kind\": \"replied\"}")


class BulkView(BaseModel):
    query: str
    request_id: str
    matched: int
    changed: int
    unchanged: int
    problems: list[str]


class ResendView(BaseModel):
    original_key: str
    new_key: str
    workflow_id: str


class BodyLimit:
    """413 for bodies over the limit, whether or not Content-Length is honest."""

    def __init__(self, app: ASGIApp, limit: int, limits: dict[str, int] | None = None) -> None:
        self.app, self.default, self.limits = app, limit, limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], self.default)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(limit, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(limit, send)


class _TooLarge(StarletteHTTPException):
    """Raised while the body is read; an HTTPException, so FastAPI's body parsing lets it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body exceeds {limit} bytes")


async def _too_large(limit: int, send: Send) -> None:
    body = json.dumps({"error": "PayloadTooLarge", "detail": f"the body exceeds {limit} bytes",
                       "field": "body"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _message_view(row) -> MessageView:
    return MessageView(**{name: row[name] for name in MessageView.model_fields})


def create_app(settings: Settings, *, client=None, pool=None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_pool = pool is None
        app.state.pool = pool or await connect(settings.database_url or "", settings.database_pool_size)
        await migrate(app.state.pool)
        app.state.client = client or await connect_temporal(settings)
        app.state.interviews = Interviews(app.state.client, settings)
        app.state.appointments = Appointments(app.state.client, settings)
        app.state.leads = LeadJourneys(app.state.client, settings)
        app.state.sessions = Sessions(app.state.client, settings)
        app.state.lead_store = Leads(app.state.pool)
        app.state.outbox = Outbox(app.state.pool)
        app.state.suppressions = Suppressions(app.state.pool)
        yield
        if own_pool:
            await app.state.pool.close()

    app = FastAPI(
        title="Followups",
        version="0.1.0",
        description="Durable follow-up and reminder journeys on Temporal.",
        lifespan=lifespan,
        responses={code: {"model": ErrorBody} for code in (401, 404, 409, 413, 422, 503)},
    )
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes,
                       limits={"/v1/leads/import": settings.api_max_import_bytes})

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, err: ServiceError) -> JSONResponse:
        body = ErrorBody(error=type(err).__name__, detail=err.detail, field=err.field)
        return JSONResponse(body.model_dump(), status_code=err.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        name = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}.get(err.status_code, "HTTPError")
        body = ErrorBody(error=name, detail=err.detail, field="body" if err.status_code == 413 else None)
        return JSONResponse(body.model_dump(), status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        def field(problem: dict) -> str:
            location = list(problem["loc"])
            if problem.get("type") == "json_invalid":
                return "body"
            if location and location[0] in ("body", "path", "query", "header", "cookie"):
                location = location[1:]
            return ".".join(str(part) for part in location) or "body"

        problems = [{"field": field(problem), "reason": problem["msg"]} for problem in err.errors()]
        first = problems[0]["field"] if problems else None
        return JSONResponse(ErrorBody(error="ValidationError", detail=problems, field=first).model_dump(),
                            status_code=422)

    def require_key(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(key, k) for k in settings.api_keys):
            raise Unauthorized("missing or wrong API key: send Authorization: Bearer <key>", field="authorization")

    authed = [Depends(require_key)]

    def interviews(request: Request) -> Interviews:
        return request.app.state.interviews

    def appointments(request: Request) -> Appointments:
        return request.app.state.appointments

    async def messages_of(request: Request, journeys: Journeys, entity_id: str) -> dict[str, Any]:
        rows = await request.app.state.outbox.list(journey=journeys.kind.name, entity_id=entity_id)
        return {f"{journeys.kind.name}_id": entity_id, "workflow_id": journeys.kind.workflow_id(entity_id),
                "messages": [_message_view(r) for r in rows]}

    async def view(request: Request, interview_id: str, state: InterviewState | None, **extra: Any) -> InterviewView:
        return InterviewView(state=state, **await messages_of(request, interviews(request), interview_id), **extra)

    async def steer(request: Request, journeys: Journeys, entity_id: str, event: Any) -> tuple[EventOutcome | None, Any]:
        """Send an event; a rejected one is a 422 naming its reason (a duplicate is a success)."""
        if getattr(event, "scheduled_at", None) is not None and event.scheduled_at <= utc_now():
            raise Rejected("scheduled_at is in the past", field="scheduled_at")
        outcome, state = await journeys.send_event(entity_id, event)
        if outcome is not None and not outcome.applied and not (outcome.reason or "").startswith("duplicate"):
            if (outcome.reason or "").startswith("the journey has already ended"):
                raise Conflict(outcome.reason or "", field=f"{journeys.kind.name}_id")
            raise Rejected(outcome.reason or "rejected",
                           field="scheduled_at" if getattr(event, "scheduled_at", None) else None)
        return outcome, state

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> dict[str, str]:
        await request.app.state.pool.fetchval("SELECT 1")
        await request.app.state.client.service_client.check_health()
        return {"status": "ok"}

    @app.post("/v1/interviews", status_code=201, dependencies=authed, tags=["interviews"],
              response_model=InterviewView)
    async def start_interview(invitation: Invitation, request: Request) -> Any:
        """Start the interview journey. 201 when started, 200 when that id already had one."""
        created, state = await interviews(request).start(invitation)
        body = await view(request, invitation.interview_id, state, created=created)
        return JSONResponse(body.model_dump(mode="json"), status_code=201 if created else 200)

    async def event(request: Request, interview_id: str, event: InterviewEvent) -> InterviewView:
        outcome, state = await steer(request, interviews(request), interview_id, event)
        return await view(request, interview_id, state, event=outcome)

    @app.post("/v1/interviews/{interview_id}/confirm", dependencies=authed, tags=["interviews"])
    async def confirm(interview_id: EntityId, body: ScheduleBody, request: Request) -> InterviewView:
        """The candidate picked a time: follow-ups stop, a reminder is planned."""
        return await event(request, interview_id, InterviewEvent(kind="confirm", **body.model_dump()))

    @app.post("/v1/interviews/{interview_id}/reschedule", dependencies=authed, tags=["interviews"])
    async def reschedule(interview_id: EntityId, body: ScheduleBody, request: Request) -> InterviewView:
        """Move the interview: the journey re-plans in place and returns the new plan."""
        return await event(request, interview_id, InterviewEvent(kind="reschedule", **body.model_dump()))

    @app.post("/v1/interviews/{interview_id}/cancel", dependencies=authed, tags=["interviews"])
    async def cancel(interview_id: EntityId, request: Request, body: ReasonBody | None = None) -> InterviewView:
        return await event(request, interview_id,
                           InterviewEvent(kind="cancel", **(body or ReasonBody()).model_dump()))

    @app.post("/v1/interviews/{interview_id}/complete", dependencies=authed, tags=["interviews"])
    async def complete(interview_id: EntityId, request: Request, body: ReasonBody | None = None) -> InterviewView:
        return await event(request, interview_id,
                           InterviewEvent(kind="complete", **(body or ReasonBody()).model_dump()))

    @app.get("/v1/interviews/{interview_id}", dependencies=authed, tags=["interviews"])
    async def show_interview(interview_id: EntityId, request: Request) -> InterviewView:
        return await view(request, interview_id, await interviews(request).state(interview_id))

    # --- appointments (seed 002) -------------------------------------------------------------

    async def appointment_view(request: Request, appointment_id: str, state: AppointmentState | None,
                               **extra: Any) -> AppointmentView:
        return AppointmentView(state=state, **await messages_of(request, appointments(request), appointment_id),
                               **extra)

    async def appointment_event(request: Request, appointment_id: str, event: AppointmentEvent) -> AppointmentView:
        outcome, state = await steer(request, appointments(request), appointment_id, event)
        return await appointment_view(request, appointment_id, state, event=outcome)

    @app.post("/v1/appointments", status_code=201, dependencies=authed, tags=["appointments"],
              response_model=AppointmentView)
    async def start_appointment(booking: Booking, request: Request) -> Any:
        """Start the appointment journey: reminders at the policy's offsets before scheduled_at.
        201 when started, 200 when that id already had one."""
        if booking.scheduled_at <= utc_now():
            raise Rejected("scheduled_at is in the past", field="scheduled_at")
        created, state = await appointments(request).start(booking)
        body = await appointment_view(request, booking.appointment_id, state, created=created)
        return JSONResponse(body.model_dump(mode="json"), status_code=201 if created else 200)

    @app.post("/v1/appointments/{appointment_id}/confirm", dependencies=authed, tags=["appointments"])
    async def confirm_appointment(appointment_id: EntityId, request: Request,
                                  body: EventIdBody | None = None) -> AppointmentView:
        """The patient confirmed: reminders go on as planned."""
        return await appointment_event(request, appointment_id,
                                       AppointmentEvent(kind="confirm", **(body or EventIdBody()).model_dump()))

    @app.post("/v1/appointments/{appointment_id}/reschedule", dependencies=authed, tags=["appointments"])
    async def reschedule_appointment(appointment_id: EntityId, body: ScheduleBody, request: Request) -> AppointmentView:
        """Move the appointment: every pending reminder is re-planned for the new time."""
        return await appointment_event(request, appointment_id,
                                       AppointmentEvent(kind="reschedule", **body.model_dump()))

    @app.post("/v1/appointments/{appointment_id}/cancel", dependencies=authed, tags=["appointments"])
    async def cancel_appointment(appointment_id: EntityId, request: Request,
                                 body: CancelBody | None = None) -> AppointmentView:
        """Stop every reminder; send the cancellation notice unless `notify` is false."""
        return await appointment_event(request, appointment_id,
                                       AppointmentEvent(kind="cancel", **(body or CancelBody()).model_dump()))

    @app.post("/v1/appointments/{appointment_id}/complete", dependencies=authed, tags=["appointments"])
    async def complete_appointment(appointment_id: EntityId, request: Request,
                                   body: ReasonBody | None = None) -> AppointmentView:
        return await appointment_event(request, appointment_id,
                                       AppointmentEvent(kind="complete", **(body or ReasonBody()).model_dump()))

    @app.post("/v1/appointments/{appointment_id}/resend-reminder", dependencies=authed, tags=["appointments"])
    async def resend_appointment_reminder(appointment_id: EntityId, request: Request,
                                          body: EventIdBody | None = None) -> AppointmentView:
        """Send the reminder again now (a new key per request; an `event_id` makes a retry safe)."""
        return await appointment_event(request, appointment_id, AppointmentEvent(
            kind="resend_reminder", **(body or EventIdBody()).model_dump()))

    @app.get("/v1/appointments/{appointment_id}", dependencies=authed, tags=["appointments"])
    async def show_appointment(appointment_id: EntityId, request: Request) -> AppointmentView:
        return await appointment_view(request, appointment_id, await appointments(request).state(appointment_id))

    # --- leads (seed 003) -------------------------------------------------------------------

    def leads(request: Request) -> LeadJourneys:
        return request.app.state.leads

    async def lead_view(request: Request, lead_id: str, state: LeadState | None, **extra: Any) -> LeadView:
        return LeadView(state=state, **await messages_of(request, leads(request), lead_id), **extra)

    async def lead_event(request: Request, lead_id: str, event: LeadEvent) -> LeadView:
        outcome, state = await steer(request, leads(request), lead_id, event)
        return await lead_view(request, lead_id, state, event=outcome)

    @app.post("/v1/leads", status_code=201, dependencies=authed, tags=["leads"], response_model=LeadView)
    async def start_lead(lead: Lead, request: Request) -> Any:
        """Start one lead's nurture sequence (day 0 now, day 3, day 7 by default)."""
        created, state = await leads(request).start(lead)
        await request.app.state.lead_store.add_many([(lead.lead_id, lead.campaign, str(lead.contact.email))])
        body = await lead_view(request, lead.lead_id, state, created=created)
        return JSONResponse(body.model_dump(mode="json"), status_code=201 if created else 200)

    @app.post("/v1/leads/import", dependencies=authed, tags=["leads"],
              openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
    async def import_leads(
        request: Request,
        campaign: Annotated[str | None, Query(min_length=1, max_length=100,
                                              description="for every row (else a campaign column)")] = None,
        first_line: Annotated[int, Query(ge=1, description="file line of the header, for chunked uploads")] = 1,
    ) -> ImportView:
        """A CSV of leads (`Content-Type: text/csv`): one journey per good row; bad rows are
        reported with their line and reason and skipped; re-importing starts nothing twice."""
        raw = await request.body()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise Rejected(f"the file is not UTF-8 (byte {err.start})", field="file") from err
        try:
            parsed, report = lead_import.parse(text, campaign, first_line)
        except lead_import.BadFile as err:
            raise Rejected(str(err), field=err.field) from err
        await lead_import.start_all(leads(request), request.app.state.lead_store, parsed, report)
        return ImportView(campaign=campaign, rows=report.rows, started=report.started,
                          already_imported=report.already_imported,
                          rejected=[RowProblemView(**vars(problem)) for problem in report.rejected],
                          ignored_columns=report.ignored_columns)

    @app.post("/v1/leads/{lead_id}/converted", dependencies=authed, tags=["leads"])
    async def lead_converted(lead_id: EntityId, request: Request, body: ConvertedBody | None = None) -> LeadView:
        """The lead bought / signed: nothing more is sent."""
        return await lead_event(request, lead_id, LeadEvent(kind="converted", **(body or ConvertedBody()).model_dump()))

    @app.post("/v1/leads/{lead_id}/replied", dependencies=authed, tags=["leads"])
    async def lead_replied(lead_id: EntityId, request: Request, body: EventIdBody | None = None) -> LeadView:
        """The lead answered: a person takes over, nothing more is sent."""
        return await lead_event(request, lead_id, LeadEvent(kind="replied", **(body or EventIdBody()).model_dump()))

    @app.post("/v1/leads/{lead_id}/cancel", dependencies=authed, tags=["leads"])
    async def lead_cancel(lead_id: EntityId, request: Request, body: EventIdBody | None = None) -> LeadView:
        return await lead_event(request, lead_id, LeadEvent(kind="cancel", **(body or EventIdBody()).model_dump()))

    @app.get("/v1/leads/{lead_id}", dependencies=authed, tags=["leads"])
    async def show_lead(lead_id: EntityId, request: Request) -> LeadView:
        return await lead_view(request, lead_id, await leads(request).state(lead_id))

    @app.get("/v1/campaigns/{campaign}/stats", dependencies=authed, tags=["leads"])
    async def campaign_stats(campaign: Annotated[str, Path(min_length=1, max_length=100)],
                             request: Request) -> CampaignStatsView:
        """Leads started, emailed per step, converted, conversion rate, replied, unsubscribed."""
        stats = await request.app.state.lead_store.stats(campaign)
        if stats is None:
            raise NotFound(f"no leads in campaign {campaign!r}", field="campaign")
        return CampaignStatsView(**vars(stats), conversion_rate=round(stats.conversion_rate, 4))

    # --- class sessions (seeds 003 and 004) ------------------------------------------------

    def sessions(request: Request) -> Sessions:
        return request.app.state.sessions

    async def session_view(request: Request, session_id: str, state: SessionState | None, **extra: Any) -> SessionView:
        return SessionView(state=state, **await messages_of(request, sessions(request), session_id), **extra)

    async def session_event(request: Request, session_id: str, event: SessionEvent) -> SessionView:
        outcome, state = await steer(request, sessions(request), session_id, event)
        return await session_view(request, session_id, state, event=outcome)

    @app.post("/v1/sessions", status_code=201, dependencies=authed, tags=["sessions"], response_model=SessionView)
    async def start_session(session: ClassSession, request: Request) -> Any:
        """Start a class session's journey: reminders to the roster, then recording, feedback and check-in."""
        if session.starts_at <= utc_now():
            raise Rejected("starts_at is in the past", field="starts_at")
        created, state = await sessions(request).start(session)
        body = await session_view(request, session.session_id, state, created=created)
        return JSONResponse(body.model_dump(mode="json"), status_code=201 if created else 200)

    @app.post("/v1/sessions/{session_id}/attendees", dependencies=authed, tags=["sessions"])
    async def add_attendee(session_id: EntityId, body: AttendeeBody, request: Request) -> SessionView:
        """Add (or update) one attendee: they get every reminder still to come, none already sent."""
        return await session_event(request, session_id, SessionEvent(kind="add_attendee", attendee=body.attendee,
                                                                     event_id=body.event_id))

    @app.delete("/v1/sessions/{session_id}/attendees/{attendee_id}", dependencies=authed, tags=["sessions"])
    async def remove_attendee(session_id: EntityId, attendee_id: EntityId, request: Request) -> SessionView:
        return await session_event(request, session_id, SessionEvent(kind="remove_attendee", attendee_id=attendee_id))

    @app.post("/v1/sessions/{session_id}/reschedule", dependencies=authed, tags=["sessions"])
    async def reschedule_session(session_id: EntityId, body: SessionScheduleBody, request: Request) -> SessionView:
        """Move the class: every pending reminder is re-planned in place."""
        if body.ends_at <= body.starts_at:
            raise Rejected("ends_at must be after starts_at", field="ends_at")
        if body.starts_at <= utc_now():
            raise Rejected("starts_at is in the past", field="starts_at")
        return await session_event(request, session_id, SessionEvent(kind="reschedule", **body.model_dump()))

    @app.post("/v1/sessions/{session_id}/cancel", dependencies=authed, tags=["sessions"])
    async def cancel_session(session_id: EntityId, request: Request,
                             body: SessionCancelBody | None = None) -> SessionView:
        """Cancel the class: the roster is told once, nothing else is sent."""
        return await session_event(request, session_id,
                                   SessionEvent(kind="cancel", **(body or SessionCancelBody()).model_dump()))

    @app.post("/v1/sessions/{session_id}/recording", dependencies=authed, tags=["sessions"])
    async def recording_available(session_id: EntityId, body: RecordingBody, request: Request) -> SessionView:
        """The recording is online: the roster gets the watch link (once)."""
        return await session_event(request, session_id, SessionEvent(kind="recording_available", **body.model_dump()))

    @app.post("/v1/sessions/{session_id}/feedback", dependencies=authed, tags=["sessions"])
    async def feedback_given(session_id: EntityId, body: FeedbackBody, request: Request) -> SessionView:
        """An attendee gave feedback: they get no feedback reminder."""
        return await session_event(request, session_id, SessionEvent(kind="feedback", **body.model_dump()))

    @app.post("/v1/sessions/{session_id}/checkin", dependencies=authed, tags=["sessions"])
    async def checkin_answer(session_id: EntityId, body: CheckinBody, request: Request) -> SessionView:
        """The tutor's answer to the first-session check-in; `ok: false` escalates to the manager."""
        return await session_event(request, session_id, SessionEvent(kind="checkin_answer", **body.model_dump()))

    @app.post("/v1/sessions/{session_id}/complete", dependencies=authed, tags=["sessions"])
    async def complete_session(session_id: EntityId, request: Request, body: ReasonBody | None = None) -> SessionView:
        return await session_event(request, session_id,
                                   SessionEvent(kind="complete", **(body or ReasonBody()).model_dump()))

    @app.get("/v1/sessions/{session_id}", dependencies=authed, tags=["sessions"])
    async def show_session(session_id: EntityId, request: Request) -> SessionView:
        return await session_view(request, session_id, await sessions(request).state(session_id))

    # --- bulk ---------------------------------------------------------------------------------

    @app.post("/v1/bulk/cancel", dependencies=authed, tags=["bulk"])
    async def bulk_cancel(body: BulkCancelBody, request: Request) -> BulkView:
        """Cancel every running journey that matches (Temporal visibility): how many matched, how many changed."""
        report = await bulk.act(request.app.state.client, settings, body.selector(), bulk.cancel_event(body.reason),
                                body.request_id)
        return BulkView(**vars(report))

    @app.post("/v1/bulk/signal", dependencies=authed, tags=["bulk"])
    async def bulk_signal(body: BulkSignalBody, request: Request) -> BulkView:
        """Send one event to every running journey of one kind that matches, e.g. remove an attendee
        who hard-bounced from every session of a course."""
        if body.journey is None:
            raise Rejected("a bulk signal needs `journey`: events differ between kinds", field="journey")
        kind = KINDS[body.journey]
        try:
            kind.event_type.model_validate({**body.event, "event_id": "bulk-check"})
        except ValidationError as err:
            problem = err.errors()[0]
            where = ".".join(["event", *map(str, problem["loc"])]) if problem["loc"] else "event"
            raise Rejected(problem["msg"], field=where) from err
        if "event_id" in body.event:
            raise Rejected("event_id is set per journey by the bulk action; use request_id", field="event.event_id")

        def make(kind, event_id: str):
            return kind.event_type.model_validate({**body.event, "event_id": event_id})

        report = await bulk.act(request.app.state.client, settings, body.selector(), make, body.request_id)
        return BulkView(**vars(report))

    @app.get("/v1/messages", dependencies=authed, tags=["messages"])
    async def list_messages(
        request: Request,
        journey: Annotated[str | None, Query(max_length=64)] = None,
        entity_id: Annotated[str | None, Query(max_length=128)] = None,
        status: Literal["queued", "sending", "sent", "skipped", "failed", "dry_run"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[MessageView]:
        rows = await request.app.state.outbox.list(journey=journey, entity_id=entity_id, status=status, limit=limit)
        return [_message_view(r) for r in rows]

    @app.post("/v1/messages/{key:path}/resend", dependencies=authed, tags=["messages"], status_code=202)
    async def resend(key: str, request: Request) -> ResendView:
        """Force one step out again, under a new key `{key}/resend-{n}`; the original stays as it was."""
        outbox: Outbox = request.app.state.outbox
        if await outbox.get(key) is None:
            raise NotFound(f"no message {key!r}", field="key")
        new_key = f"{key}/resend-{await outbox.count_resends(key) + 1}"
        await request.app.state.client.start_workflow(
            ResendMessage.run, args=[key, new_key], id=resend_workflow_id(new_key),
            task_queue=settings.temporal_task_queue, static_summary=f"Forced resend of {key}",
        )
        return ResendView(original_key=key, new_key=new_key, workflow_id=resend_workflow_id(new_key))

    def token_owner(token: str) -> tuple[str, str]:
        try:
            return tokens.verify(settings.signing_secret.get_secret_value(), token)
        except tokens.BadToken as err:
            raise NotFound(f"unknown unsubscribe link: {err}", field="token") from err

    @app.get("/v1/unsubscribe/{token}", response_class=HTMLResponse, tags=["unsubscribe"])
    async def unsubscribe_page(token: str) -> HTMLResponse:
        """A page with a button. A GET never unsubscribes: link scanners fetch every URL."""
        email, _ = token_owner(token)
        return HTMLResponse(_page("Unsubscribe", f"<p>Stop all emails to <b>{escape(email)}</b>?</p>"
                                  f'<form method="post"><button type="submit">Unsubscribe</button></form>'))

    @app.post("/v1/unsubscribe/{token}", response_class=HTMLResponse, tags=["unsubscribe"])
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        """RFC 8058 one-click: `List-Unsubscribe=One-Click` POSTs here; no cookie, no redirect."""
        email, key = token_owner(token)
        await request.app.state.suppressions.add(email, "unsubscribe", f"one-click unsubscribe from {key}")
        return HTMLResponse(_page("Unsubscribed", f"<p><b>{escape(email)}</b> will receive no more emails.</p>"))

    return app


class Unauthorized(ServiceError):
    status_code = 401


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title></head>"
            f"<body style='font-family:sans-serif;max-width:32em;margin:4em auto'><h1>{title}</h1>{body}</body></html>")
