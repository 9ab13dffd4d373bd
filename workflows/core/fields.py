"""Field types defined once and used by every journey's models, and the policy → overrides
derivation (a start may override any bound of the policy, with the same bounds)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model


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


PositiveDuration = Annotated[timedelta, AfterValidator(_positive)]
NonNegativeDuration = Annotated[timedelta, AfterValidator(_not_negative)]
EntityId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
TimeZone = Annotated[str | None, AfterValidator(_known_time_zone)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
PersonName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Title = PersonName
WebUrl = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$")]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
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
