"""The benchmark's SMTP sink: real SMTP over a socket (aiosmtpd), one line per accepted message.

`starter/sink.py` keeps whole messages and no arrival time; the benchmark needs, per message, the
moment the server had it and its idempotency key, for tens of thousands of messages a minute. So
this sink runs in its own process (its CPU is neither the bench's nor a system's), reads only the
key header and appends `<unix time>\t<key>` to a file the bench tails. The time is taken when the
whole DATA has arrived, before the 250 answer: what a real server would call delivered.

    python -m bench.peers.sink --out arrivals.tsv [--port 0] [--delay 0.02]

prints `ready <port>` once it listens; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import email.policy
import re
import signal
import time

from aiosmtpd.smtp import SMTP

KEY_HEADER = b"X-Followups-Key"  # what activities/mail.py stamps; every peer stamps the same header
_KEY = re.compile(rb"^" + KEY_HEADER + rb":[ \t]*([^\r\n]+)", re.IGNORECASE | re.MULTILINE)


def key_of(content: bytes) -> str:
    head = content.split(b"\r\n\r\n", 1)[0]
    match = _KEY.search(head)
    if match and not re.search(rb"\r\n[ \t]", head[match.end():match.end() + 3]):
        return match.group(1).strip().decode("ascii", "replace")
    # folded or encoded: let the email package unfold it
    headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(head + b"\r\n\r\n")
    return str(headers.get(KEY_HEADER.decode(), "-")).strip() or "-"


class Recorder:
    def __init__(self, out, delay: float) -> None:
        self.out = out
        self.delay = delay
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        if self.delay:
            await asyncio.sleep(self.delay)
        arrived = time.time()
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        self.out.write(f"{arrived:.6f}\t{key_of(content)}\n")
        self.count += 1
        return "250 2.0.0 Message accepted for delivery"


async def serve(out_path: str, host: str, port: int, delay: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(out_path, "a", buffering=1) as out:  # line-buffered: the bench tails it live
        recorder = Recorder(out, delay)
        server = await loop.create_server(
            lambda: SMTP(recorder, hostname="bench-sink", ident="bench-sink", data_size_limit=10_000_000),
            host=host, port=port, backlog=1024,
        )
        print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering DATA")
    args = parser.parse_args()
    asyncio.run(serve(args.out, args.host, args.port, args.delay))


if __name__ == "__main__":
    main()
