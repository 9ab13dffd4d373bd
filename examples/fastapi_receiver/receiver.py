"""A FastAPI receiver for Followups' event webhooks: verify, keep each event once, answer 2xx.

    FOLLOWUPS_WEBHOOK_SECRET=whsec_... uvicorn receiver:app --port 8002

Followups retries a delivery until it gets a 2xx (about a day), with the same `webhook-id` each
time: the id is the primary key of the events table, so a retry is acknowledged and not kept
twice. Only the body as received is verified (never a re-serialized copy), and the library refuses
a timestamp more than 5 minutes off, so a captured delivery cannot be replayed later."""

import json
import logging
import os
import sqlite3
from contextlib import closing

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
log = logging.getLogger("uvicorn.error")  # uvicorn's own logger: printed like its lines


def create_app(secret: str, database: str) -> FastAPI:
    verifier = Webhook(secret)
    with closing(sqlite3.connect(database)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS events (webhook_id TEXT PRIMARY KEY, type TEXT NOT NULL, "
                   "body TEXT NOT NULL, received_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    app = FastAPI(title="Followups webhook receiver")

    @app.post("/webhooks/followups")
    async def receive(request: Request) -> JSONResponse:
        if missing := [name for name in SIGNED_HEADERS if not request.headers.get(name)]:
            return JSONResponse({"error": f"missing {', '.join(missing)}"}, status_code=400)
        body = await request.body()
        try:
            event = verifier.verify(body, dict(request.headers))
        except WebhookVerificationError as err:
            return JSONResponse({"error": str(err)}, status_code=401)
        webhook_id = request.headers["webhook-id"]
        with closing(sqlite3.connect(database, timeout=10)) as db, db:
            kept = db.execute("INSERT INTO events (webhook_id, type, body) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                              (webhook_id, event["type"], json.dumps(event))).rowcount == 1
        log.info("%s %s %s", webhook_id, event["type"], "kept" if kept else "already kept")
        return JSONResponse({"kept": kept})

    return app


app = create_app(os.environ["FOLLOWUPS_WEBHOOK_SECRET"], os.environ.get("RECEIVER_DB", "events.sqlite3"))
