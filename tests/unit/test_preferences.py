"""The pure parts of preferences: the send decision (every combination, and its properties), the
signed preference link (never interchangeable with an unsubscribe link), send windows, and the
footer link in the base templates."""

from __future__ import annotations

import hashlib
import itertools
from datetime import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.preferences import CHANNELS, decide, email_hash, parse_window, preferences_url
from activities.render import Renderer
from activities.tokens import BadToken, sign, sign_preferences, verify, verify_preferences

SECRET = "s3cret-signing-key"
PROPERTY = settings(max_examples=300, deadline=None, database=None)

# --- decide(): every combination against the rule as the issue states it ------------------------

SUPPRESSIONS = [None, "hard_bounce: 550 5.1.1 no such user", "complaint: marked as spam", "manual: asked by phone"]
CHOICES = [None, True, False]


def expected(suppressed, erased, known, critical, subscribed, unsubscribed_all, category, channel):
    """The rule, written as a table rather than as the code's if-chain."""
    if suppressed:  # a suppression blocks everything, critical messages too
        return f"recipient suppressed ({suppressed})"
    if erased:
        return "recipient erased"
    effective_critical = known and critical  # an unknown category is never critical ...
    effective_choice = subscribed if known else None  # ... and has no choices
    if effective_critical:
        return None
    if effective_choice is False:
        return f"unsubscribed from {category} ({channel})"
    return "unsubscribed from everything" if unsubscribed_all else None


@pytest.mark.parametrize("channel", CHANNELS)
def test_decide_matches_the_rule_in_every_combination(channel):
    for suppressed, erased, known, critical, subscribed, everything in itertools.product(
            SUPPRESSIONS, [False, True], [False, True], [False, True], CHOICES, [False, True]):
        got = decide(category="marketing", channel=channel, suppressed=suppressed, erased=erased, known=known,
                     critical=critical, subscribed=subscribed, unsubscribed_all=everything)
        assert got == expected(suppressed, erased, known, critical, subscribed, everything, "marketing", channel), \
            (suppressed, erased, known, critical, subscribed, everything)


def test_the_reasons_read_as_the_message_log_shows_them():
    assert decide(category="marketing", channel="email", subscribed=False) == "unsubscribed from marketing (email)"
    assert decide(category="reminders", channel="in_app", unsubscribed_all=True) == "unsubscribed from everything"
    assert decide(category="transactional", channel="email", critical=True, suppressed="hard_bounce: 550 5.1.1") \
        == "recipient suppressed (hard_bounce: 550 5.1.1)"
    assert decide(category="transactional", channel="email", critical=True, erased=True) == "recipient erased"
    assert decide(category="transactional", channel="email", critical=True, subscribed=False,
                  unsubscribed_all=True) is None
    assert decide(category="marketing", channel="email") is None  # nothing chosen: subscribed


def test_the_category_choice_wins_over_unsubscribe_all_in_the_reason():
    # Both apply: the more specific reason is the one recorded.
    assert decide(category="feedback", channel="email", subscribed=False, unsubscribed_all=True) \
        == "unsubscribed from feedback (email)"


def test_an_unknown_category_is_not_critical_and_has_no_choices():
    assert decide(category="typo", channel="email", known=False, critical=True, unsubscribed_all=True) \
        == "unsubscribed from everything"
    assert decide(category="typo", channel="email", known=False, subscribed=False) is None


flags = st.booleans()
rules = st.fixed_dictionaries({
    "category": st.sampled_from(["transactional", "reminders", "progress", "feedback", "marketing", "x"]),
    "channel": st.sampled_from(CHANNELS), "suppressed": st.none() | st.text(min_size=1, max_size=40),
    "erased": flags, "known": flags, "critical": flags, "subscribed": st.none() | flags, "unsubscribed_all": flags,
})


@PROPERTY
@given(rules)
def test_a_suppressed_or_erased_recipient_never_gets_anything(args):
    if args["suppressed"] or args["erased"]:
        assert decide(**args) is not None


@PROPERTY
@given(rules)
def test_a_known_critical_category_is_only_ever_stopped_by_a_suppression(args):
    if args["known"] and args["critical"]:
        assert (decide(**args) is None) == (not args["suppressed"] and not args["erased"])


@PROPERTY
@given(rules)
def test_opting_out_never_lets_more_through(args):
    """Turning unsubscribe-all on, or a choice from true/none to false, never turns a skip into a send."""
    before = decide(**args)
    if before is not None:
        assert decide(**{**args, "unsubscribed_all": True}) is not None
        assert decide(**{**args, "subscribed": False}) is not None


