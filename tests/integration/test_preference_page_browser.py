"""The hosted preference page clicked through in a real headless browser (Debian's chromium, driven
by Playwright) against the real stack: open the signed footer link, untick a category, save, see
it saved, find it in PostgreSQL; then "unsubscribe from everything"."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from activities.preferences import Preferences, preferences_url
from activities.store import connect

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest_asyncio.fixture
async def browser() -> AsyncIterator:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture
async def pool(stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect(stack.settings.database_url or "", 2)
    yield pool
    await pool.close()


async def choices(pool: asyncpg.Pool, email: str) -> list[tuple[str, str, bool]]:
    return sorted(tuple(r) for r in await pool.fetch(
        "SELECT category, channel, subscribed FROM preferences WHERE email = $1", email))


async def everything(pool: asyncpg.Pool, email: str) -> bool | None:
    return await pool.fetchval("SELECT unsubscribed_all FROM recipient_settings WHERE email = $1", email)


async def test_a_person_unticks_a_category_then_unsubscribes_from_everything(stack, browser, pool, uid):
    email = f"ivy-{uid}@example.com"
    link = preferences_url(stack.base_url, stack.settings.signing_secret.get_secret_value(), email)
    context = await browser.new_context()
    page = await context.new_page()
    try:
        opened = await page.goto(link)
        assert opened is not None and opened.status == 200
        assert await page.title() == "Your email preferences"
        await page.get_by_text(email).first.wait_for()
        marketing_email = page.get_by_role("group", name="Marketing").get_by_label("Email", exact=True)
        assert await marketing_email.is_checked()  # nothing chosen yet: subscribed
        # Critical messages are listed as always sent, with no box to untick.
        optional = await pool.fetchval("SELECT count(*) FROM categories WHERE NOT critical")
        assert await page.get_by_role("checkbox").count() == optional * 3 + 1
        await page.get_by_text("Always sent, whatever you choose here").wait_for()
        await page.reload()  # opening the page, twice, stored nothing
        assert await choices(pool, email) == [] and await everything(pool, email) is None

        await marketing_email.uncheck()
        await page.get_by_role("button", name="Save").click()
        await page.get_by_role("status").filter(has_text="Saved.").wait_for()
        marketing_email = page.get_by_role("group", name="Marketing").get_by_label("Email", exact=True)
        assert not await marketing_email.is_checked()
        assert await page.get_by_role("group", name="Marketing").get_by_label("In the app").is_checked()
        assert ("marketing", "email", False) in await choices(pool, email)
        assert [c for c in await choices(pool, email) if not c[2]] == [("marketing", "email", False)]
        assert await everything(pool, email) is False
        rules = await Preferences(pool).for_send(email, "marketing", "email")
        assert rules.skip == "unsubscribed from marketing (email)"

        await page.get_by_role("button", name="Unsubscribe from everything").click()
        await page.get_by_role("status").filter(has_text="Saved.").wait_for()
        assert await page.get_by_label("Unsubscribed from everything").is_checked()
        assert await everything(pool, email) is True
        assert [c for c in await choices(pool, email) if not c[2]] == [("marketing", "email", False)]  # kept
        assert (await Preferences(pool).for_send(email, "reminders", "email")).skip == "unsubscribed from everything"
        assert (await Preferences(pool).for_send(email, "transactional", "email")).skip is None  # critical

        await page.goto(link)  # the saved state is what the page shows next time
        assert await page.get_by_label("Unsubscribed from everything").is_checked()
        assert not await page.get_by_role("group", name="Marketing").get_by_label("Email", exact=True).is_checked()
    finally:
        await context.close()


async def test_a_tampered_link_shows_a_not_found_page_in_the_browser(stack, browser, pool, uid):
    email = f"jon-{uid}@example.com"
    link = preferences_url(stack.base_url, stack.settings.signing_secret.get_secret_value(), email)
    context = await browser.new_context()
    page = await context.new_page()
    try:
        opened = await page.goto(link[:-2] + ("AA" if not link.endswith("AA") else "BB"))
        assert opened is not None and opened.status == 404
        await page.get_by_text("This preference link is not valid").wait_for()
        assert await page.get_by_role("checkbox").count() == 0
        assert await choices(pool, email) == [] and await everything(pool, email) is None
    finally:
        await context.close()
