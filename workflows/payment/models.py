"""The payment journey's contract: the payment and its payer, events, policy and live state.

Money travels as a decimal string with an ISO 4217 code, never as a float, and is checked with
Babel's currency data (a currency's own number of decimals); templates format it with Babel too.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_precision, list_currencies
from pydantic import (
    AfterValidator, BaseModel, Field, StringConstraints, ValidationInfo, field_validator,
)
from temporalio import workflow

from workflows.contracts import Channel, ParentCopy, Phone, Recipient
from workflows.core.send import TemplatePinning
from workflows.core.events import JourneyEvent, event_maker
from workflows.core.fields import (
    EmailAddress, EntityId, Moment, PersonName, PositiveDuration, ShortText, Strict, TimeZone, WebUrl, overrides_of,
)
from workflows.core.steps import EventOutcome, PlannedStep, Skip

# --- field types ------------------------------------------------------------------------------

def at_the_edge() -> bool:
    """Babel's data is consulted where an input comes in (the API, the CLI, an import), never when
    a workflow decodes it: that input was checked when it came in, a newer Babel's CLDR must never
    make a recorded history fail to decode, and the sandbox refuses Babel's first read of its data
    files (a signal that fails to decode is dropped). A workflow decodes its payloads on the
    sandbox's thread before its runtime is current: `in_sandbox` is what tells."""
    return not (workflow.unsafe.in_sandbox() or workflow.in_workflow())


MAX_AMOUNT = Decimal(10) ** 12  # far above any real invoice in any currency: a guard against garbage
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def _amount(value: str) -> str:
    # A plain pattern, not Decimal(value): Decimal also reads "1e3", "NaN", "-0", " 5 " and "Infinity".
    if not _PLAIN_DECIMAL.fullmatch(value):
        raise ValueError('amount must be a plain decimal string like "12.50": digits and one point, '
                         "no sign, exponent, spaces or NaN")
    amount = Decimal(value)
    if amount <= 0:
        raise ValueError("amount must be greater than zero")
    if amount >= MAX_AMOUNT:
        raise ValueError(f"amount must be less than {MAX_AMOUNT:,}")
    return value


def decimals(amount: str) -> int:
    """How many decimal places `amount` is written with (`"12.50"` → 2)."""
    return len(amount.partition(".")[2])


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError("currency must be an ISO 4217 code in capitals, like EUR")
    if at_the_edge() and value not in list_currencies():
        raise ValueError(f"unknown currency {value!r} (not an ISO 4217 code Babel knows)")
    return value


