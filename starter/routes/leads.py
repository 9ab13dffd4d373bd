"""Lead-specific routes (seed 003): CSV import and campaign stats; and the row every started
lead gets in the `leads` table."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from activities.campaigns import Campaigns
from activities.store import ImportRecord
from starter import lead_import
from starter.service import NotFound, Rejected


class RowProblemView(BaseModel):
    line: int
    field: str
    reason: str


FIRST_PROBLEMS = 100  # rejected rows an import's answer lists; the rest are paged from its import_id
ImportId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="as an import's answer gave it")]


class ImportView(BaseModel):
    import_id: str = Field(description="GET /v1/leads/imports/{import_id}/problems pages every rejected row")
    campaign: str | None
    rows: int = Field(description="data rows read (blank lines not counted)")
    started: int = Field(description="new journeys started")
    already_imported: int = Field(description="rows whose lead already had a journey: nothing started")
    rejected_count: int = Field(description="bad rows, skipped")
    rejected: list[RowProblemView] = Field(
        description=f"the first {FIRST_PROBLEMS} bad rows: line number, field and reason")
    ignored_columns: list[str]


class ImportRecordView(BaseModel):
    import_id: str
    campaign: str | None
    rows: int
    started: int
    already_imported: int
    rejected_count: int
    created_at: datetime


class ProblemsPage(BaseModel):
    problems: list[RowProblemView]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last")


class CampaignStatsView(BaseModel):
    campaign: str
    started: int
    emailed_per_step: dict[str, int]
    converted: int
    replied: int
    unsubscribed: int
    conversion_rate: float


async def record_lead(request: Request, lead: Any) -> None:
    """After `POST /v1/leads`: the lead counts in its campaign's stats."""
    await request.app.state.lead_store.add_many([(lead.lead_id, lead.campaign, str(lead.contact.email))])


async def recorded_import(request: Request, import_id: str) -> ImportRecord:
    record = await request.app.state.lead_imports.get(import_id)
    if record is None:
        raise NotFound(f"no import {import_id} (imports are kept 30 days)", field="import_id")
    return record


def router(authed: list) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=["leads"])

    @api.post("/v1/leads/import",
              openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
    async def import_leads(
        request: Request,
        campaign: Annotated[str | None, Query(min_length=1, max_length=100,
                                              description="for every row (else a campaign column)")] = None,
        first_line: Annotated[int, Query(ge=1, description="file line of the header, for chunked uploads")] = 1,
    ) -> ImportView:
        """A CSV of leads (`Content-Type: text/csv`): one journey per good row; bad rows are
        reported with their line and reason and skipped; re-importing starts nothing twice."""
        raw = await request.body()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise Rejected(f"the file is not UTF-8 (byte {err.start})", field="file") from err
        try:  # a large file takes seconds to validate: the API answers other requests meanwhile
            parsed, report = await lead_import.parse_cooperatively(text, campaign, first_line)
        except lead_import.BadFile as err:
            raise Rejected(str(err), field=err.field) from err
        del raw, text
        await lead_import.start_all(request.app.state.journeys["lead"], request.app.state.lead_store, parsed, report)
        import_id = uuid.uuid4().hex
        await request.app.state.lead_imports.record(
            import_id, campaign, report.rows, report.started, report.already_imported, report.rejected)
        return ImportView(import_id=import_id, campaign=campaign, rows=report.rows, started=report.started,
                          already_imported=report.already_imported, rejected_count=len(report.rejected),
                          rejected=[RowProblemView(line=line, field=field, reason=reason)
                                    for line, field, reason in report.rejected[:FIRST_PROBLEMS]],
                          ignored_columns=report.ignored_columns)

    @api.get("/v1/leads/imports/{import_id}")
    async def lead_import_record(import_id: ImportId, request: Request) -> ImportRecordView:
        """An import's counts, kept 30 days."""
        record = await recorded_import(request, import_id)
        return ImportRecordView(**{**vars(record), "rejected_count": record.rejected})

    @api.get("/v1/leads/imports/{import_id}/problems")
    async def lead_import_problems(
        import_id: ImportId, request: Request,
        after: Annotated[int, Query(ge=0, le=2**31 - 1, description="next_after of the previous page")] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> ProblemsPage:
        """Every rejected row of an import, in file order, a page at a time."""
        await recorded_import(request, import_id)
        rows = await request.app.state.lead_imports.problems(import_id, after, limit)
        return ProblemsPage(problems=[RowProblemView(line=r["line"], field=r["field"], reason=r["reason"]) for r in rows],
                            next_after=rows[-1]["n"] if len(rows) == limit else None)

    @api.get("/v1/campaigns/{campaign}/stats")
    async def campaign_stats(campaign: Annotated[str, Path(min_length=1, max_length=100)],
                             request: Request) -> CampaignStatsView:
        """Leads started, emailed per step, converted, conversion rate, replied, unsubscribed. A
        broadcast campaign answers in the same shape: its audience, one step (`broadcast`), the
        conversions reported for it."""
        stats = await request.app.state.lead_store.stats(campaign) or \
            await Campaigns(request.app.state.pool).stats(campaign)
        if stats is None:
            raise NotFound(f"no campaign {campaign!r}", field="campaign")
        return CampaignStatsView(**vars(stats), conversion_rate=round(stats.conversion_rate, 4))

    return api
