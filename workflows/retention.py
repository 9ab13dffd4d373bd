"""The retention purge: one run a day of the `retention-purge` Schedule (seeds 001 and 004: messages
and tracking events are kept 90 days; each run is `retention-purge-<scheduled time>`). The run is
one activity, which deletes in bounded batches and heartbeats between them; its counts per table
are the run's result, shown in the Web UI.

The Schedule itself is made by `activities.retention.ensure_retention_schedule` when a worker
starts: a workflow module imports no activity code (workflows/contracts.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field
from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.core.fields import Strict

PURGE_OLD_ROWS = "purge_old_rows"  # the activity's type name; the worker registers activities/retention.py
PURGE_TIMEOUT = timedelta(hours=6)  # the first purge of a large backlog takes long, in many short batches
PURGE_HEARTBEAT = timedelta(minutes=2)  # a batch is a few thousand rows: seconds, not minutes
PURGE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=30), backoff_coefficient=2.0,
                          maximum_interval=timedelta(minutes=15), maximum_attempts=5)


class PurgeRequest(Strict):
    older_than_days: int = Field(90, ge=1, description="messages created, events and notifications older than this go")
    batch_size: int = Field(5000, ge=1, le=100_000, description="rows per statement (each its own transaction)")


class PurgeReport(Strict):
    cutoff: datetime = Field(description="rows older than this were purged")
    deleted: dict[str, int] = Field(description="rows deleted per table")
    batches: int = Field(description="statements run")


@workflow.defn
class RetentionPurge:
    @workflow.run
    async def run(self, request: PurgeRequest) -> PurgeReport:
        # A retry starts over from the same age: what an attempt deleted stays deleted, the rest goes.
        return await workflow.execute_activity(
            PURGE_OLD_ROWS, request, result_type=PurgeReport, start_to_close_timeout=PURGE_TIMEOUT,
            heartbeat_timeout=PURGE_HEARTBEAT, retry_policy=PURGE_RETRY,
            summary=f"delete finished messages, their events and links, and read notifications older than "
                    f"{request.older_than_days} days, {request.batch_size} rows at a time")
