"""The API's models, generated from its OpenAPI document by `make client` (client/generate.py):
do not edit. Types only: the API checks every bound and answers 422 naming the field."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Fields a model does not know are kept (an answer from a newer server still reads); defaults
    are read like values (a policy's `"P2D"` is a timedelta)."""

    model_config = ConfigDict(extra="allow", validate_default=True)


def as_written(value: Any) -> Any:
    """A default as the document writes it, which the model reads into the field's type."""
    return value


class Arm(Model):
    variant: str
    weight: int = 1


class AbPlanInput(Model):
    """Send a random `test_fraction` of the audience first, split over the arms by weight; after
    `wait`, test the best arm against each other one on `metric` (two-proportion z-test); the rest
    of the audience gets the winner, or, with no significant winner, what `no_winner` says.
    """
    arms: list[Arm]
    """the template's variants and their weights; the first is the control"""
    test_fraction: float = 0.2
    wait: timedelta = as_written("PT4H")
    metric: Literal["clicks", "opens", "conversions"] = "clicks"
    confidence: float = 0.95
    min_per_arm: int = 100
    no_winner: Literal["control", "split"] = "control"


class AbPlanOutput(Model):
    """Send a random `test_fraction` of the audience first, split over the arms by weight; after
    `wait`, test the best arm against each other one on `metric` (two-proportion z-test); the rest
    of the audience gets the winner, or, with no significant winner, what `no_winner` says.
    """
    arms: list[Arm]
    """the template's variants and their weights; the first is the control"""
    test_fraction: float = 0.2
    wait: str = "PT4H"
    metric: Literal["clicks", "opens", "conversions"] = "clicks"
    confidence: float = 0.95
    min_per_arm: int = 100
    no_winner: Literal["control", "split"] = "control"


class AbTestView(Model):
    campaign_id: str
    plan: AbPlanOutput
    status: Literal["testing", "waiting", "decided"]
    decision: dict[str, Any] | None
    """each arm's sent, successes and rate; each test's z and p-value; the winner (null: none), what the
    rest get, why
    """


class Admin(Model):
    email: str
    name: str


class TimeToOpenView(Model):
    opens: int
    """messages a person opened whose sending time is known"""
    p50: float | None
    """seconds from sending to a person's first open; null without opens"""
    p90: float | None
    p99: float | None


class FiguresView(Model):
    template_version: int | None
    """in a template's breakdown: the version (null: the file default)"""
    variant: str | None
    """in a template's breakdown: the A/B variant (null: none)"""
    messages: int
    """every message of the scope in the period"""
    pending: int
    """queued or being sent"""
    sent: int
    dry_run: int
    failed: int
    skipped: dict[str, int]
    """by kind of reason: recipient suppressed, too late, …"""
    delivered: int
    opened_human: int
    opened_machine: int
    """opened by an image proxy or Apple Mail Privacy Protection"""
    clicked_human: int
    clicked_machine: int
    """clicked by a link scanner"""
    bounced: int
    """hard bounces"""
    soft_bounced: int
    complained: int
    unsubscribed: int
    rates: dict[str, float]
    """delivered … unsubscribed as shares of `sent` (0 when none was sent)"""
    time_to_open: TimeToOpenView


class AnalyticsView(Model):
    scope: Literal["overall", "template", "journey", "campaign"]
    name: str | None
    """the template, journey kind or campaign; null for overall"""
    since: datetime | None
    until: datetime | None
    totals: FiguresView
    breakdown: list[FiguresView]
    """a template's figures per (template_version, variant); empty for the other scopes"""


class Recipient(Model):
    under_13: bool = False
    parent_email: str | None = None
    """the parent's address: required when under_13 is true"""
    parent_name: str | None = None
    parent_copy: Literal["also", "instead"] = "also"
    """under 13: the parent gets a copy of every message (also) or each message instead"""
    email: str
    name: str
    time_zone: str | None = None


class AnnouncementBody(Model):
    announcement_id: str
    title: str
    url: str
    summary: str | None = None
    recipients: list[Recipient] | None = None
    """default: everyone enrolled in the course"""
    from_journey: str = "enrollment"
    """without `recipients`: the course's enrolled list is everyone on this declared journey with `group` =
    the course, not ended by an exit or cancel event
    """


class AnnouncementView(Model):
    course: str
    announcement_id: str
    workflow_id: str
    created: bool | None = None
    """a post: true when this call created the announcement"""
    audience: int
    sent: int
    failed: int
    skipped: dict[str, int]
    """by reason: recipient suppressed, …"""
    remaining: int
    done: bool


class AppointmentCancelBody(Model):
    """Stop every reminder; send the cancellation notice unless `notify` is false."""
    event_id: str | None = None
    reason: str | None = None
    notify: bool | None = None
    """send the cancellation notice (default: the policy's)"""


class AppointmentCompleteBody(Model):
    event_id: str | None = None
    reason: str | None = None


class AppointmentConfirmBody(Model):
    """The patient confirmed: reminders go on as planned."""
    event_id: str | None = None


class AppointmentPolicy(Model):
    """Seed 002: one reminder an hour before, only while scheduled or confirmed."""
    template_versions: Literal["pinned", "latest"] = "pinned"
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    reminder_offsets: list[str] = as_written(["PT1H"])
    reminder_grace: str = "PT10M"
    cancellation_notice: bool = True
    hold_early_events_for: str = "P1D"


class AppointmentPolicyOverrides(Model):
    """Overrides of AppointmentPolicy for one start: any field, same bounds; unset = the default."""
    template_versions: Literal["pinned", "latest"] | None = None
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    reminder_offsets: list[timedelta] | None = None
    reminder_grace: timedelta | None = None
    cancellation_notice: bool | None = None


class AppointmentRescheduleBody(Model):
    """Move the appointment: every pending reminder is re-planned for the new time."""
    event_id: str | None = None
    scheduled_at: datetime


class AppointmentResendReminderBody(Model):
    """Send the reminder again now, under a new key (the patient lost it)."""
    event_id: str | None = None


AppointmentStatus = Literal["awaiting_start", "scheduled", "confirmed", "completed", "cancelled", "abandoned"]


class EventOutcome(Model):
    event: str
    applied: bool
    reason: str | None = None
    code: Literal["applied", "no_change", "duplicate", "invalid", "ended", "conflict"] | None = None
    field: str | None = None
    fingerprint: str | None = None


StepKind = Literal[
    "followup", "reminder", "complete", "expire", "abandon", "resend", "notice", "step", "finish", "end", "recording",
    "feedback", "checkin", "escalate", "confirmation", "roster",
]


class PlannedStep(Model):
    """The next thing a journey will do, and when; `label` is what the Web UI shows."""
    kind: StepKind
    at: datetime
    number: int = 0
    not_after: datetime | None = None
    label: str = ""


class Skip(Model):
    step: str
    reason: str
    at: datetime


