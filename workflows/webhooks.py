"""One workflow per webhook endpoint, `webhook-endpoint-{id}`, delivering its events in order per
journey (README: Event webhooks). It sleeps until woken (the worker's listener signals `wake`
when an endpoint that had nothing to do gets an event, or the API after a retry by hand) or
until its next retry is due; each round is one `deliver_due` activity on the webhooks' own task
queue, so a dead endpoint never holds up a journey. Deleting the endpoint ends it."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.core.loop import over_budget

DELIVER_DUE = "deliver_due_webhooks"
ROUND_TIMEOUT = timedelta(minutes=2)  # a round stops taking new deliveries after 30 s (activities.event_webhooks)
ROUND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# A listener that was down when an event arrived never signalled: the endpoint looks again this often.
IDLE_LOOK = timedelta(minutes=15)
RESTING = timedelta(seconds=30)  # an endpoint that refused a whole round is tried again this soon at most


def workflow_id(endpoint_id: str) -> str:
    return f"webhook-endpoint-{endpoint_id}"


class DeliveryRound(BaseModel):
    gone: bool = False  # the endpoint was deleted: its workflow ends
    more: bool = False  # deliveries are due now: another round at once
    next_due: datetime | None = None  # the earliest retry waiting, if any
    delivered: int = 0
    failed: int = 0
    refusing: bool = False  # every attempt of the round failed: new events wait for the next retry


@workflow.defn
class EndpointDelivery:
    def __init__(self) -> None:
        self.woken = False

    @workflow.run
    async def run(self, endpoint_id: str) -> None:
        while True:
            self.woken = False  # before the round: a wake during it means another round
            done = await workflow.execute_activity(
                DELIVER_DUE, endpoint_id, result_type=DeliveryRound, start_to_close_timeout=ROUND_TIMEOUT,
                retry_policy=ROUND_RETRY, summary="deliver what is due")
            if done.gone:
                return
            workflow.set_current_details(f"last round: {done.delivered} delivered, {done.failed} to retry"
                                         + (f"; next retry {done.next_due.isoformat()}" if done.next_due else ""))
            if over_budget():
                workflow.continue_as_new(endpoint_id)
            if done.more:
                continue
            wait = IDLE_LOOK if done.next_due is None else min(IDLE_LOOK, done.next_due - workflow.now())
            if done.refusing:  # a wake would only start a round that fails at once
                wait = min(wait, RESTING)
            try:
                await workflow.wait_condition(lambda: self.woken and not done.refusing,
                                              timeout=max(wait, timedelta(seconds=1)),
                                              timeout_summary="next retry" if done.next_due else "idle")
            except TimeoutError:
                pass

    @workflow.signal
    def wake(self) -> None:
        self.woken = True
