"""Declared journeys at the edge: definitions saved as versions, and instances started, steered and
read through the same `Journeys` service as every registry kind, with a kind made per definition
name (its workflow is `DeclaredJourney`, its input carries the definition's latest version)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any

from jinja2 import meta
from pydantic import BaseModel
from temporalio.client import Client

from activities.definitions import Definitions, Version
from activities.render import Renderer
from settings import Settings
from starter.service import Journeys, NotFound, Rejected, template_names, utc_now
from workflows.core.timing import when
from workflows.declared import rules
from workflows.declared.definition import Definition
from workflows.declared.models import (
    DECLARED_CLOSED, DeclaredEvent, DeclaredInput, DeclaredPolicy, DeclaredStart, DeclaredState, DeclaredStatus,
)
from workflows.declared.workflow import DeclaredJourney
from workflows.registry import KINDS, JourneyKind, PreviewSample

# What the journey and the send step give every template (beside the anchors and what base reads).
PROVIDED = frozenset({"name", "journey", "step", "member_id", "recipient_name", "time_zone", "subject"})
RESERVED_NAMES = frozenset({*KINDS, "resend", "journey", "journeys", "digest"})  # workflow id prefixes in use


@dataclass(frozen=True)
class DeclaredKind(JourneyKind):
    """A registry-shaped kind for one definition's latest version (ids `{name}-{id}`, field `id`)."""

    pinned: DeclaredPolicy | None = None

    @property
    def id_field(self) -> str:
        return "id"

    def empty_input(self, entity_id: str, policy: BaseModel | None = None) -> BaseModel:
        assert self.pinned is not None
        return DeclaredInput(id=entity_id, policy=self.pinned)

    def event(self, fields: dict[str, Any]) -> BaseModel:
        return DeclaredEvent.model_validate(fields)


def kind_of(version: Version) -> DeclaredKind:
    policy = DeclaredPolicy(name=version.name, version=version.version, definition=version.definition)

    def summary(start: DeclaredStart) -> str:
        who = (f"{start.recipient.name} <{start.recipient.email}>" if start.recipient
               else f"{len(start.roster or [])} member(s)")
        anchors = ", ".join(f"{name} {when(at)}" for name, at in start.anchors.items())
        return f"{version.name} {start.id} (v{version.version}): {who}; {anchors}"

    return DeclaredKind(
        name=version.name, plural=f"journeys/{version.name}", workflow=DeclaredJourney, start_model=DeclaredStart,
        input_model=DeclaredInput, state_model=DeclaredState, policy_model=DeclaredPolicy,
        event_union=Annotated[DeclaredEvent, "declared"], events=(), closed=DECLARED_CLOSED, rules=rules,
        input_field="start", start_signal="begin", summary=summary,
        templates=tuple(step.template for step in version.definition.steps), tag="journeys",
        description=version.definition.description, pinned=policy)


def _reads(renderer: Renderer, name: str) -> set[str]:
    found: set[str] = set()
    for env, part in ((renderer.text_env, "txt"), (renderer.html_env, "html")):
        source = env.loader.get_source(env, f"{name}.{part}")[0]  # type: ignore[union-attr]
        found |= meta.find_undeclared_variables(env.parse(source))
    return found


def template_variables(renderer: Renderer, template: str) -> frozenset[str]:
    """The variables a template reads itself; what its base reads (the footer) the send step gives.
    Parsed once per renderer and template: the files do not change while a process runs."""
    cache: dict[str, frozenset[str]] = renderer.__dict__.setdefault("_variables", {})
    if template not in cache:
        cache[template] = frozenset(_reads(renderer, template) - _reads(renderer, "base"))
    return cache[template]


