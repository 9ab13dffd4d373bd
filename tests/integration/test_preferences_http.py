"""Preferences and categories on the real stack (API on a socket, PostgreSQL): the backends' API
with its 422s, the send decision read in one query, the hosted page (a GET changes nothing, a
form POST does, a tampered link is a 404 that changes nothing) and the one-click unsubscribe,
which now leaves the recipient every category but the message's."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest
import pytest_asyncio

from activities import tokens
from activities.preferences import Preferences, email_hash, preferences_url
from activities.store import connect

SEEDED = {"transactional": True, "reminders": False, "progress": False, "feedback": False, "marketing": False}
ALL_ON = {"email": True, "in_app": True, "webhook": True}


@pytest_asyncio.fixture
async def http(stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def browser(stack) -> AsyncIterator[httpx.AsyncClient]:
    """A mail client or a person's browser: no API key, no cookie."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def pool(stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect(stack.settings.database_url or "", 2)
    yield pool
    await pool.close()


async def stored(pool: asyncpg.Pool, email: str) -> dict[str, Any]:
    """Everything kept about an address in the tables preferences touch."""
    email = email.lower()
    return {
        "settings": [dict(r) for r in await pool.fetch(
            "SELECT unsubscribed_all, send_window, time_zone FROM recipient_settings WHERE email = $1", email)],
        "choices": sorted(tuple(r) for r in await pool.fetch(
            "SELECT category, channel, subscribed FROM preferences WHERE email = $1", email)),
        "suppressions": [r["source"] for r in await pool.fetch("SELECT source FROM suppressions WHERE email = $1", email)],
        "events": [r["kind"] for r in await pool.fetch("SELECT kind FROM message_events WHERE email = $1", email)],
    }


async def categories(http: httpx.AsyncClient) -> dict[str, bool]:
    """name → critical, as the service has them now (another test, or the fuzzer, may have added some)."""
    return {c["name"]: c["critical"] for c in (await http.get("/v1/categories")).json()}


def problem(resp: httpx.Response, status: int, field: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "detail", "field"} and body["field"] == field, body
    return json.dumps(body["detail"])


# --- categories -------------------------------------------------------------------------------


async def test_the_seeded_categories_and_a_new_one(http, pool, uid):
    listed = {c["name"]: c for c in (await http.get("/v1/categories")).json()}
    assert {name: listed[name]["critical"] for name in SEEDED} == SEEDED
    assert all(listed[name]["send_window"] is None for name in SEEDED)
    assert listed["marketing"]["daily_cap"] is None and listed["marketing"]["cap_policy"] == "defer"

    name = f"news_{uid}"
    body = {"description": "Our newsletter", "critical": False, "send_window": "22:00-06:00", "daily_cap": 2,
            "cap_policy": "drop"}
    try:
        put = await http.put(f"/v1/categories/{name}", json=body)
        assert put.status_code == 200, put.text
        assert put.json() == {"name": name, **body}
        assert {"name": name, **body} in (await http.get("/v1/categories")).json()
        changed = await http.put(f"/v1/categories/{name}", json={"critical": True})  # a PUT replaces every field
        assert changed.json() == {"name": name, "description": "", "critical": True, "send_window": None,
                                  "daily_cap": None, "cap_policy": "defer"}
    finally:
        await pool.execute("DELETE FROM categories WHERE name = $1", name)


@pytest.mark.parametrize(("name", "body", "field"), [
    pytest.param("x", {"send_window": "8:00-21:00"}, "send_window", id="short-hour"),
    pytest.param("x", {"send_window": "08:00 - 21:00"}, "send_window", id="spaces"),
    pytest.param("x", {"send_window": "08:00-24:00"}, "send_window", id="hour-24"),
    pytest.param("x", {"cap_policy": "queue"}, "cap_policy", id="unknown-policy"),
    pytest.param("x", {"daily_cap": 0}, "daily_cap", id="zero-cap"),
    pytest.param("x", {"daily_cap": "2"}, "daily_cap", id="cap-as-text"),
    pytest.param("x", {"critical": "yes"}, "critical", id="critical-as-text"),
    pytest.param("x", {"colour": "red"}, "colour", id="unknown-field"),
    pytest.param("Marketing", {}, "name", id="capital-name"),
    pytest.param("a-b", {}, "name", id="dash-in-name"),
])
async def test_a_bad_category_is_422_and_changes_nothing(http, name, body, field):
    before = (await http.get("/v1/categories")).json()
    problem(await http.put(f"/v1/categories/{name}", json=body), 422, field)
    assert (await http.get("/v1/categories")).json() == before


