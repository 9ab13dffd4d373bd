"""Every journey kind, once. The worker, the HTTP API, the Python client, the CLI, previews and
bulk actions iterate this list; a new journey is its package plus one entry here.

An entry names the kind (`interview`: the workflow id prefix, the `Journey` search attribute,
the outbox's journey), its route (`/v1/interviews`), its models, its workflow (which has the
`start_journey` and `apply_event` updates, the start and `event` signals and `state_query`),
its events as routes, and what the Web UI and bulk actions show of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, get_args

from pydantic import BaseModel

from workflows.appointment.models import (
    APPOINTMENT_CLOSED, AppointmentEvent, AppointmentInput, AppointmentPolicy, AppointmentState, Booking,
)
from workflows.appointment.workflow import AppointmentJourney
from workflows.appointment import rules as appointment_rules
from workflows.core.timing import when
from workflows.interview import rules as interview_rules
from workflows.lead import rules as lead_rules
from workflows.payment import rules as payment_rules
from workflows.session import rules as session_rules
from workflows.interview.models import (
    CLOSED_STATUSES, InterviewEvent, InterviewInput, InterviewPolicy, InterviewState, Invitation,
)
from workflows.interview.workflow import InterviewJourney
from workflows.lead.models import LEAD_CLOSED, Lead, LeadEvent, LeadInput, LeadPolicy, LeadState
from workflows.lead.workflow import LeadJourney
from workflows.payment.models import PAYMENT_CLOSED, Payment, PaymentEvent, PaymentInput, PaymentPolicy, PaymentState
from workflows.payment.workflow import PaymentJourney
from workflows.session.models import (
    SESSION_CLOSED, ClassSession, SessionEvent, SessionInput, SessionPolicy, SessionState,
)
from workflows.session.workflow import SessionJourney
from workflows.tutor import rules as tutor_rules
from workflows.tutor.models import TUTOR_CLOSED, Tutor, TutorEvent, TutorInput, TutorPolicy, TutorState
from workflows.tutor.workflow import TutorJourney
from workflows.onboarding import rules as onboarding_rules
from workflows.onboarding.models import (
    ONBOARDING_CLOSED, Approval, OnboardingEvent, OnboardingInput, OnboardingPolicy, OnboardingState,
)
from workflows.onboarding.workflow import OnboardingJourney


@dataclass(frozen=True)
class EventRoute:
    """`POST /v1/{plural}/{id}/{path}` → the event `kind`. Path parameters beyond the id (e.g.
    `attendees/{attendee_id}`) fill the event's fields of that name."""

    kind: str
    path: str
    method: str = "POST"

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


def _now_if_unset(field_name: str) -> Callable[[BaseModel, datetime], BaseModel]:
    """Stamp an unset start time (invited_at, started_at) at the edge, so the journey never reads a clock."""
    def stamp(start: BaseModel, now: datetime) -> BaseModel:
        return start if getattr(start, field_name) is not None else start.model_copy(update={field_name: now})
    return stamp


def _future(*field_names: str) -> Callable[[BaseModel, datetime], tuple[str, str] | None]:
    """Refuse a start whose times have passed: (field, reason), or None."""
    def check(start: BaseModel, now: datetime) -> tuple[str, str] | None:
        for name in field_names:
            if getattr(start, name) is not None and getattr(start, name) <= now:
                return name, f"{name} is in the past"
        return None
    return check


