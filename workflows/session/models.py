"""The class-session journey's contract: the session and its roster, events, policy and live state."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, field_validator, model_validator

from workflows.contracts import Channel, ParentCopy, Phone, Recipient
from workflows.core.events import JourneyEvent, event_maker
from workflows.core.fields import (
    Count, EmailAddress, EntityId, Flag, Moment, PersonName, PositiveDuration, ReminderOffsets, ShortText, Strict, TimeZone, Title, WebUrl, overrides_of,
)
from workflows.core.steps import EventOutcome, PlannedStep, Skip


def _distinct_channels(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("each channel once")
    return value


class Attendee(ParentCopy):
    attendee_id: EntityId
    name: PersonName
    email: EmailAddress
    time_zone: TimeZone = None
    phone: Phone | None = None  # E.164, for webhooks
    channels: Annotated[list[Channel], Field(min_length=1), AfterValidator(_distinct_channels)] = ["email"]

    def recipient(self) -> Recipient:
        return Recipient(email=self.email, name=self.name, time_zone=self.time_zone, **self.parent_fields())


class Tutor(Strict):
    name: PersonName
    email: EmailAddress
    time_zone: TimeZone = None
    first_session: Flag = False  # seed 004: a check-in 2 h after the tutor's first session


class SessionPolicy(Strict):
    """Seeds 003 and 004: reminders 24 h and 15 min before; a feedback reminder 24–48 h after the
    end to whoever gave none; a tutor's first session gets a check-in 2 h after the end."""

    reminder_offsets: ReminderOffsets = [timedelta(hours=24), timedelta(minutes=15)]
    reminder_grace: PositiveDuration = timedelta(minutes=10)
    feedback_after: PositiveDuration = timedelta(hours=24)
    feedback_window: PositiveDuration = timedelta(hours=24)  # no feedback reminder past end + 48 h
    checkin_after: PositiveDuration = timedelta(hours=2)
    stay_open_for: PositiveDuration = timedelta(days=7)  # after the end: recordings, answers
    fan_out_chunk: Annotated[Count, Field(ge=1, le=1000)] = 100  # attendees per send activity; a cancel stops between chunks
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


SessionPolicyOverrides = overrides_of(SessionPolicy)
MAX_ATTENDEES_PER_REQUEST = 1000  # a start or one roster change; a roster grows past it by batches
Roster = Annotated[list[Attendee], Field(max_length=MAX_ATTENDEES_PER_REQUEST)]


def _unique_ids(value: list[Attendee]) -> list[Attendee]:
    if len({a.attendee_id for a in value}) != len(value):
        raise ValueError("attendee_id must be unique on the roster")
    return value


class ClassSession(Strict):
    """What `POST /v1/sessions` carries."""

    session_id: EntityId
    title: Title
    course: EntityId | None = None  # a group for bulk actions ("every session of this course")
    starts_at: Moment
    ends_at: Moment
    join_url: WebUrl | None = None
    feedback_url: WebUrl | None = None
    tutor: Tutor
    manager_email: EmailAddress | None = None  # where a negative check-in answer is escalated
    attendees: Roster = []
    policy: SessionPolicyOverrides = SessionPolicyOverrides()  # type: ignore[valid-type]

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
        return _unique_ids(value)


class SessionStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    SCHEDULED = "scheduled"
    ENDED = "ended"  # the class is over; recordings, feedback and check-in still to come
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


SESSION_CLOSED = frozenset({SessionStatus.COMPLETED, SessionStatus.CANCELLED, SessionStatus.ABANDONED})


class AddAttendee(JourneyEvent):
    """Add (or update) attendees, one (`attendee`) or up to 1,000 (`attendees`): they get every
    reminder still to come, none already sent."""

    kind: Literal["add_attendee"] = "add_attendee"
    attendee: Attendee | None = None
    attendees: Annotated[Roster, AfterValidator(_unique_ids)] = []

    @model_validator(mode="after")
    def _one_or_many(self) -> AddAttendee:
        if (self.attendee is None) == (not self.attendees):
            raise ValueError("give either `attendee` (one) or `attendees` (a list of up to 1,000)")
        return self

    def members(self) -> list[Attendee]:
        return [self.attendee] if self.attendee is not None else list(self.attendees)

    def stamp(self) -> str:
        return ""


