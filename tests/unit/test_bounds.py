"""Properties over the edges of every bound the API holds (issue 13): any start the models accept,
at any moment in 2000-2199 with any durations up to the longest, plans its next step with every
journey's own rules without an exception, and so does any timed event on top of it. (Running to
the end is tests/workflow/test_edges.py; these cover the whole range, the top included.)"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from workflows.core.fields import EARLIEST, LATEST, LONGEST, with_overrides
from workflows.registry import KINDS, JourneyKind

SECOND = timedelta(seconds=1)
moments = st.one_of(
    st.sampled_from([EARLIEST, LATEST - SECOND, LATEST - LONGEST, EARLIEST + LONGEST]),
    st.datetimes(min_value=EARLIEST.replace(tzinfo=None), max_value=(LATEST - SECOND).replace(tzinfo=None),
                 timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14)),
                                            timezone(timedelta(hours=-12))])),
)
durations = st.one_of(st.sampled_from([SECOND, LONGEST, LONGEST - SECOND]),
                      st.timedeltas(min_value=SECOND, max_value=LONGEST))


def _duration_fields(kind: JourneyKind) -> dict[str, bool]:
    """Policy fields holding durations: name → whether it is a list of them."""
    found = {}
    for name, info in kind.policy_model.model_fields.items():
        if name == "hold_early_events_for":
            continue
        if info.annotation is timedelta:
            found[name] = False
        elif get_args(info.annotation) and get_args(info.annotation)[0] is timedelta:
            found[name] = True
    return found


def _retimed(value: Any, shift: timedelta) -> Any:
    """The preview sample's body with every time moved by `shift` (relative times stay in order)."""
    if isinstance(value, datetime):
        return value + shift
    if isinstance(value, dict):
        return {key: _retimed(item, shift) for key, item in value.items()}
    if isinstance(value, list):
        return [_retimed(item, shift) for item in value]
    return value


@st.composite
def starts(draw: st.DrawFn, kind: JourneyKind) -> Any:
    anchor = draw(moments)
    body = kind.preview.start(datetime(2100, 1, 1, tzinfo=timezone.utc))
    body = _retimed(body, anchor - datetime(2100, 1, 1, tzinfo=timezone.utc))
    policy: dict[str, Any] = {}
    for name, is_list in _duration_fields(kind).items():
        if draw(st.booleans()):
            policy[name] = sorted(draw(st.lists(durations, min_size=1, max_size=3, unique=True))) if is_list \
                else draw(durations)
    body = {**body, kind.id_field: "edge-1", "policy": policy}
    try:
        return kind.start_model.model_validate(body)
    except ValidationError:  # e.g. offsets out of order for this kind, a time pushed past 2199
        assume(False)


def _waiting(kind: JourneyKind) -> Any:
    policy = kind.policy_model()
    return kind.state_model(**{kind.id_field: "edge-1", "status": "awaiting_start", "policy": policy}), policy


@pytest.mark.parametrize("name", sorted(KINDS))
def test_any_start_within_the_bounds_plans_without_an_exception(name):
    kind = KINDS[name]
    seen: Counter[str] = Counter()

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much])
    @given(start=starts(kind), now=moments, moved_to=moments)
    def check(start: Any, now: datetime, moved_to: datetime) -> None:
        state, policy = _waiting(kind)
        policy = with_overrides(policy, start.policy)
        state.policy = policy
        kind.rules.start(state, start, now)
        step = kind.rules.next_step(state, policy, now, now)
        note("planned a step" if step is not None else "nothing left to plan")
        for event_kind, model in kind.event_models.items():
            timed = [field for field in ("scheduled_at", "starts_at") if field in model.model_fields]
            if not timed:
                continue
            fields: dict[str, Any] = {"kind": event_kind, "event_id": f"e-{event_kind}", timed[0]: moved_to}
            if "ends_at" in model.model_fields:
                fields["ends_at"] = min(moved_to + timedelta(hours=1), LATEST - SECOND)
            try:
                moved = kind.event(fields)
            except ValidationError:
                continue
            outcome = kind.rules.apply_event(state, moved, policy, now)
            note(f"{event_kind}: {outcome.code}")
            kind.rules.next_step(state, policy, now, now)

    def note(what: str) -> None:
        event(what)
        seen[what] += 1

    check()
    # not vacuous: most starts planned something, and every timed event was played and applied
    assert seen["planned a step"] >= 50, seen
    for event_kind, model in kind.event_models.items():
        if {"scheduled_at", "starts_at"} & set(model.model_fields):
            assert seen[f"{event_kind}: applied"] + seen[f"{event_kind}: no_change"] >= 10, seen  # moved, not only refused
