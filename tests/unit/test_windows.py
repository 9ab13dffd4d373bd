"""Send windows and frequency caps (activities/windows.py) against brute force, across DST changes
and 30/45-minute zones. The oracles here read the zone only through `astimezone`, minute by
minute, so they share no arithmetic with the rules they judge."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.windows import Defer, Send, SendWindow, Skip, cap_until, next_open, plan

UTC = timezone.utc
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Chatham",
         "America/St_Johns", "Asia/Kolkata", "Australia/Eucla", "America/Santiago", "UTC"]
PROPERTY = settings(max_examples=150, deadline=None, database=None)
MINUTE = timedelta(minutes=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@lru_cache(maxsize=None)
def transitions(zone: str) -> tuple[datetime, ...]:
    """The UTC hours in 2025-2027 that end with a change of the zone's offset (all of these zones
    change on a whole or half hour UTC, so within the hour before the one listed)."""
    tz, found = ZoneInfo(zone), []
    day = datetime(2025, 1, 1, tzinfo=UTC)
    while day.year < 2028:
        if day.astimezone(tz).utcoffset() != (day + timedelta(days=1)).astimezone(tz).utcoffset():
            hour = day
            while hour.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset():
                hour += timedelta(hours=1)
            found.append(hour)
        day += timedelta(days=1)
    return tuple(found)


@st.composite
def moments(draw: st.DrawFn, zone: str) -> datetime:
    """Mostly within hours or days of a DST change in `zone` (where the rules can go wrong), else
    any time; sometimes off the minute."""
    changes = transitions(zone)
    near = draw(st.sampled_from(["hours", "days", "anytime"])) if changes else "anytime"
    if near == "anytime":
        base = draw(st.datetimes(datetime(2001, 1, 1), datetime(2037, 1, 1))).replace(second=0, microsecond=0,
                                                                                     tzinfo=UTC)
    else:
        spread = 6 * 60 if near == "hours" else 72 * 60
        base = draw(st.sampled_from(changes)) + timedelta(minutes=draw(st.integers(-spread, spread)))
    return base + timedelta(seconds=draw(st.sampled_from([0, 0, 1, 30, 59.999])))


# Minutes near the clock changes (02:00, 02:30, 02:45, midnight in Santiago) and ordinary ones.
NEAR = [h * 60 + m for h in (0, 1, 2, 3, 23) for m in (0, 15, 30, 45)] + [8 * 60, 21 * 60, 24 * 60]
minutes_of_day = st.one_of(st.sampled_from(NEAR), st.integers(0, 24 * 60))


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    """Any window, or a short one starting near a clock change (often outside, often in a gap)."""
    start = draw(minutes_of_day.filter(lambda m: m < 24 * 60))
    if draw(st.booleans()):
        end = draw(minutes_of_day)
    else:
        start = draw(st.sampled_from(NEAR[:-3]))
        end = (start + draw(st.sampled_from([15, 30, 45, 60, 90, 120, 180]))) % (24 * 60)
    return SendWindow.parse(f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}")


def inside(window: SendWindow, zone: str, instant: datetime) -> bool:
    """The oracle: the local wall-clock minute is in [start, end), counted round the clock."""
    local = instant.astimezone(ZoneInfo(zone))
    minute = local.hour * 60 + local.minute
    length = (window.end - window.start) % (24 * 60)
    return length == 0 or (minute - window.start) % (24 * 60) < length


def brute_next_open(now: datetime, zone: str, window: SendWindow) -> datetime | None:
    """Every whole minute after `now` for 72 h (a window lying in a gap skips a day)."""
    if inside(window, zone, now):
        return None
    minute = now.replace(second=0, microsecond=0) + MINUTE
    for _ in range(72 * 60):
        if inside(window, zone, minute):
            return minute
        minute += MINUTE
    raise AssertionError("no opening within 72 h")


@st.composite
def clock_changes(draw: st.DrawFn) -> tuple[str, datetime, SendWindow]:
    """A window that opens or closes where the clock is about to jump, and a moment shortly before
    (or after) the jump: the gap and repeated-hour cases, drawn on purpose."""
    zone = draw(st.sampled_from([zone for zone in ZONES if transitions(zone)]))
    change = draw(st.sampled_from(transitions(zone)))
    before = (change - timedelta(hours=2)).astimezone(ZoneInfo(zone)).utcoffset()
    assert before is not None

    def wall_minute(minutes: int) -> int:  # the clock as it would read had it not changed
        wall = change + timedelta(minutes=minutes) + before
        return wall.hour * 60 + wall.minute

    if draw(st.booleans()):  # opens near the jump (in a gap, in a repeated hour, or just around)
        start = wall_minute(draw(st.integers(-90, 90)))
        end = draw(st.one_of(st.integers(-90, 90).map(wall_minute),
                             st.integers(1, 12 * 60).map(lambda length: (start + length) % (24 * 60)),
                             minutes_of_day))
        now_in = draw(st.integers(-3 * 60, 60))
    else:  # open before the jump and closing within the hour before it: a fall-back repeats that part
        close = draw(st.integers(-59, -1))
        start, end = wall_minute(draw(st.integers(-300, -60))), wall_minute(close)
        now_in = draw(st.integers(close, 0))
    window = SendWindow.parse(f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}")
    now = change + timedelta(minutes=now_in, seconds=draw(st.sampled_from([0, 30])))
    return zone, now, window


scenarios = st.one_of(
    st.sampled_from(ZONES).flatmap(lambda zone: st.tuples(st.just(zone), moments(zone), windows())),
    clock_changes())


@PROPERTY
@given(scenarios)
def test_next_open_is_the_first_minute_inside_the_window(scenario: tuple[str, datetime, SendWindow]) -> None:
    zone, now, window = scenario
    opens = next_open(now, zone, window)
    assert opens == brute_next_open(now, zone, window)
    assert (opens is None) == inside(window, zone, now)
    if opens is not None:
        assert opens > now and opens.utcoffset() == timedelta(0)
        assert inside(window, zone, opens) and window.contains(opens.astimezone(ZoneInfo(zone)).time())
        assert not inside(window, zone, opens - timedelta(seconds=1))


@pytest.mark.parametrize("zone, now, window, expected", [
    # the opening falls in the spring-forward gap: the first valid local minute after it
    ("Europe/Berlin", "2026-03-29T00:30Z", "02:30-21:00", "2026-03-29T01:00Z"),  # 03:00 CEST
    ("America/New_York", "2026-03-08T06:00Z", "02:15-21:00", "2026-03-08T07:00Z"),  # 03:00 EDT
    ("Australia/Lord_Howe", "2026-10-03T14:30Z", "02:15-21:00", "2026-10-03T15:30Z"),  # 02:30 +11 (30-min DST)
    ("America/Santiago", "2026-09-06T03:30Z", "00:15-21:00", "2026-09-06T04:00Z"),  # midnight gap: 01:00 -03
    # the opening falls in the repeated hour: its first occurrence
    ("America/New_York", "2026-11-01T04:00Z", "01:30-21:00", "2026-11-01T05:30Z"),  # 01:30 EDT
    ("Australia/Lord_Howe", "2026-04-04T14:00Z", "01:45-21:00", "2026-04-04T14:45Z"),  # 01:45 +11
    # a window wholly inside the gap does not open that day
    ("Europe/Berlin", "2026-03-29T00:30Z", "02:10-02:40", "2026-03-30T00:10Z"),
    # a close inside the gap: the window shuts when the clock jumps past it
    ("Europe/Berlin", "2026-03-29T01:00Z", "20:00-02:30", "2026-03-29T18:00Z"),
    # a close inside the repeated hour: open again the second time the clock shows the open part
    ("America/New_York", "2026-11-01T05:45Z", "20:00-01:30", "2026-11-01T06:00Z"),  # 01:00 EST
    # 30- and 45-minute zones, exact
    ("Asia/Kolkata", "2026-06-01T00:00Z", "08:00-21:00", "2026-06-01T02:30Z"),
    ("Asia/Kathmandu", "2026-01-01T00:00Z", "08:00-21:00", "2026-01-01T02:15Z"),
    ("Australia/Eucla", "2026-01-01T16:00Z", "08:00-21:00", "2026-01-01T23:15Z"),
    ("Pacific/Chatham", "2026-01-01T12:00Z", "08:00-21:00", "2026-01-01T18:15Z"),  # +13:45 in summer
    ("America/St_Johns", "2026-01-01T04:00Z", "08:00-21:00", "2026-01-01T11:30Z"),
    # across midnight
    ("UTC", "2026-01-01T12:00Z", "22:00-06:00", "2026-01-01T22:00Z"),
])
def test_documented_cases(zone: str, now: str, window: str, expected: str) -> None:
    assert next_open(at(now), zone, SendWindow.parse(window)) == at(expected)


@pytest.mark.parametrize("text", ["00:00-24:00", "08:00-08:00", "23:59-23:59"])
def test_a_window_as_long_as_the_day_is_always_open(text: str) -> None:
    assert SendWindow.parse(text).always_open
    assert next_open(at("2026-03-29T01:00Z"), "Europe/Berlin", SendWindow.parse(text)) is None


@pytest.mark.parametrize("text, canonical", [
    ("08:00-21:00", "08:00-21:00"), ("8:00 – 21:30", "08:00-21:30"), ("22:00-06:00", "22:00-06:00"),
    ("22:00-00:00", "22:00-24:00"), ("00:00-24:00", "00:00-24:00"),
])
def test_parse(text: str, canonical: str) -> None:
    assert str(SendWindow.parse(text)) == canonical


@pytest.mark.parametrize("text, reason", [
    ("08:00", "is not HH:MM-HH:MM"), ("8-21", "is not a time HH:MM"), ("08:00-21:60", "not a time of day"),
    ("25:00-08:00", "not a time of day"), ("24:00-08:00", "starts at 24:00"), ("24:01-08:00", "not a time of day"),
    ("08:00-21:00-22:00", "is not HH:MM-HH:MM"), ("", "is not HH:MM-HH:MM"),
])
def test_parse_refuses_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        SendWindow.parse(text)


def test_refuses_a_naive_time_and_an_unknown_zone() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        next_open(datetime(2026, 1, 1), "UTC", SendWindow.parse("08:00-21:00"))
    with pytest.raises(ValueError, match="unknown IANA time zone 'Mars/Olympus'"):
        next_open(at("2026-01-01T00:00Z"), "Mars/Olympus", SendWindow.parse("08:00-21:00"))


# --- frequency caps ---------------------------------------------------------------------------


@PROPERTY
@given(st.lists(st.integers(-3 * 600, 100), max_size=12), st.integers(1, 5), st.integers(1, 600))
def test_cap_until_against_brute_force(offsets: list[int], cap: int, period_minutes: int) -> None:
    """Minute by minute from now: the first moment fewer than `cap` of the sends made by now fall
    in the trailing period (sends after now are not counted)."""
    now, period = at("2026-03-29T00:30Z"), timedelta(minutes=period_minutes)
    sent = [now + offset * MINUTE for offset in offsets]
    made = [s for s in sent if s <= now]
    moment = now
    while sum(moment - period < s <= moment for s in made) >= cap:
        moment += MINUTE
    assert cap_until(sent, cap, now, period) == (None if moment == now else moment)


def test_cap_until_defaults_to_a_day_and_refuses_nonsense() -> None:
    now = at("2026-03-29T12:00Z")
    sent = [at("2026-03-28T12:00Z"), at("2026-03-28T18:00Z"), at("2026-03-29T09:00Z")]
    assert cap_until(sent, 2, now) == at("2026-03-29T18:00Z")  # 12:00 yesterday is out, 18:00 counted
    assert cap_until(sent, 3, now) is None
    with pytest.raises(ValueError, match="at least 1"):
        cap_until(sent, 0, now)


# --- the plan ---------------------------------------------------------------------------------

later = st.integers(-120, 48 * 60).map(lambda minutes: minutes * MINUTE)


@PROPERTY
@given(scenarios, st.booleans(), st.one_of(st.none(), windows()), st.one_of(st.none(), later),
       st.sampled_from(["send", "skip"]), st.one_of(st.none(), later), st.sampled_from(["defer", "drop"]),
       st.booleans())
def test_plan_never_defers_critical_nor_past_the_deadline(
        scenario: tuple[str, datetime, SendWindow], critical: bool, window: SendWindow | None,
        deadline_in: timedelta | None, late: str, cap_in: timedelta | None, cap_policy: str, windowed: bool) -> None:
    zone, now, drawn = scenario
    window = drawn if windowed else window
    not_after = None if deadline_in is None else now + deadline_in
    capped_until = None if cap_in is None else now + cap_in
    capped = capped_until is not None and capped_until > now
    quiet = window is not None and next_open(now, zone, window) is not None
    result = plan(now, zone, window, not_after=not_after, critical=critical, late=late,  # type: ignore[arg-type]
                  cap_until=capped_until, cap_policy=cap_policy)  # type: ignore[arg-type]
    if critical:
        assert result == Send()
    elif isinstance(result, Defer):
        assert result.until > now and (not_after is None or result.until < not_after)  # not_after is exclusive
        assert window is None or inside(window, zone, result.until)  # it wakes inside the window
        assert not capped or result.until >= capped_until  # type: ignore[operator]
        assert result.why.startswith("quiet hours" if not capped else "frequency cap")
        assert result.until.strftime("(%Y-%m-%dT%H:%M:%SZ)") in result.why
    elif isinstance(result, Skip):
        assert capped and (cap_policy == "drop" or (late == "skip" and not_after is not None)) or \
            (quiet and late == "skip" and not_after is not None)
        assert result.why
    else:
        assert result.note is None or (late == "send" and not_after is not None)
        assert result.note is not None or not (quiet or capped)
    if capped and cap_policy == "drop" and not critical:
        assert isinstance(result, Skip) and result.why.startswith("frequency cap")


def test_plan_reasons_read_well_in_the_web_ui() -> None:
    now, berlin = at("2026-03-29T05:00Z"), SendWindow.parse("08:00-21:00")
    common = dict(critical=False, cap_until=None, cap_policy="defer")
    assert plan(now, "Europe/Berlin", berlin, not_after=None, late="send", **common) == Defer(  # type: ignore[arg-type]
        at("2026-03-29T06:00Z"), "quiet hours in Europe/Berlin until 08:00 (2026-03-29T06:00:00Z)")
    early = plan(now, "Europe/Berlin", berlin, not_after=at("2026-03-29T05:30Z"), late="send", **common)  # type: ignore[arg-type]
    assert early == Send("sent now: quiet hours in Europe/Berlin until 08:00 (2026-03-29T06:00:00Z), "
                         "and the deadline 07:30 (2026-03-29T05:30:00Z) comes first")
    dropped = plan(at("2026-03-29T10:00Z"), "Europe/Berlin", berlin, not_after=None, critical=False, late="send",
                   cap_until=at("2026-03-29T16:00Z"), cap_policy="drop", cap_rule="2 marketing messages a day")
    assert dropped == Skip("frequency cap (2 marketing messages a day): reached until 18:00 "
                           "(2026-03-29T16:00:00Z); the policy drops the excess")


def test_the_drawn_cases_reach_both_kinds_of_clock_change() -> None:
    """The properties above mean something only if the draws open windows at the jumps themselves:
    counted over a fixed sample of `clock_changes`."""
    seen: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(clock_changes())
    def count(scenario: tuple[str, datetime, SendWindow]) -> None:
        zone, now, window = scenario
        opens, tz = next_open(now, zone, window), ZoneInfo(zone)
        if opens is None:
            seen["inside"] += 1
            return
        jump = opens.astimezone(tz).utcoffset() - (opens - timedelta(seconds=1)).astimezone(tz).utcoffset()  # type: ignore[operator]
        seen["at a gap" if jump > timedelta(0) else "in a repeated hour" if jump else "ordinary"] += 1

    count()
    assert seen["at a gap"] >= 5 and seen["in a repeated hour"] >= 10 and seen["ordinary"] >= 50, seen


def test_a_deadline_at_the_very_moment_the_window_opens_is_not_waited_for():
    """`not_after` is exclusive, as the send step's too-late check: a message deferred to it would
    wake too late and be skipped as such, instead of following `late`."""
    now = datetime(2026, 12, 3, 22, 0, tzinfo=timezone.utc)
    window = SendWindow.parse("08:00-21:00")
    opens = next_open(now, "UTC", window)
    assert opens == datetime(2026, 12, 4, 8, 0, tzinfo=timezone.utc)
    sent = plan(now, "UTC", window, not_after=opens, critical=False, late="send", cap_until=None, cap_policy="defer")
    assert isinstance(sent, Send) and sent.note and "comes first" in sent.note
    assert isinstance(plan(now, "UTC", window, not_after=opens + timedelta(seconds=1), critical=False, late="send",
                           cap_until=None, cap_policy="defer"), Defer)
