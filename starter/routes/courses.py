"""`POST /v1/courses/{course}/announcements`: a new-content notice (seed 001) to a list of
recipients or to everyone enrolled in the course, once per announcement id, and its counts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.announcements import Announcements, entity_id
from settings import Settings
from starter.service import Conflict, NotFound, Rejected, first_difference
from workflows.announcement import AnnouncementDelivery, Delivery, workflow_id
from workflows.contracts import Recipient
from workflows.core import search
from workflows.core.fields import EntityId, ShortText, Strict, Title, WebUrl
from workflows.declared.definition import JourneyName

AUDIENCE_LIMIT = 10_000  # recipients given in one request; the enrolled list has no limit


class AnnouncementBody(Strict):
    announcement_id: EntityId
    title: Title
    url: WebUrl
    summary: ShortText | None = None
    recipients: list[Recipient] | None = Field(None, min_length=1, max_length=AUDIENCE_LIMIT,
                                               description="default: everyone enrolled in the course")
    from_journey: JourneyName = Field("enrollment", description="without `recipients`: the course's enrolled "
                                      "list is everyone on this declared journey with `group` = the course, "
                                      "not ended by an exit or cancel event")


class AnnouncementView(BaseModel):
    course: str
    announcement_id: str
    workflow_id: str
    created: bool | None = Field(None, description="a post: true when this call created the announcement")
    audience: int
    sent: int
    failed: int
    skipped: dict[str, int] = Field(description="by reason: recipient suppressed, …")
    remaining: int
    done: bool


def router(authed: list, settings: Settings) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=["courses"])

    async def view(request: Request, course: str, announcement_id: str, created: bool | None = None) -> AnnouncementView:
        counts = await Announcements(request.app.state.pool).counts(course, announcement_id)
        if counts is None:
            raise NotFound(f"no announcement {announcement_id!r} in {course!r}", field="announcement_id")
        return AnnouncementView(course=course, announcement_id=announcement_id, created=created,
                                workflow_id=workflow_id(course, announcement_id), audience=counts.audience,
                                sent=counts.sent, failed=counts.failed, skipped=counts.skipped,
                                remaining=counts.remaining, done=counts.remaining == 0)

    @api.post("/v1/courses/{course}/announcements", status_code=202, response_model=AnnouncementView,
              responses={200: {"model": AnnouncementView, "description": "this announcement id was posted before "
                                                                         "with the same body: nothing more is sent"}})
    async def announce(course: Annotated[EntityId, Path()], body: Annotated[AnnouncementBody, Body()],
                       request: Request) -> Any:
        """Notify everyone once: 202 while it goes out (GET it for the counts), 200 for the same
        announcement again, 409 for the same id with another body, 422 when nobody is in the audience."""
        given = body.model_dump(mode="json", exclude_unset=True)
        kept, size = await Announcements(request.app.state.pool).create(
            course, body.announcement_id, body.model_dump(mode="json"), body.recipients, body.from_journey)
        if kept is not None and (differs := first_difference(given, kept)) is not None:
            raise Conflict(f"announcement {body.announcement_id} was posted with another {differs}", field=differs)
        if size == 0:
            raise Rejected(f"nobody is enrolled in {course!r} (no running {body.from_journey} journey with group "
                           f"{course!r}): give `recipients`", field="recipients")
        try:
            await request.app.state.client.start_workflow(
                AnnouncementDelivery.run, Delivery(course=course, announcement_id=body.announcement_id),
                id=workflow_id(course, body.announcement_id), task_queue=settings.temporal_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=search.at_start("announcement", entity_id(course, body.announcement_id)),
                static_summary=f"Announcement {body.announcement_id} in {course}: {body.title} ({size} recipients)")
        except WorkflowAlreadyStartedError:
            pass  # it ran to its end before: nothing more to send
        answer = await view(request, course, body.announcement_id, created=kept is None)
        return JSONResponse(answer.model_dump(mode="json"), status_code=202 if kept is None else 200)

    @api.get("/v1/courses/{course}/announcements/{announcement_id}")
    async def announcement(course: Annotated[EntityId, Path()], announcement_id: Annotated[EntityId, Path()],
                           request: Request) -> AnnouncementView:
        """Its counts (from the outbox): sent, skipped by reason, failed, remaining."""
        return await view(request, course, announcement_id)

    return api
