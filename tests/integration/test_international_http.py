"""Internationalised addresses over the real HTTP API (RFC 6531, issue 13): refused with a 422 when
FOLLOWUPS_SMTPUTF8 is off; accepted when it is on, and then a server that does not offer SMTPUTF8
fails that one message for good while the journey goes on. A non-ASCII domain needs nothing: it
goes out as IDNA. Pages show a mixed-script address as punycode, so a look-alike is visible.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from activities import tokens
from activities.mail import for_display
from starter.sink import Sink, SinkServer
from tests.conftest import running_stack
from tests.integration.test_bad_input import error
from tests.integration.test_hardening import lead


@pytest_asyncio.fixture
async def http(stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def plain_smtp():
    """A server that does not offer SMTPUTF8, as some relays still do not."""
    with SinkServer(Sink(), smtputf8=False) as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def utf8_stack(local_env, database_url, plain_smtp):
    async with running_stack(local_env, database_url, plain_smtp, smtputf8=True) as running:
        yield running


async def outbox_rows(database_url: str, entity_id: str) -> dict[str, asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT key, status, reason FROM messages WHERE entity_id = $1", entity_id)
    finally:
        await conn.close()
    return {row["key"]: row for row in rows}


async def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("address", ["аda@example.com", "ｆｕｌｌ@example.com", "用户@例子.广告"])
async def test_a_mailbox_that_needs_smtputf8_is_a_422_when_it_is_off(stack, http, uid, address):
    resp = error(await http.post("/v1/leads", json=lead(uid, contact={"email": address, "name": "Ada"})),
                 422, "contact.email")
    assert "SMTPUTF8" in json.dumps(resp["detail"])


async def test_a_non_ascii_domain_is_accepted_and_sent_as_idna(stack, http, uid):
    resp = await http.post("/v1/leads", json=lead(uid, contact={"email": f"ada-{uid}@bücher.de", "name": "Ada"}))
    assert resp.status_code == 201, resp.text

    async def delivered():
        return [m for m in stack.smtp.sink.messages if m["X-Followups-Key"] == f"lead-{uid}/step-1"]

    [msg] = await wait_for(delivered)
    assert msg["To"].addresses[0].addr_spec == f"ada-{uid}@xn--bcher-kva.de"


async def test_with_smtputf8_on_a_server_without_it_fails_the_message_and_the_journey_goes_on(
        utf8_stack, plain_smtp, uid):
    address = f"аda-{uid}@example.com"  # a Cyrillic а
    async with httpx.AsyncClient(base_url=utf8_stack.base_url, headers=utf8_stack.headers, timeout=30) as http:
        resp = await http.post("/v1/leads", json=lead(uid, contact={"email": address, "name": "Ada"}))
        assert resp.status_code == 201, resp.text

        async def failed():
            row = (await outbox_rows(utf8_stack.settings.database_url, uid)).get(f"lead-{uid}/step-1")
            return row if row and row["status"] == "failed" else None

        row = await wait_for(failed)
        assert row, "the first message was not recorded as failed"
        assert "SMTPUTF8" in row["reason"]
        shown = (await http.get(f"/v1/leads/{uid}")).json()["state"]
        assert shown["status"] == "nurturing" and shown["steps_done"] == 1, shown
        assert shown["next_step"]["number"] == 2, shown  # the day-3 step is still ahead
        assert any("SMTPUTF8" in skip["reason"] for skip in shown["skips"]), shown
    assert plain_smtp.sink.messages == []
    assert plain_smtp.sink.rcpt_attempts[address] == 0  # refused before MAIL FROM, never retried


def test_for_display_shows_mixed_script_parts_as_punycode():
    assert for_display("аda@example.com") == "xn--da-6kc@example.com"
    assert for_display("ada@exаmple.com") == "ada@xn--exmple-4nf.com"
    assert for_display("ada@bücher.de") == "ada@bücher.de"  # one script: shown as it is
    assert for_display("用户@例子.广告") == "用户@例子.广告"
    assert for_display("ada@example.com") == "ada@example.com"


async def test_the_unsubscribe_page_shows_a_look_alike_address_as_punycode(stack, uid):
    token = tokens.sign(stack.settings.signing_secret.get_secret_value(), f"аda-{uid}@example.com", f"lead-{uid}/step-1")
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as browser:
        page = await browser.get(f"/v1/unsubscribe/{token}")
        done = await browser.post(f"/v1/unsubscribe/{token}")
    assert page.status_code == 200 and done.status_code == 200
    for resp in (page, done):
        assert f"<b>xn--da-{uid}-" in resp.text and "аda" not in resp.text  # the local part as punycode


async def test_options_on_the_unsubscribe_url_lists_get_and_post(stack, uid):
    token = tokens.sign(stack.settings.signing_secret.get_secret_value(), f"u-{uid}@example.com", "k")
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as browser:
        options = await browser.options(f"/v1/unsubscribe/{token}")
        put = await browser.put(f"/v1/unsubscribe/{token}")
    assert options.status_code == 204
    assert options.headers["allow"] == "GET, OPTIONS, POST"
    assert put.status_code == 405 and put.headers["allow"] == "GET, OPTIONS, POST"
