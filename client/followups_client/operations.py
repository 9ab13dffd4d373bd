"""Every operation of the API the client calls, once: the routes (checked against the OpenAPI
document by tests/unit/test_light_client.py) and the methods that make their calls, shared by
`FollowupsClient` and `AsyncFollowupsClient`. The methods are those of `starter.client`, same names
and parameters, plus what it lacks: `health`, `ready`, `import_record`, `roster`, `categories`,
`templates`, `template` and the event webhooks' endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic

from pydantic import BaseModel

from followups_client import models
from followups_client.routes import JSON, Call, Kind, Route, V, operation

CSV, YAML = "text/csv", "application/yaml"

HEALTH = Route("GET", "/healthz", dict[str, str])
READY = Route("GET", "/readyz", models.Readiness)

# leads and their imports
IMPORT_LEADS = Route("POST", "/v1/leads/import", models.ImportView, query=("campaign", "first_line"), body=(CSV,))
IMPORT_RECORD = Route("GET", "/v1/leads/imports/{import_id}", models.ImportRecordView)
IMPORT_PROBLEMS = Route("GET", "/v1/leads/imports/{import_id}/problems", models.ProblemsPage, query=("after", "limit"))
CAMPAIGN_STATS = Route("GET", "/v1/campaigns/{campaign}/stats", models.CampaignStatsView)
ROSTER = Route("GET", "/v1/sessions/{session_id}/attendees", models.RosterPage, query=("after", "limit"))

# bulk actions and messages
BULK_CANCEL = Route("POST", "/v1/bulk/cancel", models.BulkView, body=(JSON,))
BULK_SIGNAL = Route("POST", "/v1/bulk/signal", models.BulkView, body=(JSON,))
MESSAGES = Route("GET", "/v1/messages", list[models.MessageView], query=("journey", "status", "entity_id", "limit"))
MESSAGE = Route("GET", "/v1/messages/{key}", models.MessageDetailView)
RESEND = Route("POST", "/v1/messages/{key}/resend", models.ResendView)

# digests' recipients
PUT_PROGRESS = Route("PUT", "/v1/progress/{recipient}", models.ProgressView, body=(JSON,))
GET_PROGRESS = Route("GET", "/v1/progress/{recipient}", models.ProgressView)
DELETE_PROGRESS: Route[None] = Route("DELETE", "/v1/progress/{recipient}", None)

# announcements
ANNOUNCE = Route("POST", "/v1/courses/{course}/announcements", models.AnnouncementView, body=(JSON,))
ANNOUNCEMENT = Route("GET", "/v1/courses/{course}/announcements/{announcement_id}", models.AnnouncementView)

# declared journeys
SAVE_DEFINITION = Route("PUT", "/v1/journey-definitions/{name}", models.DefinitionView, body=(JSON, YAML))
DEFINITION_HISTORY = Route("GET", "/v1/journey-definitions/{name}", models.DefinitionHistory)
DEFINITION_VERSION = Route("GET", "/v1/journey-definitions/{name}/versions/{version}", models.DefinitionView)
DEFINITIONS = Route("GET", "/v1/journey-definitions", models.DefinitionList)
START_JOURNEY = Route("POST", "/v1/journeys/{name}", models.DeclaredView, body=(JSON,))
JOURNEY = Route("GET", "/v1/journeys/{name}/{id}", models.DeclaredView)
JOURNEY_EVENT = Route("POST", "/v1/journeys/{name}/{id}/events/{event}", models.DeclaredView, body=(JSON,))

# in-app notifications
NOTIFICATIONS = Route("GET", "/v1/notifications", models.NotificationPage,
                      query=("recipient", "limit", "before", "unread_only"))
UNREAD_COUNT = Route("GET", "/v1/notifications/unread-count", models.UnreadCount, query=("recipient",))
MARK_READ = Route("POST", "/v1/notifications/{notification_id}/read", models.NotificationView)
MARK_ALL_READ = Route("POST", "/v1/notifications/read-all", models.MarkedRead, query=("recipient", "up_to"))

# the messaging platform: preferences, categories, templates, analytics, recipients
PREFERENCES = Route("GET", "/v1/preferences/{email}", models.PreferencesView)
SET_PREFERENCES = Route("PUT", "/v1/preferences/{email}", models.PreferencesView, body=(JSON,))
CATEGORIES = Route("GET", "/v1/categories", list[models.CategoryView])
PUT_CATEGORY = Route("PUT", "/v1/categories/{name}", models.CategoryView, body=(JSON,))
TEMPLATES = Route("GET", "/v1/templates", models.TemplateList)
TEMPLATE = Route("GET", "/v1/templates/{name}", models.TemplateDetail)
SAVE_TEMPLATE = Route("POST", "/v1/templates/{name}/versions", models.VersionView, body=(JSON,))
PUBLISH_TEMPLATE = Route("POST", "/v1/templates/{name}/versions/{version}/publish", models.PublicationView)
PREVIEW_TEMPLATE = Route("POST", "/v1/templates/{name}/preview", models.PreviewView, body=(JSON,))
ANALYTICS = {  # by scope; the name is the path's last part
    "overall": Route("GET", "/v1/analytics/overall", models.AnalyticsView, query=("since", "until")),
    "templates": Route("GET", "/v1/analytics/templates/{name}", models.AnalyticsView, query=("since", "until")),
    "journeys": Route("GET", "/v1/analytics/journeys/{kind}", models.AnalyticsView, query=("since", "until")),
    "campaigns": Route("GET", "/v1/analytics/campaigns/{campaign}", models.AnalyticsView, query=("since", "until")),
}
EXPORT_RECIPIENT = Route("GET", "/v1/recipients/{email}/export", models.ExportView)
ERASE_RECIPIENT = Route("DELETE", "/v1/recipients/{email}", models.ErasureView)

# campaigns
CREATE_CAMPAIGN = Route("POST", "/v1/campaigns", models.CampaignView, body=(JSON,))
CAMPAIGNS = Route("GET", "/v1/campaigns", models.CampaignList, query=("limit", "before"))
CAMPAIGN = Route("GET", "/v1/campaigns/{campaign_id}", models.CampaignView)
ADD_CAMPAIGN_RECIPIENTS = Route("POST", "/v1/campaigns/{campaign_id}/recipients", models.AudienceView, body=(JSON, CSV))
ADD_CAMPAIGN_FILTER = Route("POST", "/v1/campaigns/{campaign_id}/filters", models.AudienceView, body=(JSON,))
SCHEDULE_CAMPAIGN = Route("POST", "/v1/campaigns/{campaign_id}/schedule", models.CampaignView, body=(JSON,))
PAUSE_CAMPAIGN = Route("POST", "/v1/campaigns/{campaign_id}/pause", models.CampaignView)
RESUME_CAMPAIGN = Route("POST", "/v1/campaigns/{campaign_id}/resume", models.CampaignView)
CANCEL_CAMPAIGN = Route("POST", "/v1/campaigns/{campaign_id}/cancel", models.CampaignView)
CAMPAIGN_AB_TEST = Route("GET", "/v1/campaigns/{campaign_id}/ab-test", models.AbTestView)
CAMPAIGN_CONVERSIONS = Route("POST", "/v1/campaigns/{campaign_id}/conversions", dict[str, int], body=(JSON,))

# event webhooks: the backend's endpoints and their deliveries
WEBHOOK_EVENT_TYPES = Route("GET", "/v1/webhook-event-types", list[models.EventTypeView])
CREATE_WEBHOOK_ENDPOINT = Route("POST", "/v1/webhook-endpoints", models.CreatedEndpoint, body=(JSON,))
WEBHOOK_ENDPOINTS = Route("GET", "/v1/webhook-endpoints", list[models.EndpointView])
WEBHOOK_ENDPOINT = Route("GET", "/v1/webhook-endpoints/{endpoint_id}", models.EndpointView)
WEBHOOK_ENDPOINT_SECRET = Route("GET", "/v1/webhook-endpoints/{endpoint_id}/secret", models.EndpointSecret)
DELETE_WEBHOOK_ENDPOINT: Route[None] = Route("DELETE", "/v1/webhook-endpoints/{endpoint_id}", None)
WEBHOOK_DELIVERIES = Route("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries", models.DeliveryPage,
                           query=("status", "after", "limit"))
RETRY_WEBHOOK_DELIVERY = Route("POST", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry",
                               models.DeliveryView)

# Every route above: tests/unit/test_light_client.py holds each to the document.
ROUTES: tuple[Route[Any], ...] = tuple(
    route for value in list(globals().values())
    for route in (value.values() if isinstance(value, dict) else [value]) if isinstance(route, Route))


def _set(**fields: Any) -> dict[str, Any]:
    """The fields given: one left None is not sent, so the server's default applies."""
    return {name: value for name, value in fields.items() if value is not None}


