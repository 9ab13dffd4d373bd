"""Send windows (quiet hours) and frequency caps: pure rules, no I/O, no clock.

The send step asks `plan(...)` once a message has passed suppression and preferences; a `Defer`
makes the workflow sleep durably until its `until` (its `why` is the timer's summary in the Web
UI), then the send step asks again.

How a window is read, DST included: a window is open exactly when the recipient's local wall
clock shows a time in [start, end). Everything else follows from that one rule:
* an opening time skipped by a spring-forward gap opens at the first valid local minute after it
  (the instant the clock jumps: Berlin's 02:30 on 2026-03-29 opens at 03:00 CEST);
* an opening time repeated by a fall-back opens at its first occurrence;
* a closing time skipped by a gap closes the window when the clock jumps past it;
* a closing time repeated by a fall-back closes the window at its first occurrence, and the part
  of the window inside the repeated hour is open again the second time the clock shows it;
* a window lying wholly inside a gap (Berlin's 02:10-02:40) does not open that day.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_MINUTES = 24 * 60
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
_SEPARATORS = re.compile(r"\s*[-–—]\s*")


@dataclass(frozen=True)
class SendWindow:
    """The local hours a message may go out, as minutes since local midnight: `start` in [0, 1440),
    `end` in (0, 1440] ("24:00" is midnight at the end of the day). start > end crosses midnight
    ("22:00-06:00"); a window as long as the day ("00:00-24:00", "08:00-08:00") is always open."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> SendWindow:
        """"08:00-21:00" (an en dash or spaces around the dash are fine too); ValueError says why not."""
        parts = _SEPARATORS.split(text.strip())
        if len(parts) != 2:
            raise ValueError(f"send window {text!r} is not HH:MM-HH:MM (e.g. 08:00-21:00)")
        start, end = (_minutes(part, text) for part in parts)
        if start == DAY_MINUTES:
            raise ValueError(f"send window {text!r} starts at 24:00: a window starts at 00:00-23:59")
        return cls(start, end or DAY_MINUTES)  # "22:00-00:00" ends at the day's end

    def __post_init__(self) -> None:
        if not (0 <= self.start < DAY_MINUTES and 0 < self.end <= DAY_MINUTES):
            raise ValueError(f"send window minutes out of range: start {self.start}, end {self.end}")

    @property
    def always_open(self) -> bool:
        return (self.end - self.start) % DAY_MINUTES == 0

    def contains(self, local: time) -> bool:
        """Whether a local wall-clock time is inside the window (seconds count: 20:59:59 is
        inside 08:00-21:00, 21:00:00 is not)."""
        if self.always_open:
            return True
        moment = timedelta(hours=local.hour, minutes=local.minute, seconds=local.second,
                           microseconds=local.microsecond)
        start, end = timedelta(minutes=self.start), timedelta(minutes=self.end)
        if self.start < self.end:
            return start <= moment < end
        return moment >= start or moment < end

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


def _minutes(part: str, text: str) -> int:
    match = _CLOCK.fullmatch(part)
    if match is None:
        raise ValueError(f"send window {text!r}: {part!r} is not a time HH:MM")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"send window {text!r}: {part!r} is not a time of day (00:00-24:00)")
    return hours * 60 + minutes


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def zone_info(zone: str) -> ZoneInfo:
    """The IANA zone, or a ValueError naming it (ZoneInfo raises a KeyError for an unknown one)."""
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA time zone {zone!r}") from err


def next_open(now: datetime, zone: str, window: SendWindow) -> datetime | None:
    """None when the recipient's local time is inside `window`, else the UTC instant the window
    next opens (read by the wall-clock rule in the module docstring).

    Walks the zone's stretches of constant UTC offset from `now`: inside one, the wall clock moves
    with UTC, so the opening is plain arithmetic; at a transition the clock jumps, and the window
    is open from that instant if the clock lands inside it (the gap and fall-back cases)."""
    tz = zone_info(zone)
    moment = _utc(now)
    if window.contains(moment.astimezone(tz).time()):
        return None
    for _ in range(8):  # a window opens within two days; each pass ends at an opening or a transition
        offset = _offset(tz, moment)
        wall = (moment + offset).replace(tzinfo=None)
        opening = datetime.combine(wall.date(), time(window.start // 60, window.start % 60))
        if opening <= wall:
            opening += timedelta(days=1)
        candidate = (opening - offset).replace(tzinfo=timezone.utc)
        jump = _next_transition(tz, moment, candidate)
        if jump is None:
            return candidate
        if window.contains(jump.astimezone(tz).time()):
            return jump
        moment = jump
    raise AssertionError(f"{window} in {zone} did not open within 8 offset changes of {now}")  # pragma: no cover


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment} has no time zone: pass an aware UTC datetime")
    return moment.astimezone(timezone.utc)


def _offset(tz: ZoneInfo, moment: datetime) -> timedelta:
    offset = moment.astimezone(tz).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _next_transition(tz: ZoneInfo, after: datetime, until: datetime) -> datetime | None:
    """The first instant in (after, until] where the zone's UTC offset changes, or None.

    zoneinfo does not list transitions, so: hourly steps (no zone changes its offset twice within
    an hour), then a bisection to the second (transitions fall on whole seconds)."""
    before = _offset(tz, after)
    low = after.replace(microsecond=0)  # same offset as `after`: a transition is never inside a second
    step = timedelta(hours=1)
    while low < until:
        high = min(low + step, until)
        if _offset(tz, high) != before:
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) // 2
                middle = middle.replace(microsecond=0)
                if _offset(tz, middle) == before:
                    low = middle
                else:
                    high = middle
            return high
        low = high
    return None


