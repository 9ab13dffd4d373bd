"""The one message every peer sends: Followups' own appointment reminder, rendered with the project's
templates and built by `activities/mail.py`, so every system puts the same bytes on the wire and the
sink reads the same `X-Followups-Key` header. The peers send it the way the seeds' stacks do
(Django's SMTP backend is smtplib): one connection per message, no outbox."""

from __future__ import annotations

import smtplib
from datetime import datetime, timedelta, timezone

from activities.mail import Envelope, build, message_id
from activities.render import Renderer

_renderer: Renderer | None = None


def reminder(key: str, due_at: datetime, n: int):
    global _renderer
    _renderer = _renderer or Renderer()
    scheduled_at = due_at + timedelta(hours=1)
    rendered = _renderer.render("appointment_reminder", {
        "patient_name": f"Patient {n}", "doctor": "Dr Bench", "clinic": "Bench Clinic", "location": None,
        "scheduled_at": scheduled_at.isoformat(), "time_zone": "UTC", "recipient_name": f"Patient {n}",
        "sender_name": "Followups bench", "postal_address": "1 Example Street, Berlin",
        "unsubscribe_url": f"http://localhost:8000/v1/unsubscribe/{key}",
    })
    envelope = Envelope("bench@example.com", "Followups bench", f"p{n}@example.com", f"Patient {n}",
                        message_id(key, "example.com"), f"http://localhost:8000/v1/unsubscribe/{key}", key)
    return build(envelope, rendered)


def send(host: str, port: int, key: str, due_at: datetime | str, n: int) -> None:
    if isinstance(due_at, str):
        due_at = datetime.fromisoformat(due_at)
    out = reminder(key, due_at.astimezone(timezone.utc), n)
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        smtp.sendmail(out.sender, out.recipients, out.data)
