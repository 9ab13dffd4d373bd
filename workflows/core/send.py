"""The send step as a workflow sees it: one activity per message, scheduled by name (the
implementation lives in `activities.send`, which a workflow never imports)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.contracts import SEND_MESSAGE, DeliveryFailure, SendRequest, SendResult, SendStatus

SEND_TIMEOUT = timedelta(seconds=30)  # = the outbox lease: a stuck attempt is retried after this
SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                         maximum_interval=timedelta(minutes=10))


async def send(request: SendRequest, on_skip: Callable[[str, str], None]) -> SendStatus:
    """Run the send step. A skip or a permanent refusal is reported to `on_skip(key, reason)` and
    the journey goes on; anything else is retried with backoff until it goes through."""
    try:
        result = await workflow.execute_activity(
            SEND_MESSAGE,
            request,
            result_type=SendResult,
            start_to_close_timeout=SEND_TIMEOUT,
            retry_policy=SEND_RETRY,
            summary=f"send {request.key}",
        )
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type in DeliveryFailure.ALL:
            on_skip(request.key, f"delivery failed: {cause.message}")
            return SendStatus.FAILED
        raise
    if result.status in (SendStatus.SKIPPED, SendStatus.FAILED):  # FAILED: the key had failed before
        on_skip(request.key, result.reason or f"{result.status.value} at the send step")
    return result.status
