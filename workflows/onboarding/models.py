"""The onboarding saga's contract: the approval that starts it, its one event, policy, live state,
and the requests its activities take (by name: the workflow never imports `activities`).

The temporary password is never a field of any of these: the saga holds only `secret_ref`, the
id of a one-time secret in PostgreSQL (`onboarding_secrets`) that the activities and the send
step read when they need it, and that is deleted once the welcome email has gone out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from workflows.contracts import Phone, Recipient
from workflows.core.events import JourneyEvent, event_maker
from workflows.core.fields import (
    EmailAddress, EntityId, Moment, PersonName, PositiveDuration, ShortText, Strict, TimeZone,
    WebUrl, overrides_of,
)
from workflows.core.steps import EventOutcome, PlannedStep, Skip

# Activity type names (implemented in activities/onboarding.py, registered by the worker).
ISSUE_PASSWORD = "onboarding_issue_password"
CREATE_ACCOUNT = "onboarding_create_account"
REVOKE_ACCOUNT = "onboarding_revoke_account"
LOG_TO_CRM = "onboarding_log_to_crm"
FORGET_SECRET = "onboarding_forget_secret"

# Failure types of the accounts backend (activities/onboarding.py raises them, non-retryable).
ACCOUNT_REFUSED = "AccountRefused"  # a 4xx: the backend says no, and created nothing
BACKEND_MISSING = "AccountsBackendMissing"  # FOLLOWUPS_ACCOUNTS_WEBHOOK_URL is not set


class OnboardingPolicy(Strict):
    """Seed 003's "CTA approval": each step once, in order; a permanent failure of the account or of
    the credentials' delivery undoes what was done and tells the admin."""

    # Nothing happens before this has passed since the approval: a `cancel` inside it undoes nothing
    # because nothing was done (an admin's mis-click). None (the default): at once.
    undo_window: PositiveDuration | None = None
    # How long a backend call (the account, its revocation, the CRM entry) is retried while the
    # backend is down or answers 5xx before the step counts as failed.
    backend_give_up_after: PositiveDuration = timedelta(days=1)
    hold_early_events_for: PositiveDuration = timedelta(hours=24)


OnboardingPolicyOverrides = overrides_of(OnboardingPolicy)


class Student(Strict):
    """The person approved. No `under_13` here: a temporary password goes to its owner only."""

    email: EmailAddress
    name: PersonName
    time_zone: TimeZone = None
    phone: Phone | None = Field(None, description="E.164; the WhatsApp welcome goes through the webhook channel")

    def recipient(self) -> Recipient:
        return Recipient(email=self.email, name=self.name, time_zone=self.time_zone)


class Admin(Strict):
    email: EmailAddress
    name: PersonName

    def recipient(self) -> Recipient:
        return Recipient(email=self.email, name=self.name)


class WelcomeCall(Strict):
    """Book a welcome call: an `appointment` journey (`appointment-welcome-{onboarding_id}`) reminds
    the student before it."""

    scheduled_at: Moment
    host: PersonName = Field(description="who calls, e.g. the admissions advisor")
    location: ShortText | None = Field(None, description="a phone number or a meeting link")


# 120, not 128: the welcome call's appointment id `welcome-{onboarding_id}` must be an EntityId too.
OnboardingId = Annotated[EntityId, StringConstraints(max_length=120)]


class Approval(Strict):
    """What `POST /v1/onboardings` carries: an admin approved a CTA submission."""

    onboarding_id: OnboardingId = Field(description="e.g. the CTA submission's id")
    student: Student
    approved_by: Admin
    login_url: WebUrl
    lead_id: EntityId | None = Field(None, description="the approval came from a lead campaign: "
                                                       "`lead-{lead_id}` is marked converted")
    welcome_call: WelcomeCall | None = None
    policy: OnboardingPolicyOverrides = OnboardingPolicyOverrides()  # type: ignore[valid-type]


