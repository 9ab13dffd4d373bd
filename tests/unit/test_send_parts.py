"""The pure parts of the send step: unsubscribe tokens, SMTP refusal classification, Message-IDs,
building the MIME message, and rendering the real templates in the Jinja2 sandbox."""

from __future__ import annotations

import base64
import re
import string
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError, TemplateSyntaxError

from activities.mail import Envelope, Refusal, build, message_id
from activities.render import TEMPLATES_DIR, Renderer, Rendered, TemplateProblem
from activities.tokens import BadToken, sign, verify

SECRET = "s3cret-signing-key"
PROPERTY = settings(max_examples=200, deadline=None, database=None)
B64URL = string.ascii_letters + string.digits + "-_"

emails = st.emails()
keys = st.text(min_size=1, max_size=80)


# --- unsubscribe tokens -----------------------------------------------------------------------


def test_sign_and_verify_roundtrip():
    token = sign(SECRET, "Ann.Lee@Example.COM", "interview-42/followup-1")
    assert verify(SECRET, token) == ("ann.lee@example.com", "interview-42/followup-1")
    assert token.count(".") == 2 and all(ch in B64URL + "." for ch in token)  # safe in a URL as is


@PROPERTY
@given(emails, keys)
def test_roundtrip_for_any_address_and_key(email: str, key: str):
    assert verify(SECRET, sign(SECRET, email, key)) == (email.lower(), key)


def flip(text: str, position: int, replacement: str | None = None) -> str:
    original = text[position]
    if replacement is None:
        replacement = "A" if original != "A" else "B"
    return text[:position] + replacement + text[position + 1:]


@pytest.mark.parametrize("part", [0, 1, 2], ids=["email", "key", "mac"])
@pytest.mark.parametrize("where", ["first", "middle"])
def test_a_flipped_character_in_any_part_is_refused(part: int, where: str):
    parts = sign(SECRET, "ann@example.com", "interview-42/followup-1").split(".")
    position = 0 if where == "first" else len(parts[part]) // 2
    parts[part] = flip(parts[part], position)
    with pytest.raises(BadToken):
        verify(SECRET, ".".join(parts))


def _decoded(part: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except ValueError:
        return None


@PROPERTY
@given(emails, keys, st.integers(0, 2), st.integers(0, 10_000), st.sampled_from(B64URL))
def test_tampering_that_changes_what_a_part_says_is_refused(email, key, part, position, replacement):
    parts = sign(SECRET, email, key).split(".")
    position %= len(parts[part])
    if parts[part][position] == replacement:
        replacement = "A" if replacement != "A" else "B"
    tampered = flip(parts[part], position, replacement)
    if _decoded(tampered) == _decoded(parts[part]):
        return  # only the unused low bits of the last character changed: see the test below
    parts[part] = tampered
    with pytest.raises(BadToken):
        verify(SECRET, ".".join(parts))


@pytest.mark.parametrize("part", [0, 1, 2], ids=["email", "key", "mac"])
def test_a_flipped_last_character_is_refused(part: int):
    parts = sign(SECRET, "anna@example.com", "interview-42/followup-1").split(".")
    assert len(parts[part]) % 4 in (2, 3)  # the last character carries padding bits
    original = parts[part]
    position = len(original) - 1
    twin = next(c for c in B64URL if c != original[position] and _decoded(flip(original, position, c)) == _decoded(original))
    parts[part] = flip(original, position, twin)
    with pytest.raises(BadToken):
        verify(SECRET, ".".join(parts))


def test_a_token_signed_with_another_secret_is_refused():
    token = sign("another-secret", "ann@example.com", "interview-42/followup-1")
    with pytest.raises(BadToken):
        verify(SECRET, token)


def test_a_token_for_another_address_or_key_is_refused():
    e1, k1, m1 = sign(SECRET, "ann@example.com", "interview-42/followup-1").split(".")
    e2, k2, m2 = sign(SECRET, "bob@example.com", "interview-43/followup-1").split(".")
    for spliced in (f"{e2}.{k1}.{m1}", f"{e1}.{k2}.{m1}", f"{e1}.{k1}.{m2}"):
        with pytest.raises(BadToken):
            verify(SECRET, spliced)


@pytest.mark.parametrize("token", [
    "", ".", "..", "...", "abc", "a.b", "a.b.c.d", "!!!.###.$$$", "é.é.é", "a b.c.d",
    "YW5u.aW50.", "YW5u..AAAA", "/w.YQ.AAAA",  # the last one: the email part is not UTF-8
])
def test_a_malformed_token_is_refused(token: str):
    with pytest.raises(BadToken):
        verify(SECRET, token)


# --- SMTP refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("code, text, permanent, hard_bounce", [
    (550, "5.1.1 <ann@example.com>: Recipient address rejected: User unknown", True, True),
    (550, "5.7.26 This mail is unauthenticated (DMARC policy)", True, False),
    (452, "4.2.2 The email account that you tried to reach is over quota", False, False),
    (552, "5.2.2 Mailbox full", False, False),
    (554, "Transaction failed", True, False),
    (550, "Requested action not taken: mailbox unavailable", True, False),
    (421, "4.7.0 Try again later, closing connection", False, False),
])
def test_refusal_classification(code, text, permanent, hard_bounce):
    refusal = Refusal(code, text)
    assert refusal.permanent is permanent
    assert refusal.hard_bounce is hard_bounce


