"""Hand-tuned spellings of generated commands: the names users typed before the commands were
generated, kept beside the generic ones (`--email` and `--candidate-email` both work). A new
kind needs nothing here. Keys: (kind, "start" | "preview" | event kind) → field path → the
option's declarations, or ARGUMENT for a positional argument."""

from __future__ import annotations

from typing import Any

from starter.cli.options import ARGUMENT


def _recipient(field: str) -> dict[str, Any]:
    return {f"{field}.email": ("--email",), f"{field}.name": ("--name",), f"{field}.time_zone": ("--time-zone",)}


SPELLINGS: dict[tuple[str, str], dict[str, Any]] = {
    ("interview", "start"): {**_recipient("candidate"), "slot_selection_url": ("--slot-url",)},
    ("appointment", "start"): {**_recipient("patient"), "scheduled_at": ("--at",),
                               "policy.reminder_offsets": ("--remind",)},
    ("session", "preview"): {"tutor.first_session": ("--first-session",)},
    # `session add-attendee alg-7 bob --email … --name …`: one attendee, the id positional
    ("session", "add_attendee"): {"attendee.attendee_id": ARGUMENT, **_recipient("attendee"),
                                  "attendee.phone": ("--phone",), "attendee.channels": ("--channel",)},
    ("session", "checkin_answer"): {"ok": ("--ok/--not-ok",)},
}

# `followups preview KIND`'s event options beyond `--<command>`: (kind, event kind) → spellings
PREVIEW_EVENT_SPELLINGS: dict[tuple[str, str], tuple[str, ...]] = {
    ("appointment", "resend_reminder"): ("--resend",),
    ("session", "checkin_answer"): ("--checkin-negative",),  # the sample answer is negative: it escalates
}


def spellings(kind: str, *commands: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in commands:
        merged.update(SPELLINGS.get((kind, name), {}))
    return merged
