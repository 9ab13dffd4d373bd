"""The digest dispatcher: one run per slot of the `digest-dispatch` Schedule (every 30 minutes).

plan (an activity: which zones are due in the slot, per kind of digest) → for each group, batches
of recipients in keyset order, each batch one activity that sends every digest of it through the
send step → a report. History stays bounded for any number of recipients: a batch is a handful of
events, and past the budget the run continues as new where it stopped.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

from workflows.digest.models import (
    PLAN_DIGESTS, SEND_DIGESTS, BatchReport, DigestBatch, DispatchInput, DispatchPlan, DispatchReport,
)

SCHEDULED_AT = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")  # set by the Schedule on each run
BATCH_TIMEOUT = timedelta(minutes=10)
BATCH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                          maximum_interval=timedelta(minutes=10))


def _add(totals: dict[str, int], report: BatchReport) -> dict[str, int]:
    counts = dict(totals)
    for name, value in (("recipients", report.recipients), ("sent", report.sent),
                        ("already_done", report.already_done), ("failed", report.failed)):
        counts[name] = counts.get(name, 0) + value
    for reason, value in sorted(report.skipped.items()):
        counts[f"skipped: {reason}"] = counts.get(f"skipped: {reason}", 0) + value
    return counts


@workflow.defn
class DigestDispatch:
    @workflow.run
    async def run(self, dispatch: DispatchInput) -> DispatchReport:
        plan = dispatch.plan
        if plan is None:
            # The scheduled time, not the run's: a late run or a backfill serves the slot it stands for.
            slot = dispatch.slot or workflow.info().typed_search_attributes.get(SCHEDULED_AT) or workflow.now()
            plan = await workflow.execute_activity(
                PLAN_DIGESTS, slot, result_type=DispatchPlan, start_to_close_timeout=timedelta(minutes=1),
                summary=f"which zones are due in the slot ending {slot:%Y-%m-%d %H:%M} UTC")
        totals, after = dict(dispatch.totals), dispatch.after
        for number in range(dispatch.group, len(plan.groups)):
            group = plan.groups[number]
            while True:
                workflow.set_current_details(
                    f"slot ending {plan.slot_end:%Y-%m-%d %H:%M} UTC · {group.kind.value} {group.period} "
                    f"for {len(group.zones)} zone(s) · so far: {totals}")
                report = await workflow.execute_activity(
                    SEND_DIGESTS, DigestBatch(group=group, slot_end=plan.slot_end, after=after,
                                              limit=dispatch.batch_size),
                    result_type=BatchReport, start_to_close_timeout=BATCH_TIMEOUT, retry_policy=BATCH_RETRY,
                    summary=f"{group.kind.value} {group.period}: recipients after "
                            f"{after.time_zone + '/' + after.recipient if after else 'the first'}")
                totals, after = _add(totals, report), report.last
                if after is None:
                    break
                if workflow.info().is_continue_as_new_suggested() or workflow.info().get_current_history_length() > dispatch.history_budget:
                    workflow.continue_as_new(DispatchInput(plan=plan, group=number, after=after, totals=totals,
                                                           batch_size=dispatch.batch_size,
                                                           history_budget=dispatch.history_budget))
        return DispatchReport(slot_start=plan.slot_start, slot_end=plan.slot_end, groups=plan.groups, totals=totals)
