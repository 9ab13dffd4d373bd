"""When a digest is due, as pure functions of (cadence, zones, slot): no clock, no database.

One Temporal Schedule fires every `SLOT` (30 minutes, in UTC). A fire at scheduled time T stands
for the slot (T' − 30 min, T'], T' being T floored to the slot grid (a manual trigger at 10:07
stands for the 10:00 slot). A zone is due in a slot when the instant its local clock reaches the
cadence's local time (Monday 09:00) of some period (an ISO week) lies in the slot; that period's
key (`2026-W49`) makes the send once per recipient and period, whatever runs the slot again.

Each period has exactly one such instant per zone, so each zone is due in exactly one slot per
period (tests/unit/test_digest_rules.py checks every zone of the tz database):
- 09:00 on a day whose clock jumps over it (a DST gap) counts at the instant the offset in force
  before the jump puts it (`fold=0`): 02:30 on a spring-forward night is served at 03:30 local;
- 09:00 that happens twice (the clock goes back over it) counts the first time;
- a zone off the hour (Asia/Kolkata +05:30, Asia/Kathmandu +05:45) is served in the slot that
  contains its instant: Kathmandu's 09:00 (03:15 UTC) in the slot ending 03:30 UTC.

Zones are resolved with the tz database (`zoneinfo`), which is why this runs in an activity (the
dispatch plan), never in workflow code: a tzdata update must not change a replay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

SLOT = timedelta(minutes=30)  # half-hour zones exist; a 45-minute zone is served inside its slot
_EPOCH = datetime(2000, 1, 3, tzinfo=timezone.utc)  # a Monday 00:00 UTC: the slot grid's origin


@dataclass(frozen=True)
class Cadence:
    """A local time that recurs once per period: Monday 09:00 every ISO week (`day` 1 = Monday …
    7 = Sunday), or the 1st at 09:00 every month (`day` 1..28, every month has it)."""

    period: Literal["week", "month"]
    day: int
    at: time

    def __post_init__(self) -> None:
        top = 7 if self.period == "week" else 28
        if not 1 <= self.day <= top:
            raise ValueError(f"a {self.period}ly cadence's day is 1..{top}, not {self.day}")


WEEKLY = Cadence("week", 1, time(9, 0))  # Monday 09:00
MONTHLY = Cadence("month", 1, time(9, 0))  # the 1st, 09:00


@dataclass(frozen=True)
class Slot:
    """(start, end] in UTC."""

    start: datetime
    end: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.start < moment <= self.end


def slot_of(scheduled: datetime) -> Slot:
    """The slot a fire scheduled at `scheduled` stands for: it ends at `scheduled` floored to the grid."""
    if scheduled.tzinfo is None:
        raise ValueError("a slot is given by an aware moment")
    end = scheduled - (scheduled.astimezone(timezone.utc) - _EPOCH) % SLOT
    end = end.astimezone(timezone.utc)
    return Slot(end - SLOT, end)


@lru_cache(maxsize=2048)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def period_day(cadence: Cadence, local_day: date) -> date:
    """The day of `cadence` in the period (ISO week or month) that contains `local_day`."""
    if cadence.period == "week":
        return local_day - timedelta(days=local_day.isoweekday() - cadence.day)
    return local_day.replace(day=cadence.day)


def period_key(cadence: Cadence, day: date) -> str:
    """`2026-W49` (ISO week, its own year: 2026-12-28 is in 2026-W53, 2027-01-01 too) or `2026-12`."""
    if cadence.period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


@lru_cache(maxsize=65536)
def due_instant(cadence: Cadence, zone_name: str, day: date) -> datetime:
    """The UTC instant the local clock of `zone_name` reaches `cadence.at` on `day` (see the module
    docstring for days whose clock skips or repeats that time)."""
    local = datetime.combine(day, cadence.at, tzinfo=zone(zone_name))  # fold=0: the earlier reading
    return local.astimezone(timezone.utc)


def due_period(cadence: Cadence, zone_name: str, slot: Slot) -> str | None:
    """The key of the period whose digest is due in `zone_name` during `slot`, or None."""
    tz = zone(zone_name)
    # The due instant is within a day of the wall-clock time it stands for (a skipped day moves it
    # by one), so the periods of the days around the slot's two ends hold every candidate.
    ends = {slot.start.astimezone(tz).date(), slot.end.astimezone(tz).date()}
    days = {end + timedelta(days=shift) for end in ends for shift in (-1, 0, 1)}
    for day in sorted({period_day(cadence, d) for d in days}):
        if due_instant(cadence, zone_name, day) in slot:
            return period_key(cadence, day)
    return None


def due_zones(cadence: Cadence, zone_names: Iterable[str], slot: Slot) -> dict[str, list[str]]:
    """Period key → the zones (sorted) due in `slot`: computed once per dispatch, then recipients
    are selected by zone (`WHERE time_zone = ANY(...)`). Almost always a single period."""
    due: dict[str, list[str]] = {}
    for name in sorted(set(zone_names)):
        key = due_period(cadence, name, slot)
        if key is not None:
            due.setdefault(key, []).append(name)
    return due


def next_due(cadence: Cadence, zone_name: str, after: datetime) -> tuple[str, datetime]:
    """The next period key and its due instant strictly after `after` (a recipient's next digest)."""
    local_day = after.astimezone(zone(zone_name)).date()
    day = period_day(cadence, local_day - timedelta(days=1))
    while True:
        moment = due_instant(cadence, zone_name, day)
        if moment > after:
            return period_key(cadence, day), moment
        day = _next_period_day(cadence, day)


def _next_period_day(cadence: Cadence, day: date) -> date:
    if cadence.period == "week":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=cadence.day)
