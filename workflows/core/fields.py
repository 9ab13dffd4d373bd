"""Field types defined once and used by every journey's models, and the policy → overrides
derivation (a start may override any bound of the policy, with the same bounds)."""

from __future__ import annotations

import re
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Optional

from pydantic import (
    AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, PlainSerializer,
    Strict as StrictMode,
    StringConstraints, create_model,
)

# Every moment and duration a journey is given stays inside these bounds, so that all its date
# arithmetic (an anchor plus 20 follow-ups at the longest interval) stays far inside what Python's
# datetime holds: a start the API accepts can always run to its end.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)
LONGEST = timedelta(days=1830)  # about 5 years: the longest offset, interval or window


def _moment_input(value: Any) -> Any:
    """A moment is an ISO 8601 string with its UTC offset (JSON) or a datetime (Python), never a
    number: `0` or `true` read as 1970 would be a mistake, not a time."""
    if isinstance(value, (str, datetime)):
        return value
    raise ValueError("must be an ISO 8601 date-time with a UTC offset, like 2026-12-01T09:00:00+01:00")


def _in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST - timedelta(days=1):%Y-%m-%d} (UTC)")
    return value


def _duration_input(value: Any) -> Any:
    """A duration is ISO 8601 (`PT48H`, `P3D`) or a number of seconds, never a boolean."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, timedelta)):
        raise ValueError("must be an ISO 8601 duration like PT48H or P3D, or a number of seconds")
    return value


def _not_too_long(value: timedelta) -> timedelta:
    if value > LONGEST:
        raise ValueError(f"must be at most {LONGEST.days} days (P{LONGEST.days}D)")
    return value


def iso_duration(value: timedelta) -> str:
    """ISO 8601 in days, hours, minutes and seconds: `P400D`, `P2DT3H`, `PT1M30.5S`. Never years
    or months, which have no fixed length: what a caller sends as P400D reads back as P400D."""
    days, rest = value.days, value - timedelta(days=value.days)
    seconds = rest.total_seconds()
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    time = "".join(f"{int(n)}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n)
    if seconds:
        time += f"{seconds:.6f}".rstrip("0").rstrip(".") + "S"
    text = "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return "PT0S" if text == "P" else text


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _refuse(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if (found := pattern.search(value)) is not None:
            raise ValueError(f"{what} must not contain control characters or lone surrogates: "
                             f"U+{ord(found.group()):04X} at position {found.start()}")
        return value
    return AfterValidator(check)


SingleLine = _refuse(_CONTROL, "text")  # names, ids, URLs: they go into headers, keys and links
FreeText = _refuse(_CONTROL_BUT_LINES, "text")  # tab and line breaks allowed, nothing else below U+0020


# Whether an address whose local part is not ASCII (`аda@example.com`, `用户@例子.广告`) is accepted:
# only SMTPUTF8 (RFC 6531) can deliver it. The API sets this per request from its settings
# (FOLLOWUPS_SMTPUTF8); everywhere else, in workflows and activities, an address already accepted is
# never refused again: a running journey decodes its recorded input whatever the setting is now.
SMTPUTF8_ADDRESSES: ContextVar[bool] = ContextVar("smtputf8_addresses", default=True)


def _deliverable(value: str) -> str:
    local = value.rpartition("@")[0]
    if not local.isascii() and not SMTPUTF8_ADDRESSES.get():
        raise ValueError("the part before the @ is not ASCII: such an address needs SMTPUTF8, which this "
                         "service does not use (FOLLOWUPS_SMTPUTF8=false)")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration (ISO 8601 like PT48H, or seconds)")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative (ISO 8601 like PT2H, or seconds)")
    return value


def _known_time_zone(value: str | None) -> str | None:
    if value is None:
        return value
    import zoneinfo  # only validated at the edge; workflows never resolve zones themselves

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA time zone {value!r}") from err
    return value


def _distinct_offsets(value: list[timedelta]) -> list[timedelta]:
    if len(set(value)) != len(value):
        raise ValueError("reminder offsets must be distinct")
    return sorted(value, reverse=True)  # the earliest reminder first


_AS_ISO = PlainSerializer(iso_duration, return_type=str, when_used="json")
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration_input), AfterValidator(_positive),
                             AfterValidator(_not_too_long), _AS_ISO]
NonNegativeDuration = Annotated[timedelta, BeforeValidator(_duration_input), AfterValidator(_not_negative),
                                AfterValidator(_not_too_long), _AS_ISO]
Moment = Annotated[AwareDatetime, BeforeValidator(_moment_input), AfterValidator(_in_range)]
Flag = Annotated[bool, StrictMode()]  # true or false: not "no", 0 or "off"
Count = Annotated[int, StrictMode()]  # a JSON integer: not "3", 3.0 or true
EntityId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
EmailAddress = Annotated[EmailStr, AfterValidator(_deliverable)]  # a non-ASCII domain is sent as IDNA
TimeZone = Annotated[str | None, AfterValidator(_known_time_zone)]
ShortText = Annotated[str, StringConstraints(max_length=500), FreeText]
PersonName = Annotated[str, StringConstraints(min_length=1, max_length=200), SingleLine]
Title = PersonName
WebUrl = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$"), SingleLine]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=200), SingleLine]
ReminderOffsets = Annotated[list[PositiveDuration], Field(min_length=1, max_length=10),
                            AfterValidator(_distinct_offsets)]
GroupName = Annotated[str, StringConstraints(min_length=1, max_length=100,
                                             pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NOT_OVERRIDABLE = frozenset({"hold_early_events_for"})  # a setting of the service, not of one start


def overrides_of(policy: type[BaseModel], name: str | None = None) -> type[BaseModel]:
    """The model of a start's `policy` field: every overridable field of `policy`, optional, with
    the same type and bounds. Derived, so a new policy field can never be forgotten here."""
    fields: dict[str, Any] = {}
    for field_name, info in policy.model_fields.items():
        if field_name in NOT_OVERRIDABLE:
            continue
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[field_name] = (Optional[annotation], Field(None, description=info.description))
    model = create_model(name or f"{policy.__name__}Overrides", __base__=Strict, **fields)
    model.__doc__ = f"Overrides of {policy.__name__} for one start: any field, same bounds; unset = the default."
    return model


def with_overrides(policy: BaseModel, overrides: BaseModel) -> BaseModel:
    """A journey's policy: the defaults it started with, then the start's overrides, re-validated."""
    return type(policy).model_validate({**policy.model_dump(), **overrides.model_dump(exclude_none=True)})
