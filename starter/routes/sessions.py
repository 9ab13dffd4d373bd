"""Session-specific reads: the roster, which lives in PostgreSQL rather than in the journey's
state (a session may have thousands of attendees)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from activities.store import Roster
from workflows.core.fields import EntityId
from workflows.session.models import Attendee


class RosterPage(BaseModel):
    session_id: str
    attendees: list[Attendee]
    next_after: str | None = Field(description="pass as `after` for the next page; null on the last one")


def router(authed: list) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=["sessions"])

    @api.get("/v1/sessions/{session_id}/attendees")
    async def roster(
        session_id: Annotated[EntityId, Path()], request: Request,
        after: Annotated[EntityId | None, Query(description="the last attendee_id of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> RosterPage:
        """The attendees on the roster now, in attendee_id order, a page at a time (journeys begun
        before the roster table keep theirs in their state: `GET /v1/sessions/{id}`)."""
        rows = await Roster(request.app.state.pool).page(session_id, after, limit + 1)
        page = [Attendee.model_validate(row) for row in rows[:limit]]
        return RosterPage(session_id=session_id, attendees=page,
                          next_after=page[-1].attendee_id if len(rows) > limit else None)

    return api
