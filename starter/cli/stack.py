"""`followups dev | worker | api`: run the stack, or one of its processes."""

from __future__ import annotations

import asyncio
from typing import Annotated, Optional

import typer

from settings import Settings, apply_process_settings


def dev(
    workers: Annotated[Optional[int], typer.Option(
        min=0, help="Run N `followups worker` processes instead of the worker in this process")] = None,
    no_worker: Annotated[bool, typer.Option(
        "--no-worker", help="No worker at all (= --workers 0): attach your own with the printed command")] = False,
) -> None:
    """Everything embedded (PostgreSQL, Temporal + Web UI, SMTP sink, worker, API); Ctrl-C stops it."""
    from starter.dev import run_dev

    if no_worker and workers:
        raise typer.BadParameter(f"--no-worker and --workers {workers} disagree", param_hint="--no-worker")
    try:
        asyncio.run(run_dev(Settings(), workers=0 if no_worker else workers))
    except KeyboardInterrupt:
        pass


def worker() -> None:
    """The worker: runs journeys and sends mail (needs Temporal, DATABASE_URL and SMTP)."""
    import worker as worker_module

    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("DATABASE_URL is not set", param_hint="DATABASE_URL")
    asyncio.run(worker_module.main(settings))


def api() -> None:
    """The HTTP API (OpenAPI at /docs)."""
    import uvicorn

    import observability
    from starter.api import create_app

    settings = Settings()
    apply_process_settings(settings)
    observability.configure_process(settings, "followups-api")
    if not settings.database_url:
        raise typer.BadParameter("DATABASE_URL is not set", param_hint="DATABASE_URL")
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info",
                log_config=None)  # uvicorn's lines through ours (FOLLOWUPS_LOG_FORMAT)


def add_stack(app: typer.Typer) -> None:
    for run in (dev, worker, api):
        app.command()(run)