class AppointmentState(Model):
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
    announced: list[str] = []
    """what the backend's webhooks were told: journey.started's and each later stage, the journey's own
    facts, ended
    """
    events: list[EventOutcome] = []
    policy: AppointmentPolicy = as_written({
        "template_versions": "pinned",
        "reminder_offsets": ["PT1H"],
        "reminder_grace": "PT10M",
        "cancellation_notice": True,
        "hold_early_events_for": "P1D",
    })


class MessageView(Model):
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
    channel: str = "email"
    category: str
    """the category its template declares (preferences apply per category)"""
    template_version: int | None = None
    """the saved version it rendered; null: the file default"""
    variant: str | None = None
    """the A/B variant it got, if its version has variants"""
    lifecycle: str = "queued"
    """queued → sent → delivered → opened → clicked; soft_bounced, bounced, complained, failed. Only moves
    forward; human events only
    """


class AppointmentView(Model):
    workflow_id: str
    created: bool | None = None
    """a start: true when this call started the journey"""
    accepted: bool = False
    """no worker answered in time: the input is durably recorded and will be applied once; state and event
    are then null
    """
    event: EventOutcome | None = None
    created_by_event: str | None = None
    """the id had no journey: this event created one, which waits for its start (policy
    `hold_early_events_for`) or has already ended (an early cancel)
    """
    messages: list[MessageView] = []
    appointment_id: str
    state: AppointmentState | None = None
    """null when no worker answered in time"""


class OnboardingPolicyOverrides(Model):
    """Overrides of OnboardingPolicy for one start: any field, same bounds; unset = the default."""
    undo_window: timedelta | None = None
    backend_give_up_after: timedelta | None = None


class Student(Model):
    """The person approved. No `under_13` here: a temporary password goes to its owner only."""
    email: str
    name: str
    time_zone: str | None = None
    phone: str | None = None
    """E.164; the WhatsApp welcome goes through the webhook channel"""


class WelcomeCall(Model):
    """Book a welcome call: an `appointment` journey (`appointment-welcome-{onboarding_id}`) reminds
    the student before it.
    """
    scheduled_at: datetime
    host: str
    """who calls, e.g. the admissions advisor"""
    location: str | None = None
    """a phone number or a meeting link"""


class Approval(Model):
    """What `POST /v1/onboardings` carries: an admin approved a CTA submission."""
    onboarding_id: str
    """e.g. the CTA submission's id"""
    student: Student
    approved_by: Admin
    login_url: str
    lead_id: str | None = None
    """the approval came from a lead campaign: `lead-{lead_id}` is marked converted"""
    welcome_call: WelcomeCall | None = None
    policy: OnboardingPolicyOverrides = as_written({})


class At(Model):
    """A moment relative to an anchor: `deadline - 48h` is {anchor: deadline, offset: -48h}."""
    anchor: str
    offset: timedelta = as_written("PT0S")


class Attendee(Model):
    under_13: bool = False
    parent_email: str | None = None
    """the parent's address: required when under_13 is true"""
    parent_name: str | None = None
    parent_copy: Literal["also", "instead"] = "also"
    """under 13: the parent gets a copy of every message (also) or each message instead"""
    attendee_id: str
    name: str
    email: str
    time_zone: str | None = None
    phone: str | None = None
    channels: list[Literal["email", "webhook", "in_app"]] = as_written(["email"])


class AudienceFilter(Model):
    """Everyone on running `journey` journeys (of `group`): e.g. everyone enrolled in a course."""
    journey: str
    group: str | None = None


class AudienceView(Model):
    added: int
    audience: int
    rejected_count: int = 0
    rejected: list[dict[str, Any]] = []


class Booking(Model):
    """What `POST /v1/appointments` carries."""
    appointment_id: str
    patient: Recipient
    scheduled_at: datetime
    doctor: str
    clinic: str | None = None
    location: str | None = None
    confirmed: bool = False
    policy: AppointmentPolicyOverrides = as_written({})


class BulkCancelBody(Model):
    journey: Literal["interview", "appointment", "lead", "session", "payment", "tutor", "onboarding"] | None = None
    group: str | None = None
    """a session's course or a lead's campaign"""
    recipient: str | None = None
    """the journey's recipient (a session's tutor)"""
    stage: str | None = None
    reason: str | None = None
    request_id: str | None = None
    """send the same id again to retry safely: each journey applies it once"""


class BulkSignalBody(Model):
    journey: Literal["interview", "appointment", "lead", "session", "payment", "tutor", "onboarding"] | None = None
    group: str | None = None
    """a session's course or a lead's campaign"""
    recipient: str | None = None
    """the journey's recipient (a session's tutor)"""
    stage: str | None = None
    reason: str | None = None
    request_id: str | None = None
    """send the same id again to retry safely: each journey applies it once"""
    event: dict[str, Any]
    """an event of the `journey` kind, e.g. {"kind": "replied"}"""


class BulkView(Model):
    query: str
    request_id: str
    matched: int
    changed: int
    unchanged: int
    problems: list[str]


class CampaignRecipient(Model):
    under_13: bool = False
    parent_email: str | None = None
    """the parent's address: required when under_13 is true"""
    parent_name: str | None = None
    parent_copy: Literal["also", "instead"] = "also"
    """under 13: the parent gets a copy of every message (also) or each message instead"""
    email: str
    name: str
    time_zone: str | None = None
    fields: dict[str, str | int | float | bool | None] = as_written({})
    """their own template variables"""


class CampaignBody(Model):
    campaign_id: str
    name: str
    template: str
    category: str | None = None
    """default: the template's; given, it must be the template's"""
    priority: Literal["urgent", "high", "normal", "low"] = "normal"
    context: dict[str, Any] = as_written({})
    """template variables every recipient gets"""
    ab_test: AbPlanInput | None = None
    scheduled_at: datetime | None = None
    """kept for `schedule` (which may move it)"""
    recipients: list[CampaignRecipient] | None = None
    audience_filter: AudienceFilter | None = None


class Progress(Model):
    audience: int | None
    """frozen when sending starts; before: what the draft's audience holds now"""
    sent: int
    skipped: dict[str, int]
    """by reason: recipient suppressed, unsubscribed, …"""
    failed: int
    remaining: int | None
    per_minute: float
    """messages finished in the last minute"""
    eta: datetime | None
    """at the last minute's pace"""


class CampaignView(Model):
    campaign_id: str
    kind: Literal["broadcast", "nurture"]
    name: str
    status: Literal["draft", "scheduled", "sending", "paused", "completed", "cancelled"] | Literal["running", "ended"]
    template: str | None = None
    category: str | None = None
    priority: Literal["urgent", "high", "normal", "low"] | None = None
    scheduled_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    workflow_id: str | None = None
    ab_test: dict[str, Any] | None = None
    progress: Progress


class CampaignList(Model):
    campaigns: list[CampaignView]


class CampaignStatsView(Model):
    campaign: str
    started: int
    emailed_per_step: dict[str, int]
    converted: int
    replied: int
    unsubscribed: int
    conversion_rate: float