def cap_until(sent: Sequence[datetime], cap: int, now: datetime,
              period: timedelta = timedelta(days=1)) -> datetime | None:
    """A rolling frequency cap: None while fewer than `cap` sends fall in (now - period, now],
    else the instant enough of them have aged out for one more (with exactly `cap` counted, when
    the oldest one does; above the cap, say after a critical message went out regardless, later).
    Sends after `now` are not counted."""
    if cap < 1:
        raise ValueError(f"a frequency cap allows at least 1 message, not {cap}")
    if period <= timedelta(0):
        raise ValueError(f"a frequency cap's period must be positive, not {period}")
    moment = _utc(now)
    counted = sorted(at for at in map(_utc, sent) if moment - period < at <= moment)
    if len(counted) < cap:
        return None
    # One more may go once only cap - 1 remain: the (len - cap)-th oldest has aged out.
    return counted[len(counted) - cap] + period


@dataclass(frozen=True)
class Send:
    """Send now. `note`, when quiet hours or a cap would have held it: why it goes anyway (its
    deadline comes first)."""

    note: str | None = None


@dataclass(frozen=True)
class Defer:
    """Wait until `until` (UTC), then ask again; `why` reads as a Web UI timer summary."""

    until: datetime
    why: str


@dataclass(frozen=True)
class Skip:
    """Do not send: `why` is recorded as the message's reason."""

    why: str


Plan: TypeAlias = Send | Defer | Skip
Late = Literal["send", "skip"]
CapPolicy = Literal["defer", "drop"]


def plan(now: datetime, zone: str, window: SendWindow | None, *, not_after: datetime | None,
         critical: bool, late: Late, cap_until: datetime | None, cap_policy: CapPolicy,
         cap_rule: str | None = None) -> Plan:
    """What to do with a message due `now` for a recipient in `zone`.

    `window` None: no quiet hours. `not_after`: the deadline of a time-bound message (a reminder
    before a class); it is never deferred past it: `late` says whether it then goes now or is
    skipped. `cap_until`: what `cap_until()` answered for the recipient and category (None or a
    past instant: under the cap); `cap_rule` names the cap in reasons ("2 marketing messages a
    day"). A critical message always goes now: quiet hours and caps never hold it."""
    if cap_policy not in ("defer", "drop"):
        raise ValueError(f"cap_policy is 'defer' or 'drop', not {cap_policy!r}")
    if late not in ("send", "skip"):
        raise ValueError(f"late is 'send' or 'skip', not {late!r}")
    moment = _utc(now)
    if critical:
        return Send()
    capped = _utc(cap_until) if cap_until is not None and _utc(cap_until) > moment else None
    cap_name = f"frequency cap ({cap_rule})" if cap_rule else "frequency cap"
    if capped is not None and cap_policy == "drop":
        return Skip(f"{cap_name}: reached until {_when(capped, zone)}; the policy drops the excess")
    held = capped or moment
    opens = next_open(held, zone, window) if window is not None else None
    if opens is None and held == moment:
        return Send()
    until = opens or held
    if opens is not None and held == moment:
        why = f"quiet hours in {zone} until {_when(until, zone)}"
    elif opens is None:
        why = f"{cap_name} until {_when(until, zone)}"
    else:
        why = f"{cap_name} until {_when(held, zone)}, then quiet hours in {zone} until {_when(until, zone)}"
    if not_after is None or until < _utc(not_after):  # not_after is exclusive, as the send step's too-late check
        return Defer(until, why)
    deadline = f"the deadline {_when(_utc(not_after), zone)} comes first"
    if late == "send":
        return Send(f"sent now: {why}, and {deadline}")
    return Skip(f"{why}, and {deadline}")


def _when(instant: datetime, zone: str) -> str:
    """"08:00 (2026-03-29T06:00:00Z)": the recipient's local time for a person, UTC to be exact;
    the local date is added when it is not the UTC date, so a reader never guesses the day."""
    local = instant.astimezone(zone_info(zone))
    utc = instant.astimezone(timezone.utc)
    shown = local.strftime("%H:%M") if local.date() == utc.date() else local.strftime("%a %d %b %H:%M")
    return f"{shown} ({utc.strftime('%Y-%m-%dT%H:%M:%SZ')})"


__all__ = ["SendWindow", "Send", "Defer", "Skip", "Plan", "next_open", "cap_until", "plan", "zone_info"]
