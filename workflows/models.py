"""What travels in and out of journeys: start inputs, events, policies, live state, send requests.

These pydantic models are the contract shared by the workflows, the activities, the HTTP API and
the Python client. A running journey keeps the policy it started with (it travels in the input),
so changing a default never changes a journey already asleep.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration (ISO 8601 like PT48H, or seconds)")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative (ISO 8601 like PT2H, or seconds)")
    return value


def _known_time_zone(value: str | None) -> str | None:
    if value is None:
        return value
    import zoneinfo  # only validated at the edge; workflows never resolve zones themselves

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA time zone {value!r}") from err
    return value


PositiveDuration = Annotated[timedelta, AfterValidator(_positive)]
NonNegativeDuration = Annotated[timedelta, AfterValidator(_not_negative)]
EntityId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
TimeZone = Annotated[str | None, AfterValidator(_known_time_zone)]
ShortText = Annotated[str, StringConstraints(max_length=500)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- shared -----------------------------------------------------------------------------------


class Recipient(Strict):
    email: EmailStr
    # no control characters: the name goes into the To: header
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
    time_zone: TimeZone = None


class StepKind(StrEnum):
    FOLLOWUP = "followup"
    REMINDER = "reminder"
    COMPLETE = "complete"
    EXPIRE = "expire"
    ABANDON = "abandon"
    RESEND = "resend"
    NOTICE = "notice"
    STEP = "step"  # one email of a sequence (lead nurture)
    FINISH = "finish"
    END = "end"  # the class is over
    RECORDING = "recording"
    FEEDBACK = "feedback"
    CHECKIN = "checkin"
    ESCALATE = "escalate"


class PlannedStep(Strict):
    """The next thing a journey will do, and when; `label` is what the Web UI shows."""

    kind: StepKind
    at: datetime
    number: int = 0
    not_after: datetime | None = None  # from this moment on the step is skipped, never sent late
    label: str = ""


class Skip(Strict):
    step: str
    reason: str
    at: datetime


class MessageCategory(StrEnum):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class SendRequest(Strict):
    """One message of one business step; `key` is its idempotency key (`interview-42/followup-2`)."""

    key: str
    journey: str
    entity_id: str
    template: str
    recipient: Recipient
    context: dict[str, Any]
    category: MessageCategory = MessageCategory.TRANSACTIONAL
    due_at: datetime
    not_after: datetime | None = None
    channel: Literal["email", "webhook"] = "email"
    phone: str | None = None  # webhook: the recipient's E.164 number, for SMS/WhatsApp providers


class SendStatus(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    DRY_RUN = "dry_run"


class SendResult(Strict):
    key: str
    status: SendStatus
    reason: str | None = None
    message_id: str | None = None
    already_done: bool = False  # a previous attempt or run had already finished this key


# --- interview journey ------------------------------------------------------------------------


class InterviewPolicy(Strict):
    """Seed 000's timings; every field can be overridden per start."""

    followup_after: PositiveDuration = timedelta(hours=48)
    followup_interval: PositiveDuration = timedelta(hours=24)
    max_followups: Annotated[int, Field(ge=0, le=20)] = 3
    reminder_before: PositiveDuration = timedelta(hours=24)
    reminder_grace: PositiveDuration = timedelta(hours=2)
    expire_after: PositiveDuration = timedelta(days=14)
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


class InterviewPolicyOverrides(Strict):
    followup_after: PositiveDuration | None = None
    followup_interval: PositiveDuration | None = None
    max_followups: Annotated[int, Field(ge=0, le=20)] | None = None
    reminder_before: PositiveDuration | None = None
    reminder_grace: PositiveDuration | None = None
    expire_after: PositiveDuration | None = None


