"""The digest dispatcher's contract: the kinds of digest, their keys, and what the dispatcher and
its two activities pass each other. No I/O imports: the workflow imports this module."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from workflows.core.fields import Strict
from workflows.digest.rules import MONTHLY, WEEKLY, Cadence

# Activity type names: the workflow schedules them by name, the worker registers activities/digest.py.
PLAN_DIGESTS = "plan_digest_dispatch"
SEND_DIGESTS = "send_digest_batch"
DISPATCH_ID = "digest-dispatch"  # the Schedule's id; each run is `digest-dispatch-<scheduled time>`


class DigestKind(StrEnum):
    WEEKLY = "weekly"  # seed 001: progress every Monday 09:00 local
    MONTHLY = "monthly"  # seed 004: the monthly summary, the 1st at 09:00 local
    MANAGER = "manager"  # seed 004: the manager digest, every Monday 09:00 local

    @property
    def cadence(self) -> Cadence:
        return MONTHLY if self is DigestKind.MONTHLY else WEEKLY

    @property
    def template(self) -> str:
        return f"digest_{self.value}"

    def key(self, recipient: str, period: str) -> str:
        """The send's idempotency key: `digest/ann/2026-W49`, `digest-monthly/ann/2026-12`,
        `digest-manager/lee/2026-W49`. One message per recipient and period, whatever runs again."""
        prefix = "digest" if self is DigestKind.WEEKLY else f"digest-{self.value}"
        return f"{prefix}/{recipient}/{period}"


class DueGroup(Strict):
    """Recipients of one kind whose zone is in `zones` get that kind's digest for `period`."""

    kind: DigestKind
    period: str
    zones: list[str]


class DispatchPlan(Strict):
    slot_start: datetime
    slot_end: datetime
    zones_known: int = Field(description="distinct time zones among the recipients")
    groups: list[DueGroup]


class Cursor(Strict):
    """Keyset position inside a group: the last (time zone, recipient) handled."""

    time_zone: str
    recipient: str


class DigestBatch(Strict):
    group: DueGroup
    slot_end: datetime  # the sends' due time; with the grace, their deadline
    after: Cursor | None = None
    limit: int


class BatchReport(Strict):
    recipients: int
    sent: int = 0
    already_done: int = 0  # sent (or skipped) by an earlier run of this period: a backfill, a retry
    skipped: dict[str, int] = {}  # by kind of reason
    failed: int = 0
    last: Cursor | None = None  # None: the group is done


class DispatchInput(Strict):
    """Empty from the Schedule (the slot is the run's scheduled time); filled to run a given slot
    by hand, and by continue-as-new to carry on where the previous run stopped."""

    slot: datetime | None = None
    plan: DispatchPlan | None = None
    group: int = 0
    after: Cursor | None = None
    totals: dict[str, int] = {}
    batch_size: int = Field(500, ge=1, le=5000)
    # A batch costs ~6 history events: the default budget is ~800 batches (400,000 recipients at
    # 500 a batch) per run before it continues as new.
    history_budget: int = Field(5_000, ge=10, description="events; past it the run continues as new")


class DispatchReport(Strict):
    slot_start: datetime
    slot_end: datetime
    groups: list[DueGroup]
    totals: dict[str, int]


# --- progress: the object a digest template renders, pushed (PUT /v1/progress) or pulled --------

PROGRESS_MAX_BYTES = 32_768  # compact JSON: a digest, not a data dump
PROGRESS_MAX_DEPTH = 8
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")  # tab and line breaks are text


def _walk(value: Any, path: str, depth: int) -> None:
    if depth > PROGRESS_MAX_DEPTH:
        raise ValueError(f"{path or 'progress'}: nests deeper than {PROGRESS_MAX_DEPTH} levels")
    if isinstance(value, str):
        if (found := _CONTROL.search(value)) is not None:
            raise ValueError(f"{path or 'progress'}: must not contain control characters or lone surrogates: "
                             f"U+{ord(found.group()):04X} at position {found.start()}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path or 'progress'}: must be a finite number, not {value}")
    elif isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise ValueError(f"{path or 'progress'}: keys must be strings")
            _walk(name, f"{path}.{name}" if path else name, depth + 1)
            _walk(item, f"{path}.{name}" if path else name, depth + 1)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _walk(item, f"{path}.{n}" if path else str(n), depth + 1)
    elif value is not None and not isinstance(value, (bool, int)):
        raise ValueError(f"{path or 'progress'}: not a JSON value ({type(value).__name__})")


def _rows(value: Any, path: str, required: str) -> None:
    if not isinstance(value, list) or not all(isinstance(row, dict) and required in row for row in value):
        raise ValueError(f"{path}: must be a list of objects, each with {required!r}")


def _bounded_progress(value: dict[str, Any]) -> dict[str, Any]:
    """A JSON object of at most PROGRESS_MAX_BYTES, no deeper than PROGRESS_MAX_DEPTH, without
    control characters or non-finite numbers; the keys the templates read keep their shape."""
    _walk(value, "", 0)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > PROGRESS_MAX_BYTES:
        raise ValueError(f"progress is {size} bytes of JSON; at most {PROGRESS_MAX_BYTES}")
    for name, required in (("items", "label"), ("team", "name")):
        if name in value:
            _rows(value[name], name, required)
    for name in ("summary", "headline", "url"):
        if name in value and not isinstance(value[name], str):
            raise ValueError(f"{name}: must be a string")
    if isinstance(value.get("url"), str) and not re.fullmatch(r"https?://\S+", value["url"]):
        raise ValueError("url: must be an http(s) URL")
    return value


Progress = Annotated[dict[str, Any], AfterValidator(_bounded_progress)]