@dataclass(frozen=True)
class PreviewSample:
    """What `followups preview KIND` plays: a start made at the anchor (the moment the journey
    begins on the time-skipping server) and, by event kind, what an event needs beyond the fields
    the user gave (a `recording_available` needs a `recording_url`). Plain fields, validated by the
    kind's own models; the preview fills the id."""

    anchor: str  # what the preview's offsets count from: "invite", "booking", "day 0"
    start: Callable[[datetime], dict[str, Any]]
    events: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class JourneyKind:
    name: str
    plural: str
    workflow: type
    start_model: type[BaseModel]
    input_model: type[BaseModel]
    state_model: type[BaseModel]
    policy_model: type[BaseModel]
    event_union: Any
    events: tuple[EventRoute, ...]
    closed: frozenset
    rules: Any  # the kind's pure rules module (the API screens an event for a journey not started yet)
    input_field: str  # the workflow input's field that carries the start (invitation, booking…)
    start_signal: str  # the start as a signal (its name in recorded histories: invite, book, begin)
    summary: Callable[[Any], str]  # the Web UI's one line for a journey, from its start input
    templates: tuple[str, ...]
    group_field: str | None = None  # the start field bulk actions call `group` (course, campaign)
    stamp: Callable[[Any, datetime], Any] = lambda start, now: start
    check: Callable[[Any, datetime], tuple[str, str] | None] = lambda start, now: None
    # (field, template) for each template a start names itself (a lead's own steps): checked to exist
    chosen_templates: Callable[[Any], list[tuple[str, str]]] = lambda start: []
    tag: str = ""
    description: str = ""
    preview: PreviewSample | None = None  # `followups preview {name}`
    event_models: dict[str, type[BaseModel]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        union = get_args(self.event_union)[0]
        models = {model.model_fields["kind"].default: model for model in get_args(union)}
        object.__setattr__(self, "event_models", models)
        unknown = {route.kind for route in self.events} - models.keys()
        assert not unknown, f"{self.name}: routes for unknown events {unknown}"

    @property
    def id_field(self) -> str:
        return f"{self.name}_id"

    def workflow_id(self, entity_id: str) -> str:
        return f"{self.name}-{entity_id}"

    def entity_id(self, start: BaseModel) -> str:
        return getattr(start, self.id_field)

    def empty_input(self, entity_id: str, policy: BaseModel | None = None) -> BaseModel:
        """The workflow input before the start arrives (an update or signal brings it)."""
        return self.input_model(**{self.id_field: entity_id, "policy": policy or self.policy_model()})

    def event(self, fields: dict[str, Any]) -> BaseModel:
        """An event of this kind from its fields (`kind` among them)."""
        return self.event_models[fields["kind"]].model_validate(fields)


INTERVIEW = JourneyKind(
    name="interview", plural="interviews", workflow=InterviewJourney, start_model=Invitation,
    input_model=InterviewInput, state_model=InterviewState, policy_model=InterviewPolicy,
    event_union=InterviewEvent, closed=CLOSED_STATUSES, rules=interview_rules, input_field="invitation", start_signal="invite",
    events=(EventRoute("confirm", "confirm"), EventRoute("reschedule", "reschedule"),
            EventRoute("cancel", "cancel"), EventRoute("complete", "complete")),
    summary=lambda i: (f"Interview {i.interview_id} with {i.candidate.name} <{i.candidate.email}>, "
                       f"invited {when(i.invited_at)}"),
    templates=("interview_followup", "interview_reminder"),
    stamp=_now_if_unset("invited_at"), check=_future("scheduled_at"), tag="interviews",
    description="Seed 000: follow-ups until the candidate picks a slot, then a reminder the day before.",
    preview=PreviewSample("invite", lambda at: {
        "candidate": {"email": "candidate@example.com", "name": "Alex Candidate", "time_zone": "Europe/Berlin"},
        "invited_at": at, "slot_selection_url": "https://jobs.example.com/slots/preview"}),
)

APPOINTMENT = JourneyKind(
    name="appointment", plural="appointments", workflow=AppointmentJourney, start_model=Booking,
    input_model=AppointmentInput, state_model=AppointmentState, policy_model=AppointmentPolicy,
    event_union=AppointmentEvent, closed=APPOINTMENT_CLOSED, rules=appointment_rules, input_field="booking", start_signal="book",
    events=(EventRoute("confirm", "confirm"), EventRoute("reschedule", "reschedule"), EventRoute("cancel", "cancel"),
            EventRoute("complete", "complete"), EventRoute("resend_reminder", "resend-reminder")),
    summary=lambda b: (f"Appointment {b.appointment_id}: {b.patient.name} <{b.patient.email}> with {b.doctor} "
                       f"at {when(b.scheduled_at)}"),
    templates=("appointment_reminder", "appointment_cancelled"),
    check=_future("scheduled_at"), tag="appointments",
    description="Seed 002: reminders at the policy's offsets before the appointment.",
    preview=PreviewSample("booking", lambda at: {
        "patient": {"email": "patient@example.com", "name": "Pat Patient", "time_zone": "Europe/Berlin"},
        "scheduled_at": at + timedelta(days=3), "doctor": "Dr. Rivera", "clinic": "Northside Clinic"}),
)

LEAD = JourneyKind(
    name="lead", plural="leads", workflow=LeadJourney, start_model=Lead, input_model=LeadInput,
    state_model=LeadState, policy_model=LeadPolicy, event_union=LeadEvent, closed=LEAD_CLOSED, rules=lead_rules, input_field="lead", start_signal="begin",
    events=(EventRoute("converted", "converted"), EventRoute("replied", "replied"), EventRoute("cancel", "cancel")),
    summary=lambda lead: f"Lead {lead.lead_id}: {lead.contact.name} <{lead.contact.email}>, campaign {lead.campaign}",
    templates=("lead_welcome", "lead_still_interested", "lead_final_offer"),
    group_field="campaign", stamp=_now_if_unset("started_at"), tag="leads",
    chosen_templates=lambda lead: [(f"policy.steps.{n}.template", step.template)
                                   for n, step in enumerate(lead.policy.steps or [])],
    description="Seed 003: day 0, day 3 and day 7 emails until the lead converts, replies or unsubscribes.",
    preview=PreviewSample("day 0", lambda at: {
        "contact": {"email": "lead@example.com", "name": "Lee Lead"}, "campaign": "preview", "company": "Acme",
        "offer_url": "https://shop.example.com/offer", "started_at": at}),
)

SESSION = JourneyKind(
    name="session", plural="sessions", workflow=SessionJourney, start_model=ClassSession, input_model=SessionInput,
    state_model=SessionState, policy_model=SessionPolicy, event_union=SessionEvent, closed=SESSION_CLOSED,
    rules=session_rules, input_field="session", start_signal="begin",
    events=(EventRoute("add_attendee", "attendees"),
            EventRoute("remove_attendee", "attendees/{attendee_id}", method="DELETE"),
            EventRoute("reschedule", "reschedule"), EventRoute("cancel", "cancel"),
            EventRoute("recording_available", "recording"), EventRoute("feedback", "feedback"),
            EventRoute("checkin_answer", "checkin"), EventRoute("complete", "complete")),
    summary=lambda s: (f"Session {s.session_id} \"{s.title}\" with {s.tutor.name}, {when(s.starts_at)}, "
                       f"{len(s.attendees)} attendee(s)"),
    templates=("session_reminder", "session_cancelled", "session_recording", "session_feedback", "session_checkin",
               "session_escalation"),
    group_field="course", check=_future("starts_at"), tag="sessions",
    description="Seeds 003/004: reminders to the roster, recording notice, feedback reminder, first-session check-in.",
    preview=PreviewSample("now", lambda at: {
        "title": "Algebra 1", "course": "preview", "starts_at": at + timedelta(days=2),
        "ends_at": at + timedelta(days=2, hours=1), "join_url": "https://lms.example.com/join/preview",
        "feedback_url": "https://lms.example.com/feedback/preview", "manager_email": "manager@example.com",
        "tutor": {"name": "Tom Tutor", "email": "tutor@example.com"},
        "attendees": [{"attendee_id": f"student-{n}", "name": f"Student {n}", "email": f"student{n}@example.com",
                       "time_zone": "Europe/Berlin"} for n in (1, 2)],
    }, events={
        "reschedule": lambda given: {"ends_at": given["starts_at"] + timedelta(hours=1)}  # a class keeps its length
                                    if "starts_at" in given else {},
        "recording_available": lambda given: {"recording_url": "https://lms.example.com/recordings/preview"},
        "feedback": lambda given: {"attendee_id": "student-1"},
        "checkin_answer": lambda given: {"ok": False, "comment": "the students could not hear me"},
        "add_attendee": lambda given: {"attendee": {"attendee_id": "student-new", "name": "New Student",
                                                    "email": "new-student@example.com"}},
        "remove_attendee": lambda given: {"attendee_id": "student-2"},
    }),
)

PAYMENT = JourneyKind(
    name="payment", plural="payments", workflow=PaymentJourney, start_model=Payment, input_model=PaymentInput,
    state_model=PaymentState, policy_model=PaymentPolicy, event_union=PaymentEvent, closed=PAYMENT_CLOSED,
    rules=payment_rules, input_field="payment", start_signal="begin",
    events=(EventRoute("paid", "paid"), EventRoute("cancel", "cancel")),
    summary=lambda p: f"Payment {p.payment_id}: {p.amount} {p.currency} from {p.payer.name} <{p.payer.email}>",
    templates=("payment_reminder", "payment_confirmation"),
    stamp=_now_if_unset("started_at"), tag="payments",
    description="Seeds 001/003: reminders while a payment stays pending, a confirmation once it is paid.",
    preview=PreviewSample("pending", lambda at: {
        "payer": {"email": "payer@example.com", "name": "Pat Payer", "time_zone": "Europe/Berlin"},
        "currency": "EUR", "amount": "49.90", "payment_url": "https://pay.example.com/i/preview",
        "description": "Invoice 2026-001", "started_at": at}),
)

TUTOR = JourneyKind(
    name="tutor", plural="tutors", workflow=TutorJourney, start_model=Tutor, input_model=TutorInput,
    state_model=TutorState, policy_model=TutorPolicy, event_union=TutorEvent, closed=TUTOR_CLOSED,
    rules=tutor_rules, input_field="tutor", start_signal="begin",
    events=(EventRoute("rescheduled", "rescheduled"), EventRoute("close", "close"), EventRoute("cancel", "cancel")),
    summary=lambda t: f"Tutor {t.tutor_id}: {t.tutor.name} <{t.tutor.email}>, manager <{t.manager_email}>",
    templates=("tutor_supportive", "tutor_manager_alert"), tag="tutors",
    description="Seed 004: one journey per tutor for years; 3+ reschedules in 7 days → a supportive email, "
                "6+ in 14 days → the manager is told, each once until its window clears.",
    preview=PreviewSample("start", lambda at: {
        "tutor": {"email": "tutor@example.com", "name": "Tom Tutor", "time_zone": "Europe/Berlin"},
        "manager_email": "manager@example.com", "manager_name": "Mia Manager",
        "support_url": "https://lms.example.com/tutors/scheduling-help"},
        events={"rescheduled": lambda given: {"session_id": "preview-session"}}),
)

ONBOARDING = JourneyKind(
    name="onboarding", plural="onboardings", workflow=OnboardingJourney, start_model=Approval,
    input_model=OnboardingInput, state_model=OnboardingState, policy_model=OnboardingPolicy,
    event_union=OnboardingEvent, closed=ONBOARDING_CLOSED, rules=onboarding_rules, input_field="approval",
    start_signal="begin", events=(EventRoute("proceed", "proceed"), EventRoute("cancel", "cancel")),
    summary=lambda a: (f"Onboarding {a.onboarding_id}: {a.student.name} <{a.student.email}>, approved by "
                       f"{a.approved_by.name}"),
    templates=("onboarding_welcome", "onboarding_whatsapp", "onboarding_admin_report"), tag="onboardings",
    check=lambda a, now: (("welcome_call.scheduled_at", "welcome_call.scheduled_at is in the past")
                          if a.welcome_call is not None and a.welcome_call.scheduled_at <= now else None),
    description="Seed 003 (CTA approval): account, credentials by email, WhatsApp welcome, welcome call, CRM entry, "
                "lead converted, the admin told; a permanent failure undoes the account and says what was done.",
    preview=PreviewSample("approval", lambda at: {
        "student": {"email": "student@example.com", "name": "Sam Student", "time_zone": "Europe/Berlin"},
        "approved_by": {"email": "admin@example.com", "name": "Ada Admin"},
        "login_url": "https://lms.example.com/login",
        "welcome_call": {"scheduled_at": at + timedelta(days=2), "host": "Alex Advisor"}}),
)

KINDS: dict[str, JourneyKind] = {kind.name: kind for kind in (INTERVIEW, APPOINTMENT, LEAD, SESSION, PAYMENT, TUTOR,
                                                              ONBOARDING)}
WORKFLOWS = [kind.workflow for kind in KINDS.values()]