class CategoryBody(Model):
    description: str = ""
    critical: bool = False
    """sent whatever the recipient chose (never to a suppressed address)"""
    send_window: str | None = None
    """local hours it may go out, "HH:MM-HH:MM"; null: the recipient's or the service's"""
    daily_cap: int | None = None
    """at most this many per recipient and local day, across journeys; null: no cap"""
    cap_policy: Literal["defer", "drop"] = "defer"
    """what happens to a message over the cap"""


class CategoryView(Model):
    description: str = ""
    critical: bool = False
    """sent whatever the recipient chose (never to a suppressed address)"""
    send_window: str | None = None
    """local hours it may go out, "HH:MM-HH:MM"; null: the recipient's or the service's"""
    daily_cap: int | None = None
    """at most this many per recipient and local day, across journeys; null: no cap"""
    cap_policy: Literal["defer", "drop"] = "defer"
    """what happens to a message over the cap"""
    name: str


class SessionPolicyOverrides(Model):
    """Overrides of SessionPolicy for one start: any field, same bounds; unset = the default."""
    reminder_offsets: list[timedelta] | None = None
    reminder_grace: timedelta | None = None
    feedback_after: timedelta | None = None
    feedback_window: timedelta | None = None
    checkin_after: timedelta | None = None
    stay_open_for: timedelta | None = None
    fan_out_chunk: int | None = None


class SessionTutor(Model):
    name: str
    email: str
    time_zone: str | None = None
    first_session: bool = False


class ClassSession(Model):
    """What `POST /v1/sessions` carries."""
    session_id: str
    title: str
    course: str | None = None
    starts_at: datetime
    ends_at: datetime
    join_url: str | None = None
    feedback_url: str | None = None
    tutor: SessionTutor
    manager_email: str | None = None
    attendees: list[Attendee] = []
    policy: SessionPolicyOverrides = as_written({})


class ConversionsBody(Model):
    emails: list[str]


class CreatedEndpoint(Model):
    id: str
    url: str
    description: str
    event_types: list[str]
    created_at: datetime
    workflow_id: str
    """its delivery workflow in the Temporal Web UI"""
    secret: str
    """the signing secret: keep it in the receiver's settings"""


class EventSpec(Model):
    """What an event does: exactly one of these."""
    exits: bool = False
    member_exits: bool = False
    sets: str | None = None


MessageCategory = Literal["transactional", "marketing"]


class StepOutput(Model):
    name: str
    at: str
    """anchor, anchor + offset or anchor - offset; offsets like 48h, 2d12h, 1w, 90m or ISO 8601 (PT48H)"""
    until: str | None = None
    """the window closes here: from then on the step is skipped"""
    grace: str | None = None
    """how late the step may still go (default: the journey's)"""
    template: str
    channels: list[Literal["email", "webhook", "in_app"]] = as_written(["email"])
    category: MessageCategory = as_written("transactional")
    """kept so older definitions still read; the category the step's template declares decides
    (templates/catalog.yaml, or the saved version's)
    """


class DefinitionOutput(Model):
    """The body of `PUT /v1/journey-definitions/{name}` (JSON or YAML)."""
    description: str = ""
    anchors: dict[str, Literal["start", "event"]]
    """each anchor is given at the start (`start`) or set later by an event (`event`)"""
    steps: list[StepOutput]
    events: dict[str, EventSpec] = as_written({})
    roster: bool = False
    """true: the journey goes to a roster of members, each of whom may exit"""
    ends: str | None = None
    """wait for events at least until then (needed with `event` anchors)"""
    grace: str = "P1D"
    """how late a step may still go out"""


class DeclaredPolicy(Model):
    """What a running journey keeps: its definition, the version it started with."""
    name: str
    version: int
    definition: DefinitionOutput
    hold_early_events_for: str = "P1D"


class Member(Model):
    member_id: str
    recipient: Recipient
    phone: str | None = None


class DeclaredStart(Model):
    """What `POST /v1/journeys/{name}` carries."""
    id: str
    recipient: Recipient | None = None
    """who gets the steps (a journey without a roster)"""
    phone: str | None = None
    """the recipient's E.164 number, for the webhook channel"""
    roster: list[Member] | None = None
    anchors: dict[str, datetime] = as_written({})
    context: dict[str, Any] = as_written({})
    """what the templates render, beside name, anchors and step"""
    group: str | None = None
    """e.g. the course: bulk actions and the Web UI select by it"""


DeclaredStatus = Literal["awaiting_start", "active", "completed", "exited", "cancelled", "abandoned"]


class DeclaredState(Model):
    id: str
    status: DeclaredStatus
    journey: str = ""
    version: int = 0
    anchors: dict[str, datetime] = as_written({})
    members: list[str] = []
    exited_members: dict[str, str] = as_written({})
    done: list[str] = []
    delivered: int = 0
    ended_by: str | None = None
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = []
    """what the backend's webhooks were told: journey.started's and each later stage, the journey's own
    facts, ended
    """
    events: list[EventOutcome] = []
    policy: DeclaredPolicy


class DeclaredView(Model):
    id: str
    journey: str
    workflow_id: str
    created: bool | None = None
    """a start: true when this call started the journey"""
    accepted: bool = False
    """no worker answered in time: recorded, applied once later"""
    event: EventOutcome | None = None
    created_by_event: str | None = None
    state: DeclaredState | None = None
    """null when no worker answered in time"""
    messages: list[MessageView] = []


class StepInput(Model):
    name: str
    at: str
    """anchor, anchor + offset or anchor - offset; offsets like 48h, 2d12h, 1w, 90m or ISO 8601 (PT48H)"""
    until: str | None = None
    """the window closes here: from then on the step is skipped"""
    grace: timedelta | None = None
    """how late the step may still go (default: the journey's)"""
    template: str
    channels: list[Literal["email", "webhook", "in_app"]] = as_written(["email"])
    category: MessageCategory = as_written("transactional")
    """kept so older definitions still read; the category the step's template declares decides
    (templates/catalog.yaml, or the saved version's)
    """


class DefinitionInput(Model):
    """The body of `PUT /v1/journey-definitions/{name}` (JSON or YAML)."""
    description: str = ""
    anchors: dict[str, Literal["start", "event"]]
    """each anchor is given at the start (`start`) or set later by an event (`event`)"""
    steps: list[StepInput]
    events: dict[str, EventSpec] = as_written({})
    roster: bool = False
    """true: the journey goes to a roster of members, each of whom may exit"""
    ends: str | None = None
    """wait for events at least until then (needed with `event` anchors)"""
    grace: timedelta = as_written("P1D")
    """how late a step may still go out"""


class DefinitionView(Model):
    version: int
    digest: str
    source: str
    """builtin (shipped with Followups) or api"""
    created_at: datetime
    name: str
    created: bool | None = None
    """a save: true when it made a new version"""
    definition: DefinitionOutput


class VersionSummary(Model):
    version: int
    digest: str
    source: str
    """builtin (shipped with Followups) or api"""
    created_at: datetime


class DefinitionHistory(Model):
    name: str
    latest: DefinitionView
    versions: list[VersionSummary]


