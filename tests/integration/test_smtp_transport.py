"""The SMTP transport against a real SMTP server on a socket (aiosmtpd): kept connections are
reused, a connection the server dropped while idle is replaced before any of the message went
out, and refusals are classified and never leave a half-used connection behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from activities.mail import DeliveryRefused, Envelope, Outgoing, SmtpSettings, SmtpTransport, build
from activities.render import Rendered
from starter.sink import Sink, SinkServer


@pytest.fixture
def server():
    with SinkServer(Sink()) as running:
        yield running


def message(n: int, to: str | None = None) -> Outgoing:
    to = to or f"user{n}@example.com"
    return build(Envelope("jobs@example.com", "Jobs", to, f"User {n}", f"<{n}@example.com>",
                          f"https://followups.example.com/v1/unsubscribe/{n}", f"test/{n}"),
                 Rendered(subject=f"Message {n}", text=f"Hello {n}\n", html=f"<p>Hello {n}</p>"))


def transport(server: SinkServer, **options) -> SmtpTransport:
    return SmtpTransport(SmtpSettings(host=server.host, port=server.port, timeout=10, **options))


async def send_all(smtp: SmtpTransport, messages: list[Outgoing]) -> list[str]:
    replies: list[str] = []

    async def accepted(reply: str) -> None:
        replies.append(reply)

    for out in messages:
        await smtp.deliver(out, accepted)
    return replies


async def wait_closed(sink: Sink, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while any(not transport.is_closing() for _, transport in sink._open) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_one_connection_carries_many_messages(server):
    smtp = transport(server)
    replies = await send_all(smtp, [message(n) for n in range(5)])
    await smtp.close()
    assert len(replies) == 5 and all("accepted" in reply for reply in replies)
    assert server.sink.connections == 1
    assert sorted(server.sink.keys()) == [f"test/{n}" for n in range(5)]


async def test_pool_size_zero_opens_a_connection_per_message(server):
    await send_all(transport(server, pool_size=0), [message(n) for n in range(3)])
    assert server.sink.connections == 3


async def test_a_connection_is_retired_after_its_message_limit(server):
    smtp = transport(server, messages_per_connection=2)
    await send_all(smtp, [message(n) for n in range(5)])
    await smtp.close()
    assert server.sink.connections == 3  # 2 + 2 + 1


async def test_an_idle_connection_past_its_age_is_not_reused(server):
    smtp = transport(server, idle_seconds=0.05)
    await send_all(smtp, [message(0)])
    await asyncio.sleep(0.1)
    await send_all(smtp, [message(1)])
    await smtp.close()
    assert server.sink.connections == 2


async def test_a_connection_the_server_dropped_is_replaced_and_the_message_sent_once(server):
    smtp = transport(server)
    await send_all(smtp, [message(0)])
    assert server.sink.drop_connections() == 1
    await wait_closed(server.sink)
    replies = await send_all(smtp, [message(1)])
    await smtp.close()
    assert len(replies) == 1 and server.sink.connections == 2
    assert server.sink.keys() == {"test/0": 1, "test/1": 1}


async def test_a_refused_recipient_is_a_permanent_refusal_and_the_next_message_goes_out(server):
    server.sink.refuse["gone@example.com"] = "550 5.1.1 no such user"
    smtp = transport(server)
    await send_all(smtp, [message(0)])
    with pytest.raises(DeliveryRefused) as refused:
        await send_all(smtp, [message(1, to="gone@example.com")])
    assert refused.value.refusal.permanent and refused.value.refusal.hard_bounce
    await send_all(smtp, [message(2)])
    await smtp.close()
    assert server.sink.keys() == {"test/0": 1, "test/2": 1}
    assert server.sink.connections == 2  # the refused transaction's connection was not handed on


async def test_a_soft_refusal_is_not_permanent(server):
    server.sink.refuse["busy@example.com"] = "451 4.3.0 try again later"
    with pytest.raises(DeliveryRefused) as refused:
        await send_all(transport(server), [message(0, to="busy@example.com")])
    assert not refused.value.refusal.permanent


async def test_no_server_is_a_connection_error_for_the_retry_policy():
    smtp = SmtpTransport(SmtpSettings(host="127.0.0.1", port=1, timeout=2))
    with pytest.raises(OSError):
        await send_all(smtp, [message(0)])
