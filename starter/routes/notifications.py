"""In-app notifications (seed 003): what journeys deliver on the `in_app` channel, read by the app.

A recipient is the address a journey has for the person (`"channels": ["in_app"]` on a payment, a
session's attendee): `?recipient=ada@example.com`, case-insensitive. Pages are newest first with
a keyset cursor (`before`, the last id of the previous page), so a page never shifts while new
notifications arrive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from activities.store import Notifications
from starter.service import NotFound

MAX_ID = 2**63 - 1  # PostgreSQL bigint: a larger id cannot exist, and is a 422 rather than an error
RecipientAddress = Annotated[str, Query(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$",
                                        description="the recipient's address, as the journey has it")]


class NotificationView(BaseModel):
    id: int
    recipient: str
    key: str = Field(description="the message's idempotency key, as in GET /v1/messages")
    journey: str
    entity_id: str
    template: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None
    read: bool

    @classmethod
    def of(cls, row: Any) -> NotificationView:
        return cls(read=row["read_at"] is not None,
                   **{name: row[name] for name in cls.model_fields if name != "read"})


class NotificationPage(BaseModel):
    recipient: str
    notifications: list[NotificationView]
    next_before: int | None = Field(description="pass as `before` for the next (older) page; null on the last one")


class UnreadCount(BaseModel):
    recipient: str
    unread: int


class MarkedRead(BaseModel):
    recipient: str
    marked: int = Field(description="how many were unread and are read now")


def router(authed: list) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=["notifications"])

    @api.get("/v1/notifications")
    async def notifications(
        recipient: RecipientAddress, request: Request,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="the last id of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        unread_only: Annotated[bool, Query(description="true: only those not read yet")] = False,
    ) -> NotificationPage:
        """A recipient's in-app notifications, newest first, a page at a time."""
        rows = await Notifications(request.app.state.pool).page(recipient, before=before, limit=limit + 1,
                                                                unread_only=unread_only)
        page = [NotificationView.of(row) for row in rows[:limit]]
        return NotificationPage(recipient=recipient.lower(), notifications=page,
                                next_before=page[-1].id if len(rows) > limit else None)

    @api.get("/v1/notifications/unread-count")
    async def unread_count(recipient: RecipientAddress, request: Request) -> UnreadCount:
        """How many of a recipient's notifications are unread (the badge)."""
        unread = await Notifications(request.app.state.pool).unread(recipient)
        return UnreadCount(recipient=recipient.lower(), unread=unread)

    @api.post("/v1/notifications/read-all")
    async def read_all(
        recipient: RecipientAddress, request: Request,
        up_to: Annotated[int | None, Query(
            ge=1, le=MAX_ID, description="only those up to this id: the newest the person saw, so one that arrived since stays unread",
        )] = None,
    ) -> MarkedRead:
        """Mark every unread notification of a recipient read."""
        marked = await Notifications(request.app.state.pool).mark_all_read(recipient, up_to)
        return MarkedRead(recipient=recipient.lower(), marked=marked)

    @api.post("/v1/notifications/{notification_id}/read")
    async def read(notification_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request) -> NotificationView:
        """Mark one notification read; again is harmless (it keeps the time first read)."""
        row = await Notifications(request.app.state.pool).mark_read(notification_id)
        if row is None:
            raise NotFound(f"no notification {notification_id}", field="notification_id")
        return NotificationView.of(row)

    return api
