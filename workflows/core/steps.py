"""Steps, skips and event outcomes: the vocabulary every journey's state is written in."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, NoReturn

from workflows.core.fields import Strict
from workflows.core.timing import when


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
    CONFIRMATION = "confirmation"  # a payment's receipt
    ROSTER = "roster"  # store a session's roster (from its start) in the roster table


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


# How an event ended: applied (state changed), no_change (asked for what already is), duplicate
# (this event_id, or what ended the journey, was applied before), invalid (refused by the rules:
# 422), ended (the journey is over: 409), conflict (this event_id was applied to another event: 409).
OutcomeCode = Literal["applied", "no_change", "duplicate", "invalid", "ended", "conflict"]
REFUSED: frozenset[str] = frozenset({"invalid", "ended", "conflict"})


class EventOutcome(Strict):
    event: str
    applied: bool
    reason: str | None = None
    code: OutcomeCode | None = None  # None only in states recorded before codes existed
    field: str | None = None  # for a refusal: the input field it is about
    fingerprint: str | None = None  # `kind:digest` of the event an event_id was applied to (see events.fingerprint)


def waiting_for_start(awaiting_since: datetime, hold: timedelta, what: str) -> PlannedStep:
    """The step of a journey an early event created: it gives up (ABANDON) if its start has not come
    within `hold` (the policy's `hold_early_events_for`)."""
    give_up = awaiting_since + hold
    return PlannedStep(kind=StepKind.ABANDON, at=give_up, label=f"waiting for the {what} until {when(give_up)}")


def too_late(not_after: datetime | None, now: datetime) -> bool:
    """A step's `not_after` is exclusive: from that moment on (the interview itself, the expiry) it
    is skipped, never sent late."""
    return not_after is not None and now >= not_after


class UnknownStep(AssertionError):
    """A journey was asked to take a step it does not have: a bug, never a guess."""


def unreachable(value: object) -> NoReturn:
    raise UnknownStep(f"no handler for {value!r}")
