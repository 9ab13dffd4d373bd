"""The webhook benchmark's receiver: a backend's route for event webhooks, in its own process (so its
CPU is neither the worker's nor the bench's).

Live: uvicorn serving a bare ASGI app that reads each POST, verifies its Standard Webhooks
signature with the `standardwebhooks` package (400 if it does not verify), and answers 200 with an
empty body. It counts webhook-ids: received, distinct, receipts of an id already seen, forged, and
the moments of the first and of the latest new id (what "delivered" means to a backend). A body
whose data carries `seq` is also checked for order per journey (data.journey/data.entity_id).
`--refuse-prefix P`: a verified event whose data.entity_id starts with P is answered 500 and not
counted (counted apart as `refused`), as a backend that cannot take one kind of journey's events.

Dead: a TCP server that accepts every connection and reads whatever comes, but never answers, so
a sender waits for its whole read timeout on every attempt. It counts connections (one attempt
each: an unanswered connection is never reused) and the most open at once.

    python -m bench.peers.webhook_receiver --secret whsec_… [--port 0] [--refuse-prefix P]
    python -m bench.peers.webhook_receiver --dead [--port 0]

prints `ready <port>` once it listens, then answers each `stats` line on stdin with one JSON line
and each `reset` line with `{}` (the counts start again). EOF on stdin or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Receiver:
    """The ASGI app: verify, count, answer."""

    def __init__(self, secret: str, refuse_prefix: str | None = None) -> None:
        self.webhook, self.refuse_prefix = Webhook(secret), refuse_prefix
        self.reset()

    def reset(self) -> None:
        self.seen: dict[str, int] = {}
        self.last_seq: dict[str, int] = {}
        self.received = self.forged = self.out_of_order = self.refused = 0
        self.first: float | None = None
        self.last: float | None = None

    def stats(self) -> dict[str, Any]:
        return {"received": self.received, "distinct": len(self.seen), "repeated": self.received - len(self.seen),
                "forged": self.forged, "out_of_order": self.out_of_order, "refused": self.refused,
                "first": self.first, "last": self.last}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            payload = self.webhook.verify(body, headers)
        except WebhookVerificationError:
            self.forged += 1
            status = 400
        else:
            status = 500 if self.refuses(payload) else 200
            if status == 200:
                self.count(headers["webhook-id"], payload)
            else:
                self.refused += 1
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def refuses(self, payload: Any) -> bool:
        if self.refuse_prefix is None or not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            return False
        return str(payload["data"].get("entity_id", "")).startswith(self.refuse_prefix)

    def count(self, webhook_id: str, payload: Any) -> None:
        now = time.time()
        self.received += 1
        times = self.seen.get(webhook_id, 0)
        self.seen[webhook_id] = times + 1
        if times:
            return
        if self.first is None:
            self.first = now
        self.last = now
        data = payload.get("data") if isinstance(payload, dict) else None
        if isinstance(data, dict) and isinstance(data.get("seq"), int):
            key = f"{data.get('journey')}/{data.get('entity_id')}"
            if data["seq"] < self.last_seq.get(key, -1):
                self.out_of_order += 1
            else:
                self.last_seq[key] = data["seq"]


class Dead:
    """Accepts, reads, never answers."""

    def __init__(self) -> None:
        self.open = 0
        self.reset()

    def reset(self) -> None:
        self.accepted, self.max_open = 0, self.open

    def stats(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "open": self.open, "max_open": self.max_open}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            with contextlib.suppress(OSError):
                while await reader.read(65536):
                    pass
        finally:
            self.open -= 1
            writer.close()


async def control(target: Receiver | Dead) -> None:
    """`stats` and `reset` lines on stdin, one JSON line each on stdout; returns at EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = line.decode().strip()
        if command == "stats":
            print(json.dumps(target.stats()), flush=True)
        elif command == "reset":
            target.reset()
            print("{}", flush=True)


async def serve_live(secret: str, host: str, port: int, refuse_prefix: str | None) -> None:
    import uvicorn

    app = Receiver(secret, refuse_prefix)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           lifespan="off", backlog=1024))
    serving = asyncio.create_task(server.serve())  # uvicorn turns SIGTERM into should_exit
    while not server.started:
        if serving.done():
            serving.result()
            raise SystemExit("the receiver did not start")
        await asyncio.sleep(0.02)
    print(f"ready {server.servers[0].sockets[0].getsockname()[1]}", flush=True)
    controlling = asyncio.create_task(control(app))
    await asyncio.wait([serving, controlling], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await serving


async def serve_dead(host: str, port: int) -> None:
    import signal

    dead = Dead()
    server = await asyncio.start_server(dead.handle, host, port, backlog=1024)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    controlling = asyncio.create_task(control(dead))
    await asyncio.wait([controlling, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secret", help="the endpoint's whsec_… signing secret (live mode)")
    parser.add_argument("--dead", action="store_true", help="accept connections and never answer")
    parser.add_argument("--refuse-prefix", help="answer 500 to events whose data.entity_id starts with this")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.dead:
        asyncio.run(serve_dead(args.host, args.port))
    elif args.secret:
        asyncio.run(serve_live(args.secret, args.host, args.port, args.refuse_prefix))
    else:
        parser.error("--secret or --dead")


if __name__ == "__main__":
    main()
