"""A person's data (GDPR, issue 10 part 6): `GET /v1/recipients/{email}/export` returns everything
held about an address; `DELETE /v1/recipients/{email}` forgets it.

Erasure, in this order: the address's hash goes into `erased_recipients` (the send step treats it
as suppressed, so nothing more is sent while the rest goes); the journeys whose `Recipient` is the
address are cancelled through a bulk action, without a notice (a cancellation email to someone
who asked to be forgotten is one email too many); what is still running a moment later is
terminated; their workflow executions are deleted from Temporal (histories hold their data); then
every row about them, in one transaction. Running it again finds nothing and reports zeros.

Temporal deletes an execution asynchronously, once its close has gone through the visibility queue
(up to about a minute): a DELETE repeated within that minute asks again and counts them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, BeforeValidator, Field
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.retention import PersonalData, email_hash
from settings import Settings
from starter import bulk
from workflows.core import search
from workflows.registry import KINDS

# An address goes into a Temporal visibility query: nothing that could start an escape (a
# backslash), a double quote, whitespace or a control character gets that far. A single quote
# (o'brien@example.com) is doubled inside its literal by the query builder.
_UNSAFE = re.compile(r"""[\s\x00-\x1f\x7f-\x9f"\\]""")
_UNQUOTABLE = re.compile(r"[\\\x00-\x1f\x7f-\x9f]")  # a backslash escapes what follows it


def _plain_address(value: Any) -> Any:
    if isinstance(value, str) and (found := _UNSAFE.search(value)) is not None:
        raise ValueError("an address here must not contain double quotes, backslashes, whitespace or control "
                         f"characters: U+{ord(found.group()):04X} at position {found.start()}")
    return value


EmailPath = Annotated[str, Path(min_length=3, max_length=320, pattern=r"""^[^@\s"\\]+@[^@\s"\\]+$""",
                                description="the person's address (any case; no double quotes, backslashes, "
                                            "whitespace or control characters)"),
                      BeforeValidator(_plain_address)]
CLOSE_WAIT = 10.0  # seconds a cancelled journey gets to finish before it is terminated
ERASED = "recipient erased"


class JourneyRecord(BaseModel):
    workflow_id: str
    run_id: str
    workflow_type: str
    status: str
    journey: str | None
    entity_id: str | None
    start_time: datetime
    close_time: datetime | None


class ExportView(BaseModel):
    email: str
    erased_at: datetime | None = Field(description="when the address was erased; null if it never was")
    tables: dict[str, list[dict[str, Any]]] = Field(description="table → its rows about the address")
    journeys: list[JourneyRecord] = Field(description="workflow executions whose Recipient is the address")


class ErasureView(BaseModel):
    email_hash: str = Field(description="sha256 of the lower-cased address: all that is kept, so it is never mailed again")
    deleted: dict[str, int] = Field(description="rows per table (erased_recipients: 1 when the hash is new)")
    journeys_cancelled: int = Field(description="running journeys that took the cancel event")
    journeys_terminated: int = Field(description="journeys still running after the cancel, ended by force")
    executions_deleted: int = Field(description="workflow executions whose deletion Temporal accepted "
                                                "(it completes within about a minute)")
    problems: list[str]


@dataclass(frozen=True)
class Addressed(bulk.Selector):
    """The running journeys of an address, as given and lower-cased (a journey keeps the
    `Recipient` spelled as it was started with; visibility compares exactly)."""

    spellings: tuple[str, ...] = ()

    def query(self) -> str:
        return f"ExecutionStatus = 'Running' AND {_recipient_is(self.spellings)}"


def _literal(value: str) -> str:
    """`value` as a visibility query string literal that cannot end early: a value the API would
    refuse (a backslash, which escapes the next character, or a control character) is refused here
    too, whoever calls; a quote is doubled."""
    if (found := _UNQUOTABLE.search(value)) is not None:
        raise ValueError(f"not a value for a visibility query: U+{ord(found.group()):04X}")
    return "'" + value.replace("'", "''") + "'"


