"""The Python client for backends: the HTTP API's operations, typed with the same pydantic models.
One `JourneyClient` per kind in the registry, as an attribute named like its route:

    from starter.client import FollowupsClient
    with FollowupsClient("http://localhost:8000", api_key="dev-key") as followups:
        followups.interviews.start(Invitation(...))
        followups.interviews.confirm("42", scheduled_at=datetime(2026, 12, 1, 9, tzinfo=timezone.utc))
        followups.payments.paid("inv-7", reference="ch_123", event_id="stripe-evt-1")
        followups.interviews.get("42").state.next_step
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from starter.routes.campaigns import (
    AbTestView, AudienceFilter, AudienceView, CampaignBody, CampaignList, CampaignRecipient, CampaignView,
)
from starter.routes.courses import AnnouncementBody, AnnouncementView
from starter.routes.declared import DeclaredView, DefinitionHistory, DefinitionList, DefinitionView
from starter.routes.digests import ProgressView
from starter.routes.leads import CampaignStatsView, ImportView, ProblemsPage
from starter.routes.notifications import MarkedRead, NotificationPage, NotificationView, UnreadCount
from starter.routes.analytics import AnalyticsView
from starter.routes.operations import BulkView, ResendView
from starter.routes.preferences import CategoryBody, CategoryView, PreferencesBody, PreferencesView
from starter.routes.recipients import ErasureView, ExportView
from starter.routes.templates import PreviewBody, PreviewView, PublicationView, VersionBody, VersionView
from starter.routes.webhooks import CreatedEndpoint, DeliveryPage, DeliveryView, EndpointBody, EndpointView, EventTypeView
from starter.views import VIEWS, JourneyView, MessageDetailView, MessageView
from workflows.declared.models import DeclaredStart
from workflows.registry import KINDS, JourneyKind


class FollowupsError(Exception):
    """The API said no: `status` is the HTTP status, `error`/`detail`/`field` its JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.error = body.get("error", "HTTPError")
        self.detail = body.get("detail")
        self.field = body.get("field")
        super().__init__(f"{status} {self.error}: {self.detail}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


class JourneyClient:
    """Start, steer and read the journeys of one kind: `start(model)`, `get(id)`, and one method per
    event (`confirm(id, scheduled_at=…)`, `cancel(id, reason=…)`…), or `send(id, event, **fields)`."""

    def __init__(self, owner: FollowupsClient, kind: JourneyKind) -> None:
        self.owner, self.kind, self.view = owner, kind, VIEWS[kind.name]
        self.routes = {route.kind: route for route in kind.events}

    def start(self, start: BaseModel | dict[str, Any]) -> JourneyView:
        body = start if isinstance(start, dict) else _jsonable(start)
        return self.view.model_validate(self.owner._call("POST", f"/v1/{self.kind.plural}", json=body))

    def get(self, entity_id: str) -> JourneyView:
        return self.view.model_validate(self.owner._call("GET", f"/v1/{self.kind.plural}/{entity_id}"))

    def send(self, entity_id: str, event: str, **fields: Any) -> JourneyView:
        route = self.routes.get(event)
        if route is None:
            raise ValueError(f"{self.kind.name} has no event {event!r}: one of {', '.join(self.routes)}")
        path = route.path.format(**{name: fields.pop(name) for name in route.path_params})
        body = {name: _jsonable(value) for name, value in fields.items() if value is not None}
        return self.view.model_validate(self.owner._call(
            route.method, f"/v1/{self.kind.plural}/{entity_id}/{path}", json=body or None))

    def __getattr__(self, event: str) -> Any:
        if event.startswith("_") or event not in self.__dict__.get("routes", {}):
            raise AttributeError(event)
        return lambda entity_id, **fields: self.send(entity_id, event, **fields)


class FollowupsClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport,
                                 headers={"Authorization": f"Bearer {api_key}"})
        self.journeys = {name: JourneyClient(self, kind) for name, kind in KINDS.items()}
        for kind in KINDS.values():
            setattr(self, kind.plural, self.journeys[kind.name])

    def __enter__(self) -> FollowupsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text}
            raise FollowupsError(response.status_code, body)
        return response.json()

    def import_leads(self, csv_text: str | bytes, campaign: str | None = None, first_line: int = 1) -> ImportView:
        """One CSV upload; `first_line` is the file line of its header when a file is sent in chunks."""
        params: dict[str, Any] = {"first_line": first_line}
        if campaign:
            params["campaign"] = campaign
        content = csv_text.encode() if isinstance(csv_text, str) else csv_text
        return ImportView.model_validate(self._call("POST", "/v1/leads/import", params=params, content=content,
                                                    headers={"Content-Type": "text/csv"}))

    def import_problems(self, import_id: str, after: int = 0, limit: int = 1000) -> ProblemsPage:
        """One page of an import's rejected rows; pass `next_after` back for the next."""
        return ProblemsPage.model_validate(self._call("GET", f"/v1/leads/imports/{import_id}/problems",
                                                      params={"after": after, "limit": limit}))

    def campaign_stats(self, campaign: str) -> CampaignStatsView:
        return CampaignStatsView.model_validate(self._call("GET", f"/v1/campaigns/{campaign}/stats"))

    def bulk_cancel(self, *, journey: str | None = None, group: str | None = None, recipient: str | None = None,
                    stage: str | None = None, reason: str | None = None, request_id: str | None = None) -> BulkView:
        body = dict(journey=journey, group=group, recipient=recipient, stage=stage, reason=reason,
                    request_id=request_id)
        return BulkView.model_validate(self._call("POST", "/v1/bulk/cancel",
                                                  json={k: v for k, v in body.items() if v is not None}))

    def bulk_signal(self, event: dict[str, Any], *, journey: str, group: str | None = None,
                    recipient: str | None = None, stage: str | None = None,
                    request_id: str | None = None) -> BulkView:
        body = dict(journey=journey, group=group, recipient=recipient, stage=stage, request_id=request_id)
        return BulkView.model_validate(self._call("POST", "/v1/bulk/signal", json={
            "event": event, **{k: v for k, v in body.items() if v is not None}}))

    def messages(self, journey: str | None = None, status: str | None = None, entity_id: str | None = None,
                 limit: int = 100) -> list[MessageView]:
        params = {k: v for k, v in dict(journey=journey, status=status, entity_id=entity_id, limit=limit).items()
                  if v is not None}
        return [MessageView.model_validate(m) for m in self._call("GET", "/v1/messages", params=params)]

    def resend(self, key: str) -> ResendView:
        return ResendView.model_validate(self._call("POST", f"/v1/messages/{key}/resend"))

    def put_progress(self, recipient: str, *, email: str, name: str, time_zone: str,
                     digests: list[str] | None = None, progress: dict[str, Any] | None = None) -> ProgressView:
        """Register or replace a digest recipient (weekly, monthly, manager digests) and their progress."""
        body = {"email": email, "name": name, "time_zone": time_zone, "progress": progress,
                **({"digests": digests} if digests is not None else {})}
        return ProgressView.model_validate(self._call("PUT", f"/v1/progress/{recipient}", json=body))

    def get_progress(self, recipient: str) -> ProgressView:
        return ProgressView.model_validate(self._call("GET", f"/v1/progress/{recipient}"))

    def delete_progress(self, recipient: str) -> None:
        """No more digests for `recipient`."""
        response = self.http.request("DELETE", f"/v1/progress/{recipient}")
        if response.status_code >= 400:  # 204 has no body for _call to read
            raise FollowupsError(response.status_code, response.json())

    # --- announcements ---------------------------------------------------------------------------

    def announce(self, course: str, announcement: AnnouncementBody | dict[str, Any]) -> AnnouncementView:
        """A new-content notice to the course's enrolled list (or `recipients`), once per announcement id."""
        body = announcement if isinstance(announcement, dict) else _jsonable(announcement)
        return AnnouncementView.model_validate(self._call("POST", f"/v1/courses/{course}/announcements", json=body))

    def announcement(self, course: str, announcement_id: str) -> AnnouncementView:
        return AnnouncementView.model_validate(self._call("GET", f"/v1/courses/{course}/announcements/{announcement_id}"))

    # --- declared journeys ----------------------------------------------------------------------

    def save_definition(self, name: str, definition: dict[str, Any] | str) -> DefinitionView:
        """Save a definition (a dict, or YAML text) as a new version; the same body again is not one."""
        if isinstance(definition, str):
            answer = self._call("PUT", f"/v1/journey-definitions/{name}", content=definition.encode(),
                                headers={"Content-Type": "application/yaml"})
        else:
            answer = self._call("PUT", f"/v1/journey-definitions/{name}", json=definition)
        return DefinitionView.model_validate(answer)

    def definition(self, name: str, version: int | None = None) -> DefinitionView:
        if version is not None:
            return DefinitionView.model_validate(self._call("GET", f"/v1/journey-definitions/{name}/versions/{version}"))
        return DefinitionHistory.model_validate(self._call("GET", f"/v1/journey-definitions/{name}")).latest

    def definition_versions(self, name: str) -> DefinitionHistory:
        return DefinitionHistory.model_validate(self._call("GET", f"/v1/journey-definitions/{name}"))

    def definitions(self) -> list[DefinitionView]:
        return DefinitionList.model_validate(self._call("GET", "/v1/journey-definitions")).definitions

    def start_journey(self, name: str, start: DeclaredStart | dict[str, Any]) -> DeclaredView:
        """Start a journey of the definition `name` (at its latest version, which it keeps)."""
        body = start if isinstance(start, dict) else _jsonable(start)
        return DeclaredView.model_validate(self._call("POST", f"/v1/journeys/{name}", json=body))

    def journey(self, name: str, entity_id: str) -> DeclaredView:
        return DeclaredView.model_validate(self._call("GET", f"/v1/journeys/{name}/{entity_id}"))

    def journey_event(self, name: str, entity_id: str, event: str, *, at: datetime | None = None,
                      member_id: str | None = None, event_id: str | None = None) -> DeclaredView:
        body = {k: _jsonable(v) for k, v in dict(at=at, member_id=member_id, event_id=event_id).items() if v is not None}
        return DeclaredView.model_validate(self._call("POST", f"/v1/journeys/{name}/{entity_id}/events/{event}",
                                                      json=body or None))

    def notifications(self, recipient: str, *, limit: int = 50, before: int | None = None,
                      unread_only: bool = False) -> NotificationPage:
        """One page of a recipient's in-app notifications, newest first; pass `next_before` back for the next."""
        params: dict[str, Any] = {"recipient": recipient, "limit": limit, "unread_only": unread_only}
        if before is not None:
            params["before"] = before
        return NotificationPage.model_validate(self._call("GET", "/v1/notifications", params=params))

    def unread_count(self, recipient: str) -> int:
        return UnreadCount.model_validate(self._call("GET", "/v1/notifications/unread-count",
                                                     params={"recipient": recipient})).unread

    def mark_read(self, notification_id: int) -> NotificationView:
        return NotificationView.model_validate(self._call("POST", f"/v1/notifications/{notification_id}/read"))

    def mark_all_read(self, recipient: str, up_to: int | None = None) -> MarkedRead:
        params: dict[str, Any] = {"recipient": recipient, **({"up_to": up_to} if up_to is not None else {})}
        return MarkedRead.model_validate(self._call("POST", "/v1/notifications/read-all", params=params))

    # --- the messaging platform ----------------------------------------------------------------

    def preferences(self, email: str) -> PreferencesView:
        return PreferencesView.model_validate(self._call("GET", f"/v1/preferences/{quote(email)}"))

    def set_preferences(self, email: str, preferences: PreferencesBody | dict[str, Any]) -> PreferencesView:
        """Replace what is stored for `email` (categories or channels left out are subscribed again)."""
        body = PreferencesBody.model_validate(preferences).model_dump(mode="json", exclude_unset=True)
        return PreferencesView.model_validate(self._call("PUT", f"/v1/preferences/{quote(email)}", json=body))

    def put_category(self, name: str, category: CategoryBody | dict[str, Any]) -> CategoryView:
        body = CategoryBody.model_validate(category).model_dump(mode="json", exclude_unset=True)
        return CategoryView.model_validate(self._call("PUT", f"/v1/categories/{name}", json=body))

    def save_template(self, name: str, version: VersionBody | dict[str, Any]) -> VersionView:
        """A new immutable version of `name` (checked in the sandbox first); publish it to use it."""
        body = VersionBody.model_validate(version).model_dump(mode="json", exclude_unset=True)
        return VersionView.model_validate(self._call("POST", f"/v1/templates/{name}/versions", json=body))

    def publish_template(self, name: str, version: int) -> PublicationView:
        return PublicationView.model_validate(self._call("POST", f"/v1/templates/{name}/versions/{version}/publish"))

    def preview_template(self, name: str, preview: PreviewBody | dict[str, Any]) -> PreviewView:
        body = PreviewBody.model_validate(preview).model_dump(mode="json", exclude_unset=True)
        return PreviewView.model_validate(self._call("POST", f"/v1/templates/{name}/preview", json=body))

    def message(self, key: str) -> MessageDetailView:
        """One message with every event of its life (opens and clicks, machine ones flagged, bounces…)."""
        return MessageDetailView.model_validate(self._call("GET", f"/v1/messages/{quote(key, safe='/')}"))

    def analytics(self, scope: str = "overall", name: str | None = None, *, since: datetime | None = None,
                  until: datetime | None = None) -> AnalyticsView:
        """`scope`: overall, templates, journeys or campaigns (then `name` says which)."""
        path = "/v1/analytics/overall" if scope == "overall" else f"/v1/analytics/{scope}/{quote(name or '', safe='')}"
        params = {key: value.isoformat() for key, value in (("since", since), ("until", until)) if value is not None}
        return AnalyticsView.model_validate(self._call("GET", path, params=params))

    def export_recipient(self, email: str) -> ExportView:
        return ExportView.model_validate(self._call("GET", f"/v1/recipients/{quote(email)}/export"))

    def erase_recipient(self, email: str) -> ErasureView:
        """GDPR erasure: their journeys end, their rows go, only a hash stays so they are never mailed."""
        return ErasureView.model_validate(self._call("DELETE", f"/v1/recipients/{quote(email)}"))

    # --- campaigns ---------------------------------------------------------------------------------

    def create_campaign(self, campaign: CampaignBody | dict[str, Any]) -> CampaignView:
        body = campaign if isinstance(campaign, dict) else _jsonable(campaign)
        return CampaignView.model_validate(self._call("POST", "/v1/campaigns", json=body))

    def campaign(self, campaign_id: str) -> CampaignView:
        return CampaignView.model_validate(self._call("GET", f"/v1/campaigns/{quote(campaign_id)}"))

    def campaigns(self, limit: int = 50, before: datetime | None = None) -> list[CampaignView]:
        params: dict[str, Any] = {"limit": limit, **({"before": before.isoformat()} if before else {})}
        return CampaignList.model_validate(self._call("GET", "/v1/campaigns", params=params)).campaigns

    def add_campaign_recipients(self, campaign_id: str,
                                recipients: list[CampaignRecipient | dict[str, Any]] | str) -> AudienceView:
        """A list of recipients, or CSV text (email, name, time_zone, any other column a variable)."""
        path = f"/v1/campaigns/{quote(campaign_id)}/recipients"
        if isinstance(recipients, str):
            answer = self._call("POST", path, content=recipients.encode(), headers={"Content-Type": "text/csv"})
        else:
            answer = self._call("POST", path, json={"recipients": [_jsonable(r) for r in recipients]})
        return AudienceView.model_validate(answer)

    def add_campaign_filter(self, campaign_id: str, audience_filter: AudienceFilter | dict[str, Any]) -> AudienceView:
        body = audience_filter if isinstance(audience_filter, dict) else _jsonable(audience_filter)
        return AudienceView.model_validate(self._call("POST", f"/v1/campaigns/{quote(campaign_id)}/filters", json=body))

    def schedule_campaign(self, campaign_id: str, at: datetime | None = None) -> CampaignView:
        body = {"scheduled_at": at.isoformat()} if at else None
        return CampaignView.model_validate(self._call("POST", f"/v1/campaigns/{quote(campaign_id)}/schedule", json=body))

    def pause_campaign(self, campaign_id: str) -> CampaignView:
        return CampaignView.model_validate(self._call("POST", f"/v1/campaigns/{quote(campaign_id)}/pause"))

    def resume_campaign(self, campaign_id: str) -> CampaignView:
        return CampaignView.model_validate(self._call("POST", f"/v1/campaigns/{quote(campaign_id)}/resume"))

    def cancel_campaign(self, campaign_id: str) -> CampaignView:
        return CampaignView.model_validate(self._call("POST", f"/v1/campaigns/{quote(campaign_id)}/cancel"))

    def campaign_ab_test(self, campaign_id: str) -> AbTestView:
        return AbTestView.model_validate(self._call("GET", f"/v1/campaigns/{quote(campaign_id)}/ab-test"))

    def campaign_conversions(self, campaign_id: str, emails: list[str]) -> int:
        return self._call("POST", f"/v1/campaigns/{quote(campaign_id)}/conversions", json={"emails": emails})["recorded"]

    # --- event webhooks ----------------------------------------------------------------------------

    def webhook_event_types(self) -> list[EventTypeView]:
        return [EventTypeView.model_validate(item) for item in self._call("GET", "/v1/webhook-event-types")]

    def create_webhook_endpoint(self, endpoint: EndpointBody | dict[str, Any]) -> CreatedEndpoint:
        body = endpoint if isinstance(endpoint, dict) else _jsonable(endpoint)
        return CreatedEndpoint.model_validate(self._call("POST", "/v1/webhook-endpoints", json=body))

    def webhook_endpoints(self) -> list[EndpointView]:
        return [EndpointView.model_validate(item) for item in self._call("GET", "/v1/webhook-endpoints")]

    def webhook_endpoint(self, endpoint_id: str) -> EndpointView:
        return EndpointView.model_validate(self._call("GET", f"/v1/webhook-endpoints/{quote(endpoint_id)}"))

    def webhook_endpoint_secret(self, endpoint_id: str) -> str:
        return self._call("GET", f"/v1/webhook-endpoints/{quote(endpoint_id)}/secret")["secret"]

    def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        """Stop delivering to it (pending deliveries are cancelled)."""
        response = self.http.request("DELETE", f"/v1/webhook-endpoints/{quote(endpoint_id)}")
        if response.status_code >= 400:  # 204 has no body for _call to read
            raise FollowupsError(response.status_code, response.json())

    def webhook_deliveries(self, endpoint_id: str, status: str | None = None, after: int = 0,
                           limit: int = 100) -> DeliveryPage:
        params: dict[str, Any] = {"after": after, "limit": limit, **({"status": status} if status else {})}
        return DeliveryPage.model_validate(self._call("GET", f"/v1/webhook-endpoints/{quote(endpoint_id)}/deliveries",
                                                      params=params))

    def retry_webhook_delivery(self, endpoint_id: str, delivery_id: int) -> DeliveryView:
        return DeliveryView.model_validate(self._call(
            "POST", f"/v1/webhook-endpoints/{quote(endpoint_id)}/deliveries/{delivery_id}/retry"))