async def test_categories_need_the_api_key(browser):
    assert (await browser.get("/v1/categories")).status_code == 401
    assert (await browser.put("/v1/categories/marketing", json={})).status_code == 401
    assert (await browser.get("/v1/preferences/ann@example.com")).status_code == 401


# --- the preferences API ----------------------------------------------------------------------


async def test_preferences_put_and_get_round_trip(http, pool, uid):
    email = f"Ann-{uid}@Example.com"
    fresh = (await http.get(f"/v1/preferences/{email}")).json()
    assert fresh == {"email": email.lower(), "unsubscribed_all": False, "send_window": None, "time_zone": None,
                     "categories": {name: ALL_ON for name in await categories(http)}, "suppressed": None}
    assert await stored(pool, email) == {"settings": [], "choices": [], "suppressions": [], "events": []}

    body = {"unsubscribed_all": False, "send_window": "08:00-20:00", "time_zone": "Asia/Kathmandu",
            "categories": {"marketing": {"email": False, "webhook": False}, "feedback": {"in_app": False}}}
    put = await http.put(f"/v1/preferences/{email}", json=body)
    assert put.status_code == 200, put.text
    expected = {**fresh, **body, "categories": {
        **fresh["categories"], "marketing": {"email": False, "in_app": True, "webhook": False},
        "feedback": {"email": True, "in_app": False, "webhook": True}}}
    assert put.json() == expected
    assert (await http.get(f"/v1/preferences/{email.lower()}")).json() == expected

    # A PUT replaces: what it leaves out is subscribed again.
    again = await http.put(f"/v1/preferences/{email}", json={"unsubscribed_all": True})
    assert again.json() == {**fresh, "unsubscribed_all": True}
    assert (await stored(pool, email))["choices"] == []


@pytest.mark.parametrize(("body", "field", "says"), [
    pytest.param({"categories": {"nope": {"email": False}}}, "categories.nope", "unknown category", id="category"),
    pytest.param({"categories": {"marketing": {"sms": False}}}, "categories.marketing.sms", "unknown channel",
                 id="channel"),
    pytest.param({"categories": {"marketing": {"email": "no"}}}, "categories.marketing.email", "bool", id="not-bool"),
    pytest.param({"time_zone": "Mars/Olympus"}, "time_zone", "time zone", id="time-zone"),
    pytest.param({"send_window": "9-17"}, "send_window", "HH:MM-HH:MM", id="window"),
    pytest.param({"unsubscribed_all": 1}, "unsubscribed_all", "bool", id="everything-as-number"),
    pytest.param({"suppressed": None}, "suppressed", "Extra", id="read-only"),
])
async def test_a_bad_preferences_body_is_422_naming_the_field_and_changes_nothing(http, pool, uid, body, field, says):
    email = f"bob-{uid}@example.com"
    assert (await http.put(f"/v1/preferences/{email}", json={"categories": {"progress": {"email": False}}})).is_success
    before = await stored(pool, email)
    assert says.lower() in problem(await http.put(f"/v1/preferences/{email}", json=body), 422, field).lower()
    assert await stored(pool, email) == before


async def test_a_bad_address_in_the_path_is_422(http):
    problem(await http.get("/v1/preferences/not-an-address"), 422, "email")


async def test_suppressed_and_erased_addresses(http, pool, uid):
    bounced, erased = f"gone-{uid}@example.com", f"erased-{uid}@example.com"
    await pool.execute("INSERT INTO suppressions (email, source, reason) VALUES ($1, 'hard_bounce', '550 5.1.1')",
                       bounced)
    await pool.execute("INSERT INTO erased_recipients (email_hash) VALUES ($1)", email_hash(erased))
    assert (await http.get(f"/v1/preferences/{bounced}")).json()["suppressed"] == "hard_bounce: 550 5.1.1"
    assert (await http.get(f"/v1/preferences/{erased.upper()}")).json()["suppressed"] == "erased"
    assert (await http.put(f"/v1/preferences/{bounced}", json={"unsubscribed_all": True})).is_success
    problem(await http.put(f"/v1/preferences/{erased}", json={"unsubscribed_all": True}), 409, "email")
    assert await stored(pool, erased) == {"settings": [], "choices": [], "suppressions": [], "events": []}


