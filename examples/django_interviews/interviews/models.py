from django.conf import settings
from django.db import models
from django.utils import timezone


class Interview(models.Model):
    """Seed 000's Interview. Its cron job wrote `status` and the sent-at fields; here Followups runs
    the journey and its webhooks write them (`interviews.events`), so they are never set by hand."""

    class Status(models.TextChoices):
        # The interview journey's stages, under the same names.
        PENDING = "pending", "invited, no slot picked yet"
        SCHEDULED = "scheduled", "slot picked"
        COMPLETED = "completed", "took place"
        CANCELLED = "cancelled", "cancelled"
        EXPIRED = "expired", "no slot picked in time"
        ABANDONED = "abandoned", "never started"

    candidate_email = models.EmailField()
    candidate_name = models.CharField(max_length=200)
    invited_at = models.DateTimeField(default=timezone.now)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    followup_count = models.PositiveIntegerField(default=0)
    last_followup_sent_at = models.DateTimeField(null=True, blank=True)
    pre_interview_reminder_sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Interview {self.pk} with {self.candidate_name} ({self.status})"

    @property
    def journey_id(self) -> str:
        """The id of its journey in Followups: workflow `interview-{journey_id}`."""
        return f"{settings.FOLLOWUPS_ID_PREFIX}{self.pk}"

    @classmethod
    def pk_of(cls, journey_id: str) -> int | None:
        """The row a journey id names, None when it is not one of this app's."""
        prefix = settings.FOLLOWUPS_ID_PREFIX
        number = journey_id.removeprefix(prefix)
        return int(number) if journey_id.startswith(prefix) and number.isdigit() else None


class ProcessedEvent(models.Model):
    """Each webhook delivery applied once: Followups delivers until it gets a 2xx, so the same
    `webhook-id` can come again (a lost answer, a retry by hand)."""

    id = models.CharField(primary_key=True, max_length=100)  # the webhook-id header
    type = models.CharField(max_length=50)
    received_at = models.DateTimeField(auto_now_add=True)
