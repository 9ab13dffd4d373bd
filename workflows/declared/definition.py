"""A journey as data: named anchors, steps at `anchor ± offset`, the events that end it, move an
anchor or let one member of its roster go. Validated whole when it is saved; the workflow gets the
validated model in its input, so a running journey keeps the version it started with.

    anchors: {assigned_at: start, deadline: start}
    steps:
      - {name: reminder, at: deadline - 48h, until: deadline - 24h, template: assignment_reminder}
    events: {deadline_moved: {sets: deadline}, submitted: {member_exits: true}}
    roster: true
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    Field, PlainSerializer, WithJsonSchema, StringConstraints, ValidationError, ValidationInfo, model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from workflows.contracts import Channel, MessageCategory
from workflows.core.fields import LONGEST, Flag, PositiveDuration, ShortText, Strict

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]  # anchors, steps, events
JourneyName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]  # no `-`: `{name}-{id}` parses back
TemplateName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
BUILT_IN_EVENTS = frozenset({"cancel"})  # every declared journey can be cancelled

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_COMPACT = re.compile(r"^(?:\d+[wdhms])+$")
_AT = re.compile(r"^\s*([a-z][a-z0-9_]{0,39})\s*(?:([+-])\s*(\S+)\s*)?$")


def parse_duration(text: str) -> timedelta:
    """`48h`, `2d12h`, `1w`, `90m`, `30s` or ISO 8601 (`PT48H`, `P2DT12H`)."""
    if _COMPACT.match(text):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"(\d+)([wdhms])", text))
        if seconds > LONGEST.total_seconds():
            raise ValueError(f"{text!r} is longer than {LONGEST.days} days")
        return timedelta(seconds=seconds)
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(timedelta).validate_python(text)
    except ValidationError:
        raise ValueError(f"{text!r} is not a duration: write 48h, 2d12h, 1w, 90m or ISO 8601 like PT48H") from None


def compact(offset: timedelta) -> str:
    """How an offset reads in a definition: `2d12h`, `90s`."""
    seconds, parts = int(offset.total_seconds()), []
    for unit, size in _UNITS.items():
        if unit != "w" and seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


class At(Strict):
    """A moment relative to an anchor: `deadline - 48h` is {anchor: deadline, offset: -48h}."""

    anchor: Name
    offset: timedelta = timedelta(0)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        found = _AT.match(value)
        if found is None:
            raise ValueError(f"{value!r} is not `anchor`, `anchor + offset` or `anchor - offset` (like deadline - 48h)")
        anchor, sign, amount = found.groups()
        offset = parse_duration(amount) if amount else timedelta(0)
        if (sign is None) != (amount is None):
            raise ValueError(f"{value!r}: an offset needs its sign and its amount")
        return {"anchor": anchor, "offset": -offset if sign == "-" else offset}

    @model_validator(mode="after")
    def _bounded(self) -> At:
        if abs(self.offset) > LONGEST:
            raise ValueError(f"the offset must be at most {LONGEST.days} days either way")
        if self.offset % timedelta(seconds=1):
            raise ValueError("the offset must be whole seconds")
        return self

    def __str__(self) -> str:
        if not self.offset:
            return self.anchor
        return f"{self.anchor} {'-' if self.offset < timedelta(0) else '+'} {compact(abs(self.offset))}"


AT_PATTERN = r"^\s*[a-z][a-z0-9_]{0,39}\s*(?:[+-]\s*\S+\s*)?$"
AtText = Annotated[At, PlainSerializer(str, return_type=str, when_used="json"),
                   WithJsonSchema({"type": "string", "pattern": AT_PATTERN, "examples": ["deadline - 48h", "enrolled_at"],
                                   "description": "anchor, anchor + offset or anchor - offset; offsets like 48h, "
                                                  "2d12h, 1w, 90m or ISO 8601 (PT48H)"})]


class Step(Strict):
    name: Name
    at: AtText
    until: AtText | None = Field(None, description="the window closes here: from then on the step is skipped")
    grace: PositiveDuration | None = Field(None, description="how late the step may still go (default: the journey's)")
    template: TemplateName
    channels: list[Channel] = Field(["email"], min_length=1, max_length=3)
    category: MessageCategory = Field(MessageCategory.TRANSACTIONAL, description=(
        "kept so older definitions still read; the category the step's template declares decides "
        "(templates/catalog.yaml, or the saved version's)"))


class EventSpec(Strict):
    """What an event does: exactly one of these."""

    exits: Flag = False  # the journey ends
    member_exits: Flag = False  # the member named by the event's member_id gets nothing more (roster)
    sets: Name | None = None  # the event sets (or moves) this anchor to its `at`

    @model_validator(mode="after")
    def _one_effect(self) -> EventSpec:
        if sum((self.exits, self.member_exits, self.sets is not None)) != 1:
            raise ValueError("an event does exactly one thing: `exits: true`, `member_exits: true` or `sets: <anchor>`")
        return self


class Definition(Strict):
    """The body of `PUT /v1/journey-definitions/{name}` (JSON or YAML)."""

    description: ShortText = ""
    anchors: dict[Name, Literal["start", "event"]] = Field(
        ..., min_length=1, max_length=10,
        description="each anchor is given at the start (`start`) or set later by an event (`event`)")
    steps: list[Step] = Field(..., min_length=1, max_length=20)
    events: dict[Name, EventSpec] = Field({}, max_length=20)
    roster: Flag = Field(False, description="true: the journey goes to a roster of members, each of whom may exit")
    ends: AtText | None = Field(None, description="wait for events at least until then (needed with `event` anchors)")
    grace: PositiveDuration = Field(timedelta(days=1), description="how late a step may still go out")

    @model_validator(mode="after")
    def _coherent(self, info: ValidationInfo) -> Definition:
        """Every problem at once, each with its field."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        templates = (info.context or {}).get("templates")
        names: set[str] = set()
        last_on: dict[str, tuple[int, timedelta]] = {}
        for n, step in enumerate(self.steps):
            where = ("steps", n)
            if step.name in names:
                problems.append((where + ("name",), f"two steps are called {step.name!r}"))
            names.add(step.name)
            for part in ("at", "until"):
                at = getattr(step, part)
                if at is not None and at.anchor not in self.anchors:
                    problems.append((where + (part,), f"unknown anchor {at.anchor!r}: the anchors are "
                                                      f"{', '.join(self.anchors)}"))
            if step.until is not None and step.until.anchor == step.at.anchor and step.until.offset <= step.at.offset:
                problems.append((where + ("until",), f"the window closes ({step.until}) before it opens ({step.at})"))
            if step.until is not None and step.until.anchor != step.at.anchor:
                problems.append((where + ("until",), "a window opens and closes on the same anchor"))
            if step.at.anchor in last_on and last_on[step.at.anchor][1] >= step.at.offset:
                before = self.steps[last_on[step.at.anchor][0]]
                problems.append((where + ("at",), f"steps out of order: {step.name!r} ({step.at}) is not after "
                                                  f"{before.name!r} ({before.at})"))
            last_on[step.at.anchor] = (n, step.at.offset)
            if len(set(step.channels)) != len(step.channels):
                problems.append((where + ("channels",), "a channel is listed twice"))
            if templates is not None and step.template not in templates:
                problems.append((where + ("template",), f"no template {step.template!r}: the templates are "
                                                        f"{', '.join(sorted(templates))}"))
        set_by: set[str] = set()
        for name, spec in self.events.items():
            if name in BUILT_IN_EVENTS:
                problems.append((("events", name), f"{name!r} is built in: every declared journey takes it"))
            if spec.sets is not None:
                set_by.add(spec.sets)
                if spec.sets not in self.anchors:
                    problems.append((("events", name, "sets"), f"unknown anchor {spec.sets!r}"))
            if spec.member_exits and not self.roster:
                problems.append((("events", name, "member_exits"), "only a journey with `roster: true` has members"))
        for anchor, given in self.anchors.items():
            if given == "event" and anchor not in set_by:
                problems.append((("anchors", anchor), f"no event sets {anchor!r}: add one with `sets: {anchor}`"))
        if self.ends is not None and self.ends.anchor not in self.anchors:
            problems.append((("ends",), f"unknown anchor {self.ends.anchor!r}"))
        if self.ends is not None and self.anchors.get(self.ends.anchor) == "event":
            problems.append((("ends",), "`ends` counts from an anchor given at the start"))
        if self.ends is None and "event" in self.anchors.values():
            problems.append((("ends",), "a journey with `event` anchors needs `ends`: how long it waits for them"))
        if problems:
            raise ValidationError.from_exception_data("Definition", [
                InitErrorDetails(type=PydanticCustomError("definition", reason), loc=loc, input=None)  # type: ignore[typeddict-item]
                for loc, reason in problems])
        return self

    @property
    def start_anchors(self) -> list[str]:
        return [name for name, given in self.anchors.items() if given == "start"]

    def event(self, name: str) -> EventSpec | None:
        return self.events.get(name)