def test_refusal_reads_the_enhanced_code():
    assert Refusal(550, "5.1.1 User unknown").enhanced == (5, 1, 1)
    assert Refusal(554, "Transaction failed").enhanced is None
    assert str(Refusal(550, "5.1.1 User unknown")) == "550 5.1.1 User unknown"


# --- Message-ID -------------------------------------------------------------------------------


def test_message_id_is_deterministic_per_key():
    assert message_id("interview-42/followup-1", "mail.example.com") == message_id(
        "interview-42/followup-1", "mail.example.com")


def test_message_id_differs_across_keys_and_has_the_rfc_shape():
    first = message_id("interview-42/followup-1", "mail.example.com")
    second = message_id("interview-42/followup-2", "mail.example.com")
    assert first != second
    for value in (first, second):
        assert value.startswith("<") and value.endswith("@mail.example.com>")
        local = value[1:].split("@")[0]
        assert len(local) == 32 and all(ch in "0123456789abcdef" for ch in local)


@PROPERTY
@given(st.lists(st.text(min_size=1, max_size=40), min_size=2, max_size=20, unique=True))
def test_message_ids_are_distinct_for_distinct_keys(many_keys):
    ids = [message_id(key, "example.com") for key in many_keys]
    assert len(set(ids)) == len(ids)


# --- building the message ---------------------------------------------------------------------

ENVELOPE = Envelope(
    sender_email="jobs@example.com",
    sender_name="Acme Hiring",
    recipient_email="ann@example.com",
    recipient_name="Ann Lee",
    message_id="<0123456789abcdef0123456789abcdef@example.com>",
    unsubscribe_url="https://followups.example.com/u/abc.def.ghi",
    key="interview-42/followup-1",
)
RENDERED = Rendered(subject="Please pick a time", text="Hello Ann\n", html="<p>Hello Ann</p>")


def parsed(rendered: Rendered = RENDERED, envelope: Envelope = ENVELOPE):
    """What a mail client reads from the bytes the send step puts on the wire."""
    return message_from_bytes(build(envelope, rendered).data, policy=policy.default)


def test_build_is_multipart_alternative_text_first_then_html():
    msg = parsed()
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().strip() == "Hello Ann"
    assert parts[1].get_content().strip() == "<p>Hello Ann</p>"


def test_build_sets_the_one_click_unsubscribe_headers_and_identity():
    out = build(ENVELOPE, RENDERED)
    assert (out.sender, out.recipients) == ("jobs@example.com", ["ann@example.com"])
    msg = parsed()
    assert msg["List-Unsubscribe"] == "<https://followups.example.com/u/abc.def.ghi>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == ENVELOPE.message_id
    assert msg["Subject"] == "Please pick a time"
    assert msg["X-Followups-Key"] == "interview-42/followup-1"
    assert "ann@example.com" in msg["To"] and "jobs@example.com" in msg["From"]
    assert msg["Date"]