class DefinitionList(Model):
    definitions: list[DefinitionView]
    """the latest version of each definition"""


class DeliveryView(Model):
    id: int
    event_id: str
    """the webhook-id header: the same on every attempt"""
    type: str
    journey_key: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    next_attempt_at: datetime | None
    """when a pending one goes next"""
    last_status: int | None
    """the receiver's last HTTP status; null: no answer"""
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    occurred_at: datetime


class DeliveryPage(Model):
    deliveries: list[DeliveryView]
    next_after: int | None
    """pass as `after` for the next page; null: the last page"""


DigestKind = Literal["weekly", "monthly", "manager"]


class EndpointBody(Model):
    url: str
    """where events are POSTed (HTTPS in production)"""
    event_types: list[Literal["journey.started", "journey.stage_changed", "journey.ended", "message.sent", "message.skipped", "message.failed", "message.delivered", "message.bounced", "message.complained", "message.opened", "message.clicked", "recipient.unsubscribed", "payment.reminded", "lead.converted", "checkin.negative"]] = []
    """the types it wants; empty: every type"""
    description: str = ""
    secret: str | None = None
    """whsec_… (base64, ≥ 24 bytes); left out: one is made"""


class EndpointSecret(Model):
    secret: str


class EndpointView(Model):
    id: str
    url: str
    description: str
    event_types: list[str]
    created_at: datetime
    workflow_id: str
    """its delivery workflow in the Temporal Web UI"""


class ErasureView(Model):
    email_hash: str
    """sha256 of the lower-cased address: all that is kept, so it is never mailed again"""
    deleted: dict[str, int]
    """rows per table (erased_recipients: 1 when the hash is new)"""
    journeys_cancelled: int
    """running journeys that took the cancel event"""
    journeys_terminated: int
    """journeys still running after the cancel, ended by force"""
    executions_deleted: int
    """workflow executions whose deletion Temporal accepted (it completes within about a minute)"""
    problems: list[str]


class ErrorBody(Model):
    error: str
    detail: Any
    field: str | None = None


class EventBody(Model):
    """An event's fields; which ones it needs depends on what the definition says the event does."""
    event_id: str | None = None
    at: datetime | None = None
    """an event that sets an anchor: its new moment (default: now)"""
    member_id: str | None = None
    """an event that lets a member go: who"""


class EventTypeView(Model):
    type: str
    description: str


class JourneyData(Model):
    journey: str
    """the journey's kind: interview, appointment, payment, lead…"""
    entity_id: str
    workflow_id: str
    stage: str
    previous_stage: str | None = None
    """journey.stage_changed: the stage it left"""
    outcome: str | None = None
    """journey.ended: its last stage (completed, expired, cancelled…)"""


class Event_checkin_negative(Model):
    """a tutor answered the first-session check-in negatively: it is escalated"""
    type: Literal["checkin.negative"]
    timestamp: datetime
    data: JourneyData


class Event_journey_ended(Model):
    """a journey has nothing left to do: data.outcome is its last stage (completed, expired, cancelled,
    converted, paid, abandoned…)
    """
    type: Literal["journey.ended"]
    timestamp: datetime
    data: JourneyData


class Event_journey_stage_changed(Model):
    """a journey moved on: data.previous_stage → data.stage"""
    type: Literal["journey.stage_changed"]
    timestamp: datetime
    data: JourneyData


class Event_journey_started(Model):
    """a journey has its start: data.stage is the stage it begins in"""
    type: Literal["journey.started"]
    timestamp: datetime
    data: JourneyData


class Event_lead_converted(Model):
    """a lead converted: its nurture stops"""
    type: Literal["lead.converted"]
    timestamp: datetime
    data: JourneyData


class MessageActivityData(Model):
    key: str | None
    """the message, when the event names one (an unsubscribe may not)"""
    journey: str | None
    entity_id: str | None
    template: str | None
    recipient: str
    at: datetime
    reason: str | None
    bounce: Literal["hard", "soft"] | None
    """message.bounced: which kind"""
    provider: str | None
    """who reported it: ses, sendgrid, mailgun, postmark, smtp, tracking…"""
    detail: dict[str, Any] | None


class Event_message_bounced(Model):
    """the message bounced: data.bounce is hard or soft"""
    type: Literal["message.bounced"]
    timestamp: datetime
    data: MessageActivityData


class Event_message_clicked(Model):
    """a person clicked a link of the message (scanners are not told)"""
    type: Literal["message.clicked"]
    timestamp: datetime
    data: MessageActivityData


class Event_message_complained(Model):
    """the recipient marked the message as spam"""
    type: Literal["message.complained"]
    timestamp: datetime
    data: MessageActivityData


class Event_message_delivered(Model):
    """a provider reported the message delivered"""
    type: Literal["message.delivered"]
    timestamp: datetime
    data: MessageActivityData


class MessageData(Model):
    key: str
    """the message's idempotency key"""
    journey: str
    entity_id: str
    template: str
    recipient: str
    channel: str
    category: str | None
    variant: str | None
    status: Literal["sent", "skipped", "failed"]
    reason: str | None
    """why it was skipped or failed (or a note on a send)"""
    due_at: datetime | None
    sent_at: datetime | None


class Event_message_failed(Model):
    """a message can never be sent, for data.reason (refused, template problem…)"""
    type: Literal["message.failed"]
    timestamp: datetime
    data: MessageData


class Event_message_opened(Model):
    """a person opened the message (machine opens are not told)"""
    type: Literal["message.opened"]
    timestamp: datetime
    data: MessageActivityData


class Event_message_sent(Model):
    """the send step handed a message over (SMTP 250, webhook 2xx, in-app stored)"""
    type: Literal["message.sent"]
    timestamp: datetime
    data: MessageData


class Event_message_skipped(Model):
    """a message was not sent, for data.reason (a preference, quiet hours passed, too late…)"""
    type: Literal["message.skipped"]
    timestamp: datetime
    data: MessageData


class Event_payment_reminded(Model):
    """a payment's reminder went out (a message.sent of its journey)"""
    type: Literal["payment.reminded"]
    timestamp: datetime
    data: MessageData


class Event_recipient_unsubscribed(Model):
    """an address unsubscribed (one-click, a link, the preference page)"""
    type: Literal["recipient.unsubscribed"]
    timestamp: datetime
    data: MessageActivityData


class JourneyRecord(Model):
    workflow_id: str
    run_id: str
    workflow_type: str
    status: str
    journey: str | None
    entity_id: str | None
    start_time: datetime
    close_time: datetime | None


class ExportView(Model):
    email: str
    erased_at: datetime | None
    """when the address was erased; null if it never was"""
    tables: dict[str, list[dict[str, Any]]]
    """table → its rows about the address"""
    journeys: list[JourneyRecord]
    """workflow executions whose Recipient is the address"""


class ValidationError(Model):
    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class HTTPValidationError(Model):
    detail: list[ValidationError] | None = None


class ImportRecordView(Model):
    import_id: str
    campaign: str | None
    rows: int
    started: int
    already_imported: int
    rejected_count: int
    created_at: datetime


