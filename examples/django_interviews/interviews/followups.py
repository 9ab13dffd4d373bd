"""The app's calls to Followups, through the light client (`pip install ./client`)."""

from datetime import datetime

from django.conf import settings
from django.urls import reverse
from followups_client import FollowupsClient, models

from interviews.models import Interview


def client() -> FollowupsClient:
    return FollowupsClient(settings.FOLLOWUPS_URL, settings.FOLLOWUPS_API_KEY, timeout=10)


def start_journey(interview: Interview) -> None:
    """Start the interview's journey. Safe to call again: the same fields answer 200, nothing twice."""
    invitation = models.Invitation(
        interview_id=interview.journey_id,
        candidate=models.Recipient(email=interview.candidate_email, name=interview.candidate_name),
        invited_at=interview.invited_at,
        slot_selection_url=settings.SITE_URL + reverse("pick-slot", args=[interview.pk]),
        policy=models.InterviewPolicyOverrides(**settings.FOLLOWUPS_INTERVIEW_POLICY),
        # invited with a time already agreed: the journey starts scheduled
        **({"scheduled_at": interview.scheduled_at} if interview.scheduled_at else {}),
    )
    with client() as followups:
        followups.interviews.start(invitation)


def pick_slot(interview: Interview, scheduled_at: datetime) -> None:
    """The candidate chose a time: follow-ups stop, the reminder is planned (a move re-plans it).
    Raises FollowupsError when the journey refuses it (422: a time in the past; 409: it has ended)."""
    with client() as followups:
        if interview.scheduled_at is None:
            followups.interviews.confirm(interview.journey_id, scheduled_at=scheduled_at)
        else:
            followups.interviews.reschedule(interview.journey_id, scheduled_at=scheduled_at)
