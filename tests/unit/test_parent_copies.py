"""The pure parts of parent copies (seed 004, COPPA) and of the in_app channel: who is under 13
and who gets the copy, the copy's key and context, what the outbox keeps for a resend, and how
the templates read for a parent and in the app."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from activities.render import Renderer
from activities.outgoing import PARENT_COPY_OF, parent_copy, parent_of
from workflows.contracts import Recipient, SendRequest
from workflows.interview.models import Invitation

CHILD = {"email": "kid@example.com", "name": "Kim Kid", "time_zone": "Europe/Berlin"}


def request(**recipient) -> SendRequest:
    return SendRequest(key="appointment-7/reminder-1h-20261201T090000Z", journey="appointment", entity_id="7",
                       template="payment_reminder", recipient={**CHILD, **recipient},
                       context={"payer_name": "Kim"}, due_at=datetime(2026, 12, 1, 8, tzinfo=timezone.utc),
                       channel="email", phone="+4915112345678")


def test_a_recipient_recorded_before_parent_copies_decodes_as_not_under_13():
    old = Recipient.model_validate({"email": "ada@example.com", "name": "Ada"})
    assert (old.under_13, old.parent_email, old.parent_copy) == (False, None, "also")
    assert parent_copy(request()) is None and parent_of(old) is None


@pytest.mark.parametrize("fields, reason", [
    ({"under_13": True}, "needs parent_email"),
    ({"under_13": True, "parent_email": "KID@example.com"}, "another address"),
    ({"under_13": "yes", "parent_email": "mum@example.com"}, "valid boolean"),
    ({"under_13": True, "parent_email": "mum@example.com", "parent_copy": "never"}, "'also' or 'instead'"),
])
def test_under_13_needs_another_address_for_the_parent(fields, reason):
    with pytest.raises(ValidationError) as raised:
        Recipient.model_validate({**CHILD, **fields})
    [problem] = raised.value.errors()
    assert reason in problem["msg"]
    assert problem["loc"][0] == ("under_13" if "boolean" in reason else
                                 "parent_copy" if "instead" in reason else "parent_email")


def test_the_edge_names_the_nested_field():
    with pytest.raises(ValidationError) as raised:
        Invitation.model_validate({"interview_id": "42", "candidate": {**CHILD, "under_13": True},
                                   "slot_selection_url": "https://jobs.example.com/42"})
    assert [e["loc"] for e in raised.value.errors()] == [("candidate", "parent_email")]


def test_the_copy_is_the_same_message_to_the_parent_under_its_own_key():
    original = request(under_13=True, parent_email="Mum@Example.com", parent_name="Maria Kid")
    copy = parent_copy(original)
    assert copy is not None
    assert copy.key == original.key + "/parent"
    assert (copy.recipient.email, copy.recipient.name, copy.recipient.time_zone) == ("Mum@example.com", "Maria Kid",
                                                                                    "Europe/Berlin")
    assert not copy.recipient.under_13  # a copy never makes a copy of itself
    assert parent_copy(copy) is None
    assert copy.context == {"payer_name": "Kim", PARENT_COPY_OF: "Kim Kid"}
    assert copy.phone is None  # the child's number is never the parent's
    assert (copy.template, copy.channel, copy.due_at, copy.not_after) == (original.template, "email",
                                                                          original.due_at, original.not_after)
    assert original.context == {"payer_name": "Kim"}  # the child's own message is unchanged


def test_a_parent_without_a_name_is_named_for_the_child():
    copy = parent_copy(request(under_13=True, parent_email="mum@example.com", name="K" * 200))
    assert copy is not None and copy.recipient.name == ("Parent of " + "K" * 200)[:200]


def test_the_outbox_keeps_the_parent_so_a_resend_follows_the_same_rule():
    child = Recipient.model_validate({**CHILD, "under_13": True, "parent_email": "mum@example.com",
                                      "parent_copy": "instead"})
    kept = parent_of(child)
    assert kept == {"email": "mum@example.com", "name": None, "copy": "instead"}
    again = Recipient.model_validate({**CHILD, "under_13": True, "parent_email": kept["email"],
                                      "parent_name": kept["name"], "parent_copy": kept["copy"]})
    assert again == child
    # a parent address without the flag: nobody is under 13, nothing is copied
    assert parent_copy(request(parent_email="mum@example.com")) is None


CONTEXT = dict(payer_name="Kim", amount="12.50", currency="EUR", locale="en_US", description=None,
               payment_url="https://pay.example.com/1", started_at="2026-12-01T09:00:00+00:00", time_zone=None,
               sender_name="Acme School", postal_address="1 Main St", unsubscribe_url="https://u.example/t",
               recipient_name="Kim")


def test_a_parents_copy_says_why_it_came_in_text_and_html_and_escapes_the_name():
    own = Renderer().render("payment_reminder", {**CONTEXT, "channel": "email"})
    copy = Renderer().render("payment_reminder", {**CONTEXT, "channel": "email", PARENT_COPY_OF: "Kim <b>Kid</b>"})
    assert "You receive this copy" not in own.text + own.html
    assert copy.text.startswith("You receive this copy because Kim <b>Kid</b> is under 13")
    assert "because Kim &lt;b&gt;Kid&lt;/b&gt; is under 13" in copy.html
    assert copy.text.endswith(own.text)  # the same message below the line
    assert copy.subject == own.subject


def test_in_the_app_a_message_has_no_email_footer():
    email = Renderer().render("payment_reminder", {**CONTEXT, "channel": "email"})
    in_app = Renderer().render("payment_reminder", {**CONTEXT, "channel": "in_app"})
    assert "Stop these emails: https://u.example/t" in email.text
    assert "Stop these emails" not in in_app.text and "1 Main St" not in in_app.text
    assert email.text.startswith(in_app.text.rstrip("\n"))
    # rendered without a channel (previews, older callers): the email as before
    assert Renderer().render("payment_reminder", CONTEXT).text == email.text