def test_the_wire_form_is_7bit_crlf_with_the_unsubscribe_uri_on_one_line():
    long_url = "https://followups.example.com/v1/unsubscribe/" + "A" * 300
    envelope = Envelope(**{**ENVELOPE.__dict__, "unsubscribe_url": long_url, "recipient_name": "Zoë Ünal"})
    rendered = Rendered(subject="Grüße — please pick a time " + "x" * 100, text="Hallo Zoë = 1\n" + "y" * 300 + "\n",
                        html="<p>Hallo Zoë</p>")
    data = build(envelope, rendered).data
    assert data.isascii() and b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert f"\r\nList-Unsubscribe: <{long_url}>\r\n".encode() in data  # not folded, not RFC 2047-encoded
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert all(len(word) <= 75 for word in re.findall(rb"=\?utf-8\?[bq]\?[^?]*\?=", data))  # RFC 2047 §2
    msg = parsed(rendered, envelope)
    assert msg["Subject"] == rendered.subject and msg["To"].addresses[0].display_name == "Zoë Ünal"
    text, html = (p.get_content().replace("\r\n", "\n") for p in msg.iter_parts())
    assert text == rendered.text and html.strip() == "<p>Hallo Zoë</p>"


@pytest.mark.parametrize("field", ["recipient_name", "key"])
def test_a_line_break_in_a_header_value_is_refused(field: str):
    with pytest.raises(ValueError, match="may not contain a line break"):
        build(Envelope(**{**ENVELOPE.__dict__, field: "Ann\r\nBcc: x@evil.example"}), RENDERED)


# --- rendering --------------------------------------------------------------------------------


def context(**overrides) -> dict:
    values = dict(
        candidate_name="Ann",
        recipient_name="Ann",
        slot_selection_url="https://jobs.example.com/slots/42?a=1&b=2",
        followup_number=1,
        max_followups=3,
        scheduled_at="2026-03-10T09:00:00+00:00",
        time_zone="Europe/Berlin",
        sender_name="Acme Hiring",
        postal_address="1 Main Street, Springfield",
        unsubscribe_url="https://followups.example.com/u/abc.def.ghi",
    )
    values.update(overrides)
    return values


def test_the_real_templates_are_the_ones_rendered():
    assert (TEMPLATES_DIR / "interview_followup.txt").is_file()
    assert (TEMPLATES_DIR / "interview_reminder.html").is_file()


def test_followup_renders_subject_text_and_html_with_the_slot_link():
    out = Renderer().render("interview_followup", context())
    assert out.subject == "Please pick a time for your interview"
    assert "https://jobs.example.com/slots/42?a=1&b=2" in out.text
    assert 'href="https://jobs.example.com/slots/42?a=1&amp;b=2"' in out.html
    assert "https://followups.example.com/u/abc.def.ghi" in out.text and "Unsubscribe" in out.html
    assert "last reminder" not in out.text
    assert out.text.endswith("\n") and not out.text.endswith("\n\n")


def test_later_followups_say_reminder_and_the_last_says_so():
    out = Renderer().render("interview_followup", context(followup_number=3, max_followups=3))
    assert out.subject.startswith("Reminder: ")
    assert "This is our last reminder" in out.text and "This is our last reminder" in out.html


def test_reminder_shows_the_time_in_the_candidates_zone():
    out = Renderer().render("interview_reminder", context())
    assert out.subject == "Reminder: your interview on 10 March 2026 at 10:00 CET"
    assert "Tuesday 10 March 2026, 10:00 CET" in out.text and "Tuesday 10 March 2026, 10:00 CET" in out.html


@pytest.mark.parametrize("template", ["interview_followup", "interview_reminder"])
def test_html_is_autoescaped_and_text_is_not(template: str):
    out = Renderer().render(template, context(candidate_name="<script>alert(1)</script>"))
    assert "<script>" not in out.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert "<script>alert(1)</script>" in out.text


@pytest.mark.parametrize("template", ["interview_followup", "interview_reminder"])
def test_subject_never_carries_a_line_break_from_the_context(template: str):
    evil = "Ann\r\nBcc: x@evil.example"
    out = Renderer().render(template, context(candidate_name=evil, recipient_name=evil, sender_name=evil))
    assert "\r" not in out.subject and "\n" not in out.subject
    build(ENVELOPE, out)  # and the header is accepted as is


def test_subject_built_from_the_context_is_folded_to_one_line(tmp_path: Path):
    (tmp_path / "hello.txt").write_text("{% set subject %}Hello {{ name }}{% endset %}Body for {{ name }}\n")
    (tmp_path / "hello.html").write_text("<title>{{ subject }}</title><p>{{ name }}</p>")
    out = Renderer(directory=tmp_path).render("hello", {"name": "Ann\r\nBcc: x@evil.example"})
    assert out.subject == "Hello Ann Bcc: x@evil.example"
    assert "\r" not in out.subject and "\n" not in out.subject
    assert parsed(out)["Subject"] == "Hello Ann Bcc: x@evil.example"