def _locale(value: str) -> str:
    """`de_DE`, `en-US`, `de_DE.UTF-8` → Babel's canonical form (`de_DE`, `en_US`)."""
    if not at_the_edge():
        return value  # canonical already: it was normalised when it came in
    try:
        return str(Locale.parse(value.replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError) as err:
        raise ValueError(f"unknown locale {value!r}: expected a language and region like de_DE or en-US") from err


def _distinct_ascending(value: list[timedelta]) -> list[timedelta]:
    if len(set(value)) != len(value):
        raise ValueError("reminder offsets must be distinct")
    return sorted(value)  # the earliest reminder first


def _distinct_channels(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("each channel once")
    return value


Amount = Annotated[str, StringConstraints(max_length=40), AfterValidator(_amount)]
Currency = Annotated[str, AfterValidator(_currency)]
LocaleName = Annotated[str, StringConstraints(max_length=50), AfterValidator(_locale)]
ReminderAfter = Annotated[list[PositiveDuration], Field(min_length=1, max_length=10),
                          AfterValidator(_distinct_ascending)]
Channels = Annotated[list[Channel], Field(min_length=1), AfterValidator(_distinct_channels)]


# --- policy and start -------------------------------------------------------------------------


class PaymentPolicy(TemplatePinning):
    """Seeds 001/003: a reminder once a payment is pending 3+ days; a confirmation when it is paid.
    Reminders due at or after `close_after` are not sent: the journey expires then."""

    reminder_after: ReminderAfter = [timedelta(days=3)]  # from started_at
    reminder_grace: PositiveDuration = timedelta(days=1)  # a reminder later than this is skipped, never sent late
    close_after: PositiveDuration = timedelta(days=30)  # from started_at: still unpaid → expired
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


PaymentPolicyOverrides = overrides_of(PaymentPolicy)


class Payer(ParentCopy):
    email: EmailAddress
    name: PersonName  # no control characters: the name goes into the To: header
    time_zone: TimeZone = None
    locale: LocaleName | None = Field(None, description="how amounts read, e.g. de_DE or en-US (default en_US)")
    phone: Phone | None = None  # E.164, for the webhook channel (SMS/WhatsApp providers)

    def recipient(self) -> Recipient:
        return Recipient(email=self.email, name=self.name, time_zone=self.time_zone, **self.parent_fields())


class Payment(Strict):
    """What `POST /v1/payments` carries."""

    payment_id: EntityId
    payer: Payer
    currency: Currency = Field(description="ISO 4217, e.g. EUR")  # before `amount`: its check reads it
    amount: Amount = Field(description='a decimal string, e.g. "49.90"; at most the currency\'s own decimals')
    payment_url: WebUrl
    description: ShortText | None = None
    channels: Channels = ["email"]
    started_at: Moment | None = None  # when it became pending; default: when the API received it
    policy: PaymentPolicyOverrides = PaymentPolicyOverrides()  # type: ignore[valid-type]

    @field_validator("amount")
    @classmethod
    def _fits_the_currency(cls, value: str, info: ValidationInfo) -> str:
        currency = info.data.get("currency")
        if currency is None or not at_the_edge():  # refused already; checked when it came in
            return value
        places = get_currency_precision(currency)
        if decimals(value) > places:
            raise ValueError(f"{currency} amounts have "
                             + (f"at most {places} decimal places" if places else "no decimal places"))
        return value

    @field_validator("channels")
    @classmethod
    def _webhook_needs_a_phone(cls, value: list[str], info: ValidationInfo) -> list[str]:
        payer = info.data.get("payer")
        if "webhook" in value and payer is not None and payer.phone is None:
            raise ValueError("the webhook channel needs payer.phone (E.164, like +4915112345678)")
        return value


class PaymentStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    PENDING = "pending"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # still unpaid after close_after
    ABANDONED = "abandoned"


PAYMENT_CLOSED = frozenset({PaymentStatus.PAID, PaymentStatus.CANCELLED, PaymentStatus.EXPIRED,
                            PaymentStatus.ABANDONED})


# --- events -----------------------------------------------------------------------------------


class Paid(JourneyEvent):
    """The payment went through: reminders stop, the payer gets one confirmation."""

    kind: Literal["paid"] = "paid"
    reference: ShortText | None = Field(None, description="e.g. the payment provider's transaction id")
    paid_at: Moment | None = Field(None, description="when it was paid (default: when the event arrived)")


class Cancel(JourneyEvent):
    """The payment is no longer due: reminders stop, nothing is sent."""

    kind: Literal["cancel"] = "cancel"
    reason: ShortText | None = None


PaymentEvent = Annotated[Paid | Cancel, Field(discriminator="kind")]
payment_event = event_maker(PaymentEvent)


# --- state and workflow input -----------------------------------------------------------------


class PaymentState(BaseModel):
    payment_id: str
    status: PaymentStatus
    payer_email: str | None = None
    amount: str | None = None
    currency: str | None = None
    started_at: datetime | None = None
    reminders_done: list[str] = []  # reminder steps taken (sent, skipped or refused): never planned again
    reminders_sent: list[str] = []  # idempotency keys delivered, one per reminder and channel
    paid_at: datetime | None = None  # set by `paid`; before the start it holds the payment until it comes
    paid_reference: str | None = None
    confirmation_pending: bool = False
    confirmation_sent: bool = False
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = Field([], description="what the backend's webhooks were told: journey.started's and each later stage, the journey's own facts, ended")
    events: list[EventOutcome] = []
    policy: PaymentPolicy = PaymentPolicy()


class PaymentInput(Strict):
    payment_id: EntityId
    payment: Payment | None = None
    policy: PaymentPolicy = PaymentPolicy()
    state: PaymentState | None = None
    awaiting_since: datetime | None = None
