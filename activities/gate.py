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
# lease and claimed before it (a message being sent counts as sent now).
_COUNTED = """SELECT COALESCE(sent_at, $6) AS at FROM messages
              WHERE recipient = $1 AND category = $2 AND key <> $4
                AND ((status = 'sent' AND sent_at > $3)
                     OR (status = 'sending' AND lease_until > now() AND (updated_at, key) < ($5, $4)))"""


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
                      not_after: datetime | None, deferrable: bool, key: str, claimed_at: datetime) -> Verdict:
        """Send, Defer(until, why) or Skip(why) for one message of `category` to `email`.

        A batch's message (`deferrable` False: a roster fan-out, an announcement, a digest, which
        cannot wait for one person) ignores quiet hours, and a cap drops it instead of deferring.

        A cap counts the person's messages of the category sent in the last day and those being sent
        right now that were claimed before this one (`claimed_at`, then the key): of messages sent at
        the same moment (several that waited for the same cap, two journeys at once), the first go
        and the rest wait, instead of all seeing room for one more."""
        rules = await self.preferences.for_send(email, category, channel)
        if rules.skip is not None:
            return Verdict(windows.Skip(rules.skip), rules.critical)
        if rules.critical:
            return Verdict(windows.Send(), True)
        window = windows.SendWindow.parse(rules.send_window) if rules.send_window else self.timing.send_window
        zone = rules.time_zone or zone or "UTC"
        cap_until = None
        if rules.daily_cap is not None:
            counted = await self.pool.fetch(_COUNTED, email, category, now - CAP_PERIOD, key, claimed_at, now)
            cap_until = windows.cap_until([row["at"] for row in counted], rules.daily_cap, now, CAP_PERIOD)
        plan = windows.plan(now, zone, window if deferrable else None, not_after=not_after, critical=False,
                            late=self.timing.late, cap_until=cap_until,
                            cap_policy=rules.cap_policy if deferrable else "drop",  # type: ignore[arg-type]
                            cap_rule=f"{rules.daily_cap} {category} a day" if rules.daily_cap is not None else None)
        return Verdict(plan, False)
