"""A new-content notice to everyone on an announcement's audience, once (seed 001 "New Content"):
one workflow per announcement, `announcement-{course}-{announcement_id}`, sending the audience
frozen in PostgreSQL in keyset batches through the one send step. Each message's key is
`announcement-{course}-{id}/{email}`, so a retried batch, a restart or the same announcement
posted again sends nobody twice; the counts come from the outbox."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

from workflows.core.fields import Strict
from workflows.core.loop import over_budget
from workflows.core.send import SEND_RETRY

ANNOUNCE_BATCH = "announce_batch"  # the activity: send the next batch of the audience
BATCH = 200
BATCH_TIMEOUT = timedelta(minutes=5)


def workflow_id(course: str, announcement_id: str) -> str:
    return f"announcement-{course}-{announcement_id}"


class Batch(Strict):
    course: str
    announcement_id: str
    after: str | None = None  # the last email of the previous batch (keyset)
    limit: int = BATCH


class BatchReport(BaseModel):
    recipients: int
    sent: int
    skipped: dict[str, int] = {}
    failed: int = 0
    last: str | None = None  # None: the audience is done


class Delivery(BaseModel):
    course: str
    announcement_id: str
    after: str | None = None
    batches: int = 0
    recipients: int = 0
    sent: int = 0
    failed: int = 0
    skipped: dict[str, int] = {}
    done: bool = False


@workflow.defn
class AnnouncementDelivery:
    def __init__(self) -> None:
        self.delivery: Delivery | None = None

    @workflow.run
    async def run(self, delivery: Delivery) -> Delivery:
        self.delivery = delivery
        while not delivery.done:
            if over_budget():  # a very large audience: a fresh history, the same keyset position
                workflow.continue_as_new(delivery)
            report = await workflow.execute_activity(
                ANNOUNCE_BATCH, Batch(course=delivery.course, announcement_id=delivery.announcement_id,
                                      after=delivery.after),
                result_type=BatchReport, start_to_close_timeout=BATCH_TIMEOUT, retry_policy=SEND_RETRY,
                summary=f"batch {delivery.batches + 1} after {delivery.after or 'the start'}")
            delivery.batches += 1
            delivery.recipients += report.recipients
            delivery.sent += report.sent
            delivery.failed += report.failed
            for reason, count in report.skipped.items():
                delivery.skipped[reason] = delivery.skipped.get(reason, 0) + count
            delivery.after, delivery.done = report.last, report.last is None
            workflow.set_current_details(f"**Announcement {delivery.announcement_id}** ({delivery.course}): "
                                         f"{delivery.recipients} recipients done, {delivery.sent} sent")
        return delivery

    @workflow.query
    def progress(self) -> Delivery | None:
        return self.delivery