class Operations:
    """The API's operations other than the journeys' own (those are `JourneyOperations`)."""

    @operation
    def health(self) -> Call[dict[str, str]]:
        """PostgreSQL and Temporal answer: `{"status": "ok"}`."""
        return HEALTH()

    @operation
    def ready(self) -> Call[models.Readiness]:
        """Workers poll every task queue this deployment needs; else FollowupsError 503 saying which not."""
        return READY()

    @operation
    def import_leads(self, csv_text: str | bytes, campaign: str | None = None,
                     first_line: int = 1) -> Call[models.ImportView]:
        """One CSV upload; `first_line` is the file line of its header when a file is sent in chunks."""
        return IMPORT_LEADS(query={"campaign": campaign or None, "first_line": first_line}, content=csv_text,
                            media_type=CSV)

    @operation
    def import_record(self, import_id: str) -> Call[models.ImportRecordView]:
        """What one import did: rows, started, already imported, rejected."""
        return IMPORT_RECORD(import_id=import_id)

    @operation
    def import_problems(self, import_id: str, after: int = 0, limit: int = 1000) -> Call[models.ProblemsPage]:
        """One page of an import's rejected rows; pass `next_after` back for the next."""
        return IMPORT_PROBLEMS(import_id=import_id, query={"after": after, "limit": limit})

    @operation
    def campaign_stats(self, campaign: str) -> Call[models.CampaignStatsView]:
        return CAMPAIGN_STATS(campaign=campaign)

    @operation
    def roster(self, session_id: str, after: str | None = None, limit: int = 100) -> Call[models.RosterPage]:
        """One page of a session's roster, in attendee_id order; pass `next_after` back for the next."""
        return ROSTER(session_id=session_id, query={"after": after, "limit": limit})

    @operation
    def bulk_cancel(self, *, journey: str | None = None, group: str | None = None, recipient: str | None = None,
                    stage: str | None = None, reason: str | None = None,
                    request_id: str | None = None) -> Call[models.BulkView]:
        return BULK_CANCEL(json=_set(journey=journey, group=group, recipient=recipient, stage=stage, reason=reason,
                                     request_id=request_id))

    @operation
    def bulk_signal(self, event: dict[str, Any], *, journey: str, group: str | None = None,
                    recipient: str | None = None, stage: str | None = None,
                    request_id: str | None = None) -> Call[models.BulkView]:
        return BULK_SIGNAL(json={"event": event, **_set(journey=journey, group=group, recipient=recipient,
                                                          stage=stage, request_id=request_id)})

    @operation
    def messages(self, journey: str | None = None, status: str | None = None, entity_id: str | None = None,
                 limit: int = 100) -> Call[list[models.MessageView]]:
        return MESSAGES(query={"journey": journey, "status": status, "entity_id": entity_id, "limit": limit})

    @operation
    def message(self, key: str) -> Call[models.MessageDetailView]:
        """One message with every event of its life (opens and clicks, machine ones flagged, bounces…)."""
        return MESSAGE(key=key)

    @operation
    def resend(self, key: str) -> Call[models.ResendView]:
        return RESEND(key=key)

    @operation
    def put_progress(self, recipient: str, *, email: str, name: str, time_zone: str, digests: list[str] | None = None,
                     progress: dict[str, Any] | None = None) -> Call[models.ProgressView]:
        """Register or replace a digest recipient (weekly, monthly, manager digests) and their progress."""
        return PUT_PROGRESS(recipient=recipient, json={"email": email, "name": name, "time_zone": time_zone,
                                                       "progress": progress, **_set(digests=digests)})

    @operation
    def get_progress(self, recipient: str) -> Call[models.ProgressView]:
        return GET_PROGRESS(recipient=recipient)

    @operation
    def delete_progress(self, recipient: str) -> Call[None]:
        """No more digests for `recipient`."""
        return DELETE_PROGRESS(recipient=recipient)

    # --- announcements ---------------------------------------------------------------------------

    @operation
    def announce(self, course: str,
                 announcement: models.AnnouncementBody | dict[str, Any]) -> Call[models.AnnouncementView]:
        """A new-content notice to the course's enrolled list (or `recipients`), once per announcement id."""
        return ANNOUNCE(course=course, json=announcement)

    @operation
    def announcement(self, course: str, announcement_id: str) -> Call[models.AnnouncementView]:
        return ANNOUNCEMENT(course=course, announcement_id=announcement_id)

    # --- declared journeys -----------------------------------------------------------------------

    @operation
    def save_definition(self, name: str,
                        definition: models.DefinitionInput | dict[str, Any] | str) -> Call[models.DefinitionView]:
        """Save a definition (a dict, or YAML text) as a new version; the same body again is not one."""
        if isinstance(definition, str):
            return SAVE_DEFINITION(name=name, content=definition, media_type=YAML)
        return SAVE_DEFINITION(name=name, json=definition)

    @operation
    def definition(self, name: str, version: int | None = None) -> Call[models.DefinitionView]:
        if version is not None:
            return DEFINITION_VERSION(name=name, version=version)
        return DEFINITION_HISTORY(name=name).then(lambda history: history.latest)

    @operation
    def definition_versions(self, name: str) -> Call[models.DefinitionHistory]:
        return DEFINITION_HISTORY(name=name)

    @operation
    def definitions(self) -> Call[list[models.DefinitionView]]:
        return DEFINITIONS().then(lambda listing: listing.definitions)

    @operation
    def start_journey(self, name: str, start: models.DeclaredStart | dict[str, Any]) -> Call[models.DeclaredView]:
        """Start a journey of the definition `name` (at its latest version, which it keeps)."""
        return START_JOURNEY(name=name, json=start)

    @operation
    def journey(self, name: str, entity_id: str) -> Call[models.DeclaredView]:
        return JOURNEY(name=name, id=entity_id)

    @operation
    def journey_event(self, name: str, entity_id: str, event: str, *, at: datetime | None = None,
                      member_id: str | None = None, event_id: str | None = None) -> Call[models.DeclaredView]:
        body = _set(at=at, member_id=member_id, event_id=event_id)
        return JOURNEY_EVENT(name=name, id=entity_id, event=event, json=body or None)

    # --- in-app notifications --------------------------------------------------------------------

    @operation
    def notifications(self, recipient: str, *, limit: int = 50, before: int | None = None,
                      unread_only: bool = False) -> Call[models.NotificationPage]:
        """One page of a recipient's in-app notifications, newest first; pass `next_before` back for the next."""
        return NOTIFICATIONS(query={"recipient": recipient, "limit": limit, "before": before,
                                    "unread_only": unread_only})

    @operation
    def unread_count(self, recipient: str) -> Call[int]:
        return UNREAD_COUNT(query={"recipient": recipient}).then(lambda count: count.unread)

    @operation
    def mark_read(self, notification_id: int) -> Call[models.NotificationView]:
        return MARK_READ(notification_id=notification_id)

    @operation
    def mark_all_read(self, recipient: str, up_to: int | None = None) -> Call[models.MarkedRead]:
        return MARK_ALL_READ(query={"recipient": recipient, "up_to": up_to})

    # --- the messaging platform ------------------------------------------------------------------

    @operation
    def preferences(self, email: str) -> Call[models.PreferencesView]:
        return PREFERENCES(email=email)

    @operation
    def set_preferences(self, email: str,
                        preferences: models.PreferencesBody | dict[str, Any]) -> Call[models.PreferencesView]:
        """Replace what is stored for `email` (categories or channels left out are subscribed again)."""
        return SET_PREFERENCES(email=email, json=preferences)

    @operation
    def categories(self) -> Call[list[models.CategoryView]]:
        return CATEGORIES()

    @operation
    def put_category(self, name: str, category: models.CategoryBody | dict[str, Any]) -> Call[models.CategoryView]:
        return PUT_CATEGORY(name=name, json=category)

    @operation
    def templates(self) -> Call[list[models.TemplateSummary]]:
        return TEMPLATES().then(lambda listing: listing.templates)

    @operation
    def template(self, name: str) -> Call[models.TemplateDetail]:
        return TEMPLATE(name=name)

    @operation
    def save_template(self, name: str, version: models.VersionBody | dict[str, Any]) -> Call[models.VersionView]:
        """A new immutable version of `name` (checked in the sandbox first); publish it to use it."""
        return SAVE_TEMPLATE(name=name, json=version)

    @operation
    def publish_template(self, name: str, version: int) -> Call[models.PublicationView]:
        return PUBLISH_TEMPLATE(name=name, version=version)

    @operation
    def preview_template(self, name: str, preview: models.PreviewBody | dict[str, Any]) -> Call[models.PreviewView]:
        return PREVIEW_TEMPLATE(name=name, json=preview)

    @operation
    def analytics(self, scope: str = "overall", name: str | None = None, *, since: datetime | None = None,
                  until: datetime | None = None) -> Call[models.AnalyticsView]:
        """`scope`: overall, templates, journeys or campaigns (then `name` says which)."""
        route = ANALYTICS.get(scope)
        if route is None:
            raise ValueError(f"no analytics scope {scope!r}: one of {', '.join(ANALYTICS)}")
        if route.path_params and not name:
            raise ValueError(f"analytics of {scope} need the name of one")
        return route(query={"since": since, "until": until}, **dict.fromkeys(route.path_params, name))

    @operation
    def export_recipient(self, email: str) -> Call[models.ExportView]:
        return EXPORT_RECIPIENT(email=email)

    @operation
    def erase_recipient(self, email: str) -> Call[models.ErasureView]:
        """GDPR erasure: their journeys end, their rows go, only a hash stays so they are never mailed."""
        return ERASE_RECIPIENT(email=email)

    # --- campaigns -------------------------------------------------------------------------------

    @operation
    def create_campaign(self, campaign: models.CampaignBody | dict[str, Any]) -> Call[models.CampaignView]:
        return CREATE_CAMPAIGN(json=campaign)

    @operation
    def campaign(self, campaign_id: str) -> Call[models.CampaignView]:
        return CAMPAIGN(campaign_id=campaign_id)

    @operation
    def campaigns(self, limit: int = 50, before: datetime | None = None) -> Call[list[models.CampaignView]]:
        return CAMPAIGNS(query={"limit": limit, "before": before}).then(lambda listing: listing.campaigns)

    @operation
    def add_campaign_recipients(self, campaign_id: str, recipients: list[models.CampaignRecipient | dict[str, Any]]
                                | str) -> Call[models.AudienceView]:
        """A list of recipients, or CSV text (email, name, time_zone, any other column a variable)."""
        if isinstance(recipients, str):
            return ADD_CAMPAIGN_RECIPIENTS(campaign_id=campaign_id, content=recipients, media_type=CSV)
        return ADD_CAMPAIGN_RECIPIENTS(campaign_id=campaign_id, json={"recipients": recipients})

    @operation
    def add_campaign_filter(self, campaign_id: str,
                            audience_filter: models.AudienceFilter | dict[str, Any]) -> Call[models.AudienceView]:
        return ADD_CAMPAIGN_FILTER(campaign_id=campaign_id, json=audience_filter)

    @operation
    def schedule_campaign(self, campaign_id: str, at: datetime | None = None) -> Call[models.CampaignView]:
        return SCHEDULE_CAMPAIGN(campaign_id=campaign_id, json={"scheduled_at": at} if at else None)

    @operation
    def pause_campaign(self, campaign_id: str) -> Call[models.CampaignView]:
        return PAUSE_CAMPAIGN(campaign_id=campaign_id)

    @operation
    def resume_campaign(self, campaign_id: str) -> Call[models.CampaignView]:
        return RESUME_CAMPAIGN(campaign_id=campaign_id)

    @operation
    def cancel_campaign(self, campaign_id: str) -> Call[models.CampaignView]:
        return CANCEL_CAMPAIGN(campaign_id=campaign_id)

    @operation
    def campaign_ab_test(self, campaign_id: str) -> Call[models.AbTestView]:
        return CAMPAIGN_AB_TEST(campaign_id=campaign_id)

    @operation
    def campaign_conversions(self, campaign_id: str, emails: list[str]) -> Call[int]:
        """Record who converted (an A/B test is decided on them); answers how many were recorded."""
        return CAMPAIGN_CONVERSIONS(campaign_id=campaign_id, json={"emails": emails}).then(
            lambda answer: answer["recorded"])

    # --- event webhooks --------------------------------------------------------------------------

    @operation
    def webhook_event_types(self) -> Call[list[models.EventTypeView]]:
        """The catalogue: every type an endpoint can ask for."""
        return WEBHOOK_EVENT_TYPES()

    @operation
    def create_webhook_endpoint(self, endpoint: models.EndpointBody | dict[str, Any]) -> Call[models.CreatedEndpoint]:
        """Register an endpoint; the answer holds the secret its receiver verifies each delivery with."""
        return CREATE_WEBHOOK_ENDPOINT(json=endpoint)

    @operation
    def webhook_endpoints(self) -> Call[list[models.EndpointView]]:
        return WEBHOOK_ENDPOINTS()

    @operation
    def webhook_endpoint(self, endpoint_id: str) -> Call[models.EndpointView]:
        return WEBHOOK_ENDPOINT(endpoint_id=endpoint_id)

    @operation
    def webhook_endpoint_secret(self, endpoint_id: str) -> Call[str]:
        return WEBHOOK_ENDPOINT_SECRET(endpoint_id=endpoint_id).then(lambda answer: answer.secret)

    @operation
    def delete_webhook_endpoint(self, endpoint_id: str) -> Call[None]:
        """Stop delivering to it: what was pending is cancelled."""
        return DELETE_WEBHOOK_ENDPOINT(endpoint_id=endpoint_id)

    @operation
    def webhook_deliveries(self, endpoint_id: str, status: str | None = None, after: int = 0,
                           limit: int = 100) -> Call[models.DeliveryPage]:
        """One page of its deliveries, oldest first; pass `next_after` back for the next."""
        return WEBHOOK_DELIVERIES(endpoint_id=endpoint_id, query={"status": status, "after": after, "limit": limit})

    @operation
    def retry_webhook_delivery(self, endpoint_id: str, delivery_id: int) -> Call[models.DeliveryView]:
        """Deliver it again now (a failed one after its retries were spent, or one a receiver lost)."""
        return RETRY_WEBHOOK_DELIVERY(endpoint_id=endpoint_id, delivery_id=delivery_id)


