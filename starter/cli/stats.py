"""`followups stats [--template NAME | --journey KIND | --campaign C] [--since] [--until]`: what
became of the messages (GET /v1/analytics/…) as a table: counts, rates over sent, time to open;
for a template, a column per version and A/B variant."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Optional

import typer
from rich.table import Table

from starter.cli.common import call, console, is_offset, parse_duration, parse_moment
from starter.routes.analytics import FiguresView

ROWS = ("sent", "dry_run", "delivered", "opened_human", "opened_machine", "clicked_human", "clicked_machine",
        "bounced", "soft_bounced", "complained", "unsubscribed")


def _moment(text: str | None) -> datetime | None:
    """An ISO 8601 time with a zone, or a duration meaning that long ago (`7d`, `+12h`)."""
    if text is None:
        return None
    if is_offset(text):
        return datetime.now(timezone.utc) - parse_duration(text)
    return parse_moment(text)


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _when(moment: datetime | None, otherwise: str) -> str:
    return f"{moment:%Y-%m-%d %H:%M %z}" if moment else otherwise


def _column(figures: FiguresView) -> list[str]:
    cells = [str(figures.messages), str(figures.pending)]
    for name in ROWS:
        count = getattr(figures, name)
        cells.append(f"{count} ({figures.rates[name]:.1%})" if name in figures.rates else str(count))
    cells.append(str(figures.failed))
    cells.append(", ".join(f"{reason} {n}" for reason, n in figures.skipped.items()) or "0")
    opened = figures.time_to_open
    cells.append(f"{_seconds(opened.p50)} / {_seconds(opened.p90)} / {_seconds(opened.p99)} "
                 f"({opened.opens} open{'' if opened.opens == 1 else 's'})")
    return cells


def stats(
    template: Annotated[Optional[str], typer.Option(help="One template, per version and variant")] = None,
    journey: Annotated[Optional[str], typer.Option(help="One journey kind (payment, enrollment, digest, …)")] = None,
    campaign: Annotated[Optional[str], typer.Option(help="One lead campaign")] = None,
    since: Annotated[Optional[str], typer.Option(help="Messages created from: ISO 8601 with a zone, or 7d (ago)")] = None,
    until: Annotated[Optional[str], typer.Option(help="Messages created before: ISO 8601 with a zone, or 1d (ago)")] = None,
) -> None:
    """Sent, delivered, opened and clicked (by people / by machines), bounced, complained,
    unsubscribed, failed, skipped by reason; rates over sent; time to open p50 / p90 / p99."""
    chosen = [(name, value) for name, value in (("template", template), ("journey", journey),
                                                 ("campaign", campaign)) if value is not None]
    if len(chosen) > 1:
        raise typer.BadParameter("give at most one of --template, --journey, --campaign")
    scope, name = (f"{chosen[0][0]}s", chosen[0][1]) if chosen else ("overall", None)
    view = call(lambda c: c.analytics(scope, name, since=_moment(since), until=_moment(until)))
    title = f"{view.scope}{' ' + view.name if view.name else ''}"
    if view.since or view.until:
        title += f" · created {_when(view.since, '…')} to {_when(view.until, 'now')}"
    groups = [("all", view.totals)] + [
        (("file" if g.template_version is None else f"v{g.template_version}") + (f" {g.variant}" if g.variant else ""), g)
        for g in view.breakdown]
    table = Table("", *(label for label, _ in groups), title=title)
    columns = [_column(figures) for _, figures in groups]
    labels = ["messages", "pending", *(name.replace("_", " ") for name in ROWS), "failed", "skipped",
              "time to open p50 / p90 / p99"]
    for n, label in enumerate(labels):
        table.add_row(label, *(column[n] for column in columns))
    console.print(table)