class RowProblemView(Model):
    line: int
    field: str
    reason: str


class ImportView(Model):
    import_id: str
    """GET /v1/leads/imports/{import_id}/problems pages every rejected row"""
    campaign: str | None
    rows: int
    """data rows read (blank lines not counted)"""
    started: int
    """new journeys started"""
    already_imported: int
    """rows whose lead already had a journey: nothing started"""
    rejected_count: int
    """bad rows, skipped"""
    rejected: list[RowProblemView]
    """the first 100 bad rows: line number, field and reason"""
    ignored_columns: list[str]


class InboundEventView(Model):
    email: str | None
    kind: str
    """bounced (hard), soft_bounced, failed (a 5.7.x policy block: the sender's problem, never suppresses),
    deferred (delayed, still retried), complained…
    """
    code: str | None = None
    """the RFC 3463 status, e.g. 5.1.1"""
    reason: str | None


class InboundView(Model):
    result: str
    """"recorded", or "ignored: auto-reply\""""
    events: list[InboundEventView] = []
    recorded: int = 0
    duplicates: int = 0
    """events already recorded (the same report posted again)"""
    suppressed: list[str] = []
    """addresses this report newly suppressed"""
    message_id: str | None = None
    """the Message-ID of our message the bounce returns"""


class InterviewCancelBody(Model):
    """Stop everything; nothing more is sent."""
    event_id: str | None = None
    reason: str | None = None


class InterviewCompleteBody(Model):
    """The interview took place (or is otherwise over)."""
    event_id: str | None = None
    reason: str | None = None


class InterviewConfirmBody(Model):
    """The candidate picked a time: follow-ups stop, a reminder is planned."""
    event_id: str | None = None
    scheduled_at: datetime


class InterviewPolicy(Model):
    """Seed 000's timings; every field but the hold can be overridden per start."""
    template_versions: Literal["pinned", "latest"] = "pinned"
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    followup_after: str = "P2D"
    followup_interval: str = "P1D"
    max_followups: int = 3
    reminder_before: str = "P1D"
    reminder_grace: str = "PT2H"
    expire_after: str = "P14D"
    hold_early_events_for: str = "P1D"


class InterviewPolicyOverrides(Model):
    """Overrides of InterviewPolicy for one start: any field, same bounds; unset = the default."""
    template_versions: Literal["pinned", "latest"] | None = None
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    followup_after: timedelta | None = None
    followup_interval: timedelta | None = None
    max_followups: int | None = None
    reminder_before: timedelta | None = None
    reminder_grace: timedelta | None = None
    expire_after: timedelta | None = None


class InterviewRescheduleBody(Model):
    """Move the interview: the journey re-plans in place."""
    event_id: str | None = None
    scheduled_at: datetime


InterviewStatus = Literal["awaiting_start", "pending", "scheduled", "completed", "cancelled", "expired", "abandoned"]


class InterviewState(Model):
    """Live state, returned by the `state` query and by `GET /v1/interviews/{id}`."""
    interview_id: str
    status: InterviewStatus
    candidate_email: str | None = None
    invited_at: datetime | None = None
    scheduled_at: datetime | None = None
    followups_sent: int = 0
    last_sent_at: datetime | None = None
    reminders_sent: list[str] = []
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = []
    """what the backend's webhooks were told: journey.started's and each later stage, the journey's own
    facts, ended
    """
    events: list[EventOutcome] = []
    policy: InterviewPolicy = as_written({
        "template_versions": "pinned",
        "followup_after": "P2D",
        "followup_interval": "P1D",
        "max_followups": 3,
        "reminder_before": "P1D",
        "reminder_grace": "PT2H",
        "expire_after": "P14D",
        "hold_early_events_for": "P1D",
    })


class InterviewView(Model):
    workflow_id: str
    created: bool | None = None
    """a start: true when this call started the journey"""
    accepted: bool = False
    """no worker answered in time: the input is durably recorded and will be applied once; state and event
    are then null
    """
    event: EventOutcome | None = None
    created_by_event: str | None = None
    """the id had no journey: this event created one, which waits for its start (policy
    `hold_early_events_for`) or has already ended (an early cancel)
    """
    messages: list[MessageView] = []
    interview_id: str
    state: InterviewState | None = None
    """null when no worker answered in time"""


class Invitation(Model):
    """What `POST /v1/interviews` carries: everything the journey needs to run."""
    interview_id: str
    candidate: Recipient
    invited_at: datetime | None = None
    slot_selection_url: str
    scheduled_at: datetime | None = None
    policy: InterviewPolicyOverrides = as_written({})


class LeadStepInput(Model):
    after: timedelta
    template: str


class LeadPolicyOverrides(Model):
    """Overrides of LeadPolicy for one start: any field, same bounds; unset = the default."""
    template_versions: Literal["pinned", "latest"] | None = None
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    steps: list[LeadStepInput] | None = None
    step_grace: timedelta | None = None


class Lead(Model):
    """What `POST /v1/leads` (or one CSV row) carries."""
    lead_id: str
    contact: Recipient
    campaign: str
    company: str | None = None
    offer_url: str | None = None
    started_at: datetime | None = None
    policy: LeadPolicyOverrides = as_written({})


class LeadCancelBody(Model):
    event_id: str | None = None


class LeadConvertedBody(Model):
    """The lead bought / signed: nothing more is sent."""
    event_id: str | None = None
    reference: str | None = None
    """e.g. the order or contract id"""


class LeadStepOutput(Model):
    after: str
    template: str


class LeadPolicy(Model):
    """Seed 003: day 0 first email, day 3 "still interested?", day 7 final offer."""
    template_versions: Literal["pinned", "latest"] = "pinned"
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    steps: list[LeadStepOutput] = as_written([
        {"after": "PT0S", "template": "lead_welcome"},
        {"after": "P3D", "template": "lead_still_interested"},
        {"after": "P7D", "template": "lead_final_offer"},
    ])
    step_grace: str = "P1D"
    hold_early_events_for: str = "P1D"


class LeadRepliedBody(Model):
    """The lead answered: a person takes over, nothing more is sent."""
    event_id: str | None = None


LeadStatus = Literal[
    "awaiting_start", "nurturing", "converted", "replied", "suppressed", "finished", "cancelled", "abandoned",
]


class LeadState(Model):
    lead_id: str
    status: LeadStatus
    campaign: str | None = None
    contact_email: str | None = None
    started_at: datetime | None = None
    steps_done: int = 0
    sent: list[str] = []
    conversion_reference: str | None = None
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = []
    """what the backend's webhooks were told: journey.started's and each later stage, the journey's own
    facts, ended
    """
    events: list[EventOutcome] = []
    policy: LeadPolicy = as_written({
        "template_versions": "pinned",
        "steps": [
            {"after": "PT0S", "template": "lead_welcome"},
            {"after": "P3D", "template": "lead_still_interested"},
            {"after": "P7D", "template": "lead_final_offer"},
        ],
        "step_grace": "P1D",
        "hold_early_events_for": "P1D",
    })


