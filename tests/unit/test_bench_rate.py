"""The pure parts of `python -m bench.lateness --find-rate` (bench/rate_search.py and the search's
loop) and of its figures: which rate and system come next, when a step is settled early, what a
reminder costs, where its lateness goes."""

from __future__ import annotations

from argparse import Namespace

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent, TimerFiredEventAttributes, TimerStartedEventAttributes

from bench.lateness import cpu_ratio_by_rate, lateness_stages, next_step, per_reminder_ms, summarize, with_bare_ratio
from bench.rate_search import TARGET_P99, RateSearch, decided_late, meets_target, ratio_range


def run(search: RateSearch, sustainable: float) -> list[int]:
    """The rates the search tries against a system that keeps up below `sustainable`."""
    tried = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.record(rate, rate <= sustainable)
    return tried


def test_doubles_until_a_failure_then_bisects_geometrically() -> None:
    search = RateSearch(start=5, resolution=1.25)
    assert run(search, sustainable=50) == [5, 10, 20, 40, 80, 57, 48]
    assert (search.passed, search.failed, search.stopped) == (48, 57, "resolution")  # 57 / 48 ≤ 1.25


def test_a_first_failure_halves_down_to_the_floor() -> None:
    search = RateSearch(start=10, resolution=1.5)
    assert run(search, sustainable=3) == [10, 5, 2, 3, 4]
    assert search.passed == 3 and search.failed == 4

    never = RateSearch(start=4)
    assert run(never, sustainable=0) == [4, 2, 1]
    assert never.passed is None and never.stopped == "floor"


def test_a_system_that_never_fails_stops_at_the_ceiling() -> None:
    search = RateSearch(start=5, ceiling=100)
    assert run(search, sustainable=10**6) == [5, 10, 20, 40, 80]
    assert search.stopped == "ceiling"


def test_a_stopped_search_offers_nothing_more() -> None:
    search = RateSearch(start=5)
    search.record(5, True)
    search.stop("budget")
    search.stop("resolution")
    assert search.next_rate() is None and search.stopped == "budget"


def test_the_ratio_of_two_rates_is_as_open_as_the_searches_left_it() -> None:
    followups, bare = RateSearch(), RateSearch()
    followups.record(14, True)
    followups.record(20, False)
    bare.record(20, True)
    assert ratio_range(followups, bare) == (None, 1.0)  # bare never failed: no lower end
    bare.record(40, False)
    assert ratio_range(followups, bare) == (0.35, 1.0)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1, max_size=400))
def test_decided_late_agrees_with_the_reported_p99(lateness: list[float]) -> None:
    late = sum(1 for value in lateness if value > TARGET_P99)
    assert decided_late(late, len(lateness)) == (summarize(lateness)["p99"] > TARGET_P99)


def test_a_step_passes_only_with_everything_delivered() -> None:
    assert meets_target(0.9, 0)
    assert not meets_target(1.2, 0)
    assert not meets_target(0.5, 1)
    assert not meets_target(None, 0)  # the worst 1 % never arrived


def test_cpu_per_reminder_counts_a_broker_as_the_server_and_compares_with_bare() -> None:
    systems = {
        "bare-temporal": {"cpu_ms_per_reminder": per_reminder_ms({"worker": 2.0, "server": 3.0}, 1000)},
        "celery": {"cpu_ms_per_reminder": per_reminder_ms({"worker": 4.0, "broker": 1.0}, 1000)},
        "followups": {"cpu_ms_per_reminder": per_reminder_ms({"worker": 6.0, "server": 8.0, "db": 1.0}, 1000)},
    }
    with_bare_ratio(systems)
    assert systems["celery"]["cpu_ms_per_reminder"] == {"worker": 4.0, "server": 1.0, "db": 0.0, "total": 5.0,
                                                        "x_bare": 1.0}
    assert systems["followups"]["cpu_ms_per_reminder"]["x_bare"] == 3.0
    assert systems["bare-temporal"]["cpu_ms_per_reminder"]["x_bare"] == 1.0


def test_cpu_is_compared_at_the_rates_both_passed() -> None:
    def step(system: str, rate: int, passed: bool, total: float) -> dict:
        return {"system": system, "rate_per_s": rate, "passed": passed, "cpu_ms_per_reminder": {"total": total}}

    order = [step("followups", 20, True, 90.0), step("bare-temporal", 20, True, 60.0),
             step("bare-temporal", 40, True, 60.0), step("followups", 40, False, 45.0)]  # cut short: fewer sent
    assert cpu_ratio_by_rate(order) == {20: 1.5}


def test_the_system_that_has_spent_less_steps_next_and_a_step_past_the_budget_ends_a_search() -> None:
    args = Namespace(window=10.0)
    searches = {"followups": RateSearch(start=10), "bare-temporal": RateSearch(start=10)}
    steps: dict[str, list[dict]] = {"followups": [], "bare-temporal": []}
    assert next_step(searches, steps, args, remaining=300.0) == ("followups", 10)  # a tie: the first named
    searches["followups"].record(10, True)
    steps["followups"].append({"n": 100, "wall_s": 60.0, "calibrated_starts_per_s": 100.0})
    assert next_step(searches, steps, args, remaining=240.0) == ("bare-temporal", 10)
    searches["bare-temporal"].record(10, True)
    steps["bare-temporal"].append({"n": 100, "wall_s": 40.0, "calibrated_starts_per_s": 100.0})
    assert next_step(searches, steps, args, remaining=200.0) == ("bare-temporal", 20)
    # a step at 20/s: the last one's 40 s + 100 more starts at half of 100/s (× 1.2) = 42.4 s
    assert next_step(searches, steps, args, remaining=42.0) is None
    assert searches["followups"].stopped == searches["bare-temporal"].stopped == "budget"


def event(event_id: int, kind: int, at: float, **attributes) -> HistoryEvent:
    when = Timestamp(seconds=int(at), nanos=round(at % 1 * 1e9))
    return HistoryEvent(event_id=event_id, event_type=kind, event_time=when, **attributes)


def test_a_reminders_lateness_splits_into_stages_from_its_history() -> None:
    due = 1000.0
    # set at the end of the booking's task, which began 0.2 s earlier: due − that task's start
    timer = TimerStartedEventAttributes(start_to_fire_timeout=Duration(seconds=10, nanos=200_000_000))
    events = [
        event(3, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 989.8),  # the booking's task: not the reminder's
        event(4, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 990.0),
        event(5, EventType.EVENT_TYPE_TIMER_STARTED, 990.0, timer_started_event_attributes=timer),
        event(6, EventType.EVENT_TYPE_TIMER_FIRED, 1000.25,
              timer_fired_event_attributes=TimerFiredEventAttributes(started_event_id=5)),
        event(7, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 1000.3),
        event(8, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 1000.35),
        event(9, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, 1000.35),
        event(10, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, 1000.4),
    ]
    assert lateness_stages(events, due, arrived=1000.5) == pytest.approx({
        "timer_set_late": 0.2, "timer_fired": 0.25, "workflow_task_wait": 0.05, "workflow_task_run": 0.05,
        "activity_wait": 0.05, "activity_to_smtp": 0.1})
    assert lateness_stages(events[:6], due, arrived=1000.5) is None  # no send yet
