"""What Followups' webhooks change on an Interview row. The events of one journey arrive in the
order they happened (a later one waits for an earlier one being retried), so the row simply follows."""

import logging
from typing import Any

from django.utils.dateparse import parse_datetime

from interviews.models import Interview

log = logging.getLogger(__name__)

STAGE_EVENTS = {"journey.started", "journey.stage_changed", "journey.ended"}


def apply(event: dict[str, Any]) -> None:
    """Apply one verified event, inside the transaction that records its webhook-id."""
    data = event["data"]
    if data.get("journey") != "interview":
        return  # an endpoint gets every journey's events unless it asked for types only
    pk = Interview.pk_of(data["entity_id"])
    interview = Interview.objects.select_for_update().filter(pk=pk).first() if pk is not None else None
    if interview is None:
        log.warning("%s for interview %r: not one of ours", event["type"], data["entity_id"])
        return
    if event["type"] in STAGE_EVENTS:
        # A stage this code does not know raises: the delivery is answered 500, kept pending and
        # retried (about a day, then by hand), so a deploy that knows it can still apply it.
        interview.status = Interview.Status(data["stage"])
        interview.save(update_fields=["status"])
    elif event["type"] == "message.sent":
        sent_at = parse_datetime(data["sent_at"] or event["timestamp"])
        if data["template"] == "interview_followup":
            interview.followup_count += 1  # one per email sent: a forced resend counts, as in the seed
            interview.last_followup_sent_at = sent_at
            interview.save(update_fields=["followup_count", "last_followup_sent_at"])
        elif data["template"] == "interview_reminder":
            interview.pre_interview_reminder_sent_at = sent_at
            interview.save(update_fields=["pre_interview_reminder_sent_at"])
        else:
            raise ValueError(f"message.sent of an unknown interview template {data['template']!r}")
    else:
        log.info("%s for interview %s: nothing to change", event["type"], interview.pk)