class LeadView(Model):
    workflow_id: str
    created: bool | None = None
    """a start: true when this call started the journey"""
    accepted: bool = False
    """no worker answered in time: the input is durably recorded and will be applied once; state and event
    are then null
    """
    event: EventOutcome | None = None
    created_by_event: str | None = None
    """the id had no journey: this event created one, which waits for its start (policy
    `hold_early_events_for`) or has already ended (an early cancel)
    """
    messages: list[MessageView] = []
    lead_id: str
    state: LeadState | None = None
    """null when no worker answered in time"""


class MarkedRead(Model):
    recipient: str
    marked: int
    """how many were unread and are read now"""


class MessageEventView(Model):
    kind: str
    at: datetime
    machine: bool
    """an open by an image proxy or Apple Mail Privacy Protection, a click by a link scanner: kept,
    reported apart, moves no lifecycle
    """
    reason: str | None
    provider: str | None


class MessageDetailView(Model):
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
    channel: str = "email"
    category: str
    """the category its template declares (preferences apply per category)"""
    template_version: int | None = None
    """the saved version it rendered; null: the file default"""
    variant: str | None = None
    """the A/B variant it got, if its version has variants"""
    lifecycle: str = "queued"
    """queued → sent → delivered → opened → clicked; soft_bounced, bounced, complained, failed. Only moves
    forward; human events only
    """
    events: list[MessageEventView]


class NextDigest(Model):
    period: str
    """the period's key: 2026-W50, 2027-01"""
    at: datetime
    """when it is due, in UTC (the dispatcher's slot may be up to 30 min later)"""


class NotificationView(Model):
    id: int
    recipient: str
    key: str
    """the message's idempotency key, as in GET /v1/messages"""
    journey: str
    entity_id: str
    template: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None
    read: bool


class NotificationPage(Model):
    recipient: str
    notifications: list[NotificationView]
    next_before: int | None
    """pass as `before` for the next (older) page; null on the last one"""


class OnboardingCancelBody(Model):
    """The approval is withdrawn: no further step is taken, an account already created is revoked,
    and the admin is told what was done and undone.
    """
    event_id: str | None = None
    reason: str | None = None


class OnboardingPolicy(Model):
    """Seed 003's "CTA approval": each step once, in order; a permanent failure of the account or of
    the credentials' delivery undoes what was done and tells the admin.
    """
    undo_window: str | None = None
    backend_give_up_after: str = "P1D"
    hold_early_events_for: str = "P1D"


class OnboardingProceedBody(Model):
    """Go on now: the rest of the policy's undo window is not waited for."""
    event_id: str | None = None


OnboardingStatus = Literal[
    "awaiting_start", "waiting", "onboarding", "undoing", "completed", "failed", "cancelled", "abandoned",
]


# The saga's steps in the order they are taken; REVOKE only when undoing.
SagaStep = Literal[
    "credentials", "account", "welcome_email", "whatsapp", "welcome_call", "crm", "lead", "revoke", "report",
]


class StepOutcome(Model):
    step: SagaStep
    outcome: Literal["done", "skipped", "failed", "undone"]
    detail: str = ""
    at: datetime


class OnboardingState(Model):
    onboarding_id: str
    status: OnboardingStatus
    student_email: str | None = None
    approved_at: datetime | None = None
    plan: list[SagaStep] = []
    secret_ref: str | None = None
    user_id: str | None = None
    account_unsure: bool = False
    outcomes: list[StepOutcome] = []
    failure: str | None = None
    cancel_reason: str | None = None
    proceed_now: bool = False
    welcome_call_id: str | None = None
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = []
    """what the backend's webhooks were told: journey.started's and each later stage, the journey's own
    facts, ended
    """
    events: list[EventOutcome] = []
    policy: OnboardingPolicy = as_written({"backend_give_up_after": "P1D", "hold_early_events_for": "P1D"})


class OnboardingView(Model):
    workflow_id: str
    created: bool | None = None
    """a start: true when this call started the journey"""
    accepted: bool = False
    """no worker answered in time: the input is durably recorded and will be applied once; state and event
    are then null
    """
    event: EventOutcome | None = None
    created_by_event: str | None = None
    """the id had no journey: this event created one, which waits for its start (policy
    `hold_early_events_for`) or has already ended (an early cancel)
    """
    messages: list[MessageView] = []
    onboarding_id: str
    state: OnboardingState | None = None
    """null when no worker answered in time"""


class OpenAlert(Model):
    """An alert rule's episode that was alerted and has not cleared: no second alert until it does."""
    crossed_at: datetime
    key: str
    checked_at: datetime


class Payer(Model):
    under_13: bool = False
    parent_email: str | None = None
    """the parent's address: required when under_13 is true"""
    parent_name: str | None = None
    parent_copy: Literal["also", "instead"] = "also"
    """under 13: the parent gets a copy of every message (also) or each message instead"""
    email: str
    name: str
    time_zone: str | None = None
    locale: str | None = None
    """how amounts read, e.g. de_DE or en-US (default en_US)"""
    phone: str | None = None


class PaymentPolicyOverrides(Model):
    """Overrides of PaymentPolicy for one start: any field, same bounds; unset = the default."""
    template_versions: Literal["pinned", "latest"] | None = None
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    reminder_after: list[timedelta] | None = None
    reminder_grace: timedelta | None = None
    close_after: timedelta | None = None


class Payment(Model):
    """What `POST /v1/payments` carries."""
    payment_id: str
    payer: Payer
    currency: str
    """ISO 4217, e.g. EUR"""
    amount: str
    """a decimal string, e.g. "49.90"; at most the currency's own decimals"""
    payment_url: str
    description: str | None = None
    channels: list[Literal["email", "webhook", "in_app"]] = as_written(["email"])
    started_at: datetime | None = None
    policy: PaymentPolicyOverrides = as_written({})


class PaymentCancelBody(Model):
    """The payment is no longer due: reminders stop, nothing is sent."""
    event_id: str | None = None
    reason: str | None = None


class PaymentPaidBody(Model):
    """The payment went through: reminders stop, the payer gets one confirmation."""
    event_id: str | None = None
    reference: str | None = None
    """e.g. the payment provider's transaction id"""
    paid_at: datetime | None = None
    """when it was paid (default: when the event arrived)"""


class PaymentPolicy(Model):
    """Seeds 001/003: a reminder once a payment is pending 3+ days; a confirmation when it is paid.
    Reminders due at or after `close_after` are not sent: the journey expires then.
    """
    template_versions: Literal["pinned", "latest"] = "pinned"
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    reminder_after: list[str] = as_written(["P3D"])
    reminder_grace: str = "P1D"
    close_after: str = "P30D"
    hold_early_events_for: str = "P1D"


PaymentStatus = Literal["awaiting_start", "pending", "paid", "cancelled", "expired", "abandoned"]


