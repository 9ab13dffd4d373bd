"""`followups announce COURSE ID --title … --url …`: a new-content notice to the course's enrolled
list (or a recipients file), with a live progress bar until everyone is done."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from starter.cli.common import call, console, read_json_object


def announce(
    course: Annotated[str, typer.Argument(help="The course, as the enrollment journeys' group")],
    announcement_id: Annotated[str, typer.Argument(help="Your id for it: posting it again sends nobody twice")],
    title: Annotated[str, typer.Option(help="What is new")],
    url: Annotated[str, typer.Option(help="Where it is")],
    summary: Annotated[Optional[str], typer.Option(help="A sentence or two")] = None,
    recipients: Annotated[Optional[str], typer.Option(
        help="A JSON file {\"recipients\": [{email, name, time_zone}]} (default: everyone enrolled)")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the sending with a progress bar")] = True,
) -> None:
    """Notify everyone once, and show sent / skipped / failed as it goes."""
    body: dict[str, Any] = {"announcement_id": announcement_id, "title": title, "url": url}
    if summary:
        body["summary"] = summary
    if recipients:
        body["recipients"] = read_json_object(recipients).get("recipients")
    view = call(lambda c: c.announce(course, body))
    if not view.created:
        console.print("posted before with the same body: nothing more is sent")
    if wait:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"{announcement_id} to {course}", total=view.audience)
            while True:
                progress.update(task, completed=view.audience - view.remaining)
                if view.done:
                    break
                time.sleep(0.5)
                view = call(lambda c: c.announcement(course, announcement_id))
    skipped = ", ".join(f"{n} {reason}" for reason, n in view.skipped.items()) or "none"
    console.print(f"audience {view.audience}: sent {view.sent}, skipped {skipped}, failed {view.failed}, "
                  f"remaining {view.remaining}")