def _recipient_is(spellings: tuple[str, ...]) -> str:
    return f"{search.RECIPIENT.name} IN ({', '.join(_literal(value) for value in spellings)})"


def _spellings(email: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((email.strip(), email.strip().lower())))


def _quiet_cancel(kind, event_id: str):
    fields = kind.event_models["cancel"].model_fields
    values: dict[str, Any] = {"kind": "cancel", "event_id": event_id}
    if "reason" in fields:
        values["reason"] = ERASED
    if "notify" in fields:
        values["notify"] = False
    return kind.event(values)


async def _executions(client: Client, query: str) -> list[Any]:
    return [execution async for execution in client.list_workflows(query)]


async def _end_journeys(client: Client, settings: Settings, spellings: tuple[str, ...]) -> tuple[int, int, int, list[str]]:
    """Cancel, wait, terminate what is left, delete every execution: (cancelled, terminated,
    deleted, problems)."""
    address = hashlib.sha256(spellings[-1].encode()).hexdigest()[:24]  # one request id per address: a retry applies once
    report = await bulk.act(client, settings, Addressed(spellings=spellings), _quiet_cancel, f"erase-{address}")
    running = await _executions(client, Addressed(spellings=spellings).query())
    terminated = 0
    deadline = asyncio.get_running_loop().time() + CLOSE_WAIT
    for execution in running:
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        # a journey the bulk action cannot reach (a declared journey) is not waited for
        cancellable = execution.typed_search_attributes.get(search.JOURNEY) in KINDS
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            if not cancellable or asyncio.get_running_loop().time() > deadline:
                await handle.terminate(reason=ERASED)
                terminated += 1
                break
            await asyncio.sleep(0.2)
    known = {(e.id, e.run_id) for e in running} | {(e.id, e.run_id) for e in
                                                   await _executions(client, _recipient_is(spellings))}
    deleted = 0
    for workflow_id, run_id in sorted(known):
        try:
            await client.workflow_service.delete_workflow_execution(DeleteWorkflowExecutionRequest(
                namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id)))
            deleted += 1
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # NOT_FOUND: deleted already, visibility not caught up
                raise
    return report.changed, terminated, deleted, report.problems


def router(authed: list, settings: Settings) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=["recipients"])

    @api.get("/v1/recipients/{email}/export")
    async def export(email: EmailPath, request: Request) -> ExportView:
        """Everything held about an address: its rows in every table, and its journeys."""
        found = await PersonalData(request.app.state.pool).export(email)
        executions = await _executions(request.app.state.client, _recipient_is(_spellings(email)))
        journeys = [JourneyRecord(
            workflow_id=e.id, run_id=e.run_id, workflow_type=e.workflow_type, status=e.status.name if e.status else "",
            journey=e.typed_search_attributes.get(search.JOURNEY), entity_id=e.typed_search_attributes.get(search.ENTITY_ID),
            start_time=e.start_time, close_time=e.close_time) for e in executions]
        return ExportView(email=email.lower(), erased_at=found["erased_at"], tables=found["tables"], journeys=journeys)

    @api.delete("/v1/recipients/{email}")
    async def erase(email: EmailPath, request: Request) -> ErasureView:
        """Forget an address: end its journeys, delete their executions and every row about it,
        keep only its hash so it is never mailed again. Idempotent: again, every count is 0."""
        data = PersonalData(request.app.state.pool)
        deleted = {"erased_recipients": await data.mark_erased(email)}
        cancelled, terminated, executions, problems = await _end_journeys(
            request.app.state.client, settings, _spellings(email))
        deleted.update(await data.erase(email))
        return ErasureView(email_hash=email_hash(email), deleted=deleted, journeys_cancelled=cancelled,
                           journeys_terminated=terminated, executions_deleted=executions, problems=problems)

    return api
