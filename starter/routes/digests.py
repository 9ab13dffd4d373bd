"""Digest recipients and their progress (seeds 001 and 004): `PUT/GET/DELETE /v1/progress/{recipient}`.

A recipient is registered with the digests they get (weekly, monthly, manager) in their time zone;
the dispatcher (workflows/digest) sends each at its local time. `progress` is the JSON object the
digest templates render, pushed here; or leave it out and set FOLLOWUPS_PROGRESS_CALLBACK_URL to
have it pulled per send.
"""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from activities.digest import DigestRecipients
from starter.service import NotFound
from workflows.core.fields import EmailAddress, EntityId, PersonName, Strict
from workflows.digest import rules
from workflows.digest.models import PROGRESS_MAX_BYTES, DigestKind, Progress

KNOWN_ZONES = frozenset(zoneinfo.available_timezones())  # read once: the tz database this process resolves


def _known_zone(value: str) -> str:
    if value not in KNOWN_ZONES:
        raise ValueError(f"unknown IANA time zone {value!r} (like Europe/Berlin, Asia/Kathmandu)")
    return value


def _distinct(value: list[DigestKind]) -> list[DigestKind]:
    if len(set(value)) != len(value):
        raise ValueError("each digest at most once")
    return sorted(value, key=list(DigestKind).index)


DigestZone = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_known_zone)]
Digests = Annotated[list[DigestKind], Field(min_length=1, max_length=len(DigestKind)), AfterValidator(_distinct)]
RecipientId = Annotated[EntityId, Path(description="your id for the person: digest keys are `digest/{recipient}/2026-W49`")]


class ProgressBody(Strict):
    """A digest recipient: who, where, which digests, and (optional) the progress to render."""

    model_config = ConfigDict(**Strict.model_config, json_schema_extra={"examples": [{
        "email": "ann@example.com", "name": "Ann", "time_zone": "Asia/Kathmandu", "digests": ["weekly", "monthly"],
        "progress": {"headline": "Your week: 4 lessons", "summary": "Great pace!",
                     "items": [{"label": "Lessons", "value": "4 of 6"}], "url": "https://lms.example.com/me"}}]})

    email: EmailAddress
    name: PersonName
    time_zone: DigestZone = Field(description="IANA zone: each digest goes out at its local time there")
    digests: Digests = Field([DigestKind.WEEKLY], description="weekly (Monday 09:00), monthly (the 1st, 09:00), "
                                                              "manager (Monday 09:00)")
    progress: Progress | None = Field(None, description=(
        f"a JSON object of at most {PROGRESS_MAX_BYTES} bytes the templates render: `headline`, `summary`, "
        "`items` [{label, value}], `team` [{name, summary}] (manager digest), `url`; null: pulled from "
        "the progress callback at each send, or the digest is skipped"))


class NextDigest(BaseModel):
    period: str = Field(description="the period's key: 2026-W50, 2027-01")
    at: datetime = Field(description="when it is due, in UTC (the dispatcher's slot may be up to 30 min later)")


class ProgressView(BaseModel):
    recipient: str
    email: str
    name: str
    time_zone: str
    digests: list[DigestKind]
    progress: dict[str, Any] | None
    updated_at: datetime
    created: bool | None = Field(None, description="a PUT: true when the recipient was new")
    next: dict[str, NextDigest] = Field(description="each digest's next period and due time")

    @classmethod
    def of(cls, row: Any, created: bool | None = None) -> ProgressView:
        now = datetime.now(timezone.utc)
        upcoming = {}
        for kind in (DigestKind(name) for name in row["digests"]):
            period, at = rules.next_due(kind.cadence, row["time_zone"], now)
            upcoming[kind.value] = NextDigest(period=period, at=at)
        return cls(recipient=row["recipient"], email=row["email"], name=row["name"], time_zone=row["time_zone"],
                   digests=row["digests"], progress=None if row["progress"] is None else json.loads(row["progress"]),
                   updated_at=row["updated_at"], created=created, next=upcoming)


def router(authed: list) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=["digests"])

    @api.put("/v1/progress/{recipient}", responses={201: {"model": ProgressView}})
    async def put_progress(recipient: RecipientId, body: ProgressBody, request: Request,
                           response: Response) -> ProgressView:
        """Register or replace a digest recipient and their progress (201 new, 200 replaced). The
        next digest renders whatever is stored when it goes out."""
        row, created = await DigestRecipients(request.app.state.pool).put(
            recipient, email=str(body.email), name=body.name, time_zone=body.time_zone,
            digests=[kind.value for kind in body.digests], progress=body.progress)
        response.status_code = 201 if created else 200
        return ProgressView.of(row, created)

    @api.get("/v1/progress/{recipient}")
    async def get_progress(recipient: RecipientId, request: Request) -> ProgressView:
        """A recipient, their stored progress and when each of their digests is next due."""
        row = await DigestRecipients(request.app.state.pool).get(recipient)
        if row is None:
            raise NotFound(f"no digest recipient {recipient!r}", field="recipient")
        return ProgressView.of(row)

    @api.delete("/v1/progress/{recipient}", status_code=204)
    async def delete_progress(recipient: RecipientId, request: Request) -> Response:
        """No more digests for this recipient (the messages already sent stay in the outbox)."""
        if not await DigestRecipients(request.app.state.pool).delete(recipient):
            raise NotFound(f"no digest recipient {recipient!r}", field="recipient")
        return Response(status_code=204)

    return api
