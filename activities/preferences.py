"""What a recipient wants to receive (migration 011): categories, per-recipient choices, and the
one decision the send step asks for before every message.

The order of that decision is the contract (issue 10, design doc): a suppression (hard bounce,
complaint, manual, an erased address) blocks everything; otherwise a critical category is sent
whatever the recipient chose; otherwise the choice for (category, channel), then unsubscribe-all.
A category nobody defined is treated as non-critical with no choices: a typo in a template's
category can never make its messages bypass opt-outs (Novu's new-is-critical bug, novu#4647).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time as clock

import asyncpg

from activities import tokens

CHANNELS = ("email", "in_app", "webhook")
CAP_POLICIES = ("defer", "drop")
CACHE_SECONDS = 5.0  # categories change rarely; every process sees a change within this


class Erased(Exception):
    """The address was erased (GDPR): nothing about it may be stored again, preferences included."""


def email_hash(email: str) -> str:
    """What erasure keeps of an address (erased_recipients.email_hash): sha256 hex of it lower-cased."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


_WINDOW = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")


def parse_window(text: str) -> tuple[clock, clock]:
    """(opens, closes) of a send window "HH:MM-HH:MM" in the recipient's local time; a window that
    closes before it opens spans midnight ("22:00-06:00"), one that closes when it opens is open
    all day ("00:00-00:00"), as activities.windows reads them. ValueError, saying why, otherwise."""
    found = _WINDOW.fullmatch(text)
    if found is None:
        raise ValueError('a send window is "HH:MM-HH:MM" in 24-hour local time, e.g. "08:00-21:00"')
    return clock(int(found[1]), int(found[2])), clock(int(found[3]), int(found[4]))


def preferences_url(base_url: str, secret: str, email: str) -> str:
    """The signed link to `email`'s preference page, for every message's footer."""
    return f"{base_url.rstrip('/')}/v1/preferences/page/{tokens.sign_preferences(secret, email)}"


@dataclass(frozen=True)
class Category:
    name: str
    description: str = ""
    critical: bool = False
    send_window: str | None = None  # "HH:MM-HH:MM", local to the recipient
    daily_cap: int | None = None
    cap_policy: str = "defer"


@dataclass(frozen=True)
class SendRules:
    """What the send step needs to know about one recipient and one category, read in one query.
    `skip`: the reason not to send at all. `send_window`: the recipient's own window, else the
    category's, else None (the service's setting applies)."""

    skip: str | None
    critical: bool
    send_window: str | None
    time_zone: str | None
    daily_cap: int | None
    cap_policy: str


@dataclass(frozen=True)
class RecipientPreferences:
    """Everything stored for one address. `choices` holds only what was chosen (no entry:
    subscribed); `suppressed` is why nothing is sent to it at all, if so."""

    email: str
    unsubscribed_all: bool = False
    send_window: str | None = None
    time_zone: str | None = None
    choices: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)
    suppressed: str | None = None

    def subscribed(self, category: str, channel: str) -> bool:
        return self.choices.get(category, {}).get(channel, True)


def decide(*, category: str, channel: str, suppressed: str | None = None, erased: bool = False,
           known: bool = True, critical: bool = False, subscribed: bool | None = None,
           unsubscribed_all: bool = False) -> str | None:
    """Why a message of `category` on `channel` must not be sent, or None to send it.
    `suppressed`: the suppression as "source: reason"; `known`: the category is defined;
    `subscribed`: the recipient's choice for (category, channel), None if they made none."""
    if suppressed is not None:
        return f"recipient suppressed ({suppressed})"
    if erased:
        return "recipient erased"
    if known and critical:
        return None
    if known and subscribed is False:
        return f"unsubscribed from {category} ({channel})"
    if unsubscribed_all:
        return "unsubscribed from everything"
    return None


class Categories:
    """The categories table, read through a cache of a few seconds (the API lists them on every
    preferences call; a change made here is seen here at once)."""

    def __init__(self, pool: asyncpg.Pool, cache_seconds: float = CACHE_SECONDS) -> None:
        self.pool = pool
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, dict[str, Category]] | None = None

    async def _all(self, fresh: bool = False) -> dict[str, Category]:
        if fresh or self._cached is None or self._cached[0] < time.monotonic():
            rows = await self.pool.fetch(
                "SELECT name, description, critical, send_window, daily_cap, cap_policy FROM categories ORDER BY name")
            self._cached = (time.monotonic() + self.cache_seconds, {row["name"]: Category(**row) for row in rows})
        return self._cached[1]

    async def list(self) -> list[Category]:
        return list((await self._all()).values())

    async def get(self, name: str, fresh: bool = False) -> Category | None:
        """`fresh`: read the table, not the cache (a name the cache lacks may have been added since)."""
        return (await self._all(fresh)).get(name)

    async def put(self, category: Category) -> Category:
        """Create the category or replace all its fields."""
        await self.pool.execute(
            """INSERT INTO categories (name, description, critical, send_window, daily_cap, cap_policy)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (name) DO UPDATE SET description = $2, critical = $3, send_window = $4,
                   daily_cap = $5, cap_policy = $6, updated_at = now()""",
            category.name, category.description, category.critical, category.send_window, category.daily_cap,
            category.cap_policy)
        self._cached = None
        return category


