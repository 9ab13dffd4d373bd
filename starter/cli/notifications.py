"""`followups notifications list | unread | read | read-all`: a recipient's in-app notifications."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from starter.cli.common import call, console

notifications_app = typer.Typer(help="In-app notifications (the in_app channel), per recipient address.",
                                no_args_is_help=True)


@notifications_app.command("list")
def notifications_list(
    recipient: Annotated[str, typer.Argument(help="The recipient's email address")],
    unread: Annotated[bool, typer.Option("--unread", help="Only those not read yet")] = False,
    limit: int = 50,
    before: Annotated[Optional[int], typer.Option(help="Older than this id (the previous page's last)")] = None,
) -> None:
    """A recipient's notifications, newest first; the command for the next page is printed."""
    page = call(lambda c: c.notifications(recipient, limit=limit, before=before, unread_only=unread))
    table = Table("id", "", "created", "title", "key")
    for n in page.notifications:
        table.add_row(str(n.id), "" if n.read else "●", f"{n.created_at:%Y-%m-%d %H:%M}", n.title, n.key)
    console.print(table)
    if page.next_before is not None:
        console.print(f"older: followups notifications list {recipient} --before {page.next_before}"
                      + (" --unread" if unread else ""))


@notifications_app.command("unread")
def notifications_unread(recipient: Annotated[str, typer.Argument(help="The recipient's email address")]) -> None:
    """How many of a recipient's notifications are unread."""
    typer.echo(call(lambda c: c.unread_count(recipient)))


@notifications_app.command("read")
def notifications_read(ids: Annotated[list[int], typer.Argument(help="Notification ids")]) -> None:
    """Mark notifications read."""
    for notification_id in ids:
        view = call(lambda c, i=notification_id: c.mark_read(i))
        console.print(f"{view.id} read ({view.title})")


@notifications_app.command("read-all")
def notifications_read_all(
    recipient: Annotated[str, typer.Argument(help="The recipient's email address")],
    up_to: Annotated[Optional[int], typer.Option(help="Only those up to this id")] = None,
) -> None:
    """Mark every unread notification of a recipient read."""
    marked = call(lambda c: c.mark_all_read(recipient, up_to))
    console.print(f"{marked.marked} marked read")
