"""Broadcast campaigns in PostgreSQL (migration 017) and the campaign workflow's activities: freeze
the audience, send a range of it through the one send step, decide the A/B test, keep the status.

The send rate is the deployment's (`FOLLOWUPS_CAMPAIGN_RATE_PER_MINUTE`): the server holds the
campaign task queue to `rate / batch` activities per second, each sending `batch` recipients, so
it holds however many workers poll. A batch of 1 up to 300 a minute; more, and each activity takes
a few, keeping the queue at or under 5 activities a second (the server's cost is per activity).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg
from pydantic import ValidationError
from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import RateLimit
from temporalio.api.workflowservice.v1 import UpdateTaskQueueConfigRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.outgoing import reason_kind
from activities.mail import message_id
from activities.send import SEND_LEASE, SendActivities, sent_in_batch
from activities.store import CampaignStats
from workflows.campaign.models import (
    DECIDE, FREEZE, MARK, SEND_RANGE, AbPlan, Arm, Decide, Decision, Frozen, Mark, RangeReport, SendRange,
)
from workflows.campaign.workflow import workflow_id
from workflows.contracts import Recipient, SendRequest, SendStatus

log = logging.getLogger(__name__)

UNTHROTTLED_BATCH = 100  # recipients per activity when no rate is set
MAX_ACTIVITIES_PER_SECOND = 5.0
SENDS_IN_FLIGHT = 20  # within one range
MEMBERS_PER_STATEMENT = 5000
JOURNEY = "campaign"  # messages.journey of a campaign's messages; entity_id is the campaign id


def batch_for(rate_per_minute: float) -> int:
    if rate_per_minute <= 0:
        return UNTHROTTLED_BATCH
    return max(1, math.ceil(rate_per_minute / 60 / MAX_ACTIVITIES_PER_SECOND))


def activities_per_second(rate_per_minute: float) -> float | None:
    """The campaign queue's limit for this send rate; None: no limit."""
    return None if rate_per_minute <= 0 else rate_per_minute / 60 / batch_for(rate_per_minute)


async def set_queue_rate(client: Client, task_queue: str, rate_per_minute: float) -> bool:
    """Put the limit on the queue itself (servers from 1.29), where it overrides every worker's; False
    where the server has no queue config (the workers' own `max_task_queue_activities_per_second`,
    the same value from the same setting, holds it then)."""
    per_second = activities_per_second(rate_per_minute)
    update = UpdateTaskQueueConfigRequest.RateLimitUpdate(reason=f"FOLLOWUPS_CAMPAIGN_RATE_PER_MINUTE={rate_per_minute:g}")
    if per_second is not None:
        update.rate_limit.CopyFrom(RateLimit(requests_per_second=per_second))
    try:
        await client.workflow_service.update_task_queue_config(UpdateTaskQueueConfigRequest(
            namespace=client.namespace, identity=client.identity, task_queue=task_queue,
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, update_queue_rate_limit=update))
    except RPCError as err:
        log.warning("the campaign queue's rate stays with the workers: the server has no queue config (%s)", err)
        return False
    return True


