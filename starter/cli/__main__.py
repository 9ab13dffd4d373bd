"""`python -m starter.cli` is `followups`."""

from starter.cli import app

app()
