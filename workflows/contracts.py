"""What a workflow and the send step agree on: the request, the result, the failure types and
the activity names. No I/O imports: workflows import this module, never `activities`."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from workflows.core.fields import EmailAddress, Flag, PersonName, Strict, TimeZone

# Activity type names: the workflow schedules them by name, the worker registers the implementations.
SEND_MESSAGE = "send_message"
RECORDED_REQUEST = "recorded_request"
RECORD_LEAD_END = "record_lead_end"
CHANGE_ROSTER = "change_roster"
FAN_OUT = "fan_out_to_roster"
ANNOUNCE_JOURNEY = "announce_journey"  # a local activity: the journey's events for the backend's webhooks

# in_app: stored in PostgreSQL as a notification for the recipient (GET /v1/notifications)
Channel = Literal["email", "webhook", "in_app"]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]  # E.164


class DeliveryFailure:
    """Error types of failures no retry can fix: the journey records them and goes on."""

    REFUSED = "DeliveryRefused"
    TEMPLATE = "TemplateProblem"
    ADDRESS = "AddressUndeliverable"  # needs SMTPUTF8, which the SMTP server does not offer
    UNBUILDABLE = "MessageUnbuildable"  # the message cannot be encoded (a header that cannot hold a value)
    UNSTORABLE = "MessageUnstorable"  # PostgreSQL cannot hold a value of the request (a NUL byte)
    ALL = frozenset({REFUSED, TEMPLATE, ADDRESS, UNBUILDABLE, UNSTORABLE})


class ParentCopy(Strict):
    """Seed 004 (COPPA): a recipient under 13 whose messages go to a parent as well, or instead. The
    send step makes each copy a message of its own (`{key}/parent`, its own outbox row), so every
    journey whose recipient carries these fields gets them. Defaults keep recorded inputs decoding.
    The base of every model that names who a message is for (Recipient, a payer, an attendee)."""

    under_13: Flag = False
    parent_email: EmailAddress | None = Field(None, description="the parent's address: required when under_13 is true")
    parent_name: PersonName | None = None
    parent_copy: Literal["also", "instead"] = Field(
        "also", description="under 13: the parent gets a copy of every message (also) or each message instead")

    @model_validator(mode="after")
    def _a_parent_for_a_child(self) -> ParentCopy:
        problem = None
        if self.under_13 and self.parent_email is None:
            problem = "a recipient under 13 needs parent_email: their messages go to the parent"
        own = getattr(self, "email", None)
        if self.parent_email is not None and own is not None and self.parent_email.lower() == str(own).lower():
            problem = "parent_email must be another address than the recipient's own"
        if problem is not None:
            raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
                type=PydanticCustomError("value_error", problem), loc=("parent_email",), input=self.parent_email)])
        return self

    def parent_fields(self) -> dict[str, Any]:
        return {"under_13": self.under_13, "parent_email": self.parent_email, "parent_name": self.parent_name,
                "parent_copy": self.parent_copy}


class Recipient(ParentCopy):
    email: EmailAddress
    name: PersonName  # no control characters: the name goes into the To: header
    time_zone: TimeZone = None


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
    # The journey's own idea of the message; the category its template declares decides (the
    # outbox keeps that one): transactional, reminders, progress, feedback, marketing, or one of
    # the categories defined with PUT /v1/categories/{name}.
    category: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = MessageCategory.TRANSACTIONAL
    due_at: datetime
    not_after: datetime | None = None
    channel: Channel = "email"
    phone: str | None = None  # webhook: the recipient's E.164 number, for SMS/WhatsApp providers
    # The id of a one-time secret in PostgreSQL (onboarding's temporary password): an email's render
    # context gets it at send time, never `context`, history or the outbox; deleted once sent.
    secret_ref: str | None = None
    # Which saved version of the template (activities.template_store): the one published at this
    # moment, the journey's start, so an edit never changes a sleeping journey behind its back;
    # None = the latest published. Set by the send step's workflow side (workflows.core.send).
    templates_as_of: datetime | None = None
    # A batch (a roster chunk, an announcement, a digest) cannot wait for one recipient's quiet
    # hours or frequency cap: its messages go or are skipped, never DEFERRED.
    deferrable: bool = True
    # When the journey asked (its clock): the send step judges quiet hours and caps at the later of
    # this and its own clock, so a worker whose clock lags never answers DEFERRED for a time that
    # has passed for the journey.
    asked_at: datetime | None = None
    # The journey no longer wants this message (an event came while it waited for quiet hours to
    # end): the send step records it as skipped with this reason, and its parent's copy too.
    skip_reason: str | None = None
    # The A/B variant this message gets (a campaign's test arm, or its winner); None: the template
    # version's own pick by weight for this recipient.
    variant: str | None = None


class SendStatus(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    # Not now: the recipient's quiet hours or a frequency cap. The journey waits durably until
    # `SendResult.retry_at`, then asks again (workflows.core.send).
    DEFERRED = "deferred"

    @property
    def delivered(self) -> bool:
        return self in (SendStatus.SENT, SendStatus.DRY_RUN)


class SendResult(Strict):
    key: str
    status: SendStatus
    reason: str | None = None
    message_id: str | None = None
    already_done: bool = False  # a previous attempt or run had already finished this key
    retry_at: datetime | None = None  # DEFERRED: when to ask again


class Announcement(Strict):
    """One event a journey tells the backend's webhook endpoints (README: Event webhooks). `fact`
    names it for good (the same fact twice is one event), `data` is its payload's `data`."""

    fact: str
    type: str
    journey_key: str
    data: dict[str, Any]
