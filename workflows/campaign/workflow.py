"""One workflow per broadcast campaign (`campaign-{id}`): wait for its time, freeze the audience,
send it range by range through the one send step, pause, resume, cancel, and an A/B test first.

The sends run on their own task queue, whose rate the server holds for the whole deployment
(worker.py); their priority is the campaign's, so an urgent campaign overtakes a low one in the
queue's backlog, and no journey's reminder ever waits behind either (those run on the main queue).
A range is (lo, hi] of the frozen audience's sequence numbers; every message's key is
`campaign-{id}/{email}`, so a range sent twice (a retry, a pause that cut it short, a crash) sends
nobody twice. A pause cancels the ranges in flight and sends them again on resume. Long
campaigns continue as new with the same position, so the history stays bounded.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ActivityError, CancelledError

from workflows.campaign.models import (
    DECIDE, FREEZE, MARK, PRIORITY_KEYS, SEND_RANGE, CampaignRun, Decide, Decision, Frozen, Mark, RangeReport,
    Reschedule, SendRange, Status, test_size,
)
from workflows.core.loop import over_budget
from workflows.core.send import SEND_RETRY

# Ranges scheduled at once. The server splits a queue into partitions (4 by default), each holding
# its share of the rate: a partition whose backlog runs dry wastes its share. 24 in flight let the
# rate sag 4-8 % below the setting over 5 minutes (bench/campaigns.py); 96 keep every partition fed.
# (The workers still run only FOLLOWUPS_CAMPAIGN_RANGES_PER_WORKER at a time; the rest wait, cheaply,
# in the queue, and a pause cancels them at once.)
IN_FLIGHT = 96
RANGE_TIMEOUT = timedelta(minutes=10)
SHORT = timedelta(minutes=10)


def workflow_id(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"


@workflow.defn
class CampaignDelivery:
    def __init__(self) -> None:
        self.run_state: CampaignRun | None = None
        self.paused = False
        self.cancelled = False
        self.rescheduled = False

    @workflow.run
    async def run(self, run: CampaignRun) -> CampaignRun:
        self.run_state = run
        self.paused = run.status == "paused"
        try:
            return await self._run(run)
        except asyncio.CancelledError:  # cancelled in the Web UI or by `temporal workflow cancel`
            await self._mark(run, "cancelled")
            raise

    async def _run(self, run: CampaignRun) -> CampaignRun:
        if run.audience is None:
            if not await self._wait_for_its_time(run):
                return await self._end(run, "cancelled")
            frozen = await workflow.execute_activity(
                FREEZE, run.campaign_id, result_type=Frozen, start_to_close_timeout=SHORT, retry_policy=SEND_RETRY,
                summary="freeze the audience")
            run.audience, run.batch = frozen.audience, frozen.batch
            if run.ab is not None:
                run.test_size = test_size(frozen.audience, run.ab)
                run.phase = "test"
            await self._mark(run, "paused" if self.paused else "sending")
        while True:
            if self.cancelled:
                return await self._end(run, "cancelled")
            if run.phase == "waiting":
                if not await self._wait_for_the_test(run):
                    continue  # cancelled
                decision = await workflow.execute_activity(
                    DECIDE, Decide(campaign_id=run.campaign_id, plan=run.ab), result_type=Decision,
                    start_to_close_timeout=SHORT, retry_policy=SEND_RETRY, summary="decide the A/B test")
                run.winner, run.phase = decision.rest_get, "rest"
                workflow.set_current_details(f"A/B test decided: {decision.reason}")
                continue
            end = run.test_size if run.phase == "test" else run.audience
            assert end is not None
            if not await self._send_up_to(run, end):
                continue  # paused, cancelled or continuing as new: decided at the top
            if run.phase == "test":
                run.phase, run.test_done_at = "waiting", workflow.now()
                continue
            return await self._end(run, "completed")

    # --- events --------------------------------------------------------------------------------

    @workflow.signal
    def pause(self) -> None:
        self.paused = True

    @workflow.signal
    def resume(self) -> None:
        self.paused = False

    @workflow.signal
    def cancel(self) -> None:
        self.cancelled = True

    @workflow.signal
    def reschedule(self, when: Reschedule) -> None:
        if self.run_state is not None and self.run_state.audience is None:
            self.run_state.scheduled_at = when.scheduled_at
            self.rescheduled = True

    @workflow.query
    def progress(self) -> CampaignRun | None:
        return self.run_state

    # --- steps ---------------------------------------------------------------------------------

    async def _wait_for_its_time(self, run: CampaignRun) -> bool:
        """Until `scheduled_at` (an event may move it): False when cancelled first."""
        while run.scheduled_at is not None and run.scheduled_at > workflow.now() and not self.cancelled:
            self.rescheduled = False
            workflow.set_current_details(f"scheduled for {run.scheduled_at.isoformat()}")
            try:
                await workflow.wait_condition(lambda: self.cancelled or self.rescheduled,
                                              timeout=run.scheduled_at - workflow.now(),
                                              timeout_summary="the campaign's start")
            except asyncio.TimeoutError:
                break
        return not self.cancelled

    async def _wait_for_the_test(self, run: CampaignRun) -> bool:
        assert run.ab is not None and run.test_done_at is not None
        due = run.test_done_at + run.ab.wait
        workflow.set_current_details(f"A/B test sent to {run.test_size}; decided at {due.isoformat()}")
        if due > workflow.now():
            try:
                await workflow.wait_condition(lambda: self.cancelled, timeout=due - workflow.now(),
                                              timeout_summary="the A/B test's decision")
            except asyncio.TimeoutError:
                pass
        return not self.cancelled

    async def _send_up_to(self, run: CampaignRun, end: int) -> bool:
        """Send every range of (done_through, end]; True when all are done. A pause or a cancel
        cancels the ranges in flight (their sent messages stay sent) and returns False, as does a
        history grown long, after the ranges in flight finished (then it continues as new)."""
        origin = run.test_size if run.phase == "rest" else 0
        # ranges are laid from the phase's origin in steps of `batch`, so a range sent again after an
        # interruption is the same range, and `done_ranges` recognises it
        cursor = max(run.done_through, origin)
        in_flight: dict[int, asyncio.Task[RangeReport]] = {}
        priority = Priority(priority_key=PRIORITY_KEYS[run.priority], fairness_key=run.campaign_id)
        while True:
            if self.cancelled or self.paused:
                for task in in_flight.values():
                    task.cancel()
                await self._collect(run, in_flight, origin, end, wait_all=True)
                if self.paused and not self.cancelled:
                    await self._mark(run, "paused")
                    workflow.set_current_details(self._details(run, end, "paused"))
                    await workflow.wait_condition(lambda: not self.paused or self.cancelled)
                    if not self.cancelled:
                        await self._mark(run, "sending")
                return False
            budget = over_budget()
            while not budget and len(in_flight) < IN_FLIGHT and cursor < end:
                hi = min(cursor + run.batch, end)
                if cursor not in run.done_ranges:
                    in_flight[cursor] = asyncio.ensure_future(workflow.execute_activity(
                        SEND_RANGE, SendRange(campaign_id=run.campaign_id, lo=cursor, hi=hi, variant=run.winner,
                                              arms=run.ab.arms if run.ab and run.winner is None else None),
                        result_type=RangeReport, task_queue=run.send_queue, priority=priority,
                        start_to_close_timeout=RANGE_TIMEOUT, retry_policy=SEND_RETRY,
                        summary=f"recipients {cursor + 1}–{hi}"))
                cursor = hi
            if not in_flight:
                if budget and cursor < end:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    run.runs += 1
                    workflow.continue_as_new(run)
                return cursor >= end
            await workflow.wait_condition(lambda: self.cancelled or self.paused or any(t.done() for t in in_flight.values()))
            await self._collect(run, in_flight, origin, end, wait_all=False)
            workflow.set_current_details(self._details(run, end, "sending"))

    async def _collect(self, run: CampaignRun, in_flight: dict[int, asyncio.Task[RangeReport]], origin: int,
                       end: int, wait_all: bool) -> None:
        for lo, task in list(in_flight.items()):
            if not task.done() and not wait_all:
                continue
            del in_flight[lo]
            try:
                report = await task
            except (CancelledError, asyncio.CancelledError):
                continue
            except ActivityError as err:
                if isinstance(err.cause, CancelledError):
                    continue
                raise
            run.sent += report.sent
            run.skipped += report.skipped
            run.failed += report.failed
            run.done_ranges.append(lo)
        # the watermark: every range from it on that is done, in order, folds into it
        mark = max(run.done_through, origin)
        done = set(run.done_ranges)
        while mark in done:
            done.discard(mark)
            mark = min(mark + run.batch, end)
        run.done_through, run.done_ranges = mark, sorted(done)

    async def _mark(self, run: CampaignRun, status: Status) -> None:
        run.status = status
        await workflow.execute_activity(MARK, Mark(campaign_id=run.campaign_id, status=status),
                                        start_to_close_timeout=SHORT, retry_policy=SEND_RETRY,
                                        summary=f"status: {status}")

    async def _end(self, run: CampaignRun, status: Status) -> CampaignRun:
        await self._mark(run, status)
        workflow.set_current_details(self._details(run, run.audience or 0, status))
        return run

    @staticmethod
    def _details(run: CampaignRun, end: int, status: str) -> str:
        phase = {"test": " (A/B test)", "rest": "", "waiting": " (A/B test: waiting)"}[run.phase]
        return (f"**Campaign {run.campaign_id}**: {status}{phase}, {run.done_through} of {run.audience} done: "
                f"{run.sent} sent, {run.skipped} skipped, {run.failed} failed")
