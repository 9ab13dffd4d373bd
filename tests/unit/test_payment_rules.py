"""Seeds 001/003's payment journey without Temporal: the models at the edge, the money filter, example
tests for the defaults, and property tests over random start times, policies and event timelines,
driven by a small pure simulator that plays the part of `PaymentJourney.run/_take` (the same idea
as `test_journey_rules.py`, kept self-contained here):

    workflow                                simulator
    --------------------------------------  ------------------------------------------------------
    `__init__` with a start input           `receive(start)` before the loop
    `begin` signal                          a timed delivery; only the first one starts the journey
    `event` signal                          a timed delivery: `rules.apply_event`
    `core.loop.run_plan`: plan, then        `run`: plan; wake at max(step.at, now) unless an event
    `wait_for_step_or_change`, then         comes first (a tie goes to the event) — then deliver it
    `_take`                                 and plan again; else take the step
    `_take`                                 `take`, branch for branch
    `_send`: one `core.send.send` per       `send`: one message per channel, in flight together;
    channel, together (`asyncio.gather`)    each outcome is the next of the journey's cycle; the
                                            sends take `send_time` on the workflow clock and a
                                            signal that arrives meanwhile is handled before the
                                            workflow sees the results; a skip or a permanent
                                            refusal calls `on_skip` → `record_skip`

Every delivery, step and send gets a sequence number, so "after" means "later in the journey's own
order". The properties judge the trace against facts read off the timeline (the first applied
`paid` or `cancel`, whether the start ever arrived), not against the state the rules keep.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from activities.render import Renderer, TemplateProblem, money
from workflows.contracts import SendStatus
from workflows.core.fields import with_overrides
from workflows.core.steps import REFUSED as REFUSED_CODES
from workflows.core.steps import EventOutcome, PlannedStep, StepKind, too_late, unreachable
from workflows.payment import rules
from workflows.payment.models import (
    PAYMENT_CLOSED,
    Payer,
    Payment,
    PaymentPolicy,
    PaymentPolicyOverrides,
    PaymentState,
    PaymentStatus,
    payment_event,
)

UTC = timezone.utc
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
STEP = timedelta(hours=2)  # the grain of random durations: coarse enough to hit the boundaries
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LOOP_LIMIT = 200  # far above any journey here: ≤ 10 reminders, ≤ 16 events, a confirmation, the end
PAYMENT = "42"

PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# --- the models at the edge -------------------------------------------------------------------

PAYER = {"email": "pat@example.com", "name": "Pat"}


def payment(**fields) -> Payment:
    values = dict(payment_id=PAYMENT, payer=PAYER, amount="49.90", currency="EUR",
                  payment_url="https://pay.example.com/42", started_at=T0)
    values.update(fields)
    return Payment.model_validate(values)


def refusal(**fields) -> tuple[tuple, str]:
    with pytest.raises(ValidationError) as caught:
        payment(**fields)
    [error] = caught.value.errors()
    return error["loc"], error["msg"]


def test_seed_defaults():
    policy = PaymentPolicy()
    assert policy.reminder_after == [3 * D] and policy.reminder_grace == D
    assert policy.close_after == 30 * D and policy.hold_early_events_for == 24 * H
    assert set(PaymentPolicyOverrides.model_fields) == {"reminder_after", "reminder_grace", "close_after",
                                                        "template_versions"}
    p = payment()
    assert p.channels == ["email"] and p.payer.locale is None and p.policy == PaymentPolicyOverrides()


@pytest.mark.parametrize("amount, currency", [("49.90", "EUR"), ("49.9", "EUR"), ("1", "EUR"), ("1500", "JPY"),
                                              ("0.01", "USD"), ("12.345", "KWD"), ("999999999999.99", "EUR")])
def test_amounts_that_are_accepted(amount, currency):
    assert payment(amount=amount, currency=currency).amount == amount


@pytest.mark.parametrize("amount, why", [
    ("0", "greater than zero"), ("0.00", "greater than zero"),
    ("-1", "plain decimal string"), ("+1", "plain decimal string"), ("1e3", "plain decimal string"),
    ("NaN", "plain decimal string"), ("Infinity", "plain decimal string"), (" 5", "plain decimal string"),
    ("1,50", "plain decimal string"), ("1.", "plain decimal string"), (".5", "plain decimal string"),
    ("", "plain decimal string"), ("1000000000000", "less than 1,000,000,000,000"),
])
def test_amounts_that_are_refused(amount, why):
    loc, message = refusal(amount=amount)
    assert loc == ("amount",) and why in message


def test_a_float_amount_is_refused_money_travels_as_a_string():
    loc, message = refusal(amount=49.9)
    assert loc == ("amount",) and "string" in message


@pytest.mark.parametrize("amount, currency, why", [("100.5", "JPY", "JPY amounts have no decimal places"),
                                                   ("100.00", "JPY", "JPY amounts have no decimal places"),
                                                   ("1.234", "EUR", "EUR amounts have at most 2 decimal places"),
                                                   ("1.2345", "KWD", "KWD amounts have at most 3 decimal places")])
def test_no_more_decimals_than_the_currency_has(amount, currency, why):
    loc, message = refusal(amount=amount, currency=currency)
    assert loc == ("amount",) and why in message


@pytest.mark.parametrize("currency, why", [("XYZ", "unknown currency 'XYZ'"), ("eur", "in capitals"),
                                           ("EURO", "in capitals"), ("", "in capitals")])
def test_unknown_currencies_are_refused(currency, why):
    loc, message = refusal(currency=currency)
    assert loc == ("currency",) and why in message


@pytest.mark.parametrize("given_locale, normalised", [("de_DE", "de_DE"), ("en-US", "en_US"), ("en", "en"),
                                                      ("de-CH", "de_CH"), ("de_DE.UTF-8", "de_DE"),
                                                      ("zh-Hant-TW", "zh_Hant_TW")])
def test_locales_are_normalised(given_locale, normalised):
    assert Payer(**PAYER, locale=given_locale).locale == normalised


@pytest.mark.parametrize("bad", ["zz_ZZ", "xx", "not a locale", "", "de_DE_" + "x" * 60])
def test_unknown_locales_are_refused_with_a_clear_message(bad):
    loc, message = refusal(payer={**PAYER, "locale": bad})
    assert loc == ("payer", "locale")
    assert "unknown locale" in message or "at most 50 characters" in message


def test_the_webhook_channel_needs_the_payers_phone():
    loc, message = refusal(channels=["email", "webhook"])
    assert loc == ("channels",) and "needs payer.phone" in message
    both = payment(channels=["email", "webhook"], payer={**PAYER, "phone": "+4915112345678"})
    assert both.channels == ["email", "webhook"]


@pytest.mark.parametrize("channels, why", [([], "at least 1 item"), (["email", "email"], "each channel once"),
                                           (["sms"], "'email', 'webhook' or 'in_app'")])
def test_channels_are_distinct_and_known(channels, why):
    loc, message = refusal(channels=channels)
    assert loc[0] == "channels" and why in message


def test_reminder_offsets_are_distinct_sorted_and_at_most_ten():
    assert payment(policy={"reminder_after": ["P7D", "P1D", "P3D"]}).policy.reminder_after == [D, 3 * D, 7 * D]
    assert PaymentPolicy(reminder_after=[7 * D, D, 3 * D]).reminder_after == [D, 3 * D, 7 * D]
    for bad in (["P1D", "P1D"], [], [f"P{n}D" for n in range(1, 12)], ["PT0S"]):
        loc, _ = refusal(policy={"reminder_after": bad})
        assert loc[:2] == ("policy", "reminder_after")


def test_the_hold_is_a_setting_of_the_service_not_of_one_start():
    loc, message = refusal(policy={"hold_early_events_for": "PT1H"})
    assert loc == ("policy", "hold_early_events_for") and "Extra inputs" in message


# --- the money filter -------------------------------------------------------------------------


@pytest.mark.parametrize("amount, currency, locale, shown", [
    ("1234.5", "EUR", "de_DE", "1.234,50\xa0€"),  # Babel's non-breaking space: the number never wraps
    ("1234.5", "EUR", None, "€1,234.50"),
    ("1234.5", "USD", "en_US", "$1,234.50"),
    ("1500", "JPY", "ja_JP", "￥1,500"),
    ("12.345", "KWD", "en_US", "KWD12.345"),  # three decimals: the currency's own
    (Decimal("9.9"), "CHF", "de_CH", "CHF\xa09.90"),
])
def test_money_formats_with_babel_in_the_payers_locale(amount, currency, locale, shown):
    assert money(amount, currency, locale) == shown


@pytest.mark.parametrize("amount, currency, locale", [("NaN", "EUR", None), ("ten", "EUR", None),
                                                      ("1", "EUR", "zz_ZZ")])
def test_money_that_cannot_be_formatted_is_a_template_problem_no_retry_fixes(amount, currency, locale):
    with pytest.raises(TemplateProblem):
        money(amount, currency, locale)


TEMPLATE_CONTEXT = dict(
    payer_name="Pat", amount="1234.5", currency="EUR", locale="de_DE", payment_url="https://pay.example.com/42",
    description="Course fee", reminder_number=1, started_at=T0.isoformat(), paid_at=(T0 + 2 * D).isoformat(),
    paid_reference="tx-991", time_zone="Europe/Berlin", recipient_name="Pat", sender_name="Followups",
    postal_address="1 Main St", unsubscribe_url="https://example.com/u",
)


def test_the_templates_show_the_amount_through_the_filter():
    renderer = Renderer()
    reminder = renderer.render("payment_reminder", TEMPLATE_CONTEXT)
    assert reminder.subject == "Reminder: 1.234,50 € for Course fee is still open"  # the header's spaces folded
    assert "1.234,50\xa0€" in reminder.text and "https://pay.example.com/42" in reminder.text
    assert "1.234,50\xa0€" in reminder.html and 'href="https://pay.example.com/42"' in reminder.html
    receipt = renderer.render("payment_confirmation", {**TEMPLATE_CONTEXT, "locale": None})
    assert receipt.subject == "Payment received: €1,234.50 for Course fee"
    assert "tx-991" in receipt.text and "tx-991" in receipt.html
    bare = renderer.render("payment_confirmation", {**TEMPLATE_CONTEXT, "locale": None, "description": None,
                                                    "paid_reference": None, "paid_at": None})
    assert bare.subject == "Payment received: €1,234.50" and "Reference" not in bare.text


# --- the simulator ----------------------------------------------------------------------------

SENT, DRY_RUN, SKIPPED, REFUSED = "sent", "dry_run", "skipped", "refused"
"""Send-step outcomes. SKIPPED: the activity returned SKIPPED (suppressed, too late at the send
step). REFUSED: a permanent refusal raised to the workflow; `core.send.send` returns FAILED."""
STATUS = {SENT: SendStatus.SENT, DRY_RUN: SendStatus.DRY_RUN, SKIPPED: SendStatus.SKIPPED, REFUSED: SendStatus.FAILED}
SKIP_REASONS = {SKIPPED: "too late: reached the send step after not_after",
                REFUSED: "delivery failed: 550 mailbox unavailable"}


@dataclass(frozen=True)
class Timed:
    at: datetime
    event: Any


@dataclass(frozen=True)
class Delivery:
    seq: int
    at: datetime
    event: Any  # an event, or the Payment start
    outcome: EventOutcome | None
    before: dict
    after: dict


@dataclass(frozen=True)
class Taken:
    seq: int
    at: datetime
    step: PlannedStep


@dataclass(frozen=True)
class Send:
    seq: int
    at: datetime
    step: PlannedStep
    key: str
    channel: str
    outcome: str


@dataclass(frozen=True)
class Journey:
    policy: PaymentPolicy
    started_at: datetime  # the workflow's start (awaiting_since)
    payment: Payment | None
    begin_at: datetime | None  # == started_at: in the start input; later: the `begin` signal; None: never
    events: tuple[Timed, ...] = ()
    outcomes: tuple[str, ...] = (SENT,)
    send_time: timedelta = timedelta(0)


@dataclass
class Trace:
    state: PaymentState
    policy: PaymentPolicy
    sends: list[Send] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    steps: list[Taken] = field(default_factory=list)
    duplicate_checks: list[tuple[Any, EventOutcome, dict, dict]] = field(default_factory=list)
    exhausted: bool = False

    def applied(self, *kinds: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.outcome is not None and d.outcome.applied
                and d.outcome.code == "applied" and d.event.kind in kinds]

    def sends_of(self, kind: StepKind) -> list[Send]:
        return [s for s in self.sends if s.step.kind == kind]

    @property
    def started(self) -> Delivery | None:
        return next((d for d in self.deliveries if isinstance(d.event, Payment)), None)


def simulate(j: Journey, check_duplicates: bool = False) -> Trace:
    state = PaymentState(payment_id=PAYMENT, status=PaymentStatus.AWAITING_START, policy=j.policy)
    trace = Trace(state, j.policy)
    now = j.started_at
    seq = itertools.count()
    outcomes = itertools.cycle(j.outcomes)
    pending = sorted(((t.at, i, t.event) for i, t in enumerate(j.events)), key=lambda item: (item[0], item[1]))
    if j.payment is not None and j.begin_at is not None and j.begin_at != j.started_at:
        pending = sorted([*pending, (j.begin_at, -1, j.payment)], key=lambda item: (item[0], item[1]))
    begun: Payment | None = None

    def receive(item: Any) -> None:  # a signal handler
        nonlocal begun
        before = state.model_dump()
        outcome = None
        if isinstance(item, Payment):  # `begin` → JourneyCore.begin, only the first time
            if begun is None:
                begun = item
                trace.policy = state.policy = with_overrides(trace.policy, item.policy)
                rules.start(state, item, now)
        else:
            if check_duplicates:
                once, again = state.model_copy(deep=True), state.model_copy(deep=True)
                first = rules.apply_event(once, item, trace.policy, now)
                rules.apply_event(again, item, trace.policy, now)
                rules.apply_event(again, item, trace.policy, now)
                trace.duplicate_checks.append((item, first, once.model_dump(), again.model_dump()))
            outcome = rules.apply_event(state, item, trace.policy, now)
        trace.deliveries.append(Delivery(next(seq), now, item, outcome, before, state.model_dump()))

    def receive_next() -> None:
        nonlocal now
        at, _, item = pending.pop(0)
        now = max(now, at)
        receive(item)

    def send(step: PlannedStep, key: str) -> list[SendStatus]:  # `_send`: every channel together
        nonlocal now
        assert begun is not None
        sends = [Send(next(seq), now, step, key if channel == "email" else f"{key}/{channel}", channel, next(outcomes))
                 for channel in begun.channels]
        trace.sends.extend(sends)
        now += j.send_time
        while pending and pending[0][0] <= now:  # signals handled while the activities ran
            receive_next()
        for s in sends:
            if s.outcome in SKIP_REASONS:
                rules.record_skip(state, s.key, SKIP_REASONS[s.outcome], now)
            elif s.step.kind == StepKind.REMINDER:
                state.reminders_sent.append(s.key)
        return [STATUS[s.outcome] for s in sends]

    def take(step: PlannedStep) -> None:  # `_take`
        match step.kind:
            case StepKind.ABANDON:
                state.status = PaymentStatus.ABANDONED
            case StepKind.EXPIRE:
                state.status = PaymentStatus.EXPIRED
            case StepKind.CONFIRMATION:
                state.confirmation_pending = False
                statuses = send(step, rules.confirmation_key(PAYMENT))
                state.confirmation_sent = any(status.delivered for status in statuses)
            case StepKind.REMINDER:
                assert state.started_at is not None
                key = rules.reminder_key(PAYMENT, step.at - state.started_at)
                state.reminders_done.append(key)
                if too_late(step.not_after, now):
                    rules.record_skip(state, key, f"reminder moment passed {now - step.at} ago, beyond the grace", now)
                    return
                send(step, key)
            case _:
                unreachable(step)

    if j.payment is not None and j.begin_at == j.started_at:
        receive(j.payment)
    for _ in range(LOOP_LIMIT):
        step = rules.next_step(state, trace.policy, j.started_at, now)
        if step is None:
            return trace
        wake = max(step.at, now)
        if pending and pending[0][0] <= wake:
            receive_next()
            continue
        now = wake
        trace.steps.append(Taken(next(seq), now, step))
        take(step)
    trace.exhausted = True
    return trace


# --- building journeys ------------------------------------------------------------------------


def paid(at: datetime, event_id: str | None = None, reference: str | None = None) -> Timed:
    return Timed(at, payment_event(kind="paid", event_id=event_id, reference=reference))


def cancel(at: datetime, event_id: str | None = None) -> Timed:
    return Timed(at, payment_event(kind="cancel", event_id=event_id))


def journey(*events: Timed, policy: PaymentPolicy = PaymentPolicy(), started_at: datetime = T0,
            pending_since: datetime | None = None, **fields) -> Journey:
    """A payment started at `started_at` (its `started_at`: `pending_since`, default the same)."""
    start = payment(started_at=pending_since or started_at, **fields.pop("payment", {}))
    return Journey(policy=policy, started_at=started_at, payment=start, begin_at=started_at, events=events, **fields)


def keys(trace: Trace) -> list[tuple[str, timedelta]]:
    """(key after `payment-42/`, sent at − T0) for every send step asked for."""
    return [(s.key.split("/", 1)[1], s.at - T0) for s in trace.sends]


@functools.cache
def durations(low: int, high: int) -> st.SearchStrategy[timedelta]:
    return st.integers(low, high).map(lambda n: n * STEP)


START_TIMES = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC))
START_MODES = st.sampled_from(["input", "input", "input", "late", "never"])
SEND_TIMES = st.sampled_from([timedelta(0), M, H, 6 * H])  # a slow send: retries, an outage
NEAR = st.integers(-3, 6).map(lambda n: n * 20 * M)  # from just before a moment to just after it
OUTCOMES = st.lists(st.sampled_from([SENT, SENT, SENT, DRY_RUN, SKIPPED, REFUSED]), min_size=1, max_size=5)
EVENT_KINDS = st.sampled_from(["paid", "paid", "cancel"])
# Pending since the journey's start, or since earlier (an import of old invoices): some reminders are late already.
PENDING_BEFORE = st.one_of(st.just(timedelta(0)), durations(0, 80))

policies = st.builds(
    PaymentPolicy,
    reminder_after=st.lists(durations(1, 150), min_size=1, max_size=4, unique=True),
    reminder_grace=durations(1, 12),
    close_after=durations(1, 200),
    hold_early_events_for=durations(1, 24),
)


@st.composite
def journeys(draw: st.DrawFn) -> Journey:
    started_at, policy = draw(START_TIMES), draw(policies)
    mode = draw(START_MODES)
    begin_at = {"input": started_at, "late": started_at + draw(durations(0, 12)), "never": None}[mode]
    pending_since = (begin_at or started_at) - draw(PENDING_BEFORE)
    channels = draw(st.sampled_from([["email"], ["email"], ["webhook"], ["email", "webhook"]]))
    start = payment(started_at=pending_since, channels=channels, payer={**PAYER, "phone": "+4915112345678"},
                    policy=draw(st.sampled_from([{}, {}, {"reminder_after": ["PT12H", "P2D"]},
                                                 {"close_after": "P1D"}])))
    runs_with = with_overrides(policy, start.policy)
    near = [started_at, begin_at or started_at, pending_since + runs_with.close_after,
            *(pending_since + offset for offset in runs_with.reminder_after)]
    events: list[Timed] = []
    for i in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 2)) == 0:
            at = started_at + draw(durations(0, 220))
        else:
            at = max(started_at, near[draw(st.integers(0, len(near) - 1))] + draw(NEAR))
        event_id = f"ev-{i}" if draw(st.booleans()) else None
        kind = draw(EVENT_KINDS)
        event = payment_event(kind=kind, event_id=event_id, **({"reference": f"tx-{i}"} if kind == "paid" else {}))
        events.append(Timed(at, event))
        if draw(st.integers(0, 4)) == 0:  # at-least-once delivery: the same event again
            events.append(events[-1])
    return Journey(policy=policy, started_at=started_at, payment=start, begin_at=begin_at,
                   events=tuple(sorted(events, key=lambda t: t.at)), outcomes=tuple(draw(OUTCOMES)),
                   send_time=draw(SEND_TIMES))


def first_end(trace: Trace) -> Delivery | None:
    """The applied `paid` or `cancel` that ended (or, before the start, decided) the journey."""
    ends = trace.applied("paid", "cancel")
    return ends[0] if ends else None


# --- examples ---------------------------------------------------------------------------------


def test_keys():
    assert rules.reminder_key("42", 3 * D) == "payment-42/reminder-3d"
    assert rules.reminder_key("42", D + 12 * H) == "payment-42/reminder-1d12h"
    assert rules.confirmation_key("42") == "payment-42/confirmation"


def test_unpaid_gets_one_reminder_at_day_3_then_expires_at_day_30():
    trace = simulate(journey())
    assert keys(trace) == [("reminder-3d", 3 * D)]
    assert trace.state.status == PaymentStatus.EXPIRED and trace.steps[-1].at == T0 + 30 * D
    assert trace.state.reminders_sent == ["payment-42/reminder-3d"] and not trace.state.confirmation_sent


def test_paid_before_day_3_gets_the_confirmation_only():
    trace = simulate(journey(paid(T0 + 2 * D, reference="tx-1")))
    assert keys(trace) == [("confirmation", 2 * D)]
    assert trace.state.status == PaymentStatus.PAID and trace.state.confirmation_sent
    assert trace.state.paid_reference == "tx-1" and trace.state.paid_at == T0 + 2 * D


def test_paid_after_the_reminder_gets_the_confirmation():
    trace = simulate(journey(paid(T0 + 5 * D)))
    assert keys(trace) == [("reminder-3d", 3 * D), ("confirmation", 5 * D)]


def test_paid_at_is_the_providers_when_given():
    event = payment_event(kind="paid", paid_at=T0 + D)
    trace = simulate(journey(Timed(T0 + 2 * D, event)))
    assert trace.state.paid_at == T0 + D


def test_cancel_stops_everything_silently():
    trace = simulate(journey(cancel(T0 + D)))
    assert trace.sends == [] and trace.state.status == PaymentStatus.CANCELLED


def pending_state() -> PaymentState:
    state = PaymentState(payment_id=PAYMENT, status=PaymentStatus.AWAITING_START)
    rules.start(state, payment(), T0)
    return state


def test_paid_after_cancel_and_cancel_after_paid_are_refused_as_ended():
    """What an update's validator screens (`core.screen` plays the event on a copy of the state):
    refused as `ended` → 409, before it enters history. A signal after the workflow closed never
    reaches it (the API answers 409 from the closed id)."""
    for first, then, status in (("cancel", "paid", "cancelled"), ("paid", "cancel", "paid")):
        state = pending_state()
        assert rules.apply_event(state, payment_event(kind=first), PaymentPolicy(), T0 + D).code == "applied"
        before = state.model_dump(exclude={"events"})
        late = rules.apply_event(state, payment_event(kind=then), PaymentPolicy(), T0 + 2 * D)
        assert not late.applied and late.code == "ended" and late.reason == f"the journey has already ended ({status})"
        assert state.model_dump(exclude={"events"}) == before


def test_a_second_paid_is_a_harmless_duplicate():
    state = pending_state()
    rules.apply_event(state, payment_event(kind="paid", reference="tx-1"), PaymentPolicy(), T0 + D)
    second = rules.apply_event(state, payment_event(kind="paid", reference="tx-2"), PaymentPolicy(), T0 + 2 * D)
    assert not second.applied and second.code == "duplicate" and second.reason == "duplicate: already paid"
    assert state.paid_reference == "tx-1" and state.confirmation_pending
    again = rules.apply_event(state, payment_event(kind="cancel"), PaymentPolicy(), T0 + 2 * D)
    assert again.code == "ended"  # a cancel is not what ended it: refused
    in_flight = simulate(journey(paid(T0 + D, reference="tx-1"), paid(T0 + D + M, reference="tx-2"), send_time=H))
    assert keys(in_flight) == [("confirmation", D)]  # the second came while the confirmation was being sent
    assert in_flight.deliveries[-1].outcome.code == "duplicate"


def test_the_same_event_id_twice_applies_once():
    trace = simulate(journey(paid(T0 + D, "pay-1"), paid(T0 + D, "pay-1"),
                             cancel(T0 + D, "c-1"), cancel(T0 + D, "c-1")))
    # a tie goes to the event: all four arrive before the confirmation is taken
    assert [d.outcome.code for d in trace.deliveries[1:]] == ["applied", "duplicate", "ended", "ended"]
    assert keys(trace) == [("confirmation", D)]
    held = simulate(replace(journey(paid(T0, "pay-1"), paid(T0 + H, "pay-1")), begin_at=T0 + 2 * H))
    assert [d.outcome.code for d in held.deliveries if d.outcome] == ["applied", "duplicate"]


def test_custom_reminders_each_once_in_order():
    policy = PaymentPolicy(reminder_after=[7 * D, D, 3 * D])
    trace = simulate(journey(policy=policy))
    assert keys(trace) == [("reminder-1d", D), ("reminder-3d", 3 * D), ("reminder-7d", 7 * D)]
    assert [s.step.number for s in trace.sends] == [1, 2, 3]


def test_per_start_overrides_are_the_policy_it_runs_with():
    trace = simulate(journey(payment={"policy": {"reminder_after": ["P1D", "P2D"], "close_after": "P5D"}}))
    assert keys(trace) == [("reminder-1d", D), ("reminder-2d", 2 * D)] and trace.steps[-1].at == T0 + 5 * D
    assert trace.state.policy.reminder_after == [D, 2 * D]


def test_a_reminder_past_its_grace_is_skipped_with_a_reason_never_sent_late():
    trace = simulate(journey(started_at=T0 + 4 * D + H, pending_since=T0))  # day 3 + 1 d 1 h: past the grace
    assert trace.sends == []
    [skip] = trace.state.skips
    assert skip.step == "payment-42/reminder-3d" and "beyond the grace" in skip.reason
    within = simulate(journey(started_at=T0 + 4 * D - H, pending_since=T0))  # 23 h late: still within
    assert [s.at for s in within.sends] == [T0 + 4 * D - H]


def test_reminders_at_or_after_the_close_are_not_planned():
    policy = PaymentPolicy(reminder_after=[D, 5 * D, 9 * D], close_after=5 * D)
    trace = simulate(journey(policy=policy))
    assert keys(trace) == [("reminder-1d", D)] and trace.state.status == PaymentStatus.EXPIRED
    grace_cut = simulate(journey(policy=PaymentPolicy(reminder_after=[D], close_after=D + H),
                                 started_at=T0 + D + 2 * H, pending_since=T0))  # within the grace, after the close
    assert grace_cut.sends == [] and grace_cut.state.status == PaymentStatus.EXPIRED


def test_the_webhook_channel_gets_its_own_key():
    fields = {"channels": ["email", "webhook"], "payer": {**PAYER, "phone": "+4915112345678"}}
    trace = simulate(journey(paid(T0 + 4 * D), payment=fields))
    assert keys(trace) == [("reminder-3d", 3 * D), ("reminder-3d/webhook", 3 * D),
                           ("confirmation", 4 * D), ("confirmation/webhook", 4 * D)]
    assert trace.state.reminders_sent == ["payment-42/reminder-3d", "payment-42/reminder-3d/webhook"]


def test_a_webhook_only_reminder_that_fails_is_not_tried_again():
    fields = {"channels": ["webhook"], "payer": {**PAYER, "phone": "+4915112345678"}}
    trace = simulate(journey(payment=fields, outcomes=(REFUSED,)))
    assert keys(trace) == [("reminder-3d/webhook", 3 * D)] and trace.state.status == PaymentStatus.EXPIRED
    assert trace.state.reminders_done == ["payment-42/reminder-3d"] and trace.state.reminders_sent == []


def test_a_refused_confirmation_is_recorded_and_the_journey_ends_paid():
    trace = simulate(journey(paid(T0 + D), outcomes=(REFUSED,)))
    assert trace.state.status == PaymentStatus.PAID and not trace.state.confirmation_sent
    assert [s.step for s in trace.state.skips] == ["payment-42/confirmation"]


def test_paid_while_the_reminder_is_in_flight_still_confirms_once():
    trace = simulate(journey(paid(T0 + 3 * D + M), send_time=H))
    assert keys(trace) == [("reminder-3d", 3 * D), ("confirmation", 3 * D + H)]


def test_paid_before_the_start_is_held_and_confirmed_when_it_comes():
    j = replace(journey(paid(T0, reference="tx-early")), begin_at=T0 + 2 * H)
    trace = simulate(j)
    assert trace.deliveries[0].after["status"] == "awaiting_start"
    assert keys(trace) == [("confirmation", 2 * H)] and trace.state.status == PaymentStatus.PAID
    assert trace.state.paid_reference == "tx-early"


def test_cancel_before_the_start_ends_it_and_the_start_changes_nothing():
    trace = simulate(replace(journey(cancel(T0)), begin_at=T0 + H))
    assert trace.sends == [] and trace.state.status == PaymentStatus.CANCELLED


def test_cancel_after_a_held_paid_is_refused_as_ended():
    trace = simulate(replace(journey(paid(T0), cancel(T0 + H)), begin_at=T0 + 2 * H))
    refused = trace.deliveries[1].outcome
    assert refused.code == "ended" and trace.state.status == PaymentStatus.PAID


def test_never_started_is_abandoned_after_the_hold():
    j = Journey(policy=PaymentPolicy(), started_at=T0, payment=None, begin_at=None, events=(paid(T0 + H),))
    trace = simulate(j)
    assert trace.sends == [] and trace.state.status == PaymentStatus.ABANDONED and trace.steps[-1].at == T0 + D


# --- properties -------------------------------------------------------------------------------

PAID_IN_FLIGHT = journey(paid(T0 + 3 * D + M), send_time=H)
HELD_THEN_STARTED = replace(journey(paid(T0, "p"), paid(T0 + H, "p"), cancel(T0 + H)), begin_at=T0 + 2 * H)


@PROPERTY
@given(journeys())
def test_always_terminates_closed(j: Journey):
    trace = simulate(j)
    assert not trace.exhausted and trace.state.status in PAYMENT_CLOSED
    assert len(trace.steps) <= len(trace.policy.reminder_after) + 2  # + the confirmation + the end


@PROPERTY
@given(journeys())
@example(PAID_IN_FLIGHT)
def test_no_reminder_after_paid_or_cancel(j: Journey):
    trace = simulate(j)
    if (end := first_end(trace)) is not None:
        assert all(s.seq < end.seq for s in trace.sends_of(StepKind.REMINDER))


@PROPERTY
@given(journeys())
def test_each_message_key_at_most_once(j: Journey):
    trace = simulate(j)
    assert all(count == 1 for count in Counter(s.key for s in trace.sends).values())
    assert all(count == 1 for count in Counter(t.step.number for t in trace.steps
                                               if t.step.kind == StepKind.REMINDER).values())


@PROPERTY
@given(journeys())
def test_reminders_never_early_never_past_the_grace_or_the_close_and_only_at_the_offsets(j: Journey):
    trace = simulate(j)
    assert trace.started is not None or trace.sends == []
    for s in trace.sends_of(StepKind.REMINDER):
        since = trace.started.event.started_at
        assert s.step.at - since in trace.policy.reminder_after
        assert s.key.split("/")[1] == rules.reminder_key(PAYMENT, s.step.at - since).split("/")[1]
        assert s.step.at <= s.at < s.step.at + trace.policy.reminder_grace  # not_after is exclusive
        assert s.at < since + trace.policy.close_after


@PROPERTY
@given(journeys())
@example(HELD_THEN_STARTED)
def test_confirmation_exactly_once_iff_paid_and_started(j: Journey):
    trace = simulate(j)
    end = first_end(trace)
    owed = end is not None and end.event.kind == "paid" and trace.started is not None
    confirmations = [t for t in trace.steps if t.step.kind == StepKind.CONFIRMATION]
    assert len(confirmations) == (1 if owed else 0)
    assert sorted(s.channel for s in trace.sends_of(StepKind.CONFIRMATION)) == (
        sorted(trace.started.event.channels) if owed else [])
    if owed:
        assert confirmations[0].seq > max(end.seq, trace.started.seq)
        assert trace.state.status == PaymentStatus.PAID


@PROPERTY
@given(journeys())
def test_the_journey_ends_as_its_first_deciding_event_says(j: Journey):
    trace = simulate(j)
    end = first_end(trace)
    if end is None:
        assert trace.state.status in (PaymentStatus.EXPIRED, PaymentStatus.ABANDONED)
    elif trace.started is None and end.event.kind == "paid":
        assert trace.state.status == PaymentStatus.ABANDONED  # held, and the payment never came: nobody to confirm
    else:
        assert trace.state.status == {"paid": PaymentStatus.PAID, "cancel": PaymentStatus.CANCELLED}[end.event.kind]
    later = [d for d in trace.deliveries if d.outcome is not None and end is not None and d.seq > end.seq]
    assert all(d.outcome.code != "applied" for d in later)


@PROPERTY
@given(journeys())
def test_refused_duplicate_and_no_change_events_change_nothing_but_the_log(j: Journey):
    for d in simulate(j).deliveries:
        if d.outcome is not None and (d.outcome.code in REFUSED_CODES or d.outcome.code in ("duplicate", "no_change")):
            assert {k: v for k, v in d.after.items() if k != "events"} == \
                   {k: v for k, v in d.before.items() if k != "events"}


@PROPERTY
@given(journeys())
def test_a_duplicate_event_gives_the_same_state_as_once(j: Journey):
    for event, first, once, twice in simulate(j, check_duplicates=True).duplicate_checks:
        if event.event_id and first.applied:
            assert twice == once  # the whole state, the outcome log included
        else:
            assert {k: v for k, v in twice.items() if k != "events"} == {k: v for k, v in once.items() if k != "events"}


@PROPERTY
@given(journeys())
def test_every_event_delivered_twice_changes_nothing(j: Journey):
    once = simulate(j)
    again = simulate(replace(j, events=tuple(e for timed in j.events for e in (timed, timed))))
    assert [(s.at, s.key, s.outcome) for s in again.sends] == [(s.at, s.key, s.outcome) for s in once.sends]
    assert again.state.model_dump(exclude={"events"}) == once.state.model_dump(exclude={"events"})


@PROPERTY
@given(st.builds(PaymentPolicy, reminder_after=st.lists(durations(1, 150), min_size=1, max_size=10, unique=True),
                 reminder_grace=durations(1, 12), close_after=durations(1, 200)), START_TIMES)
def test_undisturbed_reminds_at_every_offset_before_the_close_then_expires(policy, started_at):
    trace = simulate(journey(policy=policy, started_at=started_at))
    due = [started_at + offset for offset in policy.reminder_after if offset < policy.close_after]
    assert [s.at for s in trace.sends] == due
    assert trace.state.status == PaymentStatus.EXPIRED and trace.steps[-1].at == started_at + policy.close_after


def test_inside_a_workflow_babel_is_not_consulted(monkeypatch):
    """A workflow decodes the payment again from its history: Babel's data was read at the edge, and
    neither a newer CLDR nor the sandbox (which refuses Babel's first read of its files, and drops a
    signal that fails to decode) may refuse it there. Shape checks still apply."""
    from workflows.payment import models

    def no_babel(*args, **kwargs):
        raise AssertionError("Babel consulted inside a workflow")

    monkeypatch.setattr(models.workflow.unsafe, "in_sandbox", lambda: True)
    monkeypatch.setattr(models, "list_currencies", no_babel)
    monkeypatch.setattr(models, "get_currency_precision", no_babel)
    monkeypatch.setattr(models.Locale, "parse", no_babel)
    decoded = Payment.model_validate_json(payment(payer={**PAYER, "locale": "de_DE"}).model_dump_json())
    assert decoded.payer.locale == "de_DE" and decoded.amount == "49.90"
    with pytest.raises(ValidationError):
        payment(amount="1e3")