class PaymentState(Model):
    payment_id: str
    status: PaymentStatus
    payer_email: str | None = None
    amount: str | None = None
    currency: str | None = None
    started_at: datetime | None = None
    reminders_done: list[str] = []
    reminders_sent: list[str] = []
    paid_at: datetime | None = None
    paid_reference: str | None = None
    confirmation_pending: bool = False
    confirmation_sent: bool = False
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = []
    """what the backend's webhooks were told: journey.started's and each later stage, the journey's own
    facts, ended
    """
    events: list[EventOutcome] = []
    policy: PaymentPolicy = as_written({
        "template_versions": "pinned",
        "reminder_after": ["P3D"],
        "reminder_grace": "P1D",
        "close_after": "P30D",
        "hold_early_events_for": "P1D",
    })


class PaymentView(Model):
    workflow_id: str
    created: bool | None = None
    """a start: true when this call started the journey"""
    accepted: bool = False
    """no worker answered in time: the input is durably recorded and will be applied once; state and event
    are then null
    """
    event: EventOutcome | None = None
    created_by_event: str | None = None
    """the id had no journey: this event created one, which waits for its start (policy
    `hold_early_events_for`) or has already ended (an early cancel)
    """
    messages: list[MessageView] = []
    payment_id: str
    state: PaymentState | None = None
    """null when no worker answered in time"""


class PreferencesBody(Model):
    """Replaces everything stored for the address: a category or channel left out is subscribed."""
    unsubscribed_all: bool = False
    """nothing but critical categories"""
    send_window: str | None = None
    """the recipient's own hours, "HH:MM-HH:MM", over the category's"""
    time_zone: str | None = None
    """IANA, e.g. Europe/Paris: where the send window is read"""
    categories: dict[str, dict[str, bool]] | None = None
    """category → channel (email, in_app, webhook) → subscribed"""


class PreferencesView(Model):
    unsubscribed_all: bool = False
    """nothing but critical categories"""
    send_window: str | None = None
    """the recipient's own hours, "HH:MM-HH:MM", over the category's"""
    time_zone: str | None = None
    """IANA, e.g. Europe/Paris: where the send window is read"""
    categories: dict[str, dict[str, bool]] | None = None
    """category → channel (email, in_app, webhook) → subscribed"""
    email: str
    suppressed: str | None = None
    """read-only: why nothing at all is sent to the address"""


class PreviewBody(Model):
    version: int | None = None
    """default: the one in force (at `as_of`)"""
    variant: str | None = None
    """default: the recipient's, if one is given"""
    recipient: str | None = None
    """whose variant to show"""
    as_of: datetime | None = None
    """without `version`: the version in force then"""
    context: dict[str, Any] = as_written({})
    """over the template's sample and the send step's sample values"""


class PreviewView(Model):
    name: str
    version: int | None
    """null: the file default"""
    variant: str | None
    category: str
    subject: str
    text: str
    html: str


class ProblemsPage(Model):
    problems: list[RowProblemView]
    next_after: int | None
    """pass as `after` for the next page; null on the last"""


class ProgressBody(Model):
    """A digest recipient: who, where, which digests, and (optional) the progress to render."""
    email: str
    name: str
    time_zone: str
    """IANA zone: each digest goes out at its local time there"""
    digests: list[DigestKind] = as_written(["weekly"])
    """weekly (Monday 09:00), monthly (the 1st, 09:00), manager (Monday 09:00)"""
    progress: dict[str, Any] | None = None
    """a JSON object of at most 32768 bytes the templates render: `headline`, `summary`, `items` [{label,
    value}], `team` [{name, summary}] (manager digest), `url`; null: pulled from the progress callback
    at each send, or the digest is skipped
    """


class ProgressView(Model):
    recipient: str
    email: str
    name: str
    time_zone: str
    digests: list[DigestKind]
    progress: dict[str, Any] | None
    updated_at: datetime
    created: bool | None = None
    """a PUT: true when the recipient was new"""
    next: dict[str, NextDigest]
    """each digest's next period and due time"""


class PublicationView(Model):
    name: str
    version: int
    published_at: datetime
    published: bool | None = None
    """false: that version was already the one in force"""


class QueueReadiness(Model):
    task_queue: str
    type: Literal["workflow", "activity"]
    pollers: int


class Readiness(Model):
    status: Literal["ready"]
    queues: list[QueueReadiness]


class Reschedule(Model):
    at: datetime
    session_id: str


class ResendView(Model):
    original_key: str
    new_key: str
    workflow_id: str


class RosterPage(Model):
    session_id: str
    attendees: list[Attendee]
    next_after: str | None
    """pass as `after` for the next page; null on the last one"""


class ScheduleBody(Model):
    scheduled_at: datetime | None = None
    """default: the campaign's own, else now"""


class SentAlert(Model):
    rule: Literal["supportive", "manager"]
    key: str
    at: datetime
    count: int
    delivered: bool


class SessionAddAttendeeBody(Model):
    """Add (or update) attendees, one (`attendee`) or up to 1,000 (`attendees`): they get every
    reminder still to come, none already sent.
    """
    event_id: str | None = None
    attendee: Attendee | None = None
    attendees: list[Attendee] = []


class SessionCancelBody(Model):
    """Cancel the class: the roster is told once, nothing else is sent."""
    event_id: str | None = None
    reason: str | None = None
    notify: bool = True
    """tell every attendee on the roster (once)"""


class SessionCheckinAnswerBody(Model):
    """The tutor's answer to the first-session check-in; `ok: false` escalates to the manager."""
    event_id: str | None = None
    ok: bool
    """did the tutor's first session go well? false escalates to the manager"""
    comment: str | None = None


class SessionCompleteBody(Model):
    event_id: str | None = None
    reason: str | None = None


class SessionFeedbackBody(Model):
    """An attendee gave feedback: they get no feedback reminder."""
    event_id: str | None = None
    attendee_id: str
    comment: str | None = None


class SessionPolicy(Model):
    """Seeds 003 and 004: reminders 24 h and 15 min before; a feedback reminder 24–48 h after the
    end to whoever gave none; a tutor's first session gets a check-in 2 h after the end.
    """
    reminder_offsets: list[str] = as_written(["P1D", "PT15M"])
    reminder_grace: str = "PT10M"
    feedback_after: str = "P1D"
    feedback_window: str = "P1D"
    checkin_after: str = "PT2H"
    stay_open_for: str = "P7D"
    fan_out_chunk: int = 100
    hold_early_events_for: str = "P1D"


class SessionRecordingAvailableBody(Model):
    """The recording is online: the roster gets the watch link (once)."""
    event_id: str | None = None
    recording_url: str


class SessionRemoveAttendeeBody(Model):
    event_id: str | None = None


class SessionRescheduleBody(Model):
    """Move the class: every pending reminder is re-planned in place."""
    event_id: str | None = None
    starts_at: datetime
    ends_at: datetime


SessionStatus = Literal["awaiting_start", "scheduled", "ended", "completed", "cancelled", "abandoned"]


