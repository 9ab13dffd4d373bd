"""The digest timing rules (workflows/digest/rules.py), pure: every zone of the tz database gets
its digest in exactly one 30-minute slot per period, across DST changes, in half- and
quarter-hour zones, on days whose clock skips or repeats the local time, and on skipped days."""

from __future__ import annotations

import zoneinfo
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from workflows.digest.models import DigestKind
from workflows.digest.rules import (
    MONTHLY, SLOT, WEEKLY, Cadence, Slot, due_instant, due_period, due_zones, next_due, period_key, slot_of,
)

UTC = timezone.utc
ZONES = sorted(zoneinfo.available_timezones())


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def slots(start: datetime, end: datetime):
    slot = slot_of(start)
    while slot.start < end:
        yield slot
        slot = Slot(slot.end, slot.end + SLOT)


def served(cadence: Cadence, zones, start: datetime, end: datetime) -> Counter:
    """(zone, period) → how many slots between start and end served it."""
    count: Counter = Counter()
    for slot in slots(start, end):
        for period, due in due_zones(cadence, zones, slot).items():
            count.update((zone, period) for zone in due)
    return count


def around(monday: date) -> tuple[datetime, datetime]:
    """Sunday 12:00 to Tuesday 00:00 UTC: holds Monday 09:00 of every offset there is (UTC-12 …
    UTC+14), with margins; a rule that served a zone twice would do it inside this span."""
    midnight = utc(monday.year, monday.month, monday.day)
    return midnight - timedelta(hours=12), midnight + timedelta(hours=24)


def test_the_slot_is_the_half_hour_ending_at_the_scheduled_time_floored():
    assert slot_of(utc(2026, 12, 7, 9, 0)) == Slot(utc(2026, 12, 7, 8, 30), utc(2026, 12, 7, 9, 0))
    assert slot_of(utc(2026, 12, 7, 9, 7, 31)) == Slot(utc(2026, 12, 7, 8, 30), utc(2026, 12, 7, 9, 0))  # a trigger
    assert slot_of(datetime(2026, 12, 7, 10, 45, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))).end == utc(2026, 12, 7, 9, 30)
    with pytest.raises(ValueError):
        slot_of(datetime(2026, 12, 7, 9, 0))


@pytest.mark.parametrize("zone, slot_end", [
    ("Europe/Berlin", utc(2026, 12, 7, 8, 0)),  # winter, +01:00
    ("America/New_York", utc(2026, 12, 7, 14, 0)),
    ("Asia/Kolkata", utc(2026, 12, 7, 3, 30)),  # +05:30: 03:30 UTC is the slot's end, inside (03:00, 03:30]
    ("Asia/Kathmandu", utc(2026, 12, 7, 3, 30)),  # +05:45: 03:15 UTC, inside (03:00, 03:30]
    ("Australia/Eucla", utc(2026, 12, 7, 0, 30)),  # +08:45: 00:15 UTC
    ("Pacific/Chatham", utc(2026, 12, 6, 19, 30)),  # +13:45 in its summer: Sunday 19:15 UTC
    ("Pacific/Kiritimati", utc(2026, 12, 6, 19, 0)),  # +14:00: Sunday 19:00 UTC is Monday 09:00 there
    ("Pacific/Pago_Pago", utc(2026, 12, 7, 20, 0)),  # -11:00
])
def test_monday_nine_is_served_in_the_slot_containing_it(zone, slot_end):
    slot = slot_of(slot_end)
    assert due_period(WEEKLY, zone, slot) == "2026-W50"
    assert due_period(WEEKLY, zone, Slot(slot.start - SLOT, slot.start)) is None
    assert due_period(WEEKLY, zone, Slot(slot.end, slot.end + SLOT)) is None


def test_summer_time_moves_the_slot_by_the_offset():
    assert due_period(WEEKLY, "Europe/Berlin", slot_of(utc(2026, 7, 6, 7, 0))) == "2026-W28"  # +02:00
    assert due_period(WEEKLY, "Europe/Berlin", slot_of(utc(2026, 7, 6, 8, 0))) is None


def test_due_zones_groups_the_zones_of_a_slot_by_period():
    slot = slot_of(utc(2026, 12, 7, 3, 30))
    due = due_zones(WEEKLY, ["Asia/Kathmandu", "Asia/Kolkata", "Europe/Berlin", "Asia/Colombo", "Asia/Kolkata"], slot)
    assert due == {"2026-W50": ["Asia/Colombo", "Asia/Kathmandu", "Asia/Kolkata"]}
    assert due_zones(WEEKLY, ["Europe/Berlin"], slot) == {}


def test_iso_week_keys_follow_the_iso_year():
    assert period_key(WEEKLY, date(2026, 11, 30)) == "2026-W49"
    assert period_key(WEEKLY, date(2026, 12, 28)) == "2026-W53"  # 2026 has 53 ISO weeks
    assert period_key(WEEKLY, date(2027, 1, 4)) == "2027-W01"
    assert period_key(WEEKLY, date(2024, 12, 30)) == "2025-W01"  # a Monday in December of the next ISO year
    assert period_key(MONTHLY, date(2026, 12, 1)) == "2026-12"
    assert DigestKind.WEEKLY.key("ann", "2026-W49") == "digest/ann/2026-W49"
    assert DigestKind.MONTHLY.key("ann", "2026-12") == "digest-monthly/ann/2026-12"
    assert DigestKind.MANAGER.key("lee", "2026-W49") == "digest-manager/lee/2026-W49"