class SagaStep(StrEnum):
    """The saga's steps in the order they are taken; REVOKE only when undoing."""

    CREDENTIALS = "credentials"  # a temporary password as a one-time secret
    ACCOUNT = "account"  # the signed account.create webhook
    WELCOME_EMAIL = "welcome_email"  # the credentials, through the send step
    WHATSAPP = "whatsapp"  # the welcome through the webhook channel
    WELCOME_CALL = "welcome_call"  # an appointment journey
    CRM = "crm"  # the signed crm.log webhook
    LEAD = "lead"  # `converted` to lead-{lead_id}
    REVOKE = "revoke"  # the signed account.revoke webhook (compensation)
    REPORT = "report"  # the admin is told what was done and what was not


CRITICAL = frozenset({SagaStep.CREDENTIALS, SagaStep.ACCOUNT, SagaStep.WELCOME_EMAIL})


class OnboardingStatus(StrEnum):
    AWAITING_START = "awaiting_start"
    WAITING = "waiting"  # inside the policy's undo window
    ONBOARDING = "onboarding"
    UNDOING = "undoing"  # a critical step failed, or the approval was withdrawn
    COMPLETED = "completed"
    FAILED = "failed"  # a critical step failed for good: undone, the admin told
    CANCELLED = "cancelled"  # withdrawn: undone, the admin told
    ABANDONED = "abandoned"


ONBOARDING_CLOSED = frozenset({OnboardingStatus.COMPLETED, OnboardingStatus.FAILED, OnboardingStatus.CANCELLED,
                               OnboardingStatus.ABANDONED})


class Cancel(JourneyEvent):
    """The approval is withdrawn: no further step is taken, an account already created is revoked,
    and the admin is told what was done and undone."""

    kind: Literal["cancel"] = "cancel"
    reason: ShortText | None = None


class Proceed(JourneyEvent):
    """Go on now: the rest of the policy's undo window is not waited for."""

    kind: Literal["proceed"] = "proceed"


OnboardingEvent = Annotated[Proceed | Cancel, Field(discriminator="kind")]
onboarding_event = event_maker(OnboardingEvent)


class StepOutcome(Strict):
    step: SagaStep
    outcome: Literal["done", "skipped", "failed", "undone"]
    detail: str = ""
    at: datetime


class OnboardingState(BaseModel):
    onboarding_id: str
    status: OnboardingStatus
    student_email: str | None = None
    approved_at: datetime | None = None
    plan: list[SagaStep] = []  # the forward steps this approval asks for, in order
    secret_ref: str | None = None  # the temporary password's id (never the password); None once forgotten
    user_id: str | None = None  # the backend's answer to account.create
    account_unsure: bool = False  # the account call gave up without an answer: it may exist
    outcomes: list[StepOutcome] = []
    failure: str | None = None  # what turned the saga to undoing
    cancel_reason: str | None = None
    proceed_now: bool = False  # a `proceed` ended the undo window early
    welcome_call_id: str | None = None  # the appointment journey booked for the call
    next_step: PlannedStep | None = None
    skips: list[Skip] = []
    announced: list[str] = Field([], description="what the backend's webhooks were told: journey.started's and each later stage, the journey's own facts, ended")
    events: list[EventOutcome] = []
    policy: OnboardingPolicy = OnboardingPolicy()


class OnboardingInput(Strict):
    onboarding_id: EntityId
    approval: Approval | None = None
    policy: OnboardingPolicy = OnboardingPolicy()
    state: OnboardingState | None = None
    awaiting_since: datetime | None = None


# --- activity requests --------------------------------------------------------------------------


class AccountRequest(Strict):
    """account.create / account.revoke: `key` is the idempotency key the backend dedupes on, the same
    on every retry (`onboarding-7/account`); `secret_ref` names the password (create only)."""

    key: str
    onboarding_id: str
    email: str
    name: str
    phone: str | None = None
    secret_ref: str | None = None
    user_id: str | None = None  # revoke: the account to revoke (None: whatever `account_key` created)
    account_key: str | None = None  # revoke: the create's idempotency key
    reason: str | None = None


class CrmEntry(Strict):
    key: str
    onboarding_id: str
    email: str
    user_id: str | None
    approved_by: str
    steps: list[str]
