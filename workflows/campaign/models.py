"""A broadcast campaign's workflow input and state, its events, and what its activities exchange.

Everything here crosses the history: the audience never does (it is frozen in PostgreSQL and read
by range of its sequence number), so a run's history stays small however large the audience."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workflows.core.fields import Moment, PositiveDuration, Strict

Priority = Literal["urgent", "high", "normal", "low"]
# Temporal's priority keys (1 goes first, 3 is the default every journey's tasks have): an urgent
# campaign's sends go before the default, a low one's after everything else on its queue.
PRIORITY_KEYS: dict[str, int] = {"urgent": 1, "high": 2, "normal": 3, "low": 4}
Metric = Literal["clicks", "opens", "conversions"]
Status = Literal["draft", "scheduled", "sending", "paused", "completed", "cancelled"]

FREEZE = "campaign_freeze"  # freeze the audience (once) → Frozen
SEND_RANGE = "campaign_send_range"  # send the audience's seq range (lo, hi] → RangeReport
DECIDE = "campaign_decide"  # the A/B test's decision (once) → Decision
MARK = "campaign_mark"  # the campaign's row: its status as the workflow moves


class Arm(Strict):
    variant: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
    weight: Annotated[int, Field(ge=1, le=1000)] = 1


class AbPlan(Strict):
    """Send a random `test_fraction` of the audience first, split over the arms by weight; after
    `wait`, test the best arm against each other one on `metric` (two-proportion z-test); the rest
    of the audience gets the winner, or, with no significant winner, what `no_winner` says."""

    arms: list[Arm] = Field(min_length=2, max_length=10, description="the template's variants and their weights; "
                                                                       "the first is the control")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    wait: PositiveDuration = timedelta(hours=4)
    metric: Metric = "clicks"
    confidence: float = Field(0.95, ge=0.5, lt=1)
    min_per_arm: int = Field(100, ge=1, le=1_000_000)
    no_winner: Literal["control", "split"] = "control"

    @field_validator("arms")
    @classmethod
    def _distinct(cls, arms: list[Arm]) -> list[Arm]:
        if len({arm.variant for arm in arms}) != len(arms):
            raise ValueError("each variant may be an arm once")
        return arms


def test_size(audience: int, plan: AbPlan) -> int:
    """How many of the audience (its first, in the frozen random order) the A/B test is sent to."""
    return min(audience, max(len(plan.arms), round(audience * plan.test_fraction)))


class CampaignRun(BaseModel):
    """The workflow's input, and what it carries into its next run (continue-as-new); the workflow
    moves it along, so unlike the other inputs it is not frozen."""

    model_config = ConfigDict(extra="forbid")

    campaign_id: str
    priority: Priority = "normal"
    scheduled_at: Moment | None = None
    ab: AbPlan | None = None
    send_queue: str  # the rate-limited task queue of the send activities
    # carried:
    status: Status = "scheduled"
    audience: int | None = None  # None: not frozen yet
    batch: int = 1  # recipients per send activity
    test_size: int = 0  # the A/B test's share of the audience: seq 1..test_size
    phase: Literal["test", "waiting", "rest"] = "rest"
    test_done_at: datetime | None = None
    winner: str | None = None  # what the rest get (None: each their own arm by weight)
    done_through: int = 0  # every seq up to here is done
    done_ranges: list[int] = []  # the lo of each range done above done_through
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    runs: int = 1


class Reschedule(Strict):
    scheduled_at: Moment | None = None  # None: now


class Frozen(BaseModel):
    audience: int
    batch: int
    frozen_at: datetime


class SendRange(Strict):
    campaign_id: str
    lo: int  # exclusive
    hi: int  # inclusive
    variant: str | None = None  # the A/B winner everyone in it gets; None: each their own arm (or none)
    arms: list[Arm] | None = None  # the test's arms


class RangeReport(BaseModel):
    recipients: int
    sent: int
    skipped: int
    failed: int


class Decide(Strict):
    campaign_id: str
    plan: AbPlan


class Decision(BaseModel):
    winner: str | None  # None: no arm was significantly better
    rest_get: str | None  # the variant the rest of the audience gets (None: split by weight)
    reason: str


class Mark(Strict):
    campaign_id: str
    status: Status
