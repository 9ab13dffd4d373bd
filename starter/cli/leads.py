"""`followups leads import | stats`: CSV imports with a progress bar, and a campaign's numbers.
(A lead's own journey is `followups lead …`, generated like every kind's; `leads converted` and
`leads show` stay here too, as they were before.)"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from starter.cli.common import call, console
from starter.cli.journeys import commands
from workflows.registry import LEAD

IMPORT_CHUNK_ROWS = 2000
SHOWN = 200  # rejected rows listed on screen; the rest by `followups leads problems`

leads_app = typer.Typer(help="Import leads, report conversions, read campaign stats.", no_args_is_help=True)


@leads_app.command("import")
def leads_import(
    file: Annotated[typer.FileText, typer.Argument(help="CSV with lead_id,email,name[,company,time_zone,offer_url]")],
    campaign: Annotated[Optional[str], typer.Option(help="Campaign for every row (else a campaign column)")] = None,
) -> None:
    """One journey per row, sent in chunks with a progress bar; bad rows are listed with their line."""
    import csv
    import io

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    reader = csv.reader(file)
    try:
        header = next(reader)
    except StopIteration:
        console.print("[red]the file is empty[/red]: expected a header row with lead_id,email,name")
        raise typer.Exit(2) from None
    rows = [(reader.line_num, row) for row in reader]
    totals = {"rows": 0, "started": 0, "already_imported": 0}
    rejected, ignored, rejected_count, with_problems = [], set(), 0, []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"importing {file.name}", total=len(rows))
        for start in range(0, max(len(rows), 1), IMPORT_CHUNK_ROWS):
            chunk = rows[start:start + IMPORT_CHUNK_ROWS]
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(header)
            writer.writerows(row for _, row in chunk)
            first_line = chunk[0][0] - 1 if chunk else 1
            report = call(lambda c, text=buffer.getvalue(), at=first_line: c.import_leads(text, campaign, at))
            for name in totals:
                totals[name] += getattr(report, name)
            rejected += report.rejected[:SHOWN - len(rejected)]
            rejected_count += report.rejected_count
            if report.rejected_count:
                with_problems.append(report.import_id)
            ignored.update(report.ignored_columns)
            progress.advance(task, len(chunk))
    console.print(f"{totals['rows']} rows: [green]{totals['started']} started[/green], "
                  f"{totals['already_imported']} already imported, [red]{rejected_count} rejected[/red]")
    if ignored:
        console.print(f"ignored columns: {', '.join(sorted(ignored))}")
    if rejected:
        table = Table("line", "field", "reason", title="rejected rows (skipped)")
        for problem in rejected:
            table.add_row(str(problem.line), problem.field, problem.reason)
        console.print(table)
        if rejected_count > len(rejected):
            console.print(f"… and {rejected_count - len(rejected)} more: "
                          + "; ".join(f"followups leads problems {import_id}" for import_id in with_problems))


@leads_app.command("problems")
def leads_problems(import_id: str) -> None:
    """Every rejected row of one import (its import_id), as `line<TAB>field<TAB>reason`."""
    after = 0
    while True:
        page = call(lambda c, at=after: c.import_problems(import_id, at))
        for problem in page.problems:
            typer.echo(f"{problem.line}\t{problem.field}\t{problem.reason}")
        if page.next_after is None:
            return
        after = page.next_after


@leads_app.command("stats")
def leads_stats(campaign: str) -> None:
    """Leads started, emailed per step, converted, conversion rate, replied, unsubscribed."""
    stats = call(lambda c: c.campaign_stats(campaign))
    table = Table(title=f"campaign {stats.campaign}", show_header=False)
    table.add_row("leads started", str(stats.started))
    for step, count in stats.emailed_per_step.items():
        table.add_row(f"emailed {step}", str(count))
    table.add_row("converted", f"{stats.converted} ({stats.conversion_rate:.1%})")
    table.add_row("replied", str(stats.replied))
    table.add_row("unsubscribed", str(stats.unsubscribed))
    console.print(table)


for _name, _callback in commands(LEAD).items():
    if _name in ("converted", "show"):
        leads_app.command(_name)(_callback)
