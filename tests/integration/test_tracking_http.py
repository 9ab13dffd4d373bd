"""The open pixel and the click redirect on the real API (issue 10, part 3): a person's click goes
where the message pointed and moves the lifecycle; a scanner's (HEAD, scanner user agent, on
arrival, every link at once) and a proxy's open are kept, flagged machine, and move nothing; a
tampered token or a link the message never had is a 404 that records nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from activities.lifecycle import Lifecycle
from activities.machines import BURST_REASON
from activities.store import Outbox
from activities.tracking import MAX_EVENTS_PER_MESSAGE, Tracker, TrackingStore
from starter.routes.tracking import PIXEL

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Mobile/15E148")
SENT = "sent"  # the lifecycle Outbox.finish(..., "sent") leaves
LINKS = ["https://shop.example/a?x=1&y=2", "https://docs.example/guide", "https://ü.example/ä b"]


@pytest_asyncio.fixture
async def web(stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30, follow_redirects=False) as client:
        yield client


@pytest.fixture
def tracker(stack) -> Tracker:
    return Tracker(stack.settings.public_base_url, stack.settings.signing_secret.get_secret_value())


async def sent_message(pool, links: list[str] = LINKS, *, sent_ago: timedelta = timedelta(hours=1)) -> str:
    """A message the send step sent `sent_ago`, with its links stored as the send step stores them."""
    key, outbox = f"track-{uuid.uuid4().hex[:12]}/step-1", Outbox(pool)
    claim = await outbox.claim(key=key, journey="lead", entity_id=key[6:18], template="lead_welcome",
                               recipient="Ann@Example.test", recipient_name="Ann", category="marketing", context={},
                               message_id=f"<{key[6:18]}@example.test>", due_at=None, lease=timedelta(minutes=1))
    assert claim.action == "send"
    await TrackingStore(pool).save_links(key, links)
    await outbox.finish(key, "sent", subject="Hello")
    await pool.execute("UPDATE messages SET sent_at = clock_timestamp() - $2::interval WHERE key = $1", key, sent_ago)
    return key


def path(url: str) -> str:
    return urlsplit(url).path


async def events(pool, key: str) -> list[tuple]:
    return [(e["kind"], e["machine"], e["reason"]) for e in await Lifecycle(pool).events(key)]


async def lifecycle(pool, key: str) -> str:
    return (await Outbox(pool).get(key))["lifecycle"]


async def test_a_click_redirects_to_the_stored_url_and_the_lifecycle_reaches_clicked(web, tracker, pool):
    key = await sent_message(pool)
    answer = await web.get(path(tracker.click_url(key, 0)), headers={"User-Agent": CHROME})
    assert answer.status_code == 302 and answer.headers["location"] == LINKS[0]
    assert "no-store" in answer.headers["cache-control"] and answer.headers["referrer-policy"] == "no-referrer"
    assert await lifecycle(pool, key) == "clicked"
    [event] = await Lifecycle(pool).events(key)
    assert (event["kind"], event["machine"], event["email"]) == ("clicked", False, "ann@example.test")
    assert json.loads(event["detail"]) == {"user_agent": CHROME, "idx": 0, "url": LINKS[0]}
    third = await web.get(path(tracker.click_url(key, 2)), headers={"User-Agent": CHROME})
    assert third.headers["location"] == "https://%C3%BC.example/%C3%A4%20b"  # a header carries ASCII only


async def test_head_and_scanner_clicks_are_machine_and_move_nothing(web, tracker, pool):
    key = await sent_message(pool)
    head = await web.head(path(tracker.click_url(key, 1)), headers={"User-Agent": CHROME})
    assert head.status_code == 302 and head.headers["location"] == LINKS[1]
    scanner = await web.get(path(tracker.click_url(key, 1)), headers={"User-Agent": "Barracuda Sentinel (EE)"})
    assert scanner.status_code == 302
    assert await events(pool, key) == [("clicked", True, "HEAD request"),
                                       ("clicked", True, "security gateway (Barracuda)")]
    assert await lifecycle(pool, key) == SENT  # where the send step left it: nothing moved it


async def test_a_click_half_a_second_after_sending_is_machine(web, tracker, pool):
    key = await sent_message(pool, sent_ago=timedelta(seconds=0.5))
    answer = await web.get(path(tracker.click_url(key, 0)), headers={"User-Agent": CHROME})
    assert answer.status_code == 302
    assert await events(pool, key) == [("clicked", True, "within 2 s of sending")]
    assert await lifecycle(pool, key) == SENT


async def test_every_link_at_once_flags_the_first_click_too(web, tracker, pool):
    key = await sent_message(pool)
    for idx in (0, 1, 2):
        assert (await web.get(path(tracker.click_url(key, idx)), headers={"User-Agent": CHROME})).status_code == 302
    assert await events(pool, key) == [("clicked", True, BURST_REASON)] * 3
    assert await lifecycle(pool, key) == SENT  # the first click moved it as a person's; the burst put it back


async def test_tampered_tokens_and_links_a_message_never_had_are_404_and_record_nothing(web, tracker, pool):
    key, other = await sent_message(pool), await sent_message(pool, ["https://other.example/only"])
    token = path(tracker.click_url(key, 0))
    bad = [token[:-1] + ("A" if token[-1] != "A" else "B"),  # the MAC
           path(tracker.click_url(other, 1)),  # signed, but that message has one link
           path(tracker.click_url(f"{key}-gone", 0)),  # signed, no such message
           path(tracker.open_url(key)).replace("/t/o/", "/t/c/"),  # an open token as a click
           path(tracker.click_url(key, 0)).replace("/t/c/", "/t/o/"),  # and the other way round
           "/t/c/" + token.rsplit("/", 1)[1].replace(".0.", ".1."),  # another index under the same MAC
           f"/t/c/{uuid.uuid4()}", "/t/o/x"]
    for url in bad:
        answer = await web.get(url, headers={"User-Agent": CHROME})
        assert answer.status_code == 404, url
        assert answer.headers["content-type"].startswith("text/html") and "location" not in answer.headers
    assert await events(pool, key) == [] and await events(pool, other) == []
    assert await lifecycle(pool, key) == SENT


async def test_the_pixel_is_an_uncached_gif_and_records_an_open(web, tracker, pool):
    key = await sent_message(pool)
    answer = await web.get(path(tracker.open_url(key)), headers={"User-Agent": IPHONE})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif" and answer.content == PIXEL
    assert "no-store" in answer.headers["cache-control"]
    assert await events(pool, key) == [("opened", False, None)] and await lifecycle(pool, key) == "opened"
    head = await web.head(path(tracker.open_url(key)), headers={"User-Agent": IPHONE})
    assert head.status_code == 200 and head.content == b""
    assert (await events(pool, key))[-1] == ("opened", True, "HEAD request")


async def test_an_apple_mail_privacy_protection_open_is_machine(web, tracker, pool):
    key = await sent_message(pool)
    answer = await web.get(path(tracker.open_url(key)), headers={"User-Agent": "Mozilla/5.0"})
    assert answer.status_code == 200 and answer.content == PIXEL
    assert await events(pool, key) == [("opened", True, "Apple Mail Privacy Protection")]
    assert await lifecycle(pool, key) == SENT


async def test_saving_links_again_replaces_them_and_drops_an_index_the_new_rendering_lacks(pool):
    key, store = await sent_message(pool), TrackingStore(pool)
    await store.save_links(key, LINKS)  # a retried attempt: the same rows
    assert [await store.link(key, i) for i in range(4)] == [*LINKS, None]
    await store.save_links(key, ["https://new.example/"])
    assert [await store.link(key, i) for i in range(3)] == ["https://new.example/", None, None]


async def test_a_pixel_loaded_in_a_loop_stops_growing_the_events_at_the_cap(web, tracker, pool):
    key = await sent_message(pool)
    for _ in range(MAX_EVENTS_PER_MESSAGE + 5):
        answer = await web.get(path(tracker.open_url(key)), headers={"User-Agent": IPHONE})
        assert answer.status_code == 200 and answer.content == PIXEL  # always served
    assert len(await events(pool, key)) == MAX_EVENTS_PER_MESSAGE
    assert await lifecycle(pool, key) == "opened"
