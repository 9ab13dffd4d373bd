"""`followups preview KIND`: play a journey on the time-skipping server, for every kind with a
`preview` sample in the registry.

Options: the start's fields over the sample's (as `start` takes them, times as offsets from the
anchor: `--scheduled-at +3d`, `--reminder-after 1d`), one `--<event command> AT[@WHEN]` per event
route (`--confirm +60h@+7d`: at anchor + 60 h, confirm for anchor + 7 d; WHEN fills the event's
required time), and `--event OFFSET:KIND[:JSON]` for any event with any fields (`"+4d"` times in
the JSON count from the anchor too). The sample fills what an event needs beyond that.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.table import Table

from settings import Settings
from starter.cli.common import console, invalid, is_offset, parse_duration, parse_json
from starter.cli.journeys import command_name, event_fields, start_params
from starter.cli.options import Param, body_of, command, summary
from starter.cli.spellings import PREVIEW_EVENT_SPELLINGS, spellings
from starter.preview import PLAY_DAYS, Later, Scenario, offset
from workflows.registry import KINDS, EventRoute, JourneyKind

preview_app = typer.Typer(help="Play a journey on the time-skipping server and print what it would send.",
                          no_args_is_help=True)


def parse_later(text: str) -> Later | datetime:
    """`+3d` from the anchor, or an ISO time."""
    from starter.cli.common import parse_moment

    return Later(parse_duration(text)) if is_offset(text) else parse_moment(text)


def _pair(text: str) -> tuple[timedelta, Later | None]:
    at, sep, moment = text.partition("@")
    return parse_duration(at), Later(parse_duration(moment)) if sep else None


def _time_field(kind: JourneyKind, route: EventRoute) -> str | None:
    """The event's first required time (`scheduled_at`, `starts_at`): what `AT@WHEN` sets."""
    return next((f.path[0] for f in event_fields(kind, route) if f.scalar == "datetime" and f.required), None)


def _event_parser(kind: JourneyKind):
    routes = {name: route for route in kind.events for name in (route.kind, command_name(kind, route))}

    def parse(text: str) -> tuple[timedelta, str, dict[str, Any]]:
        at, _, rest = text.partition(":")
        name, _, fields = rest.partition(":")
        if name not in routes:
            raise typer.BadParameter(f"{text!r}: expected OFFSET:KIND[:JSON], KIND one of {', '.join(routes)}")
        route, given = routes[name], parse_json(fields) if fields else {}
        if not isinstance(given, dict):
            raise typer.BadParameter(f"{text!r}: the fields must be a JSON object")
        times = {f.path[0] for f in event_fields(kind, route) if f.scalar == "datetime"}
        for key, value in given.items():
            if key in times and isinstance(value, str) and is_offset(value):
                given[key] = Later(parse_duration(value))
        return parse_duration(at), route.kind, given
    return parse


def _session_at(body: dict[str, Any], at: Later | datetime) -> None:
    body["starts_at"], body["ends_at"] = at, at + timedelta(hours=1)


def _session_roster(body: dict[str, Any], size: int) -> None:
    body["attendees"] = [{"attendee_id": f"student-{n}", "name": f"Student {n}", "email": f"student{n}@example.com",
                          "time_zone": "Europe/Berlin"} for n in range(1, size + 1)]


# Hand-written preview options kept from before the previews were generated; each replaces a
# generated option of the same name (`--attendees N` instead of the start's roster as JSON).
TWEAKS: dict[str, list[Param]] = {"session": [
    Param("t_at", Annotated[Optional[Any], typer.Option(
        "--at", parser=parse_later, metavar="WHEN", help="The class (1 h long), as an offset from now: +2d")],
        None, apply=_session_at, decls=("--at",)),
    Param("t_attendees", Annotated[Optional[int], typer.Option(
        "--attendees", min=1, max=50, help="How many students on the roster (default 2)")],
        None, apply=_session_roster, decls=("--attendees",)),
]}


def _event_params(kind: JourneyKind) -> list[Param]:
    params = []
    for route in kind.events:
        name, time = command_name(kind, route), _time_field(kind, route)
        doc = summary(kind.event_models[route.kind], f"The {route.kind.replace('_', ' ')} event.")
        when = f"at anchor + AT, {time} = anchor + WHEN" if time else "at anchor + AT"
        decls = (f"--{name}", *PREVIEW_EVENT_SPELLINGS.get((kind.name, route.kind), ()))
        params.append(Param(f"e_{route.kind}", Annotated[list[Any], typer.Option(
            *decls, parser=_pair, metavar="AT@WHEN" if time else "AT", show_default=False,
            help=f"{doc} ({when}; repeatable)")], [], decls=decls))
    params.append(Param("events", Annotated[list[Any], typer.Option(
        "--event", parser=_event_parser(kind), metavar="OFFSET:KIND[:JSON]", show_default=False,
        help='Any event at anchor + OFFSET, e.g. +2d:cancel:{"reason": "ill"}; repeatable')], [], decls=("--event",)))
    return params


def _preview_command(kind: JourneyKind) -> Any:
    assert kind.preview is not None
    tweaks = TWEAKS.get(kind.name, [])
    taken = {part for p in tweaks for d in p.decls for part in d.split("/")}
    starts = [p for p in start_params(kind, spellings(kind.name, "start", "preview"), times=parse_later)
              if not {part for d in p.decls for part in d.split("/")} & taken]
    events = _event_params(kind)

    def run(values: dict[str, Any]) -> None:
        scenario = Scenario(kind, start=body_of([*starts, *tweaks], values), events=list(values["events"]))
        for route in kind.events:
            for at, moment in values[f"e_{route.kind}"]:
                time = _time_field(kind, route)
                if moment is not None and time is None:
                    raise typer.BadParameter(f"{route.kind} has no time to set: give AT only",
                                             param_hint=f"--{command_name(kind, route)}")
                scenario.events.append((at, route.kind, {time: moment} if moment is not None else {}))
        now = datetime.now(timezone.utc)  # checked before a server starts; played at the server's time
        try:
            scenario.start_at(now)
        except ValidationError as err:
            invalid(err, "the start: ")
        for at, event_kind, fields in scenario.events:
            try:
                scenario.event_at(event_kind, fields, now)
            except ValidationError as err:
                invalid(err, f"{event_kind} at +{offset(at)}: ")
        from starter.preview import play

        _print(asyncio.run(play(scenario, Settings())), f"{kind.preview.anchor} +")

    return command([*starts, *tweaks, *events], run, f"{kind.description}\n\nPlays the real workflow on the "
                   "time-skipping server and prints every message it would send, and when (rendered, delivered "
                   f"nowhere). Times are offsets from the anchor ({kind.preview.anchor}).")


def _print(result, anchor: str) -> None:
    table = Table(anchor, "when (UTC)", "step", "status", "subject / reason")
    for line in result.lines:
        table.add_row(line.offset, line.at, line.step, line.status, line.text)
    console.print(table)
    if result.ended:
        console.print(f"journey ended: [bold]{result.final_status}[/bold]")
    else:
        console.print(f"still [bold]{result.final_status}[/bold] after {PLAY_DAYS} days: the preview stops there")


for _kind in KINDS.values():
    if _kind.preview is not None:
        preview_app.command(_kind.name)(_preview_command(_kind))
