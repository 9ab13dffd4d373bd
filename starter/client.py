"""The Python client for backends: the HTTP API's operations, typed with the same pydantic models.

    from starter.client import FollowupsClient
    with FollowupsClient("http://localhost:8000", api_key="dev-key") as followups:
        followups.start_interview(Invitation(...))
        followups.confirm_interview("42", scheduled_at=datetime(2026, 12, 1, 9, tzinfo=timezone.utc))
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from starter.api import (
    AppointmentView,
    CampaignStatsView,
    ImportView,
    InterviewView,
    LeadView,
    MessageView,
    ResendView,
)
from workflows.models import Booking, Invitation, Lead


class FollowupsError(Exception):
    """The API said no: `status` is the HTTP status, `error`/`detail`/`field` its JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.error = body.get("error", "HTTPError")
        self.detail = body.get("detail")
        self.field = body.get("field")
        super().__init__(f"{status} {self.error}: {self.detail}")


class FollowupsClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport,
                                 headers={"Authorization": f"Bearer {api_key}"})

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

    def start_interview(self, invitation: Invitation) -> InterviewView:
        return InterviewView.model_validate(
            self._call("POST", "/v1/interviews", json=invitation.model_dump(mode="json", exclude_none=True))
        )

    def _event(self, interview_id: str, kind: str, body: dict[str, Any]) -> InterviewView:
        body = {k: v for k, v in body.items() if v is not None}
        return InterviewView.model_validate(self._call("POST", f"/v1/interviews/{interview_id}/{kind}", json=body))

    def confirm_interview(self, interview_id: str, scheduled_at: datetime, event_id: str | None = None) -> InterviewView:
        return self._event(interview_id, "confirm", {"scheduled_at": scheduled_at.isoformat(), "event_id": event_id})

    def reschedule_interview(self, interview_id: str, scheduled_at: datetime,
                             event_id: str | None = None) -> InterviewView:
        return self._event(interview_id, "reschedule",
                           {"scheduled_at": scheduled_at.isoformat(), "event_id": event_id})

    def cancel_interview(self, interview_id: str, reason: str | None = None, event_id: str | None = None) -> InterviewView:
        return self._event(interview_id, "cancel", {"reason": reason, "event_id": event_id})

    def complete_interview(self, interview_id: str, event_id: str | None = None) -> InterviewView:
        return self._event(interview_id, "complete", {"event_id": event_id})

    def get_interview(self, interview_id: str) -> InterviewView:
        return InterviewView.model_validate(self._call("GET", f"/v1/interviews/{interview_id}"))

    # --- appointments ---------------------------------------------------------------------

    def start_appointment(self, booking: Booking) -> AppointmentView:
        return AppointmentView.model_validate(
            self._call("POST", "/v1/appointments", json=booking.model_dump(mode="json", exclude_none=True))
        )

    def _appointment_event(self, appointment_id: str, kind: str, body: dict[str, Any]) -> AppointmentView:
        body = {k: v for k, v in body.items() if v is not None}
        return AppointmentView.model_validate(
            self._call("POST", f"/v1/appointments/{appointment_id}/{kind}", json=body))

    def confirm_appointment(self, appointment_id: str, event_id: str | None = None) -> AppointmentView:
        return self._appointment_event(appointment_id, "confirm", {"event_id": event_id})

    def reschedule_appointment(self, appointment_id: str, scheduled_at: datetime,
                               event_id: str | None = None) -> AppointmentView:
        return self._appointment_event(appointment_id, "reschedule",
                                       {"scheduled_at": scheduled_at.isoformat(), "event_id": event_id})

    def cancel_appointment(self, appointment_id: str, reason: str | None = None, notify: bool | None = None,
                           event_id: str | None = None) -> AppointmentView:
        return self._appointment_event(appointment_id, "cancel",
                                       {"reason": reason, "notify": notify, "event_id": event_id})

    def complete_appointment(self, appointment_id: str, event_id: str | None = None) -> AppointmentView:
        return self._appointment_event(appointment_id, "complete", {"event_id": event_id})

    def resend_appointment_reminder(self, appointment_id: str, event_id: str | None = None) -> AppointmentView:
        return self._appointment_event(appointment_id, "resend-reminder", {"event_id": event_id})

    def get_appointment(self, appointment_id: str) -> AppointmentView:
        return AppointmentView.model_validate(self._call("GET", f"/v1/appointments/{appointment_id}"))

    # --- leads ------------------------------------------------------------------------------

    def start_lead(self, lead: Lead) -> LeadView:
        return LeadView.model_validate(
            self._call("POST", "/v1/leads", json=lead.model_dump(mode="json", exclude_none=True)))

    def import_leads(self, csv_text: str | bytes, campaign: str | None = None, first_line: int = 1) -> ImportView:
        """One CSV upload; `first_line` is the file line of its header when a file is sent in chunks."""
        params: dict[str, Any] = {"first_line": first_line}
        if campaign:
            params["campaign"] = campaign
        content = csv_text.encode() if isinstance(csv_text, str) else csv_text
        return ImportView.model_validate(self._call("POST", "/v1/leads/import", params=params, content=content,
                                                    headers={"Content-Type": "text/csv"}))

    def lead_converted(self, lead_id: str, reference: str | None = None, event_id: str | None = None) -> LeadView:
        body = {k: v for k, v in dict(reference=reference, event_id=event_id).items() if v is not None}
        return LeadView.model_validate(self._call("POST", f"/v1/leads/{lead_id}/converted", json=body))

    def lead_replied(self, lead_id: str, event_id: str | None = None) -> LeadView:
        body = {"event_id": event_id} if event_id else {}
        return LeadView.model_validate(self._call("POST", f"/v1/leads/{lead_id}/replied", json=body))

    def get_lead(self, lead_id: str) -> LeadView:
        return LeadView.model_validate(self._call("GET", f"/v1/leads/{lead_id}"))

    def campaign_stats(self, campaign: str) -> CampaignStatsView:
        return CampaignStatsView.model_validate(self._call("GET", f"/v1/campaigns/{campaign}/stats"))

    # --- messages ---------------------------------------------------------------------------

    def messages(self, journey: str | None = None, status: str | None = None, entity_id: str | None = None,
                 limit: int = 100) -> list[MessageView]:
        params = {k: v for k, v in dict(journey=journey, status=status, entity_id=entity_id, limit=limit).items()
                  if v is not None}
        return [MessageView.model_validate(m) for m in self._call("GET", "/v1/messages", params=params)]

    def resend(self, key: str) -> ResendView:
        return ResendView.model_validate(self._call("POST", f"/v1/messages/{key}/resend"))