_FOR_SEND = """
SELECT (SELECT source || ': ' || reason FROM suppressions WHERE email = $1) AS suppressed,
       EXISTS (SELECT 1 FROM erased_recipients WHERE email_hash = $2) AS erased,
       c.name IS NOT NULL AS known, COALESCE(c.critical, false) AS critical, c.daily_cap,
       COALESCE(c.cap_policy, 'defer') AS cap_policy,
       (SELECT subscribed FROM preferences WHERE email = $1 AND category = $3 AND channel = $4) AS subscribed,
       COALESCE(r.unsubscribed_all, false) AS unsubscribed_all,
       COALESCE(r.send_window, c.send_window) AS send_window, r.time_zone
FROM (SELECT 1) AS one
LEFT JOIN categories c ON c.name = $3
LEFT JOIN recipient_settings r ON r.email = $1
"""

_READ = """
SELECT (SELECT source || ': ' || reason FROM suppressions WHERE email = $1) AS suppressed,
       EXISTS (SELECT 1 FROM erased_recipients WHERE email_hash = $2) AS erased,
       r.unsubscribed_all, r.send_window, r.time_zone,
       ARRAY(SELECT ROW(category, channel, subscribed) FROM preferences WHERE email = $1) AS choices
FROM (SELECT 1) AS one LEFT JOIN recipient_settings r ON r.email = $1
"""

_SETTINGS = """
INSERT INTO recipient_settings (email, unsubscribed_all, send_window, time_zone) VALUES ($1, $2, $3, $4)
ON CONFLICT (email) DO UPDATE SET unsubscribed_all = $2, send_window = $3, time_zone = $4, updated_at = now()
"""

_CHOOSE = """
INSERT INTO preferences (email, category, channel, subscribed) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bool[])
ON CONFLICT (email, category, channel) DO UPDATE SET subscribed = EXCLUDED.subscribed, updated_at = now()
WHERE preferences.subscribed IS DISTINCT FROM EXCLUDED.subscribed
"""


def _flat(choices: Mapping[str, Mapping[str, bool]]) -> tuple[list[str], list[str], list[bool]]:
    rows = [(category, channel, chosen) for category, channels in choices.items() for channel, chosen in channels.items()]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


class Preferences:
    """Per-recipient choices. Addresses are stored lower-cased; an erased address is never stored
    again (every write raises Erased)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def for_send(self, email: str, category: str, channel: str) -> SendRules:
        """The decision and the timing rules for one message, in one round trip."""
        email = email.lower()
        row = await self.pool.fetchrow(_FOR_SEND, email, email_hash(email), category, channel)
        assert row is not None  # FROM (SELECT 1): always one row
        skip = decide(category=category, channel=channel, suppressed=row["suppressed"], erased=row["erased"],
                      known=row["known"], critical=row["critical"], subscribed=row["subscribed"],
                      unsubscribed_all=row["unsubscribed_all"])
        return SendRules(skip=skip, critical=row["critical"], send_window=row["send_window"],
                         time_zone=row["time_zone"], daily_cap=row["daily_cap"], cap_policy=row["cap_policy"])

    async def get(self, email: str) -> RecipientPreferences:
        email = email.lower()
        row = await self.pool.fetchrow(_READ, email, email_hash(email))
        assert row is not None
        choices: dict[str, dict[str, bool]] = {}
        for category, channel, subscribed in row["choices"]:
            choices.setdefault(category, {})[channel] = subscribed
        return RecipientPreferences(
            email=email, unsubscribed_all=bool(row["unsubscribed_all"]), send_window=row["send_window"],
            time_zone=row["time_zone"], choices=choices,
            suppressed=row["suppressed"] or ("erased" if row["erased"] else None))

    async def put(self, email: str, *, unsubscribed_all: bool = False, send_window: str | None = None,
                  time_zone: str | None = None, choices: Mapping[str, Mapping[str, bool]] | None = None,
                  ) -> RecipientPreferences:
        """Replace everything stored for `email` (choices not given: subscribed again)."""
        email = email.lower()
        async with self.pool.acquire() as conn, conn.transaction():
            await self._refuse_erased(conn, email)
            await conn.execute(_SETTINGS, email, unsubscribed_all, send_window, time_zone)
            await conn.execute("DELETE FROM preferences WHERE email = $1", email)
            await conn.execute(_CHOOSE, email, *_flat(choices or {}))
        return await self.get(email)

    async def choose(self, email: str, category: str, channel: str, subscribed: bool) -> bool:
        """Set one (category, channel) choice; True if it changed."""
        return await self.save(email, {category: {channel: subscribed}})

    async def save(self, email: str, choices: Mapping[str, Mapping[str, bool]],
                   unsubscribed_all: bool | None = None) -> bool:
        """Set the given choices (and unsubscribe-all, unless None), keeping the others; True if
        anything changed. What the hosted page's form posts."""
        email = email.lower()
        async with self.pool.acquire() as conn, conn.transaction():
            await self._refuse_erased(conn, email)
            changed = int((await conn.execute(_CHOOSE, email, *_flat(choices))).split()[-1])
            if unsubscribed_all is not None:
                status = await conn.execute(
                    "INSERT INTO recipient_settings (email, unsubscribed_all) VALUES ($1, $2) ON CONFLICT (email) "
                    "DO UPDATE SET unsubscribed_all = $2, updated_at = now() "
                    "WHERE recipient_settings.unsubscribed_all IS DISTINCT FROM $2", email, unsubscribed_all)
                changed += int(status.split()[-1])
        return changed > 0

    async def unsubscribe_all(self, email: str) -> bool:
        """Stop everything but critical categories; True if it changed."""
        return await self.save(email, {}, unsubscribed_all=True)

    @staticmethod
    async def _refuse_erased(conn: asyncpg.Connection, email: str) -> None:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM erased_recipients WHERE email_hash = $1)",
                               email_hash(email)):
            raise Erased(f"{email} was erased: nothing about it is stored again")
