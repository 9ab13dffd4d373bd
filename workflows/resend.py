"""A forced resend of one step: the recorded message again, under `{key}/resend-{n}`."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.send import SendActivities
    from workflows.blocks import SEND_RETRY, SEND_TIMEOUT
    from workflows.models import SendResult


def workflow_id(new_key: str) -> str:
    return f"resend-{new_key}"


@workflow.defn
class ResendMessage:
    @workflow.run
    async def run(self, original_key: str, new_key: str) -> SendResult:
        recorded = await workflow.execute_activity_method(
            SendActivities.recorded_request, original_key, start_to_close_timeout=timedelta(seconds=30),
            summary=f"load {original_key}",
        )
        if recorded is None:
            raise ApplicationError(f"no message {original_key!r} to resend", type="UnknownMessage", non_retryable=True)
        request = recorded.model_copy(update={"key": new_key, "due_at": workflow.now(), "not_after": None})
        return await workflow.execute_activity_method(
            SendActivities.send_message, request, start_to_close_timeout=SEND_TIMEOUT, retry_policy=SEND_RETRY,
            summary=f"resend {original_key} as {new_key}",
        )
