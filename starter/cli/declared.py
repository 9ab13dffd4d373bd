"""`followups definitions save|list|show`, `followups journey start|show|event` for declared
journeys, and `followups preview definition FILE`, which plays a definition on the time-skipping
server before it is saved."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from pydantic import ValidationError
from rich.table import Table

from starter.cli.common import call, console, invalid, is_offset, parse_duration, parse_json, parse_when, read_json_object

definitions_app = typer.Typer(help="Journey definitions: a journey as data (JSON or YAML), in versions.",
                              no_args_is_help=True)
journey_app = typer.Typer(help="Start, steer and read the journeys of a saved definition.", no_args_is_help=True)


def _read_definition(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as err:
        console.print(f"[red]cannot read {path}[/red]: {err.strerror}")
        raise typer.Exit(2) from None
    from starter.routes.declared import yaml_to_json

    try:
        return json.loads(yaml_to_json(text.encode()))  # JSON is YAML too
    except ValueError as err:
        console.print(f"[red]{path}[/red]: {err}")
        raise typer.Exit(2) from None


@definitions_app.command("save")
def save(name: Annotated[str, typer.Argument(help="The definition's name, e.g. assignment_deadline")],
         path: Annotated[Path, typer.Argument(help="A YAML or JSON file")]) -> None:
    """Save a definition as a new version (the same body as the latest is not a new one)."""
    view = call(lambda c: c.save_definition(name, _read_definition(path)))
    console.print(f"{name} version {view.version} " + ("saved" if view.created else "unchanged (same as the latest)"))


@definitions_app.command("list")
def list_definitions() -> None:
    """Every definition at its latest version."""
    table = Table("name", "version", "source", "steps", "description")
    for view in call(lambda c: c.definitions()):
        table.add_row(view.name, str(view.version), view.source, ", ".join(s.name for s in view.definition.steps),
                      view.definition.description)
    console.print(table)


@definitions_app.command("show")
def show_definition(name: str, version: Annotated[Optional[int], typer.Option(help="A past version")] = None) -> None:
    """A definition as YAML (the latest version unless --version), and its versions."""
    view = call(lambda c: c.definition(name, version))
    console.print(f"# {name} version {view.version} ({view.source}, {view.created_at:%Y-%m-%d %H:%M})")
    typer.echo(yaml.safe_dump(view.definition.model_dump(mode="json"), sort_keys=False))


@journey_app.command("start")
def start(name: Annotated[str, typer.Argument(help="The definition's name")],
          body: Annotated[str, typer.Argument(help="The start as JSON: a file, - for stdin, or inline")]) -> None:
    """Start a journey of a saved definition: {id, recipient or roster, anchors, context}."""
    start_body = parse_json(body) if body.lstrip().startswith("{") else read_json_object(body)
    view = call(lambda c: c.start_journey(name, start_body))
    _show(view)


@journey_app.command("show")
def show(name: str, entity_id: str) -> None:
    """A journey's live state and its messages."""
    _show(call(lambda c: c.journey(name, entity_id)))


@journey_app.command("event")
def event(name: str, entity_id: str, kind: Annotated[str, typer.Argument(help="The event, e.g. submitted")],
          at: Annotated[Optional[str], typer.Option(help="An anchor event's moment: ISO time or +2d")] = None,
          member: Annotated[Optional[str], typer.Option(help="A member exit: the member_id")] = None,
          event_id: Annotated[Optional[str], typer.Option(help="Your id for it: a retry applies once")] = None) -> None:
    """Send an event of the definition (or cancel)."""
    moment = parse_when(at) if at else None
    _show(call(lambda c: c.journey_event(name, entity_id, kind, at=moment, member_id=member, event_id=event_id)))