async def test_for_send_reads_the_decision_in_one_query(http, pool, uid):
    email = f"Cat-{uid}@example.com"
    prefs = Preferences(pool)
    assert (await http.put(f"/v1/preferences/{email}", json={
        "send_window": "07:00-22:00", "time_zone": "Australia/Adelaide",
        "categories": {"marketing": {"email": False}}})).is_success
    marketing = await prefs.for_send(email, "marketing", "email")
    assert marketing.skip == "unsubscribed from marketing (email)"
    assert (marketing.send_window, marketing.time_zone, marketing.critical) == ("07:00-22:00", "Australia/Adelaide", False)
    assert (await prefs.for_send(email, "marketing", "in_app")).skip is None  # another channel: still wanted

    name = f"quiet_{uid}"
    await pool.execute("INSERT INTO categories (name, send_window, daily_cap, cap_policy) VALUES ($1, '09:00-17:00', 2, "
                       "'drop')", name)
    try:
        other = await prefs.for_send(f"other-{uid}@example.com", name, "email")
        assert (other.skip, other.send_window, other.daily_cap, other.cap_policy) == (None, "09:00-17:00", 2, "drop")
        assert (await prefs.for_send(email, name, "email")).send_window == "07:00-22:00"  # the recipient's own wins
    finally:
        await pool.execute("DELETE FROM categories WHERE name = $1", name)

    assert (await http.put(f"/v1/preferences/{email}", json={"unsubscribed_all": True})).is_success
    assert (await prefs.for_send(email, "reminders", "email")).skip == "unsubscribed from everything"
    assert (await prefs.for_send(email, "no_such_category", "email")).skip == "unsubscribed from everything"
    critical = await prefs.for_send(email, "transactional", "email")
    assert (critical.skip, critical.critical) == (None, True)
    await pool.execute("INSERT INTO suppressions (email, source, reason) VALUES ($1, 'manual', 'asked')", email.lower())
    assert (await prefs.for_send(email, "transactional", "email")).skip == "recipient suppressed (manual: asked)"
    await pool.execute("INSERT INTO erased_recipients (email_hash) VALUES ($1)", email_hash(f"e-{uid}@example.com"))
    assert (await prefs.for_send(f"E-{uid}@example.com", "transactional", "email")).skip == "recipient erased"


# --- the hosted page --------------------------------------------------------------------------


def page_path(stack, email: str) -> str:
    url = preferences_url(stack.base_url, stack.settings.signing_secret.get_secret_value(), email)
    return url[len(stack.base_url):]


async def post_form(client: httpx.AsyncClient, path: str, pairs: list[tuple[str, str]]) -> httpx.Response:
    """What a browser posts for the page's form: repeated names, urlencoded."""
    return await client.post(path, content=urlencode(pairs).encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})


def checked(html: str) -> set[str]:
    return set(re.findall(r'name="choice" value="([a-z_]+:[a-z_]+)" checked', html))


async def test_the_page_shows_the_choices_and_a_get_changes_nothing(stack, browser, http, pool, uid):
    email = f"dee-{uid}@example.com"
    assert (await http.put(f"/v1/preferences/{email}", json={"categories": {"marketing": {"email": False}}})).is_success
    before = await stored(pool, email)
    for _ in range(3):  # a link scanner, a preview pane, the person
        page = await browser.get(page_path(stack, email))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert await stored(pool, email) == before
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert f"<b>{email}</b>" in page.text
    expected = {f"{c}:{ch}" for c, critical in (await categories(http)).items() if not critical
                for ch in ALL_ON} - {"marketing:email"}
    assert checked(page.text) == expected
    assert 'value="transactional:' not in page.text and "<b>Transactional</b>" in page.text  # always sent
    assert page.text.count("<form") == 1 and 'method="post"' in page.text


async def test_the_page_form_post_saves_and_shows_the_saved_state(stack, browser, http, pool, uid):
    email = f"eve-{uid}@example.com"
    path = page_path(stack, email)
    shown = [name for name, critical in (await categories(http)).items() if not critical]
    ticked = [f"{c}:{ch}" for c in shown for ch in ALL_ON if (c, ch) != ("feedback", "email")]
    form = [("shown", c) for c in shown] + [("choice", t) for t in ticked] + [("action", "save")]
    saved = await post_form(browser, path, form)
    assert saved.status_code == 200, saved.text
    assert "Saved." in saved.text and checked(saved.text) == set(ticked)
    assert (await stored(pool, email))["choices"] == sorted(
        [("feedback", "email", False)] + [(c, ch, True) for c, ch in (t.split(":") for t in ticked)])

    everything = await post_form(browser, path, form[:-1] + [
        ("action", "everything"), ("shown", "transactional"), ("choice", "transactional:email")])
    assert 'name="unsubscribed_all" value="yes" checked' in everything.text
    after = await stored(pool, email)
    assert after["settings"][0]["unsubscribed_all"] is True
    assert ("transactional", "email", True) not in after["choices"]  # a critical category is not the page's to set

    resubscribed = await post_form(browser, path, form)  # the box unticked: everything back
    assert 'name="unsubscribed_all" value="yes" checked' not in resubscribed.text
    assert (await stored(pool, email))["settings"][0]["unsubscribed_all"] is False


