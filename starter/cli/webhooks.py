"""`followups webhooks types | add | list | show | deliveries | retry | delete`: the event webhooks
that tell a backend what happened (README: Event webhooks)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from starter.cli.common import call, console

webhooks_app = typer.Typer(help="Event webhooks: endpoints your backend is told what happened at.",
                           no_args_is_help=True)


@webhooks_app.command("types")
def webhooks_types() -> None:
    """The event types an endpoint can ask for."""
    table = Table("type", "when")
    for item in call(lambda c: c.webhook_event_types()):
        table.add_row(item.type, item.description)
    console.print(table)


@webhooks_app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument(help="Where events are POSTed")],
    event_type: Annotated[Optional[list[str]], typer.Option("--type", help="A type it wants (repeat); none: all")] = None,
    description: str = "",
    secret: Annotated[Optional[str], typer.Option(help="whsec_…; left out: one is made")] = None,
) -> None:
    """Register an endpoint; its signing secret is printed once here (and by `show --secret`)."""
    body = {"url": url, "event_types": event_type or [], "description": description,
            **({"secret": secret} if secret else {})}
    created = call(lambda c: c.create_webhook_endpoint(body))
    console.print(f"{created.id}: {created.url} ({', '.join(created.event_types) or 'every type'})")
    console.print(f"secret: {created.secret}")


@webhooks_app.command("list")
def webhooks_list() -> None:
    """Every enabled endpoint."""
    table = Table("id", "url", "types", "created")
    for endpoint in call(lambda c: c.webhook_endpoints()):
        table.add_row(endpoint.id, endpoint.url, ", ".join(endpoint.event_types) or "every type",
                      f"{endpoint.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@webhooks_app.command("show")
def webhooks_show(endpoint_id: str,
                  secret: Annotated[bool, typer.Option("--secret", help="Print its signing secret")] = False) -> None:
    """One endpoint, and how many of its deliveries wait or failed."""
    endpoint = call(lambda c: c.webhook_endpoint(endpoint_id))
    console.print(f"{endpoint.id}: {endpoint.url} ({', '.join(endpoint.event_types) or 'every type'}), "
                  f"workflow {endpoint.workflow_id}")
    for status in ("pending", "failed"):
        page = call(lambda c, s=status: c.webhook_deliveries(endpoint_id, s, limit=500))
        more = "+" if page.next_after is not None else ""
        console.print(f"{status}: {len(page.deliveries)}{more}")
    if secret:
        console.print(f"secret: {call(lambda c: c.webhook_endpoint_secret(endpoint_id))}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    endpoint_id: str,
    status: Annotated[Optional[str], typer.Option(help="pending, delivered, failed or cancelled")] = None,
    after: int = 0,
    limit: int = 50,
) -> None:
    """An endpoint's deliveries, oldest first: what each got back, and when a pending one goes next."""
    page = call(lambda c: c.webhook_deliveries(endpoint_id, status, after, limit))
    table = Table("id", "type", "journey", "status", "tries", "last answer", "next")
    for d in page.deliveries:
        answer = d.last_error or (str(d.last_status) if d.last_status else "")
        table.add_row(str(d.id), d.type, d.journey_key, d.status, str(d.attempts), answer[:60],
                      f"{d.next_attempt_at:%H:%M:%S}" if d.next_attempt_at else "")
    console.print(table)
    if page.next_after is not None:
        console.print(f"more: followups webhooks deliveries {endpoint_id} --after {page.next_after}"
                      + (f" --status {status}" if status else ""))


@webhooks_app.command("retry")
def webhooks_retry(endpoint_id: str, delivery_ids: Annotated[list[int], typer.Argument(help="Delivery ids")]) -> None:
    """Send deliveries again now (a failed one, or one the receiver lost)."""
    for delivery_id in delivery_ids:
        delivery = call(lambda c, d=delivery_id: c.retry_webhook_delivery(endpoint_id, d))
        console.print(f"{delivery.id} ({delivery.type}): {delivery.status}, going now")


@webhooks_app.command("delete")
def webhooks_delete(endpoint_id: str) -> None:
    """Stop delivering to an endpoint; what was pending is cancelled."""
    call(lambda c: c.delete_webhook_endpoint(endpoint_id))
    console.print(f"{endpoint_id} deleted")