@PROPERTY
@given(rules)
def test_only_the_category_and_channel_given_appear_in_a_choice_reason(args):
    reason = decide(**args)
    if reason and reason.startswith("unsubscribed from ") and reason != "unsubscribed from everything":
        assert reason == f"unsubscribed from {args['category']} ({args['channel']})"


# --- the preference link ----------------------------------------------------------------------


def test_the_preference_link_names_the_lower_cased_address():
    url = preferences_url("https://followups.example.com/", SECRET, "Ann.Lee@Example.COM")
    prefix = "https://followups.example.com/v1/preferences/page/"
    assert url.startswith(prefix)
    assert verify_preferences(SECRET, url[len(prefix):]) == "ann.lee@example.com"


@PROPERTY
@given(st.emails())
def test_preference_tokens_roundtrip_and_are_no_unsubscribe_tokens(email):
    token = sign_preferences(SECRET, email)
    assert verify_preferences(SECRET, token) == email.lower()
    with pytest.raises(BadToken):
        verify(SECRET, token)
    with pytest.raises(BadToken):
        verify_preferences("another-secret", token)


@PROPERTY
@given(st.emails(), st.text(min_size=1, max_size=40))
def test_an_unsubscribe_token_never_opens_a_preference_page(email, key):
    token = sign(SECRET, email, key)
    with pytest.raises(BadToken):
        verify_preferences(SECRET, token)
    # Nor does any part of one: the address part with the message's signature.
    email_part, _, mac_part = token.split(".")
    with pytest.raises(BadToken):
        verify_preferences(SECRET, f"{email_part}.{mac_part}")


@PROPERTY
@given(st.emails(), st.integers(0, 10_000), st.sampled_from("ABCxyz019-_"))
def test_a_changed_character_is_refused(email, where, replacement):
    token = sign_preferences(SECRET, email)
    at = where % len(token)
    tampered = token[:at] + replacement + token[at + 1:]
    if tampered != token:  # even the unused low bits of a last character: base64 is read strictly
        with pytest.raises(BadToken):
            verify_preferences(SECRET, tampered)


def test_the_unsubscribe_token_format_is_unchanged():
    """Links in mail already sent must keep working: the MAC text is `unsubscribe\\0email\\0key`."""
    import base64
    import hmac

    token = sign(SECRET, "ann@example.com", "interview-42/followup-1")
    mac = hmac.new(SECRET.encode(), b"unsubscribe\0ann@example.com\0interview-42/followup-1", hashlib.sha256)
    assert token.split(".")[2] == base64.urlsafe_b64encode(mac.digest()[:16]).rstrip(b"=").decode()


def test_email_hash_is_sha256_hex_of_the_lower_cased_address():
    assert email_hash("Ann@Example.com") == hashlib.sha256(b"ann@example.com").hexdigest()


# --- send windows -----------------------------------------------------------------------------


def test_send_windows_parse_and_may_span_midnight():
    assert parse_window("08:00-21:00") == (time(8), time(21))
    assert parse_window("22:30-06:15") == (time(22, 30), time(6, 15))
    assert parse_window("00:00-23:59") == (time(0), time(23, 59))
    assert parse_window("00:00-00:00") == (time(0), time(0))  # open all day


@pytest.mark.parametrize("text", ["8:00-21:00", "08:00–21:00", "24:00-06:00", "08:60-09:00",
                                  "08:00", "08:00-21:00 ", "", "08:00-21:00-22:00", "０８:00-21:00"])
def test_a_bad_send_window_is_refused(text):
    with pytest.raises(ValueError):
        parse_window(text)


# --- the footer -------------------------------------------------------------------------------

CONTEXT = dict(payer_name="Kim", amount="12.50", currency="EUR", locale="en_US", description=None,
               payment_url="https://pay.example.com/1", started_at="2026-12-01T09:00:00+00:00", time_zone=None,
               sender_name="Acme School", postal_address="1 Main St", unsubscribe_url="https://u.example/t",
               recipient_name="Kim", channel="email")


def test_the_footer_links_to_the_preference_page_when_given_one():
    url = "https://f.example/v1/preferences/page/abc.def?x=1&y=2"
    with_link = Renderer().render("payment_reminder", {**CONTEXT, "preferences_url": url})
    without = Renderer().render("payment_reminder", CONTEXT)  # a preview passes none
    assert f"Choose what you receive: {url}\n" in with_link.text
    assert 'href="https://f.example/v1/preferences/page/abc.def?x=1&amp;y=2"' in with_link.html
    assert "Choose what you receive" not in without.text + without.html
    assert with_link.text.replace(f"Choose what you receive: {url}\n", "") == without.text
    in_app = Renderer().render("payment_reminder", {**CONTEXT, "channel": "in_app", "preferences_url": url})
    assert "Choose what you receive" not in in_app.text  # no email footer in the app
