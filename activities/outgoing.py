"""What a message carries beyond its journey: the sender's own parts (From, the postal address,
signed links), the platform the send step asks (template versions, preferences and timing,
tracking, DKIM), and a child's message copied to their parent (seed 004, COPPA)."""

from __future__ import annotations

from dataclasses import dataclass

from activities import tokens
from activities.dkim import DkimKey
from activities.gate import Gate
from activities.preferences import preferences_url
from activities.template_store import TemplateStore
from activities.tracking import Tracker
from workflows.contracts import Recipient, SendRequest

PARENT_COPY_OF = "parent_copy_of"  # in a parent's copy's context: the child's name, for the templates


def parent_copy(request: SendRequest) -> SendRequest | None:
    """The parent's copy of a message to a recipient under 13 (None for anyone else): the same
    message under `{key}/parent`, to the parent's address, its context marking it a copy (kept in
    the copy's own outbox row, so a resend of the copy is again rendered as one)."""
    child = request.recipient
    if not child.under_13 or child.parent_email is None:
        return None
    parent = Recipient(email=child.parent_email, name=child.parent_name or f"Parent of {child.name}"[:200],
                       time_zone=child.time_zone)
    return request.model_copy(update={"key": f"{request.key}/parent", "recipient": parent, "phone": None,
                                      "context": {**request.context, PARENT_COPY_OF: child.name},
                                      "deferrable": False})  # it goes with the child's message, never later


def parent_of(recipient: Recipient) -> dict | None:
    """What the outbox keeps of a recipient under 13 (messages.parent), for a resend to follow."""
    if not recipient.under_13 or recipient.parent_email is None:
        return None
    return {"email": str(recipient.parent_email), "name": recipient.parent_name, "copy": recipient.parent_copy}


def reason_kind(reason: str | None) -> str:
    """`too late: due by …` → `too late`: a batch counts its skips per kind of reason (the outbox
    keeps each message's own)."""
    return (reason or "skipped").split(":")[0].split(" (")[0].strip()



@dataclass(frozen=True)
class Sender:
    """Everything a message carries that does not come from the journey."""

    email: str
    name: str
    postal_address: str
    public_base_url: str
    signing_secret: str

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2] or "followups.invalid"

    def unsubscribe_url(self, email: str, key: str) -> str:
        return f"{self.public_base_url.rstrip('/')}/v1/unsubscribe/{tokens.sign(self.signing_secret, email, key)}"

    def preferences_url(self, email: str) -> str:
        return preferences_url(self.public_base_url, self.signing_secret, email)


@dataclass(frozen=True)
class Platform:
    """What the send step asks beyond the outbox: which template version (and category), whether
    and when the recipient may get it, how its links are tracked, how it is signed."""

    templates: TemplateStore
    gate: Gate
    tracker: Tracker | None = None  # None: no tracking (FOLLOWUPS_TRACKING=false)
    dkim: DkimKey | None = None
