"""What a template version must pass before it is saved: every part's syntax, filters and variables
(only the template's own and the send step's), a render of it and of each variant (within the time
limit), and the variants' names and weights; each problem with its field and line
(activities.template_store saves what passes, and says which variables are a template's own)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from activities.render import PARTS, RenderTimeout, TemplateProblem

if TYPE_CHECKING:
    from activities.render import Renderer, Source
    from activities.template_store import Variant

# What the send step adds to every context (activities/send.py): a template may always use these.
SEND_STEP_VARIABLES = frozenset({"recipient_name", "time_zone", "sender_name", "postal_address", "unsubscribe_url",
                                 "preferences_url", "channel", "subject", "parent_copy_of"})


@dataclass(frozen=True)
class Problem:
    field: str  # subject, text, html, category, variants, variants.0.html …
    line: int | None
    reason: str


class TemplateInvalid(Exception):
    """A version refused before it was saved: every problem found, with its field and line."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}{f' line {p.line}' if p.line else ''}: {p.reason}" for p in problems))
        self.problems = problems


def variant_problems(variants: list[Variant]) -> list[Problem]:
    problems = [Problem(f"variants.{n}.name", None, f"a second variant named {v.name!r}")
                for n, v in enumerate(variants) if v.name in {w.name for w in variants[:n]}]
    if variants and not any(v.weight > 0 for v in variants):
        problems.append(Problem("variants", None, "at least one variant needs a weight above 0"))
    return problems


def sample_problems(name: str, sample: Mapping[str, Any], variables: Iterable[str]) -> list[Problem]:
    """A caller's sample gives values to a template's variables, never new ones: each key that is
    neither one of `variables` (the template's own) nor the send step's."""
    allowed = SEND_STEP_VARIABLES | set(variables)
    return [Problem(f"sample.{key}", None, f"{key!r} is not a variable of {name}: its journeys never send it; a "
                                           f"sample may give values to {', '.join(sorted(allowed))}")
            for key in sample if key not in allowed]


async def check(renderer: Renderer, name: str, source: Source, variants: list[Variant], variables: Iterable[str],
                context: dict[str, Any], *, fixed: bool = False) -> list[Problem]:
    """Syntax, filters and variables of every part (only `variables`, the template's own, and the
    send step's may be read), then a render of the version and of each variant with `context`.
    `fixed`: `variables` are a file template's, which its journeys send (no sample adds to them)."""
    allowed = SEND_STEP_VARIABLES | set(variables)
    why = f"{name}'s journeys send only these (templates/catalog.yaml), " if fixed else ""
    fields = [(part, part, getattr(source, part)) for part in PARTS] + [
        (f"variants.{n}.{part}", part, text) for n, v in enumerate(variants) for part, text in v.parts.items()]
    problems: list[Problem] = []
    for where, part, text in fields:
        try:
            read = await asyncio.to_thread(renderer.variables, part, text)
        except (TemplateProblem, RenderTimeout) as err:  # a part that takes too long to read is refused too
            problems.append(Problem(where, err.line, err.reason))
            continue
        problems += [Problem(where, line, f"unknown variable {variable!r}: {why}this template may use "
                                          f"{', '.join(sorted(allowed))}")
                     for variable, line in sorted(read.items()) if variable not in allowed]
    if problems:
        return problems  # a render would stop at the first of them
    for prefix, parts in [("", {}), *((f"variants.{n}.", v.parts) for n, v in enumerate(variants))]:
        try:
            await asyncio.to_thread(renderer.render, name, context, source=source.over(parts))
        except (TemplateProblem, RenderTimeout) as err:  # past the time limit when saved: refused, not retried
            where = f"{prefix}{err.field}" if err.field in parts else err.field or "template"  # stopped from outside
            if (found := Problem(where, err.line, err.reason)) not in problems:
                problems.append(found)
    return problems
