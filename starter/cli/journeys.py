"""`followups KIND start|show|EVENT …` for every kind in the registry, through the HTTP API.

`start` takes the start body as a JSON file (or `-` for stdin), or the id and one option per field
(`followups payment start inv-7 --payer-email … --amount 49.90 …`), or both: options win over the
file. An event's command is named like its route (`confirm`, `resend-reminder`, `checkin`; a route
shared by two events, `attendees`, is named by each event: `add-attendee`, `remove-attendee`). Its
required fields are positional (`followups interview confirm 42 +3d`), the rest are options
(`--event-id` on every one). Input is checked against the kind's own models before it is sent.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from starter.cli.common import call, invalid, is_json_source, read_json_object, show
from starter.cli.options import (
    ARGUMENT, UNSET, FieldShape, Param, body_of, command, option_names, param, shapes, spelled, summary,
)
from starter.cli.spellings import spellings
from workflows.registry import KINDS, EventRoute, JourneyKind


def command_name(kind: JourneyKind, route: EventRoute) -> str:
    """The route's path without its parameters; by the event's kind where two routes share a path."""
    def bare(r: EventRoute) -> str:
        return "-".join(part for part in r.path.split("/") if not part.startswith("{"))

    shared = Counter(bare(r) for r in kind.events)[bare(route)] > 1
    return route.kind.replace("_", "-") if shared else bare(route)


def _entity(kind: JourneyKind, dest: str = "entity_id") -> Param:
    return Param(dest, Annotated[str, typer.Argument(metavar=kind.id_field.upper(), show_default=False)])


def event_fields(kind: JourneyKind, route: EventRoute) -> list[FieldShape]:
    """What a user gives for an event: its fields but `kind` and those the path carries."""
    return [f for f in shapes(kind.event_models[route.kind])
            if f.path[0] != "kind" and f.path[0] not in route.path_params]


def event_params(kind: JourneyKind, route: EventRoute) -> list[Param]:
    fields = event_fields(kind, route)
    names, spelling = option_names(fields), spellings(kind.name, route.kind)
    path = [Param(f"p_{name}", Annotated[str, typer.Argument(metavar=name.upper(), show_default=False)], UNSET, (name,))
            for name in route.path_params]
    params = []
    for field in fields:
        positional = field.required and field.scalar != "bool" and not field.many
        params.append(param(field, ARGUMENT if positional else spelled(field, names[field.path], spelling)))
    return [*path, *params]


def _event_command(kind: JourneyKind, route: EventRoute) -> Any:
    params = event_params(kind, route)
    model = kind.event_models[route.kind]

    def run(values: dict[str, Any]) -> None:
        entity_id = values.pop("entity_id")
        try:
            event = kind.event({**body_of(params, values), "kind": route.kind})
        except ValidationError as err:
            invalid(err)
        fields = event.model_dump(mode="json", exclude_unset=True, exclude={"kind"})
        show(call(lambda c: c.journeys[kind.name].send(entity_id, route.kind, **fields)))

    doc = summary(model, f"The {route.kind.replace('_', ' ')} event.")
    return command([_entity(kind), *params], run, f"{doc}\n\n`{route.method} /v1/{kind.plural}/{{id}}/{route.path}`")


def start_params(kind: JourneyKind, spelling: dict[str, Any], times: Any = None) -> list[Param]:
    """One option per field of the start but its id (`--candidate-email`, `--followup-after`…)."""
    fields = [f for f in shapes(kind.start_model) if f.path != (kind.id_field,)]
    names = option_names(fields)
    return [param(f, spelled(f, names[f.path], spelling), *([times] if times else [])) for f in fields]


def _start_command(kind: JourneyKind) -> Any:
    params = start_params(kind, spellings(kind.name, "start"))
    source = Param("source", Annotated[str, typer.Argument(
        metavar=f"{kind.id_field.upper()}|FILE.json|-", show_default=False,
        help=f"the {kind.name}'s id (the body from the options), or its JSON body: a file, or - for stdin")])

    def run(values: dict[str, Any]) -> None:
        given = values.pop("source")
        body = read_json_object(given) if is_json_source(given) else {kind.id_field: given}
        try:
            start = kind.start_model.model_validate(body_of(params, values, body))
        except ValidationError as err:
            invalid(err)
        show(call(lambda c: c.journeys[kind.name].start(start)))

    return command([source, *params], run, f"Start a journey: {kind.description}\n\n`POST /v1/{kind.plural}`")


def _show_command(kind: JourneyKind) -> Any:
    def run(values: dict[str, Any]) -> None:
        show(call(lambda c: c.journeys[kind.name].get(values["entity_id"])))

    return command([_entity(kind)], run, f"The {kind.name} journey's live state and its messages.")


def commands(kind: JourneyKind) -> dict[str, Any]:
    """Every command of a kind by name: start, show and one per event route."""
    found = {"start": _start_command(kind), "show": _show_command(kind)}
    for route in kind.events:
        name = command_name(kind, route)
        assert name not in found, f"{kind.name}: two commands named {name}"
        found[name] = _event_command(kind, route)
    return found


def kind_app(kind: JourneyKind, only: set[str] | None = None, help: str | None = None) -> typer.Typer:
    sub = typer.Typer(help=help or f"Start and steer {kind.name} journeys (through the HTTP API).",
                      no_args_is_help=True)
    for name, callback in commands(kind).items():
        if only is None or name in only:
            sub.command(name)(callback)
    return sub


def add_kinds(app: typer.Typer) -> None:
    for kind in KINDS.values():
        app.add_typer(kind_app(kind), name=kind.name)