@pytest.mark.parametrize("missing", ["candidate_name", "slot_selection_url", "unsubscribe_url", "sender_name"])
def test_a_missing_variable_is_a_template_problem(missing: str):
    values = context()
    del values[missing]
    with pytest.raises(TemplateProblem):
        Renderer().render("interview_followup", values)


def test_an_unknown_template_is_a_template_problem():
    with pytest.raises(TemplateProblem):
        Renderer().render("no_such_template", context())


def test_a_template_without_a_subject_is_a_template_problem(tmp_path: Path):
    (tmp_path / "bare.txt").write_text("Hello\n")
    (tmp_path / "bare.html").write_text("<p>Hello</p>")
    with pytest.raises(TemplateProblem):
        Renderer(directory=tmp_path).render("bare", {})


@pytest.mark.parametrize("expression", [
    "''.__class__.__mro__",
    "''.__class__.__mro__[1].__subclasses__()",
    "cycler.__init__.__globals__",
    "self.__init__.__globals__",
    "name.__class__",
])
@pytest.mark.parametrize("kind", ["txt", "html"])
def test_the_sandbox_refuses_dunder_access(tmp_path: Path, expression: str, kind: str):
    subject = "{% set subject %}Hi{% endset %}"
    (tmp_path / "evil.txt").write_text(subject + ("{{ " + expression + " }}" if kind == "txt" else "ok"))
    (tmp_path / "evil.html").write_text("{{ " + expression + " }}" if kind == "html" else "ok")
    with pytest.raises((SecurityError, TemplateProblem)):
        Renderer(directory=tmp_path).render("evil", {"name": "Ann"})


def test_the_sandbox_is_immutable(tmp_path: Path):
    (tmp_path / "mut.txt").write_text("{% set subject %}Hi{% endset %}{{ items.append(1) }}")
    (tmp_path / "mut.html").write_text("ok")
    items: list[int] = []
    with pytest.raises((SecurityError, TemplateProblem)):
        Renderer(directory=tmp_path).render("mut", {"items": items})
    assert items == []


@pytest.mark.parametrize("body", ["{{ ''.__class__.__mro__ }}", "{{ unclosed "])
def test_any_broken_template_is_a_template_problem(tmp_path: Path, body: str):
    (tmp_path / "bad.txt").write_text("{% set subject %}Hi{% endset %}" + body)
    (tmp_path / "bad.html").write_text("ok")
    with pytest.raises(TemplateProblem):
        Renderer(directory=tmp_path).render("bad", {})


@pytest.mark.parametrize("offer_url", [None, "https://shop.example.com/start"])
def test_lead_welcome_announces_a_link_only_when_there_is_one(offer_url):
    out = Renderer().render("lead_welcome", context(name="Lee", company=None, offer_url=offer_url))
    assert ("Here is where to start:" in out.text) is (offer_url is not None)
    assert ("See where to start" in out.html) is (offer_url is not None)
    if offer_url:
        assert f"Here is where to start:\n\n{offer_url}\n" in out.text
    assert "\n\n\n" not in out.text


def test_a_filter_given_what_it_cannot_use_is_a_template_problem():
    with pytest.raises(TemplateProblem, match="local_time|Invalid isoformat|payment_reminder"):
        Renderer().render("payment_reminder", context(payer_name="Pat", amount="12.50", currency="EUR", locale="en_US",
                                                      description=None, payment_url="https://pay.example.com/1",
                                                      started_at="not a date"))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["Subject", "To", "X-Followups-Key", "List-Unsubscribe"]),
       value=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e) | st.sampled_from(" \t"),
                     max_size=1200))
def test_the_wire_policy_writes_every_header_as_compat32_does(name: str, value: str):
    """The unfolded fast path is only an optimisation: byte for byte what compat32 writes."""
    from email import _policybase

    from activities.mail import _WIRE

    reference = _policybase.compat32.clone(linesep="\r\n", max_line_length=998)
    assert _WIRE.fold_binary(name, value) == reference.fold_binary(name, value)
