"""Idempotency keys and Message-IDs, pinned as literal strings. A key is how the outbox knows a step
was already sent, across deploys and continue-as-new: a change of format would send every pending
step of every running journey again. Changing one on purpose means a migration, not an edit here."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from activities.mail import message_id
from workflows.appointment import rules as appointment
from workflows.interview import rules as interview
from workflows.lead import rules as lead
from workflows.onboarding import rules as onboarding
from workflows.payment import rules as payment
from workflows.session import rules as session
from workflows.tutor import rules as tutor

AT = datetime(2026, 12, 10, 9, 30, tzinfo=timezone.utc)


def test_interview_keys():
    assert interview.followup_key("42", 2) == "interview-42/followup-2"
    assert interview.reminder_key("42", AT) == "interview-42/reminder-20261210T093000Z"
    # the same moment in another zone, with a fraction of a second: the UTC second
    later = datetime(2026, 12, 10, 10, 30, 15, 250000, tzinfo=timezone(timedelta(hours=1)))
    assert interview.reminder_key("42", later) == "interview-42/reminder-20261210T093015Z"


def test_appointment_keys():
    assert appointment.reminder_key("a-9", AT, timedelta(hours=24)) == "appointment-a-9/reminder-1d-20261210T093000Z"
    assert (appointment.reminder_key("a-9", AT, timedelta(minutes=90, milliseconds=500))
            == "appointment-a-9/reminder-1h30m500ms-20261210T093000Z")
    assert appointment.resend_key("a-9", 1) == "appointment-a-9/reminder-resend-1"
    assert appointment.notice_key("a-9") == "appointment-a-9/cancellation"


def test_lead_payment_and_session_keys():
    assert lead.step_key("L-17", 3) == "lead-L-17/step-3"
    assert payment.reminder_key("p-1", timedelta(days=3)) == "payment-p-1/reminder-3d"
    assert payment.confirmation_key("p-1") == "payment-p-1/confirmation"
    assert (session.key("alg-7", "reminder-24h-20261201T090000Z", "ann", "email")
            == "session-alg-7/reminder-24h-20261201T090000Z/ann/email")
    assert session.key("alg-7", "checkin") == "session-alg-7/checkin"


def test_tutor_keys():
    # one per alert episode: the second of the reschedule that brought the count to the threshold
    later = datetime(2026, 12, 10, 10, 30, 15, 250000, tzinfo=timezone(timedelta(hours=1)))
    assert tutor.supportive_key("t-7", later) == "tutor-t-7/supportive-20261210T093015Z"
    assert tutor.manager_key("t-7", AT) == "tutor-t-7/manager-20261210T093000Z"


def test_onboarding_keys():
    # the account's key is what the backend dedupes account.create on: a change would create accounts twice
    assert onboarding.account_key("cta-7") == "onboarding-cta-7/account"
    assert onboarding.revoke_key("cta-7") == "onboarding-cta-7/revoke"
    assert onboarding.welcome_key("cta-7") == "onboarding-cta-7/welcome"
    assert onboarding.crm_key("cta-7") == "onboarding-cta-7/crm"
    assert onboarding.report_key("cta-7") == "onboarding-cta-7/admin-report"
    assert onboarding.secret_ref("cta-7") == "onboarding-cta-7/password"
    assert onboarding.converted_event_id("cta-7") == "onboarding-cta-7/converted"

def test_message_id():
    assert message_id("interview-42/followup-1", "example.com") == "<0c23e7ce432dd405b3d3c7e2b1d54148@example.com>"
