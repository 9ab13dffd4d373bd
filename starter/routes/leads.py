"""Lead-specific routes (seed 003): CSV import and campaign stats; and the row every started
lead gets in the `leads` table."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from starter import lead_import
from starter.service import NotFound, Rejected


class RowProblemView(BaseModel):
    line: int
    field: str
    reason: str


class ImportView(BaseModel):
    campaign: str | None
    rows: int = Field(description="data rows read (blank lines not counted)")
    started: int = Field(description="new journeys started")
    already_imported: int = Field(description="rows whose lead already had a journey: nothing started")
    rejected: list[RowProblemView] = Field(description="bad rows, skipped: line number, field and reason")
    ignored_columns: list[str]


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
        try:
            parsed, report = lead_import.parse(text, campaign, first_line)
        except lead_import.BadFile as err:
            raise Rejected(str(err), field=err.field) from err
        await lead_import.start_all(request.app.state.journeys["lead"], request.app.state.lead_store, parsed, report)
        return ImportView(campaign=campaign, rows=report.rows, started=report.started,
                          already_imported=report.already_imported,
                          rejected=[RowProblemView(**vars(problem)) for problem in report.rejected],
                          ignored_columns=report.ignored_columns)

    @api.get("/v1/campaigns/{campaign}/stats")
    async def campaign_stats(campaign: Annotated[str, Path(min_length=1, max_length=100)],
                             request: Request) -> CampaignStatsView:
        """Leads started, emailed per step, converted, conversion rate, replied, unsubscribed."""
        stats = await request.app.state.lead_store.stats(campaign)
        if stats is None:
            raise NotFound(f"no leads in campaign {campaign!r}", field="campaign")
        return CampaignStatsView(**vars(stats), conversion_rate=round(stats.conversion_rate, 4))

    return api
