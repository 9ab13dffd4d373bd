"""The sustainable-rate search of `python -m bench.lateness --find-rate`, without I/O: which rate to
try next, when a step has passed, and when a step is already lost before its window ends."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TARGET_P99 = 1.0  # seconds of lateness at the 99th percentile


def meets_target(p99: float | None, undelivered: int) -> bool:
    """A step passes with p99 ≤ the target and every reminder delivered by its deadline (a p99 of
    None means some of the worst 1 % never arrived)."""
    return p99 is not None and p99 <= TARGET_P99 and undelivered == 0


def decided_late(late: int, n: int, percentile: int = 99) -> bool:
    """Whether `late` reminders already over the target settle a nearest-rank p99 of n above it:
    the p99 is the ceil(0.99 n)-th smallest, so more than n − ceil(0.99 n) late ones push it over."""
    return late > n - math.ceil(percentile * n / 100)


@dataclass
class RateSearch:
    """Doubles the rate from `start` until a step fails (or `ceiling` is passed), then bisects
    geometrically between the highest pass and the lowest failure until they are within
    `resolution` of each other. If the first step fails, halves down to `floor`. Rates are whole
    reminders per second; `stopped` says why the search ended."""

    start: int = 5
    factor: int = 2
    resolution: float = 1.25
    ceiling: int = 640
    floor: int = 1
    passed: int | None = None
    failed: int | None = None
    tried: list[tuple[int, bool]] = field(default_factory=list)
    stopped: str | None = None

    def next_rate(self) -> int | None:
        if self.stopped is None:
            rate, reason = self._next()
            if rate is None:
                self.stopped = reason
            return rate
        return None

    def _next(self) -> tuple[int | None, str]:
        if self.failed is None:
            rate = self.start if self.passed is None else self.passed * self.factor
            return (rate, "") if rate <= self.ceiling else (None, "ceiling")
        if self.passed is None:
            rate = self.failed // self.factor
            return (rate, "") if rate >= self.floor else (None, "floor")
        if self.failed / self.passed <= self.resolution:
            return None, "resolution"
        rate = round(math.sqrt(self.passed * self.failed))
        return (rate, "") if self.passed < rate < self.failed else (None, "resolution")

    def record(self, rate: int, passed: bool) -> None:
        self.tried.append((rate, passed))
        if passed:
            self.passed = max(self.passed or rate, rate)
        else:
            self.failed = min(self.failed or rate, rate)

    def stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason


def ratio_range(numerator: RateSearch, denominator: RateSearch) -> tuple[float | None, float | None]:
    """Where the true ratio of two sustainable rates lies, given what each search bracketed: from
    the lowest (highest pass over the other's lowest failure) to the highest (lowest failure over
    the other's highest pass); None for an end a search left open."""
    low = numerator.passed / denominator.failed if numerator.passed and denominator.failed else None
    high = numerator.failed / denominator.passed if numerator.failed and denominator.passed else None
    return (round(low, 2) if low else None), (round(high, 2) if high else None)
