"""A local SMTP server for development and tests: keeps every message as an .eml file.

Not a mock: it speaks real SMTP over a socket (aiosmtpd). Tests use `refuse` to make it answer
like a real server would (550 5.1.1 for an unknown mailbox, 451 for a busy one).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller


@dataclass
class Sink:
    outbox: Path | None = None
    echo: Callable[[str], None] | None = None
    refuse: dict[str, str] = field(default_factory=dict)  # address → SMTP reply, e.g. "550 5.1.1 no such user"
    delay: float = 0.0  # seconds before answering DATA, like a distant server
    messages: list[EmailMessage] = field(default_factory=list)
    connections: int = 0  # SMTP sessions opened (one EHLO each): tests see connection reuse
    _open: list = field(default_factory=list)  # (event loop, transport) of each session
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 (aiosmtpd API)
        session.host_name = hostname
        with self._lock:
            self.connections += 1
            self._open.append((asyncio.get_running_loop(), server.transport))
        return responses

    def drop_connections(self) -> int:
        """Close every client connection from the server's side, as an idle timeout would."""
        with self._lock:
            dropped = [(loop, transport) for loop, transport in self._open if not transport.is_closing()]
            self._open.clear()
        for loop, transport in dropped:
            loop.call_soon_threadsafe(transport.close)
        return len(dropped)

    refuse_times: dict[str, int] = field(default_factory=dict)  # address → refusals left, then accept
    rcpt_attempts: Counter[str] = field(default_factory=Counter)  # RCPTs seen per address, refused or not

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd API)
        address_key = address.lower()
        with self._lock:
            self.rcpt_attempts[address_key] += 1
            reply = self.refuse.get(address_key)
            if reply and address_key in self.refuse_times:
                self.refuse_times[address_key] -= 1
                if self.refuse_times[address_key] <= 0:
                    del self.refuse_times[address_key]
                    self.refuse.pop(address_key, None)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        if self.delay:
            await asyncio.sleep(self.delay)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self._lock:
            self.messages.append(msg)
            number = len(self.messages)
        if self.outbox is not None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            name = (msg.get("X-Followups-Key") or f"message-{number}").replace("/", "__")
            (self.outbox / f"{number:06d}-{name}.eml").write_bytes(envelope.content)
        if self.echo is not None:
            self.echo(f"✉  to {', '.join(envelope.rcpt_tos)} · {msg['Subject']} · {msg.get('X-Followups-Key', '')}")
        return "250 Message accepted for delivery"

    def keys(self) -> Counter[str]:
        """Deliveries per idempotency key: the crash test's ground truth."""
        with self._lock:
            return Counter(str(m.get("X-Followups-Key")) for m in self.messages)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class SinkServer:
    """`smtputf8`: whether the server offers SMTPUTF8 (RFC 6531), as most current servers do."""

    def __init__(self, sink: Sink, host: str = "127.0.0.1", port: int | None = None, smtputf8: bool = True) -> None:
        self.sink = sink
        self.smtputf8 = smtputf8
        self.controller = Controller(sink, hostname=host, port=port or free_port(host), enable_SMTPUTF8=smtputf8)

    def __enter__(self) -> SinkServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def host(self) -> str:
        return self.controller.hostname
