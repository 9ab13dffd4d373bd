"""Nothing in `workflows/` reads the clock, randomness, the environment or the network.

The worker passes the `workflows` package through Temporal's sandbox (imported once, not again
for every cached journey: 40 MB and a third of the worker's CPU per start, bench/memory.py), and
a passed-through module is not guarded by the sandbox's runtime restrictions. The rules modules
never were: they take `now` as an argument. This test is the guard instead: it reads every module
of the package and refuses any use of what would make a replay differ from the first run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

# Fully qualified names that are never deterministic inside a workflow. `workflow.now()`,
# `workflow.uuid4()`, `workflow.random()` and `asyncio.sleep` (a durable timer) are the ways to go.
FORBIDDEN = {
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today", "datetime.date.today",
    "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns", "time.perf_counter", "time.sleep",
    "uuid.uuid1", "uuid.uuid4", "os.environ", "os.getenv", "os.urandom", "secrets", "random", "socket",
    "threading", "subprocess", "urllib", "httpx", "asyncpg", "aiosmtplib", "smtplib", "builtins.open",
    "builtins.input", "settings",
}


def uses(source: str) -> list[str]:
    """Every forbidden name the module uses, fully qualified through its imports."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {"open": "builtins.open", "input": "builtins.input"}
    found: list[str] = []

    def check(name: str, line: int) -> None:
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN):
            found.append(f"line {line}: {name}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
                check(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                check(f"{node.module}.{alias.name}", node.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Load):
            parts = []
            current = node
            while isinstance(current, ast.Attribute):
                parts.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name) and current.id in aliases:
                check(".".join([aliases[current.id], *reversed(parts)]), node.lineno)
    return sorted(set(found))


MODULES = sorted(WORKFLOWS.rglob("*.py"))


def test_every_journey_package_is_read():
    assert {p.parent.name for p in MODULES} >= {"core", "interview", "appointment", "lead", "session", "payment"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(WORKFLOWS)))
def test_workflow_code_uses_nothing_nondeterministic(path: Path):
    assert uses(path.read_text()) == []


@pytest.mark.parametrize("snippet, name", [
    ("from datetime import datetime\ndef f():\n    return datetime.now()\n", "datetime.datetime.now"),
    ("import datetime as dt\ndef f():\n    return dt.date.today()\n", "datetime.date.today"),
    ("import time\ndef f():\n    time.sleep(1)\n", "time.sleep"),
    ("import uuid\nKEY = uuid.uuid4()\n", "uuid.uuid4"),
    ("import random\n", "random"),
    ("import os\nURL = os.environ['X']\n", "os.environ"),
    ("def f():\n    return open('x').read()\n", "builtins.open"),
    ("from settings import Settings\n", "settings.Settings"),
])
def test_the_guard_catches_what_the_sandbox_would_have(snippet: str, name: str):
    assert any(name in use for use in uses(snippet))


def test_the_guard_lets_workflow_time_and_plain_datetime_math_through():
    source = ("from datetime import datetime, timedelta\nfrom temporalio import workflow\n"
              "def f(at: datetime):\n    return workflow.now() + timedelta(hours=1) > at.replace(microsecond=0)\n")
    assert uses(source) == []
