"""Message analytics (issue 10, part 5): what became of the messages of everything, of one template
(per version and A/B variant), of one journey kind, or of one lead campaign, created in a period.

Counts are of messages: `opened_human` is how many messages a person opened, however often. Opens
by image proxies and Apple Mail Privacy Protection and clicks by link scanners are `…_machine`,
apart. Rates are shares of the messages sent; `time_to_open` is in seconds from sending to a
person's first open.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, BeforeValidator, Field

from activities.analytics import Analytics, Figures, Scope, as_dict
from starter.service import NotFound, Rejected, template_names
from workflows.core.fields import Moment
from workflows.registry import KINDS

# Journeys with messages that are not registry kinds: the digest dispatcher and announcements.
OTHER_JOURNEYS = frozenset({"digest", "announcement"})
_ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


def _written_out(value: Any) -> Any:
    """A query's time is written out (`2026-12-01T09:00:00+01:00`): `1700000000` read as a Unix time
    would be a guess."""
    if isinstance(value, str) and not _ISO_START.match(value):
        raise ValueError("must be an ISO 8601 date-time with a UTC offset, like 2026-12-01T09:00:00+01:00")
    return value


Period = Annotated[Moment, BeforeValidator(_written_out)]
Since = Annotated[Period | None, Query(description="only messages created at or after this time (ISO 8601 with a zone)")]
Until = Annotated[Period | None, Query(description="only messages created before this time (ISO 8601 with a zone)")]
Name = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:-]*$")]


class TimeToOpenView(BaseModel):
    opens: int = Field(description="messages a person opened whose sending time is known")
    p50: float | None = Field(description="seconds from sending to a person's first open; null without opens")
    p90: float | None
    p99: float | None


class FiguresView(BaseModel):
    template_version: int | None = Field(description="in a template's breakdown: the version (null: the file default)")
    variant: str | None = Field(description="in a template's breakdown: the A/B variant (null: none)")
    messages: int = Field(description="every message of the scope in the period")
    pending: int = Field(description="queued or being sent")
    sent: int
    dry_run: int
    failed: int
    skipped: dict[str, int] = Field(description="by kind of reason: recipient suppressed, too late, …")
    delivered: int
    opened_human: int
    opened_machine: int = Field(description="opened by an image proxy or Apple Mail Privacy Protection")
    clicked_human: int
    clicked_machine: int = Field(description="clicked by a link scanner")
    bounced: int = Field(description="hard bounces")
    soft_bounced: int
    complained: int
    unsubscribed: int
    rates: dict[str, float] = Field(description="delivered … unsubscribed as shares of `sent` (0 when none was sent)")
    time_to_open: TimeToOpenView

    @classmethod
    def of(cls, figures: Figures) -> FiguresView:
        return cls.model_validate(as_dict(figures))


class AnalyticsView(BaseModel):
    scope: Scope
    name: str | None = Field(description="the template, journey kind or campaign; null for overall")
    since: datetime | None
    until: datetime | None
    totals: FiguresView
    breakdown: list[FiguresView] = Field(description="a template's figures per (template_version, variant); "
                                                     "empty for the other scopes")


def _period(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since > until:
        raise Rejected("since is after until: the period is empty the wrong way round", field="since")


def router(authed: list) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=["analytics"])
    named = {"template": template_names(), "journey": frozenset(KINDS) | OTHER_JOURNEYS}  # read once

    async def report(request: Request, scope: Scope, name: str | None, since: datetime | None,
                     until: datetime | None) -> AnalyticsView:
        _period(since, until)
        analytics = Analytics(request.app.state.pool)
        if name is not None:
            if not await analytics.known(scope, name, named.get(scope, frozenset())):
                raise NotFound(f"no {scope} {name!r}", field={"template": "name", "journey": "kind"}.get(scope, scope))
        found = await analytics.report(scope, name, since=since, until=until)
        return AnalyticsView(scope=scope, name=name, since=since, until=until, totals=FiguresView.of(found.totals),
                             breakdown=[FiguresView.of(figures) for figures in found.breakdown])

    @api.get("/v1/analytics/overall")
    async def overall(request: Request, since: Since = None, until: Until = None) -> AnalyticsView:
        """Every message of every journey."""
        return await report(request, "overall", None, since, until)

    @api.get("/v1/analytics/templates/{name}")
    async def template(name: Name, request: Request, since: Since = None, until: Until = None) -> AnalyticsView:
        """One template's messages, and per version and A/B variant in `breakdown`."""
        return await report(request, "template", name, since, until)

    @api.get("/v1/analytics/journeys/{kind}")
    async def journey(kind: Name, request: Request, since: Since = None, until: Until = None) -> AnalyticsView:
        """One journey kind's messages (interview, payment, a declared journey's name, digest, …)."""
        return await report(request, "journey", kind, since, until)

    @api.get("/v1/analytics/campaigns/{campaign}")
    async def campaign(campaign: Name, request: Request, since: Since = None, until: Until = None) -> AnalyticsView:
        """The messages of one lead campaign's leads (their parent copies and resends too)."""
        return await report(request, "campaign", campaign, since, until)

    return api