def _flip(text: str, at: int) -> str:
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1:]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("tampering", ["flipped-address", "flipped-signature", "an-unsubscribe-token",
                                       "other-secret", "another-address-same-signature", "garbage"])
async def test_a_tampered_page_link_is_404_and_changes_nothing(stack, browser, pool, uid, method, tampering):
    email, secret = f"fay-{uid}@example.com", stack.settings.signing_secret.get_secret_value()
    genuine = tokens.sign_preferences(secret, email)
    token = {
        "flipped-address": _flip(genuine, 3),
        "flipped-signature": genuine[:-4] + _flip(genuine[-4:], 1),
        "an-unsubscribe-token": tokens.sign(secret, email, f"lead-{uid}/step-1"),
        "other-secret": tokens.sign_preferences("not-our-secret", email),
        "another-address-same-signature": tokens.sign_preferences(secret, f"x-{uid}@example.com").split(".")[0]
        + "." + genuine.split(".")[1],
        "garbage": "not-a-token",
    }[tampering]
    form = {"shown": "marketing", "action": "everything"}
    resp = await browser.request(method, f"/v1/preferences/page/{token}", data=form if method == "POST" else None)
    assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html"), resp.text
    assert "This preference link is not valid" in resp.text and "<form" not in resp.text
    for address in (email, f"x-{uid}@example.com"):
        assert await stored(pool, address) == {"settings": [], "choices": [], "suppressions": [], "events": []}


# --- one-click unsubscribe --------------------------------------------------------------------


async def message(pool: asyncpg.Pool, key: str, email: str, category: str, channel: str = "email") -> None:
    await pool.execute(
        "INSERT INTO messages (key, journey, entity_id, template, recipient, category, context, status, message_id, "
        "channel) VALUES ($1, 'lead', $1, 'lead_welcome', $2, $3, '{}'::jsonb, 'sent', $4, $5)",
        key, email.lower(), category, f"<{abs(hash(key)):x}@example.com>", channel)


def one_click(stack, email: str, key: str) -> str:
    return f"/v1/unsubscribe/{tokens.sign(stack.settings.signing_secret.get_secret_value(), email, key)}"


async def test_one_click_leaves_only_the_messages_category(stack, browser, pool, uid):
    email, key = f"gus-{uid}@example.com", f"lead-{uid}/step-2"
    await message(pool, key, email, "marketing")
    page = await browser.get(one_click(stack, email, key))  # what a link scanner does: nothing changes
    assert page.status_code == 200 and "Stop marketing messages to <b>" in page.text
    assert f'href="{stack.base_url}{page_path(stack, email)}"' in page.text  # "everything" lives there
    assert await stored(pool, email) == {"settings": [], "choices": [], "suppressions": [], "events": []}

    for _ in range(2):  # a mail client posting twice unsubscribes once
        done = await browser.post(one_click(stack, email, key), content=b"List-Unsubscribe=One-Click",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200 and "no more marketing messages" in done.text, done.text
    assert await stored(pool, email) == {"settings": [], "choices": [("marketing", "email", False)],
                                         "suppressions": [], "events": ["unsubscribed"]}
    assert await pool.fetchval("SELECT key FROM message_events WHERE email = $1", email) == key
    prefs = Preferences(pool)
    assert (await prefs.for_send(email, "marketing", "email")).skip == "unsubscribed from marketing (email)"
    for other in ("reminders", "progress", "feedback", "transactional"):
        assert (await prefs.for_send(email, other, "email")).skip is None


@pytest.mark.parametrize("case", ["critical-category", "key-not-in-the-log"])
async def test_one_click_from_a_critical_or_unknown_message_means_everything_but_critical(stack, browser, pool, uid,
                                                                                          case):
    email, key = f"hal-{uid}@example.com", f"payment-{uid}/confirmation"
    if case == "critical-category":
        await message(pool, key, email, "transactional")
    page = await browser.get(one_click(stack, email, key))
    assert "Stop all emails to <b>" in page.text
    done = await browser.post(one_click(stack, email, key))
    assert done.status_code == 200 and "critical messages" in done.text and "still come" in done.text
    kept = await stored(pool, email)
    assert kept["settings"][0]["unsubscribed_all"] is True and kept["choices"] == [] and kept["suppressions"] == []
    prefs = Preferences(pool)
    assert (await prefs.for_send(email, "transactional", "email")).skip is None
    assert (await prefs.for_send(email, "marketing", "email")).skip == "unsubscribed from everything"
