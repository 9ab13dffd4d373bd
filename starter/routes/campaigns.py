"""Campaigns (seeds 001, 003, 004): a broadcast is a draft with an audience (a list, a CSV, a filter
over known recipients), then scheduled, sent by its workflow at the deployment's rate, paused,
resumed, cancelled, with an optional A/B test first. A lead-nurture campaign (the `campaign` of
imported leads) is listed beside them, and both share /stats and /v1/analytics/campaigns/{name}."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from temporalio.common import Priority as TemporalPriority
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.campaigns import Campaigns, Counts
from activities.render import RenderTimeout, TemplateProblem
from settings import Settings
from starter.lead_import import ROWS_PER_TURN, text_lines
from starter.routes.analytics import Period
from starter.routes.templates import _sample, store
from starter.service import Conflict, NotFound, Rejected, Unavailable, first_difference
from workflows.campaign.models import PRIORITY_KEYS, AbPlan, CampaignRun, Priority, Reschedule, Status, test_size
from workflows.campaign.workflow import CampaignDelivery, workflow_id
from workflows.contracts import Recipient
from workflows.core import search
from workflows.core.fields import EntityId, GroupName, Moment, SingleLine, Strict, Title
from workflows.declared.definition import JourneyName, TemplateName

LIST_LIMIT = 10_000  # recipients in one JSON request; a CSV may hold up to api_max_import_bytes
FIRST_PROBLEMS = 20
FieldValue = Annotated[str, Field(max_length=2000), SingleLine] | int | float | bool | None


class AudienceFilter(Strict):
    """Everyone on running `journey` journeys (of `group`): e.g. everyone enrolled in a course."""

    journey: JourneyName
    group: GroupName | None = None


class CampaignRecipient(Recipient):
    fields: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], FieldValue] = Field(
        {}, max_length=50, description="their own template variables")


class CampaignBody(Strict):
    campaign_id: EntityId
    name: Title
    template: TemplateName
    category: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = Field(
        None, description="default: the template's; given, it must be the template's")
    priority: Priority = "normal"
    context: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], Any] = Field(
        {}, max_length=100, description="template variables every recipient gets")
    ab_test: AbPlan | None = None
    scheduled_at: Moment | None = Field(None, description="kept for `schedule` (which may move it)")
    recipients: list[CampaignRecipient] | None = Field(None, max_length=LIST_LIMIT)
    audience_filter: AudienceFilter | None = None


class ScheduleBody(Strict):
    scheduled_at: Moment | None = Field(None, description="default: the campaign's own, else now")


class RecipientsBody(Strict):
    recipients: list[CampaignRecipient] = Field(min_length=1, max_length=LIST_LIMIT)


class ConversionsBody(Strict):
    emails: list[Annotated[str, Field(min_length=3, max_length=320), SingleLine]] = Field(min_length=1, max_length=10_000)


class Progress(BaseModel):
    audience: int | None = Field(description="frozen when sending starts; before: what the draft's audience holds now")
    sent: int
    skipped: dict[str, int] = Field(description="by reason: recipient suppressed, unsubscribed, …")
    failed: int
    remaining: int | None
    per_minute: float = Field(description="messages finished in the last minute")
    eta: datetime | None = Field(description="at the last minute's pace")


class CampaignView(BaseModel):
    campaign_id: str
    kind: Literal["broadcast", "nurture"]
    name: str
    status: Status | Literal["running", "ended"]
    template: str | None = None
    category: str | None = None
    priority: Priority | None = None
    scheduled_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    workflow_id: str | None = None
    ab_test: dict[str, Any] | None = None
    progress: Progress


class CampaignList(BaseModel):
    campaigns: list[CampaignView]


class AudienceView(BaseModel):
    added: int
    audience: int
    rejected_count: int = 0
    rejected: list[dict[str, Any]] = []


class AbTestView(BaseModel):
    campaign_id: str
    plan: AbPlan
    status: Literal["testing", "waiting", "decided"]
    decision: dict[str, Any] | None = Field(description="each arm's sent, successes and rate; each test's z and "
                                                        "p-value; the winner (null: none), what the rest get, why")


def _progress(counts: Counts, status: str) -> Progress:
    eta = None
    if counts.remaining and counts.per_minute > 0 and status == "sending":
        eta = datetime.now(timezone.utc) + timedelta(minutes=counts.remaining / counts.per_minute)
    return Progress(audience=counts.audience, sent=counts.sent, skipped=counts.skipped, failed=counts.failed,
                    remaining=counts.remaining, per_minute=counts.per_minute, eta=eta)


async def parse_csv(text: str) -> tuple[list[CampaignRecipient], list[dict[str, Any]]]:
    """email and name columns, time_zone optional, every other column a template variable; bad rows
    come back with their line and reason. The event loop is handed back every ROWS_PER_TURN rows,
    so a large file does not stall the API's other requests."""
    reader = csv.DictReader(text_lines(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    if "email" not in columns or "name" not in columns:
        raise Rejected(f"the CSV needs an email and a name column (it has {', '.join(columns) or 'none'})", field="file")
    own = {"email", "name", "time_zone"}
    good, bad = [], []
    for line, row in enumerate(reader, start=2):
        if line % ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        try:
            good.append(CampaignRecipient(
                email=row["email"], name=row["name"], time_zone=row.get("time_zone") or None,
                fields={k: v for k, v in row.items() if k not in own and v != ""}))
        except ValidationError as err:
            first = err.errors()[0]
            bad.append({"line": line, "field": ".".join(str(p) for p in first["loc"]), "reason": first["msg"]})
    return good, bad


def router(authed: list, settings: Settings) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=["campaigns"])

    def campaigns(request: Request) -> Campaigns:
        return Campaigns(request.app.state.pool)

    async def broadcast(request: Request, row: Any) -> CampaignView:
        frozen = row["audience"] is not None
        audience = row["audience"] if frozen else await campaigns(request).draft_size(row["campaign_id"])
        counts = await campaigns(request).counts(row["campaign_id"], audience)
        ab = json.loads(row["ab_test"]) if row["ab_test"] else None
        return CampaignView(
            campaign_id=row["campaign_id"], kind="broadcast", name=row["name"], status=row["status"],
            template=row["template"], category=row["category"], priority=row["priority"],
            scheduled_at=row["scheduled_at"], created_at=row["created_at"], started_at=row["started_at"],
            finished_at=row["finished_at"],
            workflow_id=workflow_id(row["campaign_id"]) if row["status"] != "draft" else None,
            ab_test=ab, progress=_progress(counts, row["status"]))

    async def nurture(request: Request, name: str) -> CampaignView | None:
        row = await request.app.state.pool.fetchrow(
            "SELECT count(*) AS leads, count(*) FILTER (WHERE status = 'nurturing') AS running, "
            "min(started_at) AS started_at, max(ended_at) AS ended_at FROM leads WHERE campaign = $1", name)
        if not row["leads"]:
            return None
        sent = await request.app.state.pool.fetchval(
            "SELECT count(*) FROM messages m JOIN leads l ON m.journey = 'lead' AND m.entity_id = l.lead_id "
            "WHERE l.campaign = $1 AND m.status IN ('sent', 'dry_run')", name)
        return CampaignView(
            campaign_id=name, kind="nurture", name=name, status="running" if row["running"] else "ended",
            template=None, started_at=row["started_at"], finished_at=None if row["running"] else row["ended_at"],
            progress=Progress(audience=row["leads"], sent=sent, skipped={}, failed=0, remaining=row["running"],
                              per_minute=0.0, eta=None))

    async def view(request: Request, campaign_id: str) -> CampaignView:
        row = await campaigns(request).get(campaign_id)
        if row is not None:
            return await broadcast(request, row)
        if (found := await nurture(request, campaign_id)) is not None:
            return found
        raise NotFound(f"no campaign {campaign_id!r}", field="campaign_id")

    async def owned(request: Request, campaign_id: str) -> Any:
        row = await campaigns(request).get(campaign_id)
        if row is None:
            if await nurture(request, campaign_id) is not None:
                raise Conflict(f"{campaign_id!r} is a lead-nurture campaign: its leads' journeys run it "
                               "(POST /v1/leads/…/events)", field="campaign_id")
            raise NotFound(f"no campaign {campaign_id!r}", field="campaign_id")
        return row

    async def check_template(request: Request, body: CampaignBody) -> str:
        """The category the campaign's messages get; a template that cannot render for it is a 422."""
        templates = store(request)
        try:
            resolved = await templates.resolve(body.template, as_of=None, recipient="")
            arms = [None] if body.ab_test is None else [arm.variant for arm in body.ab_test.arms]
            for arm in arms:
                chosen = resolved if arm is None else await templates.resolve(
                    body.template, as_of=None, recipient="", variant=arm)
                sample = await _sample(templates, chosen)
                await templates.render(chosen, templates.context(sample, {**body.context, "name": "Sample"}))
        except TemplateProblem as err:
            field = "ab_test.arms" if "variant" in str(err) else "template" if "no template" in str(err) else "context"
            raise Rejected(str(err), field=field) from err
        except RenderTimeout as err:
            raise Unavailable(f"the template's check did not finish in time: {err}", field="template") from err
        if body.category is not None and body.category != resolved.category:
            raise Rejected(f"template {body.template!r} is in category {resolved.category!r}, not {body.category!r}",
                           field="category")
        return resolved.category

    @api.post("/v1/campaigns", status_code=201, response_model=CampaignView,
              responses={200: {"model": CampaignView, "description": "the same campaign again: nothing changed"}})
    async def create(body: Annotated[CampaignBody, Body()], request: Request) -> Any:
        """A draft: add to its audience, then schedule it. 409 for the id of another campaign (or of a
        lead-nurture one); 422 for a template that cannot render with the context, or an A/B arm the
        template has no variant for."""
        if await nurture(request, body.campaign_id) is not None:
            raise Conflict(f"{body.campaign_id!r} is a lead-nurture campaign's name", field="campaign_id")
        category = await check_template(request, body)
        row = {**body.model_dump(mode="json"), "category": category,
               "filters": [body.audience_filter.model_dump(mode="json")] if body.audience_filter else [],
               "scheduled_at": body.scheduled_at}
        kept = await campaigns(request).create(row)
        if kept is not None:
            as_kept = {"campaign_id": kept["campaign_id"], "name": kept["name"], "template": kept["template"],
                       "category": kept["category"], "priority": kept["priority"],
                       "context": json.loads(kept["context"]),
                       "ab_test": json.loads(kept["ab_test"]) if kept["ab_test"] else None}
            given = body.model_dump(mode="json", exclude_unset=True,
                                    exclude={"recipients", "audience_filter", "scheduled_at"})
            if (differs := first_difference(given, as_kept)) is not None:
                raise Conflict(f"campaign {body.campaign_id} exists with another {differs}", field=differs)
        elif body.recipients:
            await campaigns(request).add_members(body.campaign_id, [(r, r.fields) for r in body.recipients])
        answer = await view(request, body.campaign_id)
        return JSONResponse(answer.model_dump(mode="json"), status_code=201 if kept is None else 200)

    @api.get("/v1/campaigns")
    async def list_campaigns(request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                             before: Annotated[Period | None, Query(description="created before this time, ISO 8601 "
                                                                            "with a zone (paging)")] = None
                             ) -> CampaignList:
        """Broadcasts, newest first, then the lead-nurture campaigns (on the first page)."""
        rows = await campaigns(request).page(limit, before)
        found = [await broadcast(request, row) for row in rows]
        if before is None:
            names = await request.app.state.pool.fetch("SELECT DISTINCT campaign FROM leads ORDER BY 1 LIMIT $1", limit)
            found += [view for row in names if (view := await nurture(request, row["campaign"])) is not None]
        return CampaignList(campaigns=found)

    @api.get("/v1/campaigns/{campaign_id}")
    async def show(campaign_id: Annotated[str, Path(max_length=200)], request: Request) -> CampaignView:
        """Status and progress: sent, skipped by reason, failed, remaining, the last minute's rate, an ETA."""
        return await view(request, campaign_id)

    @api.post("/v1/campaigns/{campaign_id}/recipients",
              openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}})
    async def add_recipients(campaign_id: Annotated[EntityId, Path()], request: Request) -> AudienceView:
        """Add to a draft's audience: JSON `{"recipients": [...]}`, or a CSV (`Content-Type: text/csv`:
        email, name, time_zone, and any other column as a template variable; bad rows are reported
        with their line and skipped). An address already in the audience keeps its first entry."""
        await owned(request, campaign_id)
        raw = await request.body()
        rejected: list[dict[str, Any]] = []
        if request.headers.get("content-type", "").split(";")[0].strip() == "text/csv":
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as err:
                raise Rejected(f"the file is not UTF-8 (byte {err.start})", field="file") from err
            people, rejected = await parse_csv(text)
        else:
            try:
                people = RecipientsBody.model_validate_json(raw).recipients
            except ValidationError as err:
                first = err.errors()[0]
                raise Rejected(first["msg"], field=".".join(str(p) for p in first["loc"])) from err
        try:
            added = await campaigns(request).add_members(campaign_id, [(r, r.fields) for r in people])
        except ValueError as err:
            raise Conflict(str(err), field="campaign_id") from err
        return AudienceView(added=added, audience=await campaigns(request).draft_size(campaign_id),
                            rejected_count=len(rejected), rejected=rejected[:FIRST_PROBLEMS])

    @api.post("/v1/campaigns/{campaign_id}/filters")
    async def add_filter(campaign_id: Annotated[EntityId, Path()], body: Annotated[AudienceFilter, Body()],
                         request: Request) -> AudienceView:
        """Add everyone a filter finds when sending starts (e.g. everyone enrolled in a course)."""
        await owned(request, campaign_id)
        before = await campaigns(request).draft_size(campaign_id)
        try:
            await campaigns(request).add_filter(campaign_id, body.model_dump(mode="json"))
        except ValueError as err:
            raise Conflict(str(err), field="campaign_id") from err
        after = await campaigns(request).draft_size(campaign_id)
        return AudienceView(added=after - before, audience=after)

    @api.post("/v1/campaigns/{campaign_id}/schedule", status_code=202)
    async def schedule(campaign_id: Annotated[EntityId, Path()], request: Request,
                       body: Annotated[ScheduleBody | None, Body()] = None) -> CampaignView:
        """Send it at `scheduled_at` (default: the campaign's own, else now). Again before it started:
        moves the time. 409 once it started or ended; 422 when its audience is empty."""
        row = await owned(request, campaign_id)
        if row["status"] not in ("draft", "scheduled") or row["frozen_at"] is not None:
            raise Conflict(f"campaign {campaign_id!r} is {row['status']}: it can no longer be scheduled", field="status")
        when = (body.scheduled_at if body and body.scheduled_at else None) or row["scheduled_at"]
        if await campaigns(request).draft_size(campaign_id) == 0:
            raise Rejected(f"campaign {campaign_id!r} has nobody in its audience: add recipients or a filter",
                           field="recipients")
        if await campaigns(request).set_status(campaign_id, "scheduled", only_from=("draft", "scheduled"),
                                               scheduled_at=when) is None:
            raise Conflict(f"campaign {campaign_id!r} changed meanwhile: ask again", field="status")
        ab = AbPlan.model_validate_json(row["ab_test"]) if row["ab_test"] else None
        await request.app.state.client.start_workflow(
            CampaignDelivery.run, CampaignRun(campaign_id=campaign_id, priority=row["priority"], scheduled_at=when,
                                              ab=ab, send_queue=settings.campaign_queue),
            id=workflow_id(campaign_id), task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            start_signal="reschedule", start_signal_args=[Reschedule(scheduled_at=when)],
            search_attributes=search.at_start("campaign", campaign_id),
            priority=TemporalPriority(priority_key=PRIORITY_KEYS[row["priority"]]),
            static_summary=f"Campaign {campaign_id}: {row['name']} ({row['template']}, {row['priority']} priority)")
        return await view(request, campaign_id)

    async def signal(request: Request, campaign_id: str, name: str, allowed: tuple[str, ...]) -> CampaignView:
        row = await owned(request, campaign_id)
        if row["status"] not in allowed:
            raise Conflict(f"campaign {campaign_id!r} is {row['status']}: it cannot {name}", field="status")
        if name == "cancel" and row["status"] == "draft":
            await campaigns(request).set_status(campaign_id, "cancelled", only_from=("draft",))
        else:
            try:
                await request.app.state.client.get_workflow_handle(workflow_id(campaign_id)).signal(name)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                raise Conflict(f"campaign {campaign_id!r} is no longer running", field="status") from err
        return await view(request, campaign_id)

    @api.post("/v1/campaigns/{campaign_id}/pause", status_code=202)
    async def pause(campaign_id: Annotated[EntityId, Path()], request: Request) -> CampaignView:
        """Stop sending (what is on its way finishes); resume carries on where it stopped."""
        return await signal(request, campaign_id, "pause", ("scheduled", "sending"))

    @api.post("/v1/campaigns/{campaign_id}/resume", status_code=202)
    async def resume(campaign_id: Annotated[EntityId, Path()], request: Request) -> CampaignView:
        return await signal(request, campaign_id, "resume", ("scheduled", "sending", "paused"))

    @api.post("/v1/campaigns/{campaign_id}/cancel", status_code=202)
    async def cancel(campaign_id: Annotated[EntityId, Path()], request: Request) -> CampaignView:
        """Nobody else is sent to; what was sent stays counted."""
        return await signal(request, campaign_id, "cancel", ("draft", "scheduled", "sending", "paused"))

    @api.get("/v1/campaigns/{campaign_id}/ab-test")
    async def ab_test(campaign_id: Annotated[EntityId, Path()], request: Request) -> AbTestView:
        row = await owned(request, campaign_id)
        if not row["ab_test"]:
            raise NotFound(f"campaign {campaign_id!r} has no A/B test", field="campaign_id")
        decision = await campaigns(request).decision(campaign_id)
        plan = AbPlan.model_validate_json(row["ab_test"])
        counts = await campaigns(request).counts(campaign_id, row["audience"])
        tested = test_size(row["audience"], plan) if row["audience"] is not None else None
        status = "decided" if decision else "waiting" if tested is not None and counts.done >= tested else "testing"
        return AbTestView(campaign_id=campaign_id, plan=plan, status=status, decision=decision)

    @api.post("/v1/campaigns/{campaign_id}/conversions")
    async def conversions(campaign_id: Annotated[EntityId, Path()], body: Annotated[ConversionsBody, Body()],
                          request: Request) -> dict[str, int]:
        """Who converted (an A/B test on `conversions` counts them); each address once."""
        await owned(request, campaign_id)
        return {"recorded": await campaigns(request).convert(campaign_id, body.emails)}

    return api
