"""The registry's entries agree with the code they describe: each kind's templates exist (text and
HTML) and are the ones its workflow sends, and each kind's routes name events it has."""

from __future__ import annotations

import inspect
import re

import pytest

from activities.render import TEMPLATES_DIR
from workflows.registry import KINDS


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_kinds_templates_exist_and_are_the_ones_its_workflow_sends(name: str):
    kind = KINDS[name]
    for template in kind.templates:
        assert (TEMPLATES_DIR / f"{template}.txt").exists() and (TEMPLATES_DIR / f"{template}.html").exists()
    workflow = inspect.getmodule(kind.workflow)
    models = inspect.getmodule(kind.start_model)  # a policy's default steps name templates too (leads)
    source = inspect.getsource(workflow) + inspect.getsource(models)
    sent = {t for t in re.findall(rf'"({name}_[a-z_]+)"', source) if (TEMPLATES_DIR / f"{t}.txt").exists()}
    assert sent == set(kind.templates), f"{name}: the workflow sends {sorted(sent)}, the registry lists {kind.templates}"


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_event_of_a_kind_has_a_route(name: str):
    kind = KINDS[name]
    assert {route.kind for route in kind.events} == set(kind.event_models)
