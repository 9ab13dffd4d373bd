"""A forced resend (`POST /v1/messages/{key}/resend` starts a `ResendMessage`) on the time-skipping
server with the real send step: the recorded message goes out again under its new key, and a key
never sent fails for good instead of retrying. Their histories are recorded like every journey's."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.workflow.conftest import HISTORIES
from tests.workflow.test_interview_scenarios import Scenario
from tests.workflow.conftest import driver_fixture
from workflows.contracts import SendStatus
from workflows.resend import ResendMessage, workflow_id

class SentInterview(Scenario):
    records_history = False  # the interview only sets the scene; the resend's history is recorded below


scenario = driver_fixture(SentInterview)


async def resend(scenario, request, original_key: str, new_key: str):
    handle = await scenario.client.start_workflow(
        ResendMessage.run, args=[original_key, new_key], id=workflow_id(new_key),
        task_queue=scenario.settings.temporal_task_queue)
    try:
        # In real time: skipping time here would also run the interview's later timers, and its
        # activities then in flight held the shared server's clock for every test after this one.
        with scenario.env.auto_time_skipping_disabled():
            return await handle.result()
    finally:
        if os.environ.get("FOLLOWUPS_RECORD_HISTORIES"):
            target = HISTORIES / f"resend-{request.node.name.removeprefix('test_')}.json"
            if not target.exists():
                target.write_text((await handle.fetch_history()).to_json())


async def test_a_sent_followup_goes_out_again_under_its_new_key(scenario, smtp, request):
    await scenario.start()
    await scenario.at(49 * timedelta(hours=1))
    key = f"interview-{scenario.interview_id}/followup-1"
    assert smtp.sink.keys()[key] == 1
    result = await resend(scenario, request, key, f"{key}/resend-1")
    assert result.status == SendStatus.SENT and result.key == f"{key}/resend-1"
    assert smtp.sink.keys()[f"{key}/resend-1"] == 1 and smtp.sink.keys()[key] == 1
    [again] = [m for m in smtp.sink.messages if m["X-Followups-Key"] == f"{key}/resend-1"]
    assert f"https://jobs.example.com/slots/{scenario.interview_id}" in again.get_body(("plain",)).get_content()


async def test_a_key_never_sent_fails_for_good(scenario, smtp, request):
    await scenario.start()
    key = f"interview-{scenario.interview_id}/followup-9"
    with pytest.raises(WorkflowFailureError) as failed:
        await resend(scenario, request, key, f"{key}/resend-1")
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "UnknownMessage" and cause.non_retryable
    assert smtp.sink.keys()[f"{key}/resend-1"] == 0
