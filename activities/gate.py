"""Whether a message may go out now, later or not at all: the recipient's suppression and
preferences for its category and channel, then their send window (quiet hours) and the
category's frequency cap, across every journey they are in.

Pure rules live in `activities.preferences.decide` and `activities.windows.plan`; this module
reads what they need (two queries at most) and puts them together for the send step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from activities import windows
from activities.preferences import Preferences

CAP_PERIOD = timedelta(days=1)
# What a frequency cap counts against one message: sent in the period, or being sent under a live
# lease after passing the cap itself (a message being sent counts as sent now).
_COUNTED = """SELECT LEAST(COALESCE(sent_at, $5), $5) AS at FROM messages  -- one sent while we waited counts as now
              WHERE recipient = $1 AND category = $2 AND key <> $4
                AND ((status = 'sent' AND sent_at > $3)
                     OR (status = 'sending' AND lease_until > now() AND cap_cleared_at IS NOT NULL))"""


@dataclass(frozen=True)
class Timing:
    """The service's own rules for send windows (settings `send_window`, `late_reminders`)."""

    send_window: windows.SendWindow | None = None
    late: windows.Late = "send"


@dataclass(frozen=True)
class Verdict:
    plan: windows.Plan
    critical: bool


class Gate:
    def __init__(self, pool: asyncpg.Pool, timing: Timing = Timing()) -> None:
        self.pool = pool
        self.preferences = Preferences(pool)
        self.timing = timing

    async def verdict(self, *, email: str, category: str, channel: str, zone: str | None, now: datetime,
                      not_after: datetime | None, deferrable: bool, key: str) -> Verdict:
        """Send, Defer(until, why) or Skip(why) for one message of `category` to `email`.

        A batch's message (`deferrable` False: a roster fan-out, an announcement, a digest, which
        cannot wait for one person) ignores quiet hours, and a cap drops it instead of deferring.

        A cap counts the person's messages of the category sent in the last day and those being sent
        right now that passed it, and is decided for one message at a time per person and category
        (an advisory lock): of messages sent at the same moment (several that waited for the same
        cap, two journeys at once) the first go and the rest are held, instead of all seeing room."""
        rules = await self.preferences.for_send(email, category, channel)
        if rules.skip is not None:
            return Verdict(windows.Skip(rules.skip), rules.critical)
        if rules.critical:
            return Verdict(windows.Send(), True)
        window = windows.SendWindow.parse(rules.send_window) if rules.send_window else self.timing.send_window
        zone = rules.time_zone or zone or "UTC"

        def plan(cap_until: datetime | None) -> windows.Plan:
            return windows.plan(now, zone, window if deferrable else None, not_after=not_after, critical=False,
                                late=self.timing.late, cap_until=cap_until,
                                cap_policy=rules.cap_policy if deferrable else "drop",  # type: ignore[arg-type]
                                cap_rule=f"{rules.daily_cap} {category} a day")

        if rules.daily_cap is None:
            return Verdict(plan(None), False)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"cap/{email}/{category}")
            counted = await conn.fetch(_COUNTED, email, category, now - CAP_PERIOD, key, now)
            decided = plan(windows.cap_until([row["at"] for row in counted], rules.daily_cap, now, CAP_PERIOD))
            if isinstance(decided, windows.Send):
                await conn.execute("UPDATE messages SET cap_cleared_at = clock_timestamp() WHERE key = $1", key)
        return Verdict(decided, False)
