"""A forced resend of one step: the recorded message again, under `{key}/resend-{n}`."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.contracts import RECORDED_REQUEST, SEND_MESSAGE, SendRequest, SendResult
from workflows.core.send import SEND_RETRY, SEND_TIMEOUT


def workflow_id(new_key: str) -> str:
    return f"resend-{new_key}"


@workflow.defn
class ResendMessage:
    @workflow.run
    async def run(self, original_key: str, new_key: str) -> SendResult:
        recorded = await workflow.execute_activity(
            RECORDED_REQUEST, original_key, result_type=SendRequest | None,  # type: ignore[arg-type]
            start_to_close_timeout=timedelta(seconds=30), summary=f"load {original_key}",
        )
        if recorded is None:
            raise ApplicationError(f"no message {original_key!r} to resend", type="UnknownMessage", non_retryable=True)
        # Forced by an operator: it goes now, whatever the recipient's send window or caps say.
        request = recorded.model_copy(update={"key": new_key, "due_at": workflow.now(), "not_after": None,
                                              "deferrable": False})
        return await workflow.execute_activity(
            SEND_MESSAGE, request, result_type=SendResult, start_to_close_timeout=SEND_TIMEOUT, retry_policy=SEND_RETRY,
            summary=f"resend {original_key} as {new_key}",
        )
