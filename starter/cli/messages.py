"""`followups messages` and `followups resend`: the outbox, and a forced resend of one step."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from starter.cli.common import call, console


def messages(
    journey: Annotated[Optional[str], typer.Option()] = None,
    status: Annotated[Optional[str], typer.Option(help="queued, sending, sent, skipped, failed, dry_run")] = None,
    limit: int = 100,
) -> None:
    """Every message recorded by the send step, oldest first."""
    rows = call(lambda c: c.messages(journey=journey, status=status, limit=limit))
    table = Table("key", "status", "to", "subject", "reason")
    for m in rows:
        table.add_row(m.key, m.status, m.recipient, m.subject or "", m.reason or "")
    console.print(table)


def resend(key: str) -> None:
    """Force one step out again (new key `KEY/resend-N`); the original record stays as it was."""
    view = call(lambda c: c.resend(key))
    console.print(f"resending {view.original_key} as [bold]{view.new_key}[/bold] ({view.workflow_id})")


def add_messages(app: typer.Typer) -> None:
    app.command()(messages)
    app.command()(resend)
