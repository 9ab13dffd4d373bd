"""Every recorded history still replays on today's workflow code.

A journey asleep in production resumes on new code by replaying its history; a change that
breaks that fails here first. Guard such changes with `workflow.patched(...)` and record the new
scenario (`FOLLOWUPS_RECORD_HISTORIES=1 pytest tests/workflow`) beside the old ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import SANDBOX, WORKFLOWS

HISTORIES = sorted((Path(__file__).resolve().parent.parent / "histories").glob("*.json"))


def test_there_are_histories_for_every_scenario():
    assert len(HISTORIES) >= 10


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=SANDBOX)
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
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=SANDBOX)
    await replayer.replay_workflow(history)


def test_there_are_long_histories_to_replay_past_the_budget():
    assert len(LONG) >= 2
