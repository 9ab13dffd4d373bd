"""What a workflow and the send step agree on: the request, the result, the failure types and
the activity names. No I/O imports: workflows import this module, never `activities`."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import StringConstraints

from workflows.core.fields import EmailAddress, PersonName, Strict, TimeZone

# Activity type names: the workflow schedules them by name, the worker registers the implementations.
SEND_MESSAGE = "send_message"
RECORDED_REQUEST = "recorded_request"
RECORD_LEAD_END = "record_lead_end"
CHANGE_ROSTER = "change_roster"
FAN_OUT = "fan_out_to_roster"

Channel = Literal["email", "webhook"]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]  # E.164


class DeliveryFailure:
    """Error types of failures no retry can fix: the journey records them and goes on."""

    REFUSED = "DeliveryRefused"
    TEMPLATE = "TemplateProblem"
    ADDRESS = "AddressUndeliverable"  # needs SMTPUTF8, which the SMTP server does not offer
    UNBUILDABLE = "MessageUnbuildable"  # the message cannot be encoded (a header that cannot hold a value)
    UNSTORABLE = "MessageUnstorable"  # PostgreSQL cannot hold a value of the request (a NUL byte)
    ALL = frozenset({REFUSED, TEMPLATE, ADDRESS, UNBUILDABLE, UNSTORABLE})


class Recipient(Strict):
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
    category: MessageCategory = MessageCategory.TRANSACTIONAL
    due_at: datetime
    not_after: datetime | None = None
    channel: Channel = "email"
    phone: str | None = None  # webhook: the recipient's E.164 number, for SMS/WhatsApp providers


class SendStatus(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    DRY_RUN = "dry_run"

    @property
    def delivered(self) -> bool:
        return self in (SendStatus.SENT, SendStatus.DRY_RUN)


class SendResult(Strict):
    key: str
    status: SendStatus
    reason: str | None = None
    message_id: str | None = None
    already_done: bool = False  # a previous attempt or run had already finished this key
