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
    BulkView,
    CampaignStatsView,
    ImportView,
    InterviewView,
    LeadView,
    MessageView,
    ResendView,
    SessionView,
)
from workflows.models import Attendee, Booking, ClassSession, Invitation, Lead


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

    # --- class sessions -------------------------------------------------------------------

    def start_session(self, session: ClassSession) -> SessionView:
        return SessionView.model_validate(
            self._call("POST", "/v1/sessions", json=session.model_dump(mode="json", exclude_none=True)))

    def _session_event(self, session_id: str, path: str, body: dict[str, Any], method: str = "POST") -> SessionView:
        body = {k: v for k, v in body.items() if v is not None}
        return SessionView.model_validate(self._call(method, f"/v1/sessions/{session_id}{path}",
                                                     json=body if method == "POST" else None))

    def add_attendee(self, session_id: str, attendee: Attendee, event_id: str | None = None) -> SessionView:
        return self._session_event(session_id, "/attendees",
                                   {"attendee": attendee.model_dump(mode="json", exclude_none=True), "event_id": event_id})

    def remove_attendee(self, session_id: str, attendee_id: str) -> SessionView:
        return self._session_event(session_id, f"/attendees/{attendee_id}", {}, method="DELETE")

    def reschedule_session(self, session_id: str, starts_at: datetime, ends_at: datetime,
                           event_id: str | None = None) -> SessionView:
        return self._session_event(session_id, "/reschedule", {"starts_at": starts_at.isoformat(),
                                                               "ends_at": ends_at.isoformat(), "event_id": event_id})

    def cancel_session(self, session_id: str, reason: str | None = None, notify: bool = True,
                       event_id: str | None = None) -> SessionView:
        return self._session_event(session_id, "/cancel", {"reason": reason, "notify": notify, "event_id": event_id})

    def recording_available(self, session_id: str, recording_url: str, event_id: str | None = None) -> SessionView:
        return self._session_event(session_id, "/recording", {"recording_url": recording_url, "event_id": event_id})

    def feedback_given(self, session_id: str, attendee_id: str, event_id: str | None = None) -> SessionView:
        return self._session_event(session_id, "/feedback", {"attendee_id": attendee_id, "event_id": event_id})

    def checkin_answer(self, session_id: str, ok: bool, comment: str | None = None,
                       event_id: str | None = None) -> SessionView:
        return self._session_event(session_id, "/checkin", {"ok": ok, "comment": comment, "event_id": event_id})

    def get_session(self, session_id: str) -> SessionView:
        return SessionView.model_validate(self._call("GET", f"/v1/sessions/{session_id}"))

    # --- bulk --------------------------------------------------------------------------------

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

    # --- messages ---------------------------------------------------------------------------

    def messages(self, journey: str | None = None, status: str | None = None, entity_id: str | None = None,
                 limit: int = 100) -> list[MessageView]:
        params = {k: v for k, v in dict(journey=journey, status=status, entity_id=entity_id, limit=limit).items()
                  if v is not None}
        return [MessageView.model_validate(m) for m in self._call("GET", "/v1/messages", params=params)]

    def resend(self, key: str) -> ResendView:
        return ResendView.model_validate(self._call("POST", f"/v1/messages/{key}/resend"))
