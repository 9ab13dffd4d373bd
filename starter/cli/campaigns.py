"""`followups campaign create | add | schedule | send | show | list | pause | resume | cancel | ab-test`:
broadcast campaigns through the HTTP API; `send` schedules one now and follows it with a live
progress bar (sent, skipped, failed, the rate, the ETA) until it ends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from starter.cli.common import call, console, parse_when, read_json_object

campaign_app = typer.Typer(help="Broadcast campaigns: create, add an audience, send, follow, pause.",
                           no_args_is_help=True)
ENDED = ("completed", "cancelled")


def _show(view) -> None:
    table = Table(title=f"campaign {view.campaign_id} ({view.kind})", show_header=False)
    progress = view.progress
    rows: list[tuple[str, Any]] = [
        ("name", view.name), ("status", view.status), ("template", view.template), ("priority", view.priority),
        ("scheduled at", view.scheduled_at), ("audience", progress.audience), ("sent", progress.sent),
        ("skipped", ", ".join(f"{reason}: {n}" for reason, n in progress.skipped.items()) or 0),
        ("failed", progress.failed), ("remaining", progress.remaining),
        ("rate", f"{progress.per_minute:.0f}/min"), ("eta", progress.eta), ("workflow", view.workflow_id)]
    for name, value in rows:
        if value is not None:
            table.add_row(name, str(value))
    console.print(table)


@campaign_app.command("create")
def create(
    campaign_id: Annotated[str, typer.Argument(help="Your id for it")],
    template: Annotated[str, typer.Option(help="The template every recipient gets")],
    name: Annotated[Optional[str], typer.Option(help="A name to show (default: the id)")] = None,
    priority: Annotated[str, typer.Option(help="urgent, high, normal or low")] = "normal",
    context: Annotated[Optional[Path], typer.Option(help="A JSON file of template variables for everyone")] = None,
    ab_test: Annotated[Optional[Path], typer.Option(help="A JSON file with the A/B test plan")] = None,
    csv: Annotated[Optional[typer.FileText], typer.Option(help="The audience: email,name[,time_zone,…]")] = None,
    journey: Annotated[Optional[str], typer.Option(help="The audience: everyone on this declared journey…")] = None,
    group: Annotated[Optional[str], typer.Option(help="…of this group (e.g. a course)")] = None,
) -> None:
    """A draft, with its audience from a CSV and/or a filter."""
    body: dict[str, Any] = {"campaign_id": campaign_id, "name": name or campaign_id, "template": template,
                            "priority": priority}
    if context:
        body["context"] = read_json_object(str(context))
    if ab_test:
        body["ab_test"] = read_json_object(str(ab_test))
    if journey:
        body["audience_filter"] = {"journey": journey, **({"group": group} if group else {})}
    view = call(lambda c: c.create_campaign(body))
    if csv is not None:
        _add_csv(campaign_id, csv.read())
        view = call(lambda c: c.campaign(campaign_id))
    _show(view)


def _add_csv(campaign_id: str, text: str) -> None:
    report = call(lambda c: c.add_campaign_recipients(campaign_id, text))
    console.print(f"added {report.added}; the audience is {report.audience}")
    for problem in report.rejected:
        console.print(f"  [yellow]line {problem['line']}[/yellow] {problem['field']}: {problem['reason']}")
    if report.rejected_count > len(report.rejected):
        console.print(f"  … and {report.rejected_count - len(report.rejected)} more rejected rows")


@campaign_app.command("add")
def add(campaign_id: str, csv: Annotated[typer.FileText, typer.Argument(help="email,name[,time_zone,…]")]) -> None:
    """Add a CSV to a draft's audience."""
    _add_csv(campaign_id, csv.read())


@campaign_app.command("schedule")
def schedule(campaign_id: str, at: Annotated[str, typer.Option(help="When: ISO 8601 with a zone, or +2h")]) -> None:
    """Send it later (again before it started: moves the time)."""
    _show(call(lambda c: c.schedule_campaign(campaign_id, parse_when(at))))


@campaign_app.command("send")
def send(campaign_id: str,
         wait: Annotated[bool, typer.Option(help="Follow the sending with a progress bar")] = True) -> None:
    """Send now, and follow it: sent / skipped / failed, the rate and the ETA, until it ends."""
    view = call(lambda c: c.schedule_campaign(campaign_id))
    if wait:
        view = follow(campaign_id, view)
    _show(view)


def follow(campaign_id: str, view, poll: float = 1.0):
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(campaign_id, total=view.progress.audience, detail="")
        while True:
            p = view.progress
            skipped = sum(p.skipped.values())
            eta = f" · ETA {p.eta:%H:%M:%S}" if p.eta else ""
            progress.update(task, total=p.audience, completed=p.sent + skipped + p.failed,
                            detail=f"{view.status} · {p.sent} sent, {skipped} skipped, {p.failed} failed · "
                                   f"{p.per_minute:.0f}/min{eta}")
            if view.status in ENDED:
                return view
            time.sleep(poll)
            view = call(lambda c: c.campaign(campaign_id))


@campaign_app.command("show")
def show(campaign_id: str) -> None:
    """Status and progress."""
    _show(call(lambda c: c.campaign(campaign_id)))


@campaign_app.command("list")
def list_campaigns(limit: int = 50) -> None:
    """Broadcasts and lead-nurture campaigns."""
    table = Table("campaign", "kind", "status", "audience", "sent", "remaining")
    for view in call(lambda c: c.campaigns(limit)):
        p = view.progress
        table.add_row(view.campaign_id, view.kind, view.status, str(p.audience), str(p.sent), str(p.remaining))
    console.print(table)


@campaign_app.command("pause")
def pause(campaign_id: str) -> None:
    """Stop sending; what is on its way finishes."""
    _show(call(lambda c: c.pause_campaign(campaign_id)))


@campaign_app.command("resume")
def resume(campaign_id: str) -> None:
    """Carry on where it stopped."""
    _show(call(lambda c: c.resume_campaign(campaign_id)))


@campaign_app.command("cancel")
def cancel(campaign_id: str) -> None:
    """Nobody else is sent to."""
    _show(call(lambda c: c.cancel_campaign(campaign_id)))


@campaign_app.command("ab-test")
def ab_test(campaign_id: str) -> None:
    """Each arm's counts and rate, the tests, the decision and why."""
    view = call(lambda c: c.campaign_ab_test(campaign_id))
    console.print(f"A/B test on {view.plan.metric}: {view.status}")
    if view.decision is None:
        return
    table = Table("arm", "weight", "sent", "successes", "rate")
    for arm in view.decision["arms"]:
        table.add_row(arm["arm"], str(arm["weight"]), str(arm["sent"]), str(arm["successes"]), f"{arm['rate']:.2%}")
    console.print(table)
    for test in view.decision["tests"]:
        console.print(f"  against {test['against']}: z = {test['z']}, p = {test['p_value']:.3g}")
    console.print(f"decided {view.decision['decided_at']}: {view.decision['reason']}")