class RemoveAttendee(JourneyEvent):
    kind: Literal["remove_attendee"] = "remove_attendee"
    attendee_id: EntityId

    def stamp(self) -> str:
        return self.attendee_id


class Reschedule(JourneyEvent):
    """Move the class: every pending reminder is re-planned in place."""

    kind: Literal["reschedule"] = "reschedule"
    starts_at: Moment
    ends_at: Moment

    @field_validator("ends_at")
    @classmethod
    def _ends_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        starts_at = info.data.get("starts_at")
        if starts_at is not None and value <= starts_at:
            raise ValueError("ends_at must be after starts_at")  # on the field: a 422 names `ends_at`
        return value

    def stamp(self) -> str:
        return self.starts_at.isoformat()


class Cancel(JourneyEvent):
    """Cancel the class: the roster is told once, nothing else is sent."""

    kind: Literal["cancel"] = "cancel"
    reason: ShortText | None = None
    notify: Flag = Field(True, description="tell every attendee on the roster (once)")


class RecordingAvailable(JourneyEvent):
    """The recording is online: the roster gets the watch link (once)."""

    kind: Literal["recording_available"] = "recording_available"
    recording_url: WebUrl


class Feedback(JourneyEvent):
    """An attendee gave feedback: they get no feedback reminder."""

    kind: Literal["feedback"] = "feedback"
    attendee_id: EntityId
    comment: ShortText | None = None

    def stamp(self) -> str:
        return self.attendee_id


class CheckinAnswer(JourneyEvent):
    """The tutor's answer to the first-session check-in; `ok: false` escalates to the manager."""

    kind: Literal["checkin_answer"] = "checkin_answer"
    ok: Flag = Field(description="did the tutor's first session go well? false escalates to the manager")
    comment: ShortText | None = None


class Complete(JourneyEvent):
    kind: Literal["complete"] = "complete"
    reason: ShortText | None = None


SessionEvent = Annotated[AddAttendee | RemoveAttendee | Reschedule | Cancel | RecordingAvailable | Feedback
                         | CheckinAnswer | Complete, Field(discriminator="kind")]
session_event = event_maker(SessionEvent)


class SessionState(BaseModel):
    session_id: str
    status: SessionStatus
    title: str | None = None
    course: str | None = None
    tutor_email: str | None = None
    first_session: bool = False
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    # Where the roster lives: "database" (the roster table, by id; any size) for journeys begun
    # since the roster left the state, "state" (the list below) for those recorded before.
    roster_store: Literal["state", "database"] | None = None
    roster_size: int = 0  # "database": attendees on the roster now
    roster_pending: list[Attendee] = []  # "database": the start's roster, until the loop has stored it
    messages_sent: int = 0  # "database": fan-out messages delivered (the outbox has each one)
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
    announced: list[str] = Field([], description="what the backend's webhooks were told: journey.started's and each later stage, the journey's own facts, ended")
    events: list[EventOutcome] = []
    policy: SessionPolicy = SessionPolicy()


class RosterChange(Strict):
    """What the roster activity writes: additions (the start's own roster never overrides an event's
    change or revives a removal), removals, feedback marks."""

    session_id: str
    add: list[Attendee] = []
    from_start: bool = False
    remove: list[str] = []
    feedback: list[str] = []


class RosterReport(Strict):
    changed: int  # rows this change added, updated, removed or marked
    members: int  # attendees on the roster now


class FanOut(Strict):
    """One chunk of a fan-out: the next `limit` attendees after `after`, each on each channel."""

    session_id: str
    step: str  # reminder-1d-20261201T090000Z, cancelled, recording, feedback
    template: str
    context: dict[str, Any]  # the session's, the same for everyone (the send step adds the name)
    due_at: datetime
    not_after: datetime | None = None
    after: str | None = None
    limit: int
    without_feedback: bool = False


class FanOutReport(Strict):
    attendees: int
    sent: int
    skipped: dict[str, int] = {}  # reason → messages
    last: str | None = None  # the last attendee_id of this chunk; None: the roster is done
    remaining: int = 0  # attendees after this chunk


class SessionInput(Strict):
    session_id: EntityId
    session: ClassSession | None = None
    policy: SessionPolicy = SessionPolicy()
    state: SessionState | None = None
    awaiting_since: datetime | None = None