class DeclaredJourneys(Journeys):
    """Start, steer and read the journeys of one definition."""

    def __init__(self, client: Client, settings: Settings, version: Version, renderer: Renderer,
                 templates: frozenset[str] | None = None) -> None:
        super().__init__(client, settings, kind_of(version), templates=templates)
        self.version, self.renderer = version, renderer

    def prepare(self, start: BaseModel) -> BaseModel:
        """Refuse a start this definition cannot run to its end: who it goes to, its anchors, and the
        variables its templates read."""
        assert isinstance(start, DeclaredStart)
        definition, name = self.version.definition, self.version.name
        if definition.roster and start.roster is None:
            raise Rejected(f"{name} goes to a roster: give `roster` (members with their recipient)", field="roster")
        if not definition.roster and start.recipient is None:
            raise Rejected(f"{name} goes to one recipient: give `recipient`", field="recipient")
        if definition.roster and start.recipient is not None or not definition.roster and start.roster is not None:
            field = "recipient" if definition.roster else "roster"
            raise Rejected(f"{name} {'has' if definition.roster else 'has no'} roster: leave out `{field}`", field=field)
        for anchor in start.anchors:
            if anchor not in definition.anchors:
                raise Rejected(f"{name} has no anchor {anchor!r}: its anchors are {', '.join(definition.anchors)}",
                               field=f"anchors.{anchor}")
        for anchor in definition.start_anchors:
            if anchor not in start.anchors:
                raise Rejected(f"{name} starts from {anchor}: give it in `anchors`", field=f"anchors.{anchor}")
        given = PROVIDED | set(definition.anchors) | set(start.context)
        for step in definition.steps:
            missing = sorted(template_variables(self.renderer, step.template) - given)
            if missing:
                raise Rejected(f"template {step.template} (step {step.name}) reads {', '.join(missing)}: "
                               "give them in `context`", field=f"context.{missing[0]}")
        return start

    def _empty_input(self, entity_id: str) -> BaseModel:
        return self.kind.empty_input(entity_id)

    def stamped(self, event: DeclaredEvent) -> DeclaredEvent:
        """An event that sets an anchor without saying when: the moment it arrived."""
        spec = self.version.definition.event(event.kind)
        if spec is not None and spec.sets is not None and event.at is None:
            return event.model_copy(update={"at": utc_now()})
        return event

    def _screen_early(self, entity_id: str, event: BaseModel) -> None:
        policy = self.kind.empty_input(entity_id).policy  # type: ignore[attr-defined]
        waiting = DeclaredState(id=entity_id, status=DeclaredStatus.AWAITING_START, journey=policy.name,
                                version=policy.version, policy=policy)
        outcome = rules.apply_event(waiting, event, policy, utc_now())  # type: ignore[arg-type]
        if outcome.code == "invalid":
            raise Rejected(outcome.reason or "refused", field=outcome.field)


class Declared:
    """The definitions and, per request, the journeys of the latest version of one."""

    def __init__(self, client: Client, settings: Settings, definitions: Definitions) -> None:
        self.client, self.settings, self.definitions = client, settings, definitions
        self.renderer = Renderer()
        self.templates = template_names()

    def validate(self, name: str, body: Any) -> Definition:
        """The definition, or a pydantic ValidationError (every problem with its field)."""
        return Definition.model_validate(body, context={"templates": self.templates})

    def check_name(self, name: str) -> None:
        if name in RESERVED_NAMES:
            raise Rejected(f"{name!r} is taken by a built-in journey kind: choose another name", field="name")

    async def latest(self, name: str) -> Version:
        version = await self.definitions.latest(name)
        if version is None:
            raise NotFound(f"no journey definition {name!r}: PUT /v1/journey-definitions/{name} first", field="name")
        return version

    async def journeys(self, name: str) -> DeclaredJourneys:
        return DeclaredJourneys(self.client, self.settings, await self.latest(name), self.renderer, self.templates)


def preview_kind(version: Version, anchors: dict[str, timedelta], context: dict[str, Any], members: int,
                 renderer: Renderer) -> DeclaredKind:
    """The definition's kind with a preview sample: its anchors at offsets from the preview's start,
    a sample recipient or `members` sample members, and `[variable]` for each template variable the
    context does not give (the preview shows the message even before the backend's data is known)."""
    definition = version.definition
    given = PROVIDED | set(definition.anchors) | set(context)
    missing = {var for step in definition.steps for var in template_variables(renderer, step.template)} - given
    filled = {**{var: f"‹{var}›" for var in sorted(missing)}, **context}

    def start(at: datetime) -> dict[str, Any]:
        body: dict[str, Any] = {"anchors": {name: at + offset for name, offset in anchors.items()}, "context": filled}
        if definition.roster:
            body["roster"] = [{"member_id": f"m{n}", "recipient": {
                "email": f"member{n}@example.com", "name": f"Member {n}", "time_zone": "Europe/Berlin"}}
                for n in range(1, members + 1)]
        else:
            body["recipient"] = {"email": "someone@example.com", "name": "Sam Someone", "time_zone": "Europe/Berlin"}
        return body

    return replace(kind_of(version), preview=PreviewSample("start", start))


def preview_service(version: Version, renderer: Renderer) -> Any:
    """`Scenario.service` for a declared preview: the journeys of this version, checked as the API checks them."""
    return lambda client, settings, kind: DeclaredJourneys(client, settings, version, renderer)
