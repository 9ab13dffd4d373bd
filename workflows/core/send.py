"""The send step as a workflow sees it: one activity per message, scheduled by name (the
implementation lives in `activities.send`, which a workflow never imports)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.contracts import SEND_MESSAGE, DeliveryFailure, SendRequest, SendResult, SendStatus
from workflows.core.fields import Strict

SEND_TIMEOUT = timedelta(seconds=30)  # = the outbox lease: a stuck attempt is retried after this
SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                         maximum_interval=timedelta(minutes=10))
MIN_WAIT = timedelta(seconds=1)


class TemplatePinning(Strict):
    """The policy field every journey's policy has: which saved template version its messages use."""

    template_versions: Literal["pinned", "latest"] = Field(
        "pinned", description="pinned: the versions published when the journey started, so an edit never "
                              "changes a sleeping journey; latest: whatever is published when each message goes")


@dataclass(frozen=True)
class Waiting:
    """How a journey's send waits out quiet hours or a frequency cap: it wakes when `revision()`
    moves (an event changed the journey) and goes on waiting only while `moment()` (what the
    journey is and plans) is what it was when the wait began. And whether it renders the latest
    published templates rather than those of its start."""

    revision: Callable[[], int]
    moment: Callable[[], Hashable]
    latest_templates: bool = False


async def send(request: SendRequest, on_skip: Callable[[str, str], None], waiting: Waiting | None = None) -> SendStatus:
    """Run the send step. A skip or a permanent refusal is reported to `on_skip(key, reason)` and
    the journey goes on; anything else is retried with backoff until it goes through. A DEFERRED
    answer (quiet hours, a frequency cap) is waited out durably, the timer saying why in the Web
    UI, and the step asked again; an event that makes the step no longer due meanwhile skips it."""
    if request.templates_as_of is None and not (waiting is not None and waiting.latest_templates):
        request = request.model_copy(update={"templates_as_of": workflow.info().start_time})
    while True:
        try:
            result = await workflow.execute_activity(
                SEND_MESSAGE,
                request.model_copy(update={"asked_at": workflow.now()}),
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
        if result.status is SendStatus.DEFERRED and result.retry_at is not None:
            if not await _wait_out(result, waiting):  # asked once more, to record the skip on its row
                reason = f"no longer due: the journey changed while it waited ({result.reason})"
                request = request.model_copy(update={"skip_reason": reason})
            continue
        if result.status in (SendStatus.SKIPPED, SendStatus.FAILED):  # FAILED: the key had failed before
            on_skip(request.key, result.reason or f"{result.status.value} at the send step")
        return result.status


async def _wait_out(result: SendResult, waiting: Waiting | None) -> bool:
    """Sleep until `result.retry_at`; False if the journey stopped wanting the step meanwhile."""
    assert result.retry_at is not None
    summary = f"waiting: {result.reason}"
    until = max(result.retry_at, workflow.now() + MIN_WAIT)  # never a tight loop of asks, whatever the clocks say
    details = workflow.get_current_details()
    workflow.set_current_details(f"{details}\n\n{summary}".strip())  # the Web UI says why it waits
    try:
        return await _sleep_until(until, summary, waiting)
    finally:
        workflow.set_current_details(details)


async def _sleep_until(until: datetime, summary: str, waiting: Waiting | None) -> bool:
    began = waiting.moment() if waiting is not None else None
    while (remaining := until - workflow.now()) > timedelta(0):
        if waiting is None:
            await workflow.sleep(remaining, summary=summary)
            return True
        seen = waiting.revision()
        try:
            await workflow.wait_condition(lambda: waiting.revision() != seen, timeout=remaining,
                                          timeout_summary=summary)
        except TimeoutError:
            return True
        if waiting.moment() != began:
            return False
    return True
