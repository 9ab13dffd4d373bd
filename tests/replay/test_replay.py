"""Every recorded history still replays on today's workflow code.

A journey asleep in production resumes on new code by replaying its history; a change that
breaks that fails here first. Guard such changes with `workflow.patched(...)` and record the new
scenario (`FOLLOWUPS_RECORD_HISTORIES=1 pytest tests/workflow`) beside the old ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import RUNNER, WORKFLOWS
from workflows.registry import KINDS

HISTORIES = sorted((Path(__file__).resolve().parent.parent / "histories").glob("*.json"))


SCENARIO_FILES = sorted((Path(__file__).resolve().parent.parent / "workflow").glob("test_*_scenarios.py"))
# Recorded again beside the plain ones after a patched change, from the same scenarios:
VARIANTS = {"roster-table": "session scenarios with the roster in PostgreSQL",
            "announced": "appointment, lead, payment and session scenarios telling the backend's webhooks"}
# Recorded through the API with updates (tests/integration/test_updates_http.py, test_declared_http.py):
# every registry kind, and the one workflow of the declared journeys.
UPDATED = set(KINDS) | {"declared"}


def scenarios() -> set[str]:
    """`{kind}-{scenario}` for every test of tests/workflow/test_{kind}_scenarios.py: the names the
    recording fixture writes."""
    names = set()
    for path in SCENARIO_FILES:
        kind = path.stem.removeprefix("test_").removesuffix("_scenarios")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                names.add(f"{kind}-{node.name.removeprefix('test_')}")
    return names


def test_every_scenario_has_a_recorded_history_and_every_history_a_scenario():
    expected = scenarios()
    assert len(SCENARIO_FILES) >= 6 and len(expected) >= 45  # a glob that finds nothing must fail
    plain = {path.stem for path in HISTORIES if "@" not in path.stem}
    assert plain == expected, (f"scenarios without a history (FOLLOWUPS_RECORD_HISTORIES=1 pytest tests/workflow): "
                               f"{sorted(expected - plain)}; histories without a scenario: {sorted(plain - expected)}")
    for path in HISTORIES:
        base, _, variant = path.stem.partition("@")
        if variant == "updates":  # tests/integration/test_updates_http.py: one per kind, through the API
            assert base == f"{base.split('-')[0]}-started_and_steered_through_the_api", path.name
            assert base.split("-")[0] in UPDATED, path.name
        elif variant:
            assert variant in VARIANTS and base in expected, path.name
    assert {path.stem.split("-")[0] for path in HISTORIES if path.stem.endswith("@updates")} == UPDATED


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=RUNNER)
    await replayer.replay_workflow(history)


LONG = [path for path in HISTORIES if "@" not in path.stem and len(path.read_text()) > 100_000]


@pytest.mark.parametrize("path", LONG, ids=[p.stem for p in LONG])
async def test_a_history_recorded_before_the_budget_replays_past_it(path: Path, monkeypatch):
    """The history budget (continue-as-new past N events) is behind a patch: a journey that began on
    older code, asleep with a history longer than the budget, replays as it ran."""
    from workflows.core import loop

    monkeypatch.setattr(loop, "HISTORY_EVENTS_BUDGET", 20)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    assert len(history.events) > 20
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=RUNNER)
    await replayer.replay_workflow(history)


def test_there_are_long_histories_to_replay_past_the_budget():
    assert len(LONG) >= 2