class SessionState(Model):
    session_id: str
    status: SessionStatus
    title: str | None = None
    course: str | None = None
    tutor_email: str | None = None
    first_session: bool = False
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    roster_store: Literal["state", "database"] | None = None
    roster_size: int = 0
    roster_pending: list[Attendee] = []
    messages_sent: int = 0
    roster: list[Attendee] = []
    removed_early: list[str] = []
    steps_done: list[str] = []
    sent: list[str] = []
    feedback_from: list[str] = []
    recording_url: str | None = None
    recording_pending: bool = False
    notice_pending: bool = False
    checkin_answer: bool | None = None
    checkin_comment: str | None = None
    escalation_pending: bool = False
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = []
    """what the backend's webhooks were told: journey.started's and each later stage, the journey's own
    facts, ended
    """
    events: list[EventOutcome] = []
    policy: SessionPolicy = as_written({
        "reminder_offsets": ["P1D", "PT15M"],
        "reminder_grace": "PT10M",
        "feedback_after": "P1D",
        "feedback_window": "P1D",
        "checkin_after": "PT2H",
        "stay_open_for": "P7D",
        "fan_out_chunk": 100,
        "hold_early_events_for": "P1D",
    })


class SessionView(Model):
    workflow_id: str
    created: bool | None = None
    """a start: true when this call started the journey"""
    accepted: bool = False
    """no worker answered in time: the input is durably recorded and will be applied once; state and event
    are then null
    """
    event: EventOutcome | None = None
    created_by_event: str | None = None
    """the id had no journey: this event created one, which waits for its start (policy
    `hold_early_events_for`) or has already ended (an early cancel)
    """
    messages: list[MessageView] = []
    session_id: str
    state: SessionState | None = None
    """null when no worker answered in time"""


class VersionView(Model):
    name: str
    version: int
    category: str
    subject: str
    text: str
    html: str
    variants: list[dict[str, Any]]
    sample: dict[str, Any]
    created_at: datetime
    created: bool | None = None
    """a save: false when it was the same as the latest version"""


class TemplateDetail(Model):
    name: str
    category: str
    description: str | None
    file_default: bool
    """templates/ has it: what renders while no version is published"""
    published_version: int | None
    published_at: datetime | None
    latest_version: int | None
    versions: list[VersionView]
    publications: list[PublicationView]
    """oldest first: the history of what was in force"""


class TemplateSummary(Model):
    name: str
    category: str
    description: str | None
    file_default: bool
    """templates/ has it: what renders while no version is published"""
    published_version: int | None
    published_at: datetime | None
    latest_version: int | None


class TemplateList(Model):
    templates: list[TemplateSummary]


class TutorCancelBody(Model):
    """Stop watching this tutor (what bulk cancel sends): the journey ends, nothing more is sent."""
    event_id: str | None = None
    reason: str | None = None


class TutorCloseBody(Model):
    """The tutor left: the journey ends, nothing more is sent."""
    event_id: str | None = None
    reason: str | None = None


class TutorPolicy(Model):
    """Seed 004: ≥ 3 reschedules in 7 days → one supportive email to the tutor; ≥ 6 in 14 days → the
    manager is told. Each alert once per episode: not again until the count in its window falls
    below its threshold (the window clears).
    """
    template_versions: Literal["pinned", "latest"] = "pinned"
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    supportive_threshold: int = 3
    supportive_window: str = "P7D"
    manager_threshold: int = 6
    manager_window: str = "P14D"
    hold_early_events_for: str = "P1D"


class TutorPolicyOverrides(Model):
    """Overrides of TutorPolicy for one start: any field, same bounds; unset = the default."""
    template_versions: Literal["pinned", "latest"] | None = None
    """pinned: the versions published when the journey started, so an edit never changes a sleeping
    journey; latest: whatever is published when each message goes
    """
    supportive_threshold: int | None = None
    supportive_window: timedelta | None = None
    manager_threshold: int | None = None
    manager_window: timedelta | None = None


class TutorRescheduledBody(Model):
    """One of the tutor's sessions was rescheduled: it counts in every window it falls in."""
    event_id: str | None = None
    session_id: str
    at: datetime | None = None
    """when it was rescheduled, counted to the second (default: the moment the journey takes the event in)"""


TutorStatus = Literal["awaiting_start", "watching", "closed", "cancelled", "abandoned"]


class TutorState(Model):
    tutor_id: str
    status: TutorStatus
    tutor_email: str | None = None
    manager_email: str | None = None
    reschedules: list[Reschedule] = []
    reschedules_total: int = 0
    counts: dict[str, int] = as_written({})
    counted_at: datetime | None = None
    supportive: OpenAlert | None = None
    manager: OpenAlert | None = None
    alerts: list[SentAlert] = []
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = []
    """what the backend's webhooks were told: journey.started's and each later stage, the journey's own
    facts, ended
    """
    events: list[EventOutcome] = []
    policy: TutorPolicy = as_written({
        "template_versions": "pinned",
        "supportive_threshold": 3,
        "supportive_window": "P7D",
        "manager_threshold": 6,
        "manager_window": "P14D",
        "hold_early_events_for": "P1D",
    })


class TutorView(Model):
    workflow_id: str
    created: bool | None = None
    """a start: true when this call started the journey"""
    accepted: bool = False
    """no worker answered in time: the input is durably recorded and will be applied once; state and event
    are then null
    """
    event: EventOutcome | None = None
    created_by_event: str | None = None
    """the id had no journey: this event created one, which waits for its start (policy
    `hold_early_events_for`) or has already ended (an early cancel)
    """
    messages: list[MessageView] = []
    tutor_id: str
    state: TutorState | None = None
    """null when no worker answered in time"""


class UnreadCount(Model):
    recipient: str
    unread: int


class VariantBody(Model):
    name: str
    weight: int
    """its share: weight / the sum of the weights"""
    subject: str | None = None
    html: str | None = None
    text: str | None = None


class VersionBody(Model):
    """A version's parts, Jinja2 in a sandbox: `subject` (one line), `text` and `html` (autoescaped),
    which may `{% extends "base.txt" %}` / `"base.html"` and fill `{% block body %}`.
    """
    subject: str
    text: str
    html: str
    category: str | None = None
    """default: the file template's, or the last version's; required for a new name"""
    variants: list[VariantBody] = []
    """A/B arms; a part left out is the version's"""
    sample: dict[str, Any] | None = None
    """values to check it with, over the catalog's sample. For a file template's name it may only give
    values to the variables its journeys send; for a new name its keys are the variables the template
    may use, which its journeys must then send
    """


class WebhookView(Model):
    result: str
    """"recorded", "subscription confirmed" (SNS)…"""
    received: int = 0
    """events in the request that concern an address"""
    recorded: int = 0
    duplicates: int = 0
    """events already recorded (the provider delivered them before)"""
    suppressed: int = 0
    """addresses newly suppressed"""


class Tutor(Model):
    """What `POST /v1/tutors` carries."""
    tutor_id: str
    tutor: Recipient
    manager_email: str
    manager_name: str | None = None
    support_url: str | None = None
    """where the supportive email offers scheduling help"""
    policy: TutorPolicyOverrides = as_written({})
