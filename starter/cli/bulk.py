"""`followups bulk cancel | signal`: act on every running journey matching a filter."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from starter.cli.common import call, console, parse_json
from workflows.registry import KINDS

bulk_app = typer.Typer(help="Act on every running journey matching a filter (Temporal visibility).",
                       no_args_is_help=True)

_JOURNEY = f"The kind: {', '.join(KINDS)}"
_GROUPS = " or ".join(f"a {kind.name}'s {kind.group_field}" for kind in KINDS.values() if kind.group_field)


def _print(report) -> None:
    console.print(f"[bold]{report.matched}[/bold] matched ({report.query}), [green]{report.changed} changed[/green], "
                  f"{report.unchanged} unchanged · request id {report.request_id}")
    for problem in report.problems[:50]:
        console.print(f"  {problem}")


@bulk_app.command("cancel")
def bulk_cancel(
    journey: Annotated[Optional[str], typer.Option(help=_JOURNEY)] = None,
    group: Annotated[Optional[str], typer.Option(help=_GROUPS)] = None,
    recipient: Annotated[Optional[str], typer.Option(help="The journey's recipient email")] = None,
    stage: Annotated[Optional[str], typer.Option(help="Only journeys in this stage, e.g. pending")] = None,
    reason: Annotated[Optional[str], typer.Option()] = None,
    request_id: Annotated[Optional[str], typer.Option(help="Reuse to retry safely")] = None,
) -> None:
    """Cancel every running journey matching the filter, e.g. `--journey session --group math-101`."""
    _print(call(lambda c: c.bulk_cancel(journey=journey, group=group, recipient=recipient, stage=stage,
                                        reason=reason, request_id=request_id)))


@bulk_app.command("signal")
def bulk_signal(
    journey: Annotated[str, typer.Option(help=_JOURNEY)],
    event: Annotated[str, typer.Option(help='The event as JSON, e.g. {"kind": "remove_attendee", "attendee_id": "ann"}')],
    group: Annotated[Optional[str], typer.Option(help=_GROUPS)] = None,
    recipient: Annotated[Optional[str], typer.Option()] = None,
    stage: Annotated[Optional[str], typer.Option(help="Only journeys in this stage")] = None,
    request_id: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """Send one event to every running journey of a kind matching the filter."""
    try:
        payload = parse_json(event)
    except typer.BadParameter as err:
        raise typer.BadParameter(str(err), param_hint="--event") from None
    _print(call(lambda c: c.bulk_signal(payload, journey=journey, group=group, recipient=recipient, stage=stage,
                                        request_id=request_id)))