class JourneyOperations(Generic[V]):
    """Start, steer and read the journeys of one kind: `start(model)`, `get(id)`, and one method per
    event (`confirm(id, scheduled_at=…)`, `cancel(id, reason=…)`…), or `send(id, event, **fields)`."""

    def __init__(self, kind: Kind[V]) -> None:
        self.kind = kind

    @operation
    def start(self, start: BaseModel | dict[str, Any]) -> Call[V]:
        """201 started, 200 that id already had this journey (a safe retry), 202 recorded for later."""
        return self.kind.start_route(json=start)

    @operation
    def get(self, entity_id: str) -> Call[V]:
        return self.kind.show_route.call({self.kind.id_field: entity_id})

    @operation
    def send(self, /, entity_id: str, event: str, **fields: Any) -> Call[V]:
        """The event `event`; fields left None are not sent. A field the event's path names
        (`remove_attendee(id, attendee_id=…)`) goes in the path."""
        route = self.kind.event_routes.get(event)
        if route is None:
            raise ValueError(f"{self.kind.name} has no event {event!r}: one of {', '.join(self.kind.events)}")
        in_path = [name for name in route.path_params if name != self.kind.id_field]
        if missing := [name for name in in_path if fields.get(name) is None]:
            raise TypeError(f"{self.kind.name} {event} needs {', '.join(missing)}")
        path = {self.kind.id_field: entity_id, **{name: fields.pop(name) for name in in_path}}
        return route.call(path, json=_set(**fields) or None)

    def _event(self, name: str) -> str:
        """`name` if it is one of the kind's events (`client.interviews.confirm`), else AttributeError."""
        kind = self.__dict__.get("kind")
        if name.startswith("_") or kind is None or name not in kind.events:
            raise AttributeError(name)
        return name

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self.kind.events]
