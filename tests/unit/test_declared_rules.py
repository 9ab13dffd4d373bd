"""Declared journeys as pure rules: what a definition may say (every problem with its field), and
the plan the real `take` follows on a fake clock while anchors move and members leave."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from hypothesis import event, given, settings, strategies as st
from pydantic import ValidationError

from activities.definitions import builtin_definitions
from starter.service import template_names
from workflows.core.steps import StepKind
from workflows.declared import rules
from workflows.declared.definition import At, Definition
from workflows.declared.models import DeclaredEvent, DeclaredPolicy, DeclaredStart, DeclaredState, DeclaredStatus
from workflows.declared.workflow import take

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
D = timedelta(days=1)


def problems(body: dict, templates=frozenset({"assignment_reminder", "t"})) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        Definition.model_validate(body, context={"templates": templates})
    return {".".join(map(str, e["loc"])): e["msg"] for e in caught.value.errors()}


def test_an_offset_reads_as_written_and_back():
    assert At.model_validate("deadline - 48h") == At(anchor="deadline", offset=-48 * H)
    assert At.model_validate("enrolled_at + PT90M").offset == timedelta(minutes=90)
    assert At.model_validate("x+1w2d").offset == 9 * D
    assert str(At(anchor="deadline", offset=-(2 * D + 12 * H))) == "deadline - 2d12h"
    for bad in ("deadline -", "Deadline", "deadline * 2", "deadline + 2 days", "deadline + 99999w"):
        with pytest.raises(ValidationError):
            At.model_validate(bad)


def test_every_problem_of_a_definition_is_named_with_its_field():
    found = problems({
        "anchors": {"deadline": "start", "demo": "event"},
        "roster": False,
        "steps": [{"name": "late", "at": "deadline - 24h", "template": "t"},
                  {"name": "early", "at": "deadline - 48h", "template": "t"},
                  {"name": "late", "at": "nowhere", "template": "nope"},
                  {"name": "w", "at": "deadline + 1h", "until": "deadline", "template": "t"}],
        "events": {"cancel": {"exits": True}, "moved": {"sets": "dead_line"}, "submitted": {"member_exits": True}},
    })
    assert found == {
        "steps.1.at": "steps out of order: 'early' (deadline - 2d) is not after 'late' (deadline - 1d)",
        "steps.2.name": "two steps are called 'late'",
        "steps.2.at": "unknown anchor 'nowhere': the anchors are deadline, demo",
        "steps.2.template": "no template 'nope': the templates are assignment_reminder, t",
        "steps.3.until": "the window closes (deadline) before it opens (deadline + 1h)",
        "events.cancel": "'cancel' is built in: every declared journey takes it",
        "events.moved.sets": "unknown anchor 'dead_line'",
        "events.submitted.member_exits": "only a journey with `roster: true` has members",
        "anchors.demo": "no event sets 'demo': add one with `sets: demo`",
        "ends": "a journey with `event` anchors needs `ends`: how long it waits for them",
    }


def test_an_event_does_exactly_one_thing():
    found = problems({"anchors": {"a": "start"}, "steps": [{"name": "s", "at": "a", "template": "t"}],
                      "events": {"e": {"exits": True, "sets": "a"}, "f": {}}})
    assert set(found) == {"events.e", "events.f"}


def test_the_built_in_definitions_are_valid_against_the_shipped_templates():
    shipped = builtin_definitions(template_names())
    assert set(shipped) == {"enrollment", "assignment_deadline"}
    assert [str(step.at) for step in shipped["assignment_deadline"].steps] == ["deadline - 2d"]
    assert str(shipped["assignment_deadline"].steps[0].until) == "deadline - 1d"


ASSIGNMENT = builtin_definitions()["assignment_deadline"]
POLICY = DeclaredPolicy(name="assignment_deadline", version=1, definition=ASSIGNMENT)


def started(deadline: datetime, members: int = 2, definition: Definition = ASSIGNMENT) -> tuple[DeclaredState, DeclaredPolicy]:
    policy = DeclaredPolicy(name="assignment_deadline", version=1, definition=definition)
    state = DeclaredState(id="a1", status=DeclaredStatus.AWAITING_START, journey=policy.name, version=1, policy=policy)
    roster = [{"member_id": f"s{n}", "recipient": {"email": f"s{n}@example.com", "name": f"S{n}"}}
              for n in range(members)] if definition.roster else None
    recipient = None if definition.roster else {"email": "r@example.com", "name": "R"}
    anchors = {name: deadline for name in definition.start_anchors}
    rules.start(state, DeclaredStart.model_validate({"id": "a1", "anchors": anchors, "roster": roster,
                                                     "recipient": recipient}), T0)
    return state, policy


def test_the_reminder_is_planned_48h_before_and_closes_24h_before():
    state, policy = started(T0 + 5 * D)
    step = rules.next_step(state, policy, T0, T0)
    assert (step.kind, step.at, step.not_after) == (StepKind.STEP, T0 + 3 * D, T0 + 4 * D)


def test_a_member_exit_needs_a_member_of_the_roster():
    state, policy = started(T0 + 5 * D)
    assert rules.apply_event(state, DeclaredEvent(kind="submitted"), policy, T0).field == "member_id"
    assert rules.apply_event(state, DeclaredEvent(kind="submitted", member_id="zz"), policy, T0).code == "invalid"
    assert rules.apply_event(state, DeclaredEvent(kind="submitted", member_id="s1"), policy, T0).code == "applied"
    assert rules.apply_event(state, DeclaredEvent(kind="submitted", member_id="s1"), policy, T0).code == "no_change"
    assert rules.apply_event(state, DeclaredEvent(kind="graded"), policy, T0).field == "event"


async def run(state: DeclaredState, policy: DeclaredPolicy, now: datetime,
              events: list[tuple[datetime, DeclaredEvent]]) -> list[tuple[str, datetime, str | None]]:
    """The journey on a fake clock: events land at their moments, steps are taken with the real
    `take`; returns (mark, when, member) for every message it sent."""
    sent: list[tuple[str, datetime, str | None]] = []
    pending = sorted(events, key=lambda e: e[0])

    async def send_step(due: rules.Due) -> None:
        for member in state.members or [None]:
            if member not in state.exited_members:
                sent.append((due.mark, now, member))

    for _ in range(500):
        step = rules.next_step(state, policy, T0, now)
        if step is None:
            return sent
        if pending and pending[0][0] < step.at:
            at, change = pending.pop(0)
            now = max(now, at)
            rules.apply_event(state, change, policy, now)
            continue
        now = max(now, step.at)
        await take(state, policy, step, now, send_step)
    raise AssertionError("the journey never ended")


moments = st.integers(min_value=0, max_value=20 * 24).map(lambda h: T0 + h * H)


@settings(max_examples=300, deadline=None)
@given(first=moments, moves=st.lists(st.tuples(moments, moments), max_size=4),
       exits=st.lists(st.tuples(moments, st.sampled_from(["s0", "s1", "s2"])), max_size=3))
def test_each_student_is_reminded_once_per_deadline_inside_its_window(first, moves, exits):
    state, policy = started(first, members=3)
    events = [(at, DeclaredEvent(kind="deadline_moved", at=to, event_id=f"m{n}")) for n, (at, to) in enumerate(moves)]
    events += [(at, DeclaredEvent(kind="submitted", member_id=who, event_id=f"x{n}")) for n, (at, who) in enumerate(exits)]
    sent = asyncio.run(run(state, policy, T0, events))
    assert state.status == DeclaredStatus.COMPLETED
    assert len(set(sent)) == len(sent), "a message went out twice"
    deadlines = {first, *(to for _, to in moves)}
    for mark, when, member in sent:
        deadline = next(d for d in deadlines if mark == f"reminder-{(d - 2 * D).strftime('%Y%m%dT%H%M%SZ')}")
        assert deadline - 2 * D <= when < deadline - D, "a reminder outside the 48..24 h window"
        assert not any(who == member and at < when for at, who in exits), "a reminder after the submission"
    final = state.anchors["deadline"]
    last_change = max([at for at, _ in moves + exits], default=T0)
    if last_change <= final - 2 * D and final - 2 * D >= T0:  # the window opened with nothing moving after it
        reminded = {member for mark, _, member in sent if mark.endswith((final - 2 * D).strftime('%Y%m%dT%H%M%SZ'))}
        assert reminded == {m for m in ("s0", "s1", "s2") if m not in state.exited_members}
        event("final deadline reminded")
    event(f"{len(sent)} sent")


@settings(max_examples=200, deadline=None)
@given(enrolled=moments, demo=st.none() | moments, leave=st.none() | moments)
def test_enrollment_welcome_once_and_a_followup_only_after_a_demo(enrolled, demo, leave):
    definition = builtin_definitions()["enrollment"]
    state, policy = started(enrolled, definition=definition)
    state.anchors = {"enrolled_at": enrolled}
    events = []
    if demo is not None:
        events.append((demo, DeclaredEvent(kind="demo_attended", at=demo, event_id="d")))
    if leave is not None:
        events.append((leave, DeclaredEvent(kind="unenrolled", event_id="u")))
    sent = asyncio.run(run(state, policy, T0, events))
    kinds = [mark.split("-")[0] for mark, _, _ in sent]
    # an event and a step at the same moment: the step goes first (it was due)
    assert kinds.count("welcome") == (0 if leave is not None and leave < enrolled else 1)
    followup = demo is not None and demo < enrolled + 90 * D and (leave is None or leave >= demo)
    assert kinds.count("demo_followup") == (1 if followup else 0)
    assert state.status in (DeclaredStatus.COMPLETED, DeclaredStatus.EXITED)
    event(f"sent {sorted(kinds)}")


def test_yaml_aliases_are_refused():
    from starter.routes.declared import yaml_to_json

    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(ValueError, match="aliases"):
        yaml_to_json(bomb.encode())
    assert yaml.safe_load(yaml_to_json(b"anchors: {a: start}\n")) == {"anchors": {"a": "start"}}


def test_an_anchor_moved_before_the_start_keeps_the_moved_moment():
    policy = POLICY
    state = DeclaredState(id="a1", status=DeclaredStatus.AWAITING_START, journey=policy.name, version=1, policy=policy)
    moved = rules.apply_event(state, DeclaredEvent(kind="deadline_moved", at=T0 + 9 * D), policy, T0)
    assert moved.code == "applied"
    rules.start(state, DeclaredStart.model_validate({"id": "a1", "anchors": {"deadline": T0 + 5 * D}, "roster": [
        {"member_id": "s0", "recipient": {"email": "s0@example.com", "name": "S0"}}]}), T0 + H)
    assert state.anchors["deadline"] == T0 + 9 * D
    assert rules.next_step(state, policy, T0, T0 + H).at == T0 + 7 * D


def test_after_the_reminder_the_journey_waits_for_the_deadline_so_a_move_still_counts():
    state, policy = started(T0 + 5 * D, members=1)
    sent = asyncio.run(run(state, policy, T0, [(T0 + 4 * D + 12 * H, DeclaredEvent(
        kind="deadline_moved", at=T0 + 10 * D, event_id="m"))]))
    assert [when for _, when, _ in sent] == [T0 + 3 * D, T0 + 8 * D]
    state, policy = started(T0 + 5 * D, members=1)
    after_reminder = rules.next_step(state.model_copy(update={"done": [f"reminder-{(T0 + 3 * D):%Y%m%dT%H%M%SZ}"]}),
                                     policy, T0, T0 + 3 * D)
    assert (after_reminder.kind, after_reminder.at) == (StepKind.FINISH, T0 + 5 * D)