def arm_of(campaign_id: str, email: str, arms: list[Arm]) -> str:
    """The arm a recipient gets in a campaign's test, the same every time: a point from sha256 of the
    experiment and the address, laid on the weights in their order."""
    digest = hashlib.sha256(f"campaign:{campaign_id}\0{email.lower()}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(arm.weight for arm in arms)
    for arm in arms:
        if point < arm.weight:
            return arm.variant
        point -= arm.weight
    raise AssertionError("unreachable: the point is below the total weight")


@dataclass(frozen=True)
class Counts:
    audience: int | None
    sent: int
    failed: int
    skipped: dict[str, int]
    per_minute: float  # finished in the last minute

    @property
    def done(self) -> int:
        return self.sent + self.failed + sum(self.skipped.values())

    @property
    def remaining(self) -> int | None:
        return None if self.audience is None else max(self.audience - self.done, 0)


_SOURCES = {  # an audience filter → the recipients it stands for
    "journey": "SELECT lower(email) AS email, recipient, '{{}}'::jsonb AS fields, {order} AS pri FROM journey_recipients "
               "WHERE journey = {journey} AND ({group}::text IS NULL OR grp = {group}) "
               "AND ended_by IS NULL",
}


class Campaigns:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._kept: dict[str, asyncpg.Record] = {}  # frozen campaigns' rows (their send fields never change)

    async def create(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """A new draft; None when it was new, else the row kept under that id."""
        async with self.pool.acquire() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO campaigns (campaign_id, name, template, category, priority, context, ab_test, filters, "
                "scheduled_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING true",
                row["campaign_id"], row["name"], row["template"], row["category"], row["priority"],
                json.dumps(row["context"]), json.dumps(row["ab_test"]) if row["ab_test"] else None,
                json.dumps(row["filters"]), row["scheduled_at"])
            if inserted:
                return None
            return dict(await conn.fetchrow("SELECT * FROM campaigns WHERE campaign_id = $1", row["campaign_id"]))

    async def get(self, campaign_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM campaigns WHERE campaign_id = $1", campaign_id)

    async def page(self, limit: int, before: datetime | None) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM campaigns WHERE ($2::timestamptz IS NULL OR created_at < $2) "
            "ORDER BY created_at DESC, campaign_id LIMIT $1", limit, before)

    async def add_members(self, campaign_id: str, members: list[tuple[Recipient, dict[str, Any]]]) -> int:
        """Add to a draft's audience (an address already there keeps its first entry); how many were new."""
        added = 0
        async with self.pool.acquire() as conn, conn.transaction():
            await self._draft(conn, campaign_id)
            for start in range(0, len(members), MEMBERS_PER_STATEMENT):
                chunk = members[start:start + MEMBERS_PER_STATEMENT]
                result = await conn.execute(
                    "INSERT INTO campaign_members (campaign_id, email, recipient, fields) "
                    "SELECT $1, * FROM unnest($2::text[], $3::jsonb[], $4::jsonb[]) ON CONFLICT DO NOTHING",
                    campaign_id, [str(r.email).lower() for r, _ in chunk],
                    [r.model_dump_json(exclude={"fields"}, exclude_none=True) for r, _ in chunk],
                    [json.dumps(fields) for _, fields in chunk])
                added += int(result.split()[-1])
        return added

    async def add_filter(self, campaign_id: str, audience_filter: dict[str, Any]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._draft(conn, campaign_id)
            await conn.execute("UPDATE campaigns SET filters = filters || $2::jsonb WHERE campaign_id = $1 "
                               "AND NOT filters @> $2::jsonb", campaign_id, json.dumps([audience_filter]))

    async def draft_size(self, campaign_id: str) -> int:
        """Recipients the draft's audience has now: members, and whom its filters find (deduplicated)."""
        select, values = self._audience(campaign_id, await self._filters(campaign_id))
        return await self.pool.fetchval(f"SELECT count(DISTINCT email) FROM ({select}) a", *values)

    async def set_status(self, campaign_id: str, status: str, *, only_from: tuple[str, ...] | None = None,
                         scheduled_at: datetime | None = None) -> str | None:
        """Move the campaign's status (from one of `only_from`); the status it had, or None (not moved)."""
        return await self.pool.fetchval(
            "WITH old AS (SELECT status FROM campaigns WHERE campaign_id = $1 FOR UPDATE) "
            "UPDATE campaigns c SET status = $2, scheduled_at = COALESCE($4, c.scheduled_at), "
            "finished_at = CASE WHEN $2 IN ('completed', 'cancelled') THEN COALESCE(finished_at, now()) END "
            "FROM old WHERE c.campaign_id = $1 AND ($3::text[] IS NULL OR old.status = ANY($3)) "
            "AND old.status NOT IN ('completed', 'cancelled') RETURNING old.status",
            campaign_id, status, list(only_from) if only_from else None, scheduled_at)

    async def freeze(self, campaign_id: str, batch: int) -> Frozen:
        """The audience, frozen once in a random order (md5 of the campaign and the address): the first
        n of it is a fair sample. A second call returns what the first froze."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM campaigns WHERE campaign_id = $1 FOR UPDATE", campaign_id)
            if row is None:
                raise ApplicationError(f"no campaign {campaign_id!r}", type="UnknownCampaign", non_retryable=True)
            if row["frozen_at"] is None:
                select, values = self._audience(campaign_id, json.loads(row["filters"]))
                await conn.execute(
                    "INSERT INTO campaign_audience (campaign_id, seq, email, recipient, fields) "
                    "SELECT $1, row_number() OVER (ORDER BY md5($1 || email), email), email, recipient, fields FROM "
                    f"(SELECT DISTINCT ON (email) email, recipient, fields FROM ({select}) a ORDER BY email, pri) b",
                    *values)
                row = await conn.fetchrow(
                    "UPDATE campaigns SET frozen_at = now(), started_at = COALESCE(started_at, now()), batch = $2, "
                    "audience = (SELECT count(*) FROM campaign_audience WHERE campaign_id = $1) "
                    "WHERE campaign_id = $1 RETURNING *", campaign_id, batch)
            return Frozen(audience=row["audience"], batch=row["batch"], frozen_at=row["frozen_at"])

    async def audience_range(self, campaign_id: str, lo: int, hi: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT seq, email, recipient, fields FROM campaign_audience WHERE campaign_id = $1 AND seq > $2 "
            "AND seq <= $3 ORDER BY seq", campaign_id, lo, hi)

    async def frozen(self, campaign_id: str) -> asyncpg.Record:
        if (row := self._kept.get(campaign_id)) is None:
            row = await self.get(campaign_id)
            if row is None or row["frozen_at"] is None:
                raise ApplicationError(f"campaign {campaign_id!r} has no frozen audience", type="UnknownCampaign",
                                       non_retryable=True)
            if len(self._kept) >= 1000:
                self._kept.clear()
            self._kept[campaign_id] = row
        return row

    async def counts(self, campaign_id: str, audience: int | None) -> Counts:
        rows = await self.pool.fetch(
            "SELECT status, CASE WHEN status = 'skipped' THEN reason END AS reason, count(*) AS n, "
            "count(*) FILTER (WHERE updated_at > now() - interval '60 seconds') AS last_minute "
            "FROM messages WHERE journey = $2 AND entity_id = $1 AND status IN ('sent', 'dry_run', 'skipped', 'failed') "
            "GROUP BY 1, 2", campaign_id, JOURNEY)
        skipped: Counter[str] = Counter()
        sent = failed = last_minute = 0
        for row in rows:
            last_minute += row["last_minute"]
            if row["status"] in ("sent", "dry_run"):
                sent += row["n"]
            elif row["status"] == "failed":
                failed += row["n"]
            else:
                skipped[reason_kind(row["reason"])] += row["n"]
        return Counts(audience, sent, failed, dict(skipped), float(last_minute))

    async def stats(self, campaign_id: str) -> CampaignStats | None:
        """A broadcast in the shape of a lead campaign's stats (one step: the broadcast)."""
        row = await self.pool.fetchrow(
            "SELECT c.audience, (SELECT count(*) FROM messages m WHERE m.journey = $2 AND m.entity_id = $1 "
            "AND m.status IN ('sent', 'dry_run')) AS sent, (SELECT count(*) FROM campaign_conversions v "
            "WHERE v.campaign_id = $1) AS converted, (SELECT count(DISTINCT e.email) FROM message_events e JOIN messages m "
            "ON m.key = e.key WHERE m.journey = $2 AND m.entity_id = $1 AND e.kind = 'unsubscribed') AS unsubscribed "
            "FROM campaigns c WHERE c.campaign_id = $1", campaign_id, JOURNEY)
        if row is None:
            return None
        audience = row["audience"] if row["audience"] is not None else await self.draft_size(campaign_id)
        return CampaignStats(campaign_id, audience, {"broadcast": row["sent"]}, row["converted"], 0, row["unsubscribed"])

    async def convert(self, campaign_id: str, emails: list[str]) -> int:
        result = await self.pool.execute(
            "INSERT INTO campaign_conversions (campaign_id, email) SELECT $1, lower(e) FROM unnest($2::text[]) e "
            "ON CONFLICT DO NOTHING", campaign_id, emails)
        return int(result.split()[-1])

    async def arms(self, campaign_id: str, metric: str) -> dict[str, tuple[int, int]]:
        """Each variant's messages sent and how many of them succeeded on `metric` (a person's open or
        click, never a machine's; a conversion reported for the address)."""
        success = {
            "clicks": "EXISTS (SELECT 1 FROM message_events e WHERE e.key = m.key AND e.kind = 'clicked' AND NOT e.machine)",
            "opens": "EXISTS (SELECT 1 FROM message_events e WHERE e.key = m.key AND e.kind IN ('opened', 'clicked') "
                     "AND NOT e.machine)",
            "conversions": "EXISTS (SELECT 1 FROM campaign_conversions c WHERE c.campaign_id = $1 "
                           "AND c.email = m.recipient)",
        }[metric]
        rows = await self.pool.fetch(
            f"SELECT m.variant, count(*) AS n, count(*) FILTER (WHERE {success}) AS x FROM messages m "
            "WHERE m.journey = $2 AND m.entity_id = $1 AND m.status IN ('sent', 'dry_run') AND m.variant IS NOT NULL "
            "GROUP BY m.variant", campaign_id, JOURNEY)
        return {row["variant"]: (row["n"], row["x"]) for row in rows}

    async def save_decision(self, campaign_id: str, decision: dict[str, Any]) -> dict[str, Any]:
        """The first decision saved stands (a retried activity gets it back)."""
        await self.pool.execute("INSERT INTO campaign_ab_decisions (campaign_id, decision) VALUES ($1, $2) "
                                "ON CONFLICT DO NOTHING", campaign_id, json.dumps(decision))
        return await self.decision(campaign_id)  # type: ignore[return-value]

    async def decision(self, campaign_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT decision, decided_at FROM campaign_ab_decisions WHERE campaign_id = $1",
                                       campaign_id)
        return None if row is None else {**json.loads(row["decision"]), "decided_at": row["decided_at"].isoformat()}

    # --- inside ------------------------------------------------------------------------------------

    async def _draft(self, conn: asyncpg.Connection, campaign_id: str) -> None:
        status = await conn.fetchval("SELECT status FROM campaigns WHERE campaign_id = $1 FOR UPDATE", campaign_id)
        if status is None:
            raise LookupError(f"no campaign {campaign_id!r}")
        if status != "draft":
            raise ValueError(f"campaign {campaign_id!r} is {status}: its audience was frozen or is about to be "
                             "(only a draft's audience can change)")

    async def _filters(self, campaign_id: str) -> list[dict[str, Any]]:
        found = await self.pool.fetchval("SELECT filters FROM campaigns WHERE campaign_id = $1", campaign_id)
        return json.loads(found) if found else []

    @staticmethod
    def _audience(campaign_id: str, filters: list[dict[str, Any]]) -> tuple[str, list[Any]]:
        """Members first (pri 0), then each filter's recipients: one statement and its values."""
        parts = ["SELECT email, recipient, fields, 0 AS pri FROM campaign_members WHERE campaign_id = $1"]
        values: list[Any] = [campaign_id]
        for i, found in enumerate(filters, start=1):
            values += [found["journey"], found.get("group")]
            parts.append(_SOURCES["journey"].format(journey=f"${len(values) - 1}", group=f"${len(values)}", order=i))
        return " UNION ALL ".join(parts), values


def decide(plan: AbPlan, arms: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """The A/B decision: the arm with the best rate against every other (two-proportion z-test, one-
    sided, Bonferroni over the comparisons) at the plan's confidence, each arm with its minimum
    sample; else no winner, and the plan says what the rest get."""
    from statsmodels.stats.proportion import proportions_ztest  # only here: a worker that never decides never loads it

    names = [arm.variant for arm in plan.arms]
    control = names[0]
    table = [{"arm": arm.variant, "weight": arm.weight, "sent": arms.get(arm.variant, (0, 0))[0],
              "successes": arms.get(arm.variant, (0, 0))[1]} for arm in plan.arms]
    for arm in table:
        arm["rate"] = arm["successes"] / arm["sent"] if arm["sent"] else 0.0
    alpha = (1 - plan.confidence) / (len(names) - 1)
    leader = max(table, key=lambda arm: (arm["rate"], arm["arm"] == control))  # a tie goes to the control
    tests, winner, reason = [], None, ""
    short = [arm for arm in table if arm["sent"] < plan.min_per_arm]
    if short:
        reason = ", ".join(f"{arm['arm']} was sent to {arm['sent']}" for arm in short) + \
                 f": fewer than the {plan.min_per_arm} each arm needs"
    else:
        for arm in table:
            if arm is leader:
                continue
            if leader["successes"] + arm["successes"] == 0 or \
                    leader["successes"] + arm["successes"] == leader["sent"] + arm["sent"]:
                z, p = 0.0, 1.0  # nobody (or everybody) succeeded in either arm: no difference to see
            else:
                z, p = proportions_ztest([leader["successes"], arm["successes"]], [leader["sent"], arm["sent"]],
                                         alternative="larger")
            tests.append({"against": arm["arm"], "z": round(float(z), 4), "p_value": float(p),
                          "significant": bool(p < alpha)})
        if all(test["significant"] for test in tests):
            winner = leader["arm"]
            reason = (f"{winner} beat every other arm on {plan.metric} (p < {alpha:.4g}, "
                      f"{plan.confidence:.0%} confidence{' with Bonferroni' if len(names) > 2 else ''})")
        else:
            weakest = max(tests, key=lambda test: test["p_value"])
            reason = (f"{leader['arm']} led on {plan.metric} but not significantly over {weakest['against']} "
                      f"(p = {weakest['p_value']:.3g} ≥ {alpha:.4g})")
    rest_get = winner or (control if plan.no_winner == "control" else None)
    reason += "; the rest get " + (rest_get if rest_get else "each their own arm by weight")
    return {"metric": plan.metric, "confidence": plan.confidence, "alpha": alpha, "min_per_arm": plan.min_per_arm,
            "arms": table, "tests": tests, "winner": winner, "rest_get": rest_get, "no_winner": plan.no_winner,
            "reason": reason}


class CampaignActivities:
    def __init__(self, campaigns: Campaigns, sends: SendActivities, rate_per_minute: float) -> None:
        self.campaigns, self.sends, self.rate_per_minute = campaigns, sends, rate_per_minute

    @activity.defn(name=FREEZE)
    async def freeze(self, campaign_id: str) -> Frozen:
        frozen = await self.campaigns.freeze(campaign_id, batch_for(self.rate_per_minute))
        await self.campaigns.set_status(campaign_id, "sending", only_from=("scheduled",))
        return frozen

    @activity.defn(name=MARK)
    async def mark(self, mark: Mark) -> None:
        await self.campaigns.set_status(mark.campaign_id, mark.status)

    @activity.defn(name=DECIDE)
    async def decide(self, ask: Decide) -> Decision:
        kept = await self.campaigns.decision(ask.campaign_id)
        if kept is None:
            kept = await self.campaigns.save_decision(
                ask.campaign_id, decide(ask.plan, await self.campaigns.arms(ask.campaign_id, ask.plan.metric)))
        return Decision(winner=kept["winner"], rest_get=kept["rest_get"], reason=kept["reason"])

    async def _failed_row(self, campaign_id: str, campaign: asyncpg.Record, email: str, reason: str) -> None:
        """A message row recorded as failed for someone who cannot be sent to, so the campaign's
        counts (read from the outbox) still add up to its audience."""
        key = f"{workflow_id(campaign_id)}/{email}"
        claim = await self.sends.outbox.claim(
            key=key, journey=JOURNEY, entity_id=campaign_id, template=campaign["template"], recipient=email,
            recipient_name="", category=campaign["category"], context={},
            message_id=message_id(key, self.sends.sender.domain), due_at=datetime.now(timezone.utc),
            lease=SEND_LEASE)
        if claim.action == "send":
            await self.sends.outbox.finish(key, "failed", reason=reason[:500])

    @activity.defn(name=SEND_RANGE)
    async def send_range(self, ask: SendRange) -> RangeReport:
        """The recipients (lo, hi] through the one send step: a message no retry can fix is counted
        and the rest go on; a transient failure fails the range, whose retry finds the sent ones done."""
        campaign = await self.campaigns.frozen(ask.campaign_id)
        rows = await self.campaigns.audience_range(ask.campaign_id, ask.lo, ask.hi)
        context = json.loads(campaign["context"])
        now = datetime.now(timezone.utc)

        async def one(row: asyncpg.Record) -> tuple[SendStatus, str | None]:
            try:
                recipient = Recipient.model_validate_json(row["recipient"])
            except ValidationError as err:  # a row changed by hand: no retry mends it, the rest go on
                activity.logger.error("campaign %s, recipient %s: not a recipient: %s", ask.campaign_id, row["seq"], err)
                await self._failed_row(ask.campaign_id, campaign, row["email"], f"not a valid recipient: {err}")
                return SendStatus.FAILED, "not a valid recipient"
            variant = ask.variant or (arm_of(ask.campaign_id, row["email"], ask.arms) if ask.arms else None)
            request = SendRequest(
                key=f"{workflow_id(ask.campaign_id)}/{row['email']}", journey=JOURNEY, entity_id=ask.campaign_id,
                template=campaign["template"], recipient=recipient, category=campaign["category"], due_at=now,
                context={**context, **json.loads(row["fields"]), "name": recipient.name},
                templates_as_of=campaign["frozen_at"], variant=variant)
            result = await self.sends.send_counted(request)
            return result.status, result.reason

        done = await sent_in_batch((one(row) for row in rows), SENDS_IN_FLIGHT)
        return RangeReport(recipients=len(rows), sent=sum(1 for status, _ in done if status.delivered),
                           skipped=sum(1 for status, _ in done if status == SendStatus.SKIPPED),
                           failed=sum(1 for status, _ in done if status == SendStatus.FAILED))
