"""Act on every running journey that matches a filter, found through Temporal visibility:
"cancel every session of course math-101", "tell every lead of campaign spring that they replied".

Each journey gets the event with one `event_id` per bulk request, so running the same request
again (a retry, a timeout) changes nothing twice. Visibility is eventually consistent: a journey
started a moment ago may not be listed yet.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client

from settings import Settings
from starter.service import Conflict, Journeys, NotFound, Rejected, Unavailable
from workflows.core import search
from workflows.registry import KINDS

CONCURRENT_SIGNALS = 50
MAX_MATCHES = 10_000


@dataclass(frozen=True)
class Selector:
    journey: str | None = None
    group: str | None = None
    recipient: str | None = None
    stage: str | None = None

    def query(self) -> str:
        """The visibility query. Values are validated by the API (no quotes can get in)."""
        clauses = ["ExecutionStatus = 'Running'"]
        for attribute, value in ((search.JOURNEY, self.journey), (search.GROUP, self.group),
                                 (search.RECIPIENT, self.recipient and self.recipient.lower()),
                                 (search.STAGE, self.stage)):
            if value is not None:
                clauses.append(f"{attribute.name} = '{value}'")
        return " AND ".join(clauses)


@dataclass
class BulkReport:
    query: str
    request_id: str
    matched: int = 0
    changed: int = 0
    unchanged: int = 0  # already in that state, ended meanwhile, or no worker answered
    problems: list[str] = field(default_factory=list)


async def matching(client: Client, selector: Selector) -> list[tuple[str, str]]:
    """(journey kind, entity id) of every running journey the selector matches."""
    found = []
    async for execution in client.list_workflows(selector.query(), limit=MAX_MATCHES):
        attributes = execution.typed_search_attributes
        kind, entity_id = attributes.get(search.JOURNEY), attributes.get(search.ENTITY_ID)
        if kind in KINDS and entity_id:
            found.append((kind, entity_id))
    return found


async def act(client: Client, settings: Settings, selector: Selector, event_for: Any,
              request_id: str | None = None) -> BulkReport:
    """Send `event_for(kind, event_id)` to every match; count what changed."""
    request_id = request_id or uuid.uuid4().hex
    report = BulkReport(query=selector.query(), request_id=request_id)
    targets = await matching(client, selector)
    report.matched = len(targets)
    gate = asyncio.Semaphore(CONCURRENT_SIGNALS)

    async def one(kind: str, entity_id: str) -> None:
        event_id = f"bulk-{request_id}"
        event = event_for(KINDS[kind], event_id)
        journeys = Journeys(client, settings, KINDS[kind])
        async with gate:
            try:
                before = await journeys.state(entity_id, wait=False)
                if before is not None and any(seen.event == event_id for seen in before.events):
                    report.unchanged += 1  # this request reached it before: a retry changes nothing
                    return
                outcome = (await journeys.send_event(entity_id, event)).event
            except Rejected as err:  # the journey's rules refused it (e.g. too late for this stage)
                report.unchanged += 1
                report.problems.append(f"{kind}-{entity_id}: {err.detail}")
                return
            except (Conflict, NotFound):
                outcome = None
            except Unavailable as err:  # one journey Temporal could not answer for: reported, the rest go on
                report.unchanged += 1
                report.problems.append(f"{kind}-{entity_id}: {err.detail}")
                return
        if outcome is not None and outcome.applied:
            report.changed += 1
        else:
            report.unchanged += 1
            if outcome is not None and outcome.reason and not outcome.reason.startswith("duplicate"):
                report.problems.append(f"{kind}-{entity_id}: {outcome.reason}")

    await asyncio.gather(*(one(kind, entity_id) for kind, entity_id in targets))
    return report


def cancel_event(reason: str | None):
    def make(kind, event_id: str):
        fields = kind.event_models["cancel"].model_fields
        values: dict[str, Any] = {"kind": "cancel", "event_id": event_id}
        if reason and "reason" in fields:
            values["reason"] = reason
        return kind.event(values)

    return make
