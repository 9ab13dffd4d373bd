"""Every journey kind of the API and its events, generated from its OpenAPI document by
`make client` (client/generate.py): do not edit. A kind is started with `POST /v1/{plural}`, read with
`GET /v1/{plural}/{id}` and steered with one route per event, `Event(method, path below the id, body)`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from followups_client import models
from followups_client.routes import Event, Kind

if TYPE_CHECKING:
    from followups_client.client import AsyncJourneyClient, JourneyClient


KINDS: dict[str, Kind[Any]] = {
    "interview": Kind(
        "interview", "interviews", start=models.Invitation, view=models.InterviewView, events={
            "confirm": Event("POST", "confirm", models.InterviewConfirmBody),
            "reschedule": Event("POST", "reschedule", models.InterviewRescheduleBody),
            "cancel": Event("POST", "cancel", models.InterviewCancelBody),
            "complete": Event("POST", "complete", models.InterviewCompleteBody),
        },
    ),
    "appointment": Kind(
        "appointment", "appointments", start=models.Booking, view=models.AppointmentView, events={
            "confirm": Event("POST", "confirm", models.AppointmentConfirmBody),
            "reschedule": Event("POST", "reschedule", models.AppointmentRescheduleBody),
            "cancel": Event("POST", "cancel", models.AppointmentCancelBody),
            "complete": Event("POST", "complete", models.AppointmentCompleteBody),
            "resend_reminder": Event("POST", "resend-reminder", models.AppointmentResendReminderBody),
        },
    ),
    "lead": Kind(
        "lead", "leads", start=models.Lead, view=models.LeadView, events={
            "converted": Event("POST", "converted", models.LeadConvertedBody),
            "replied": Event("POST", "replied", models.LeadRepliedBody),
            "cancel": Event("POST", "cancel", models.LeadCancelBody),
        },
    ),
    "session": Kind(
        "session", "sessions", start=models.ClassSession, view=models.SessionView, events={
            "add_attendee": Event("POST", "attendees", models.SessionAddAttendeeBody),
            "remove_attendee": Event("DELETE", "attendees/{attendee_id}", models.SessionRemoveAttendeeBody),
            "reschedule": Event("POST", "reschedule", models.SessionRescheduleBody),
            "cancel": Event("POST", "cancel", models.SessionCancelBody),
            "recording_available": Event("POST", "recording", models.SessionRecordingAvailableBody),
            "feedback": Event("POST", "feedback", models.SessionFeedbackBody),
            "checkin_answer": Event("POST", "checkin", models.SessionCheckinAnswerBody),
            "complete": Event("POST", "complete", models.SessionCompleteBody),
        },
    ),
    "payment": Kind(
        "payment", "payments", start=models.Payment, view=models.PaymentView, events={
            "paid": Event("POST", "paid", models.PaymentPaidBody),
            "cancel": Event("POST", "cancel", models.PaymentCancelBody),
        },
    ),
    "tutor": Kind(
        "tutor", "tutors", start=models.Tutor, view=models.TutorView, events={
            "rescheduled": Event("POST", "rescheduled", models.TutorRescheduledBody),
            "close": Event("POST", "close", models.TutorCloseBody),
            "cancel": Event("POST", "cancel", models.TutorCancelBody),
        },
    ),
    "onboarding": Kind(
        "onboarding", "onboardings", start=models.Approval, view=models.OnboardingView, events={
            "proceed": Event("POST", "proceed", models.OnboardingProceedBody),
            "cancel": Event("POST", "cancel", models.OnboardingCancelBody),
        },
    ),
}


class Journeys:
    """`FollowupsClient`'s journey attributes, one per kind: `client.interviews.confirm(...)`."""

    interviews: JourneyClient[models.InterviewView]
    appointments: JourneyClient[models.AppointmentView]
    leads: JourneyClient[models.LeadView]
    sessions: JourneyClient[models.SessionView]
    payments: JourneyClient[models.PaymentView]
    tutors: JourneyClient[models.TutorView]
    onboardings: JourneyClient[models.OnboardingView]


class AsyncJourneys:
    """`AsyncFollowupsClient`'s journey attributes, one per kind."""

    interviews: AsyncJourneyClient[models.InterviewView]
    appointments: AsyncJourneyClient[models.AppointmentView]
    leads: AsyncJourneyClient[models.LeadView]
    sessions: AsyncJourneyClient[models.SessionView]
    payments: AsyncJourneyClient[models.PaymentView]
    tutors: AsyncJourneyClient[models.TutorView]
    onboardings: AsyncJourneyClient[models.OnboardingView]