@pytest.mark.parametrize("monday", [
    date(2026, 3, 30),  # the Monday after Europe's spring change (Sunday 29 March)
    date(2026, 3, 9),  # after the US spring change
    date(2026, 10, 26),  # after Europe's autumn change
    date(2026, 12, 28),  # ISO week 53, across the new year
])
def test_every_zone_is_served_exactly_once_in_a_week_of_dst_changes(monday: date):
    count = served(WEEKLY, ZONES, *around(monday))
    key = period_key(WEEKLY, monday)
    assert {zone for zone, period in count if period == key} == set(ZONES)
    assert set(count.values()) == {1}, [k for k, v in count.items() if v != 1]
    assert {period for _, period in count} == {key}


def test_every_zone_gets_its_monthly_summary_once_on_the_first():
    count = served(MONTHLY, ZONES, utc(2026, 10, 30), utc(2026, 11, 2))
    assert count == Counter({(zone, "2026-11"): 1 for zone in ZONES})


@settings(max_examples=20, deadline=None)
@given(monday=st.dates(date(2000, 1, 3), date(2037, 12, 28)).map(lambda d: d - timedelta(days=d.weekday())),
       zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=40, unique=True))
def test_any_week_any_zones_each_zone_once_in_the_slot_holding_its_local_nine(monday: date, zones: list[str]):
    count = served(WEEKLY, zones, *around(monday))
    key = period_key(WEEKLY, monday)
    assert count == Counter({(zone, key): 1 for zone in zones})
    for zone in zones:  # and that slot is the one whose (start, end] holds the instant 09:00 local
        instant = due_instant(WEEKLY, zone, monday)
        assert instant.astimezone(zoneinfo.ZoneInfo(zone)).replace(tzinfo=None) == datetime.combine(monday, time(9))
        assert due_period(WEEKLY, zone, slot_of(instant + SLOT - timedelta(microseconds=1))) == key


@settings(max_examples=50, deadline=None)
@given(moment=st.datetimes(datetime(2000, 1, 1), datetime(2037, 12, 31), timezones=st.just(UTC)),
       zone=st.sampled_from(ZONES), kind=st.sampled_from(list(DigestKind)))
def test_the_next_digest_is_served_in_exactly_the_slot_next_due_names(moment, zone, kind):
    key, at = next_due(kind.cadence, zone, moment)
    assert at > moment
    slot = slot_of(at + SLOT - timedelta(microseconds=1))
    assert at in slot and due_period(kind.cadence, zone, slot) == key
    between = [s for s in slots(moment, slot.start) if s.start >= moment and s.end <= slot.start]
    assert all(due_period(kind.cadence, zone, s) is None for s in between)  # nothing due before it


def test_a_local_time_the_clock_skips_is_served_once_after_the_jump():
    # Europe/Berlin, Sunday 29 March 2026: 02:00 → 03:00. A Sunday 02:30 digest has no 02:30 that day.
    sunday_half_past_two = Cadence("week", 7, time(2, 30))
    count = served(sunday_half_past_two, ["Europe/Berlin"], utc(2026, 3, 27), utc(2026, 4, 1))
    assert count == Counter({("Europe/Berlin", "2026-W13"): 1})
    assert due_instant(sunday_half_past_two, "Europe/Berlin", date(2026, 3, 29)) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST


def test_a_local_time_the_clock_repeats_is_served_once_the_first_time():
    # Europe/Berlin, Sunday 25 October 2026: 03:00 → 02:00, so 02:30 happens twice.
    sunday_half_past_two = Cadence("week", 7, time(2, 30))
    count = served(sunday_half_past_two, ["Europe/Berlin"], utc(2026, 10, 23), utc(2026, 10, 28))
    assert count == Counter({("Europe/Berlin", "2026-W43"): 1})
    assert due_instant(sunday_half_past_two, "Europe/Berlin", date(2026, 10, 25)) == utc(2026, 10, 25, 0, 30)  # CEST


def test_a_skipped_day_still_gets_its_digest_once():
    # Pacific/Apia skipped Friday 30 December 2011 (UTC-10 → UTC+14): a Friday digest that week
    # comes at the instant the old offset puts Friday 09:00, which is Saturday 09:00 there.
    friday_nine = Cadence("week", 5, time(9, 0))
    count = served(friday_nine, ["Pacific/Apia"], utc(2011, 12, 20), utc(2012, 1, 10))
    assert count == Counter({("Pacific/Apia", "2011-W51"): 1, ("Pacific/Apia", "2011-W52"): 1,
                             ("Pacific/Apia", "2012-W01"): 1})


def test_a_slot_can_fail():
    """The property above is not vacuous: a rule serving on the slot's start instead of its end
    (an off-by-one that a [start, end) window would make) serves zones on the hour twice or never."""
    def wrong(cadence, zone, slot):
        return due_period(cadence, zone, Slot(slot.start - timedelta(microseconds=1), slot.end - timedelta(microseconds=1)))

    slot = slot_of(utc(2026, 12, 7, 8, 0))
    assert due_period(WEEKLY, "Europe/Berlin", slot) == "2026-W50"
    assert wrong(WEEKLY, "Europe/Berlin", slot) is None
