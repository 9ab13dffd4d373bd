"""`followups`: run the stack (dev, worker, api), start and steer journeys through the HTTP API,
read messages, preview a journey. The journey commands and previews are generated from the
registry (`journeys.py`, `preview.py`): a new kind gets `followups KIND start|show|EVENT` and
`followups preview KIND` without CLI code."""

from __future__ import annotations

import typer

from starter.cli.bulk import bulk_app
from starter.cli.campaigns import campaign_app
from starter.cli.courses import announce
from starter.cli.declared import definitions_app, journey_app, preview_definition
from starter.cli.common import parse_duration, parse_when
from starter.cli.journeys import add_kinds
from starter.cli.leads import leads_app
from starter.cli.messages import add_messages
from starter.cli.notifications import notifications_app
from starter.cli.preview import preview_app
from starter.cli.stack import add_stack
from starter.cli.stats import stats
from starter.cli.webhooks import webhooks_app

__all__ = ["app", "parse_duration", "parse_when"]

app = typer.Typer(help="Durable follow-up and reminder journeys on Temporal.", no_args_is_help=True)
add_stack(app)
add_kinds(app)
app.add_typer(leads_app, name="leads")
app.add_typer(bulk_app, name="bulk")
app.add_typer(campaign_app, name="campaign")
add_messages(app)
app.add_typer(notifications_app, name="notifications")
app.add_typer(webhooks_app, name="webhooks")
app.command("announce")(announce)
app.add_typer(definitions_app, name="definitions")
app.add_typer(journey_app, name="journey")
preview_app.command("definition")(preview_definition)
app.add_typer(preview_app, name="preview")
app.command("stats")(stats)
