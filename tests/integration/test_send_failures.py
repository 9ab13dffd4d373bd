"""The send step against real PostgreSQL and a real SMTP server on a socket: what no retry can fix
(an address the server cannot take, a value PostgreSQL cannot store, a template given what it
cannot format) is a non-retryable error of a type the workflow knows, recorded on the message with
its reason; internationalised addresses go out as RFC 6531 and IDNA say.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import worker
from activities.store import Outbox
from starter.sink import Sink, SinkServer
from workflows.contracts import DeliveryFailure, SendRequest, SendStatus


@pytest.fixture(params=[True, False], ids=["server-offers-smtputf8", "server-without-smtputf8"])
def server(request):
    with SinkServer(Sink(), smtputf8=request.param) as running:
        yield running


@pytest_asyncio.fixture
async def sends(make_settings, server, pool):
    activities = worker.send_activities(make_settings(smtp_host=server.host, smtp_port=server.port), pool)
    yield activities
    await activities.transport.close()


def request(uid: str, email: str, **fields) -> SendRequest:
    values = dict(key=f"lead-{uid}/day-0", journey="lead", entity_id=uid, template="lead_welcome",
                  recipient={"email": email, "name": "Ada Lovelace"},
                  context={"name": "Ada", "company": None, "offer_url": None}, due_at=datetime.now(timezone.utc))
    values.update(fields)
    return SendRequest.model_validate(values)


async def send(sends, req: SendRequest):
    return await ActivityEnvironment().run(sends.send_message, req)


async def test_a_non_ascii_mailbox_goes_out_with_smtputf8_or_fails_for_good(sends, server, pool, uid):
    address = f"аda-{uid}@example.com"  # the first letter is Cyrillic
    if server.smtputf8:
        result = await send(sends, request(uid, address))
        assert result.status == SendStatus.SENT
        assert server.sink.rcpt_attempts[address] == 1  # RCPT TO:<аda-…@example.com> SMTPUTF8
        [msg] = server.sink.messages  # the stdlib's bytes parser leaves UTF-8 headers surrogate-escaped
        assert str(msg["To"]).encode("utf-8", "surrogateescape").decode("utf-8") == f"Ada Lovelace <{address}>"
        assert (await Outbox(pool).get(f"lead-{uid}/day-0"))["status"] == "sent"
    else:
        with pytest.raises(ApplicationError) as raised:
            await send(sends, request(uid, address))
        assert raised.value.type == DeliveryFailure.ADDRESS and raised.value.non_retryable
        assert "SMTPUTF8" in raised.value.message
        row = await Outbox(pool).get(f"lead-{uid}/day-0")
        assert row["status"] == "failed" and "SMTPUTF8" in row["reason"]
        assert server.sink.messages == []
        # the connection that said no serves the next message
        assert (await send(sends, request(uid + "b", f"ada-{uid}@example.com", key=f"lead-{uid}/b"))).status == "sent"


async def test_a_non_ascii_domain_goes_out_as_idna_on_any_server(sends, server, uid):
    result = await send(sends, request(uid, f"ada-{uid}@bücher.de"))
    assert result.status == SendStatus.SENT
    [msg] = server.sink.messages
    assert msg["To"].addresses[0].addr_spec == f"ada-{uid}@xn--bcher-kva.de"
    assert server.sink.rcpt_attempts[f"ada-{uid}@xn--bcher-kva.de"] == 1


@pytest.mark.parametrize("server", [True], indirect=True, ids=["server"])
async def test_a_value_postgresql_cannot_store_fails_for_good_and_is_recorded(sends, server, pool, uid):
    req = request(uid, f"ada-{uid}@example.com", context={"name": "A\x00da", "company": None, "offer_url": None})
    with pytest.raises(ApplicationError) as raised:
        await send(sends, req)
    assert raised.value.type == DeliveryFailure.UNSTORABLE and raised.value.non_retryable
    row = await Outbox(pool).get(req.key)
    assert row["status"] == "failed" and "cannot be stored" in row["reason"]
    assert server.sink.messages == []
    # the retry the workflow would never make finds the row finished, not a fresh claim
    with pytest.raises(ApplicationError):
        await send(sends, req)
    assert server.sink.messages == []


@pytest.mark.parametrize("server", [True], indirect=True, ids=["server"])
async def test_a_template_given_what_its_filter_cannot_use_fails_for_good(sends, server, pool, uid):
    req = request(uid, f"pat-{uid}@example.com", key=f"payment-{uid}/reminder-1", journey="payment",
                  template="payment_reminder",
                  context={"payer_name": "Pat", "amount": "not a number", "currency": "EUR", "locale": "de_DE",
                           "description": "Course fee", "payment_url": "https://pay.example.com/1",
                           "started_at": "2026-12-01T09:00:00+00:00"})
    with pytest.raises(ApplicationError) as raised:
        await send(sends, req)
    assert raised.value.type == DeliveryFailure.TEMPLATE and raised.value.non_retryable
    assert (await Outbox(pool).get(req.key))["status"] == "failed"
    assert server.sink.messages == []