class Invitation(Strict):
    """What `POST /v1/interviews` carries: everything the journey needs to run."""

    interview_id: EntityId
    candidate: Recipient
    invited_at: AwareDatetime | None = None  # default: when the API received it
    slot_selection_url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$")]
    scheduled_at: AwareDatetime | None = None
    policy: InterviewPolicyOverrides = InterviewPolicyOverrides()

    @field_validator("scheduled_at")
    @classmethod
    def _scheduled_after_invite(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        invited_at = info.data.get("invited_at")
        if value is not None and invited_at is not None and value <= invited_at:
            raise ValueError("scheduled_at must be after invited_at")
        return value


class InterviewInput(Strict):
    """The workflow input. `invitation` is None when an event arrived before the start."""

    interview_id: EntityId
    invitation: Invitation | None = None
    policy: InterviewPolicy = InterviewPolicy()


class InterviewStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    PENDING = "pending"
    SCHEDULED = "scheduled"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    ABANDONED = "abandoned"


CLOSED_STATUSES = frozenset(
    {InterviewStatus.COMPLETED, InterviewStatus.CANCELLED, InterviewStatus.EXPIRED, InterviewStatus.ABANDONED}
)


class InterviewEvent(Strict):
    """confirm / reschedule / cancel / complete. `event_id` makes a retried event apply once."""

    kind: Literal["confirm", "reschedule", "cancel", "complete"]
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    scheduled_at: AwareDatetime | None = None
    reason: ShortText | None = None
    received_at: datetime | None = None  # stamped by the API; a workflow never reads a clock

    @model_validator(mode="after")
    def _time_when_needed(self) -> InterviewEvent:
        if self.kind in ("confirm", "reschedule") and self.scheduled_at is None:
            raise ValueError(f"{self.kind} needs scheduled_at")
        if self.kind in ("cancel", "complete") and self.scheduled_at is not None:
            raise ValueError(f"{self.kind} takes no scheduled_at")
        return self

    def dedupe_key(self) -> str:
        if self.event_id:
            return self.event_id
        stamp = self.scheduled_at.isoformat() if self.scheduled_at else ""
        return f"{self.kind}:{stamp}"


class EventOutcome(Strict):
    event: str
    applied: bool
    reason: str | None = None


class InterviewState(BaseModel):
    """Live state, returned by the `state` query and by `GET /v1/interviews/{id}`."""

    interview_id: str
    status: InterviewStatus
    candidate_email: str | None = None
    invited_at: datetime | None = None
    scheduled_at: datetime | None = None
    followups_sent: int = 0
    last_sent_at: datetime | None = None
    reminders_sent: list[str] = []  # idempotency keys of reminders delivered
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    events: list[EventOutcome] = []
    policy: InterviewPolicy = InterviewPolicy()


# --- appointment journey ----------------------------------------------------------------------


def _offsets(value: list[timedelta]) -> list[timedelta]:
    if len(set(value)) != len(value):
        raise ValueError("reminder offsets must be distinct")
    return sorted(value, reverse=True)  # the earliest reminder first


ReminderOffsets = Annotated[list[PositiveDuration], Field(min_length=1, max_length=10), AfterValidator(_offsets)]


class AppointmentPolicy(Strict):
    """Seed 002: one reminder an hour before, only while scheduled or confirmed."""

    reminder_offsets: ReminderOffsets = [timedelta(hours=1)]
    reminder_grace: PositiveDuration = timedelta(minutes=10)
    cancellation_notice: bool = True
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


class AppointmentPolicyOverrides(Strict):
    reminder_offsets: ReminderOffsets | None = None
    reminder_grace: PositiveDuration | None = None
    cancellation_notice: bool | None = None


class Booking(Strict):
    """What `POST /v1/appointments` carries."""

    appointment_id: EntityId
    patient: Recipient
    scheduled_at: AwareDatetime
    doctor: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    clinic: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    location: ShortText | None = None
    confirmed: bool = False
    policy: AppointmentPolicyOverrides = AppointmentPolicyOverrides()


class AppointmentInput(Strict):
    appointment_id: EntityId
    booking: Booking | None = None
    policy: AppointmentPolicy = AppointmentPolicy()


class AppointmentStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    SCHEDULED = "scheduled"
    CONFIRMED = "confirmed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


APPOINTMENT_CLOSED = frozenset({AppointmentStatus.COMPLETED, AppointmentStatus.CANCELLED, AppointmentStatus.ABANDONED})


class AppointmentEvent(Strict):
    kind: Literal["confirm", "reschedule", "cancel", "complete", "resend_reminder"]
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    scheduled_at: AwareDatetime | None = None
    reason: ShortText | None = None
    notify: bool | None = None  # cancel: send the cancellation notice (default: the policy's)

    @model_validator(mode="after")
    def _time_when_needed(self) -> AppointmentEvent:
        if self.kind == "reschedule" and self.scheduled_at is None:
            raise ValueError("reschedule needs scheduled_at")
        if self.kind != "reschedule" and self.scheduled_at is not None:
            raise ValueError(f"{self.kind} takes no scheduled_at")
        return self

    def dedupe_key(self) -> str:
        if self.event_id:
            return self.event_id
        stamp = self.scheduled_at.isoformat() if self.scheduled_at else ""
        return f"{self.kind}:{stamp}"


class AppointmentState(BaseModel):
    appointment_id: str
    status: AppointmentStatus
    patient_email: str | None = None
    scheduled_at: datetime | None = None
    confirmed: bool = False
    reminders_sent: list[str] = []
    resends_requested: int = 0
    resends_sent: int = 0
    notice_pending: bool = False
    notice_sent: bool = False
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    events: list[EventOutcome] = []
    policy: AppointmentPolicy = AppointmentPolicy()


def too_late(not_after: datetime | None, now: datetime) -> bool:
    """A step's `not_after` is exclusive: from that moment on (the interview itself, the expiry) it
    is skipped, never sent late."""
    return not_after is not None and now >= not_after


# --- lead nurture journey -----------------------------------------------------------------------


def _lead_steps(value: list[LeadStep]) -> list[LeadStep]:
    afters = [step.after for step in value]
    if afters != sorted(afters) or len(set(afters)) != len(afters):
        raise ValueError("steps must be in increasing order of `after`, each at a different time")
    return value


class LeadStep(Strict):
    after: NonNegativeDuration  # from the lead's start (day 0 = 0)
    template: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


LeadSteps = Annotated[list[LeadStep], Field(min_length=1, max_length=20), AfterValidator(_lead_steps)]
DEFAULT_LEAD_STEPS = [
    LeadStep(after=timedelta(0), template="lead_welcome"),
    LeadStep(after=timedelta(days=3), template="lead_still_interested"),
    LeadStep(after=timedelta(days=7), template="lead_final_offer"),
]


class LeadPolicy(Strict):
    """Seed 003: day 0 first email, day 3 "still interested?", day 7 final offer."""

    steps: LeadSteps = DEFAULT_LEAD_STEPS
    step_grace: PositiveDuration = timedelta(days=1)  # a step more than this late is skipped, not sent
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


class LeadPolicyOverrides(Strict):
    steps: LeadSteps | None = None
    step_grace: PositiveDuration | None = None


class Lead(Strict):
    """What `POST /v1/leads` (or one CSV row) carries."""

    lead_id: EntityId
    contact: Recipient
    campaign: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$")]
    company: ShortText | None = None
    offer_url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$")] | None = None
    started_at: AwareDatetime | None = None  # day 0; default: when the journey starts
    policy: LeadPolicyOverrides = LeadPolicyOverrides()


class LeadInput(Strict):
    lead_id: EntityId
    lead: Lead | None = None
    policy: LeadPolicy = LeadPolicy()


class LeadStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    NURTURING = "nurturing"
    CONVERTED = "converted"
    REPLIED = "replied"
    SUPPRESSED = "suppressed"  # unsubscribed or hard-bounced: nothing more can be sent
    FINISHED = "finished"  # every step went out
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


LEAD_CLOSED = frozenset({LeadStatus.CONVERTED, LeadStatus.REPLIED, LeadStatus.SUPPRESSED, LeadStatus.FINISHED,
                         LeadStatus.CANCELLED, LeadStatus.ABANDONED})


class LeadEvent(Strict):
    """converted (with an optional reference, e.g. an order id) / replied / cancel."""

    kind: Literal["converted", "replied", "cancel"]
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    reference: ShortText | None = None

    def dedupe_key(self) -> str:
        return self.event_id or f"{self.kind}:"


class LeadState(BaseModel):
    lead_id: str
    status: LeadStatus
    campaign: str | None = None
    contact_email: str | None = None
    started_at: datetime | None = None
    steps_done: int = 0  # sent or skipped
    sent: list[str] = []
    conversion_reference: str | None = None
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    events: list[EventOutcome] = []
    policy: LeadPolicy = LeadPolicy()


# --- class session journey ----------------------------------------------------------------------

Channel = Literal["email", "webhook"]


def _distinct_channels(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("each channel once")
    return value


class Attendee(Strict):
    attendee_id: EntityId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
    email: EmailStr
    time_zone: TimeZone = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")] | None = None  # E.164, for webhooks
    channels: Annotated[list[Channel], Field(min_length=1), AfterValidator(_distinct_channels)] = ["email"]

    def recipient(self) -> Recipient:
        return Recipient(email=self.email, name=self.name, time_zone=self.time_zone)


class Tutor(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
    email: EmailStr
    time_zone: TimeZone = None
    first_session: bool = False  # seed 004: a check-in 2 h after the tutor's first session


class SessionPolicy(Strict):
    """Seeds 003 and 004: reminders 24 h and 15 min before; a feedback reminder 24–48 h after the
    end to whoever gave none; a tutor's first session gets a check-in 2 h after the end."""

    reminder_offsets: ReminderOffsets = [timedelta(hours=24), timedelta(minutes=15)]
    reminder_grace: PositiveDuration = timedelta(minutes=10)
    feedback_after: PositiveDuration = timedelta(hours=24)
    feedback_window: PositiveDuration = timedelta(hours=24)  # no feedback reminder past end + 48 h
    checkin_after: PositiveDuration = timedelta(hours=2)
    stay_open_for: PositiveDuration = timedelta(days=7)  # after the end: recordings, answers
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


class SessionPolicyOverrides(Strict):
    reminder_offsets: ReminderOffsets | None = None
    reminder_grace: PositiveDuration | None = None
    feedback_after: PositiveDuration | None = None
    feedback_window: PositiveDuration | None = None
    checkin_after: PositiveDuration | None = None
    stay_open_for: PositiveDuration | None = None


Roster = Annotated[list[Attendee], Field(max_length=500)]


class ClassSession(Strict):
    """What `POST /v1/sessions` carries."""

    session_id: EntityId
    title: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
    course: EntityId | None = None  # a group for bulk actions ("every session of this course")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    join_url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$")] | None = None
    feedback_url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$")] | None = None
    tutor: Tutor
    manager_email: EmailStr | None = None  # where a negative check-in answer is escalated
    attendees: Roster = []
    policy: SessionPolicyOverrides = SessionPolicyOverrides()

    @field_validator("ends_at")
    @classmethod
    def _ends_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        starts_at = info.data.get("starts_at")
        if starts_at is not None and value <= starts_at:
            raise ValueError("ends_at must be after starts_at")
        return value

    @field_validator("attendees")
    @classmethod
    def _unique_attendees(cls, value: list[Attendee]) -> list[Attendee]:
        if len({a.attendee_id for a in value}) != len(value):
            raise ValueError("attendee_id must be unique on the roster")
        return value


class SessionInput(Strict):
    session_id: EntityId
    session: ClassSession | None = None
    policy: SessionPolicy = SessionPolicy()


class SessionStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    SCHEDULED = "scheduled"
    ENDED = "ended"  # the class is over; recordings, feedback and check-in still to come
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


SESSION_CLOSED = frozenset({SessionStatus.COMPLETED, SessionStatus.CANCELLED, SessionStatus.ABANDONED})


class SessionEvent(Strict):
    kind: Literal["add_attendee", "remove_attendee", "reschedule", "cancel", "recording_available", "feedback",
                  "checkin_answer", "complete"]
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    attendee: Attendee | None = None  # add_attendee
    attendee_id: EntityId | None = None  # remove_attendee, feedback
    starts_at: AwareDatetime | None = None  # reschedule
    ends_at: AwareDatetime | None = None  # reschedule
    recording_url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$")] | None = None
    ok: bool | None = None  # checkin_answer: did the first session go well?
    comment: ShortText | None = None
    reason: ShortText | None = None
    notify: bool = True  # cancel: tell the attendees

    @model_validator(mode="after")
    def _fields_for_kind(self) -> SessionEvent:
        needs = {"add_attendee": ("attendee",), "remove_attendee": ("attendee_id",), "feedback": ("attendee_id",),
                 "reschedule": ("starts_at", "ends_at"), "recording_available": ("recording_url",),
                 "checkin_answer": ("ok",)}
        for name in needs.get(self.kind, ()):
            if getattr(self, name) is None:
                raise ValueError(f"{self.kind} needs {name}")
        if self.kind == "reschedule" and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def dedupe_key(self) -> str:
        return self.event_id or f"{self.kind}:{self.attendee_id or ''}{self.starts_at.isoformat() if self.starts_at else ''}"


class SessionState(BaseModel):
    session_id: str
    status: SessionStatus
    title: str | None = None
    course: str | None = None
    tutor_email: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    roster: list[Attendee] = []
    removed_early: list[str] = []  # remove_attendee events held before the start
    steps_done: list[str] = []  # fan-out steps handled (reminder-24h-…, recording, feedback, checkin…)
    sent: list[str] = []  # keys delivered
    feedback_from: list[str] = []  # attendee ids
    recording_url: str | None = None
    recording_pending: bool = False
    notice_pending: bool = False
    checkin_answer: bool | None = None
    checkin_comment: str | None = None
    escalation_pending: bool = False
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    events: list[EventOutcome] = []
    policy: SessionPolicy = SessionPolicy()