def _show(view) -> None:
    state = view.state
    table = Table(title=view.workflow_id, show_header=False)
    if view.event is not None:
        table.add_row("event", f"{view.event.code}: {view.event.reason or view.event.event}")
    if state is None:
        table.add_row("state", "no worker answered: the journey is there, its state is not readable now")
    else:
        table.add_row("status", f"{state.status.value} (version {state.version})")
        for anchor, at in state.anchors.items():
            table.add_row(anchor, at.isoformat())
        if state.exited_members:
            table.add_row("left", ", ".join(f"{m} ({e})" for m, e in state.exited_members.items()))
        table.add_row("next", state.next_step.label if state.next_step else "—")
    for message in view.messages:
        table.add_row(message.status, message.key)
    console.print(table)


def _anchor(text: str) -> tuple[str, timedelta]:
    name, sep, at = text.partition("=")
    if not sep or not is_offset(at):
        raise typer.BadParameter(f"{text!r}: expected NAME=OFFSET like deadline=+5d")
    return name, parse_duration(at)


def _event(text: str) -> tuple[timedelta, str, dict[str, Any]]:
    at, _, rest = text.partition(":")
    kind, _, fields = rest.partition(":")
    if not kind or not is_offset(at):
        raise typer.BadParameter(f"{text!r}: expected OFFSET:EVENT[:JSON] like +2d:submitted:{{\"member_id\": \"m1\"}}")
    given = parse_json(fields) if fields else {}
    if not isinstance(given, dict):
        raise typer.BadParameter(f"{text!r}: the fields must be a JSON object")
    from starter.preview import Later

    if isinstance(given.get("at"), str) and is_offset(given["at"]):
        given["at"] = Later(parse_duration(given["at"]))
    return parse_duration(at), kind, given


def preview_definition(
    path: Annotated[Path, typer.Argument(help="A definition, YAML or JSON (not saved)")],
    anchor: Annotated[list[Any], typer.Option("--anchor", parser=_anchor, metavar="NAME=OFFSET",
                                              help="An anchor at an offset from the start, e.g. deadline=+5d")] = [],
    context: Annotated[Optional[str], typer.Option(help="The templates' context as JSON (missing ones show as ‹name›)")] = None,
    members: Annotated[int, typer.Option(min=1, max=50, help="Sample members on a roster")] = 2,
    events: Annotated[list[Any], typer.Option("--event", parser=_event, metavar="OFFSET:EVENT[:JSON]",
                                              help='An event at an offset, e.g. +2d:submitted:{"member_id": "m1"}')] = [],
) -> None:
    """Play a definition on the time-skipping server and print every message it would send, and
    when, before it is saved. Anchors not given start at the start (+0)."""
    from activities.definitions import Version, digest
    from activities.render import Renderer
    from settings import Settings
    from starter.cli.preview import _print
    from starter.declared import preview_kind, preview_service
    from starter.preview import Scenario, play
    from starter.service import template_names
    from workflows.declared.definition import Definition

    try:
        definition = Definition.model_validate(_read_definition(path), context={"templates": template_names()})
    except ValidationError as err:
        invalid(err, f"{path}: ")
    given = dict(anchor)
    unknown = set(given) - set(definition.anchors)
    if unknown:
        raise typer.BadParameter(f"no anchor {', '.join(sorted(unknown))}: the anchors are {', '.join(definition.anchors)}",
                                 param_hint="--anchor")
    anchors = {name: given.get(name, timedelta(0)) for name in definition.start_anchors}
    name = path.stem.replace("-", "_").lower()
    version = Version(name, 1, definition, digest(definition), "preview", datetime.now(timezone.utc))
    renderer = Renderer()
    kind = preview_kind(version, anchors, parse_json(context) if context else {}, members, renderer)
    from starter.preview import Later

    for at, kind_name, fields in events:  # an anchor event without `at` happened when it was sent, as over HTTP
        spec = definition.event(kind_name)
        if spec is not None and spec.sets is not None and "at" not in fields:
            fields["at"] = Later(at)
    scenario = Scenario(kind, events=list(events), service=preview_service(version, renderer))
    _print(asyncio.run(play(scenario, Settings())), "start +")
