"""Bounce classes, auto-replies, the soft-bounce rule and SNS's URL and signing rules as pure
functions; and our reading of bounce messages against the 117 real ones of flufl.bounce's corpus,
scored against what the corpus's own tests say each message yields."""

from __future__ import annotations

import ast
import base64
import json
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email import message_from_bytes

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flufl.bounce import all_failures
from hypothesis import given, strategies as st

from activities.bounces import SOFT_WINDOW, classify, failure_event, soft_bounces
from activities.dsn import AutoReply, NotABounce, read_bounce
from activities.providers import Forged, Mailgun, Postmark, SendGrid
from activities.sns import fresh, names, sns_region, sns_url, string_to_sign, topic_region
from tests.conftest import ROOT

CORPUS = ROOT / ".venv" / "corpora" / "flufl_bounce-6.0.0" / "tests"
NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def _expected() -> dict[str, tuple[set[str], set[str]]]:
    """File → (temporary, permanent) addresses, from the corpus's tests: every row of
    test_detectors.py's DETECTORS (a file some detector must yield nothing for counts as no
    failure unless another row names one), plus test_scan_unrecognized's dumbass_01.txt."""
    tree = ast.parse((CORPUS / "test_detectors.py").read_text())
    [rows] = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              and getattr(node.targets[0], "id", None) == "DETECTORS"]
    expected: dict[str, tuple[set[str], set[str]]] = {"dumbass_01.txt": (set(), set())}
    for _detector, filename, addresses, temporary in rows:
        found = expected.setdefault(filename, (set(), set()))
        found[0 if temporary else 1].update(address.decode().lower() for address in addresses)
    return expected


def _ours(raw: bytes) -> tuple[set[str], set[str]]:
    try:
        bounce = read_bounce(raw)
    except NotABounce:
        return set(), set()
    return ({f.email for f in bounce.failures if not f.permanent}, {f.email for f in bounce.failures if f.permanent})


def _flufl_alone(raw: bytes) -> tuple[set[str], set[str]]:
    temporary, permanent = all_failures(message_from_bytes(raw))
    return {a.decode().lower() for a in temporary}, {a.decode().lower() for a in permanent}


def test_the_corpus_is_classified_as_its_own_tests_expect():
    assert (CORPUS / "data").is_dir(), f"the flufl.bounce corpus is missing at {CORPUS}: run `make install`"
    expected = _expected()
    assert len(expected) == 116  # 117 messages; bounce_01.txt is named by no test of the corpus
    ours = flufl = addresses = address_hits = 0
    misses = []
    for filename, want in sorted(expected.items()):
        raw = (CORPUS / "data" / filename).read_bytes()
        got = _ours(raw)
        ours += got == want
        flufl += _flufl_alone(raw) == want
        wanted = {(a, False) for a in want[0]} | {(a, True) for a in want[1]}
        found = {(a, False) for a in got[0]} | {(a, True) for a in got[1]}
        addresses += len(wanted | found)
        address_hits += len(wanted & found)
        if got != want:
            misses.append(f"{filename}: expected {want}, got {got}")
    print(f"\nflufl.bounce corpus: {ours}/{len(expected)} messages agree ({ours / len(expected):.1%}), "
          f"{address_hits}/{addresses} addresses with their permanence; flufl.bounce alone: {flufl}/{len(expected)}")
    # The floor: never worse than the library alone, and at most one message of the corpus off.
    assert ours >= flufl and ours >= len(expected) - 1, misses


@pytest.mark.parametrize(("filename", "address", "kind", "code"), [
    ("dsn_11.txt", "joem@example.com", "bounced", "5.1.1"),  # Status: 5.1.1, user unknown
    ("dsn_14.txt", "userx@example.com.dk", "bounced", "5.1.1"),  # the code only in Diagnostic-Code
    ("dsn_01.txt", "userx@example.com", "soft_bounced", "5.0.0"),  # disk quota: failed, not a dead address
    ("dsn_05.txt", "userx@example.cz", "deferred", "4.4.1"),  # Action: delayed, still retried
    ("yahoo_11.txt", "bad_user@aol.com", "bounced", "5.1.1"),  # no DSN part: the code beside the address
    ("qmail_01.txt", "userx@example.de", "soft_bounced", None),  # no code at all: soft, never suppressed at once
    ("simple_45.txt", "subscriber@earthlink.net", "soft_bounced", None),  # Auto-Submitted: auto-replied, a bounce
])
def test_corpus_messages_become_events_of_their_class(filename, address, kind, code):
    bounce = read_bounce((CORPUS / "data" / filename).read_bytes())
    [event] = [e for e in bounce.events() if e.email == address]
    assert (event.kind, event.code, event.provider) == (kind, code, "dsn")
    assert event.event_id == f"{bounce.report_id}/{address}"


@pytest.mark.parametrize(("text", "verdict", "expected"), [
    *[(f"smtp; 550 {code} no such user", None, "hard") for code in ("5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10",
                                                                     "5.2.1", "5.4.4")],
    ("552 5.2.2 mailbox full", None, "soft"), ("452 4.2.2 over quota", None, "soft"),
    ("5.0.0", None, "soft"), ("550 5.1.4 ambiguous", "permanent", "soft"), ("4.4.7 expired", "permanent", "soft"),
    ("550 5.7.1 rejected by policy", "permanent", "policy"), ("5.7.26 DMARC", None, "policy"),
    ("550 5.7.515 access denied, sending domain does not meet authentication", None, "policy"),
    ("421 4.7.0 try again later, reputation", None, "policy"),
    (None, "permanent", "hard"), ("unknown user", "permanent", "hard"), (None, "temporary", "soft"), (None, None, "soft"),
])
def test_bounce_classes(text, verdict, expected):
    assert classify(text, verdict) == expected


@given(st.sampled_from([4, 5]), st.integers(0, 9), st.integers(0, 999), st.sampled_from([None, "permanent", "temporary"]))
def test_a_code_decides_over_the_verdict_and_only_5_x_can_be_hard(klass, subject, detail, verdict):
    result = classify(f"550 {klass}.{subject}.{detail} said the server", verdict)
    if subject == 7:
        assert result == "policy"
    elif klass == 4:
        assert result == "soft"
    else:
        assert (result == "hard") == ((subject, detail) in {(1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1), (4, 4)})


def test_a_policy_block_is_recorded_as_failed_on_the_senders_side_and_never_as_a_bounce():
    event = failure_event("dsn", "r1/pat@example.com", "Pat@Example.com", "550 5.7.26 unauthenticated mail", "permanent")
    assert (event.kind, event.email, event.code) == ("failed", "pat@example.com", "5.7.26")
    assert event.reason.startswith("policy: ") and event.detail["sender_side"] is True


def test_three_soft_bounces_of_different_messages_within_30_days():
    day = timedelta(days=1)
    assert soft_bounces([("m1", NOW - 2 * day), ("m2", NOW - day)], NOW) == 2
    assert soft_bounces([("m1", NOW - 2 * day), ("m2", NOW - day), ("m3", NOW)], NOW) == 3
    assert soft_bounces([("m1", NOW - 2 * day), ("m1", NOW - day), ("m1", NOW)], NOW) == 1  # one message, retried
    assert soft_bounces([("m1", NOW - 31 * day), ("m2", NOW - day), ("m3", NOW)], NOW) == 2  # one too old
    assert soft_bounces([(None, NOW), (None, NOW), ("m1", NOW)], NOW) == 3  # no message to tie them to: each counts


@given(st.lists(st.tuples(st.sampled_from([None, "a", "b", "c", "d"]), st.integers(0, 60 * 24 * 60))))
def test_the_soft_count_ignores_old_events_and_repeats_of_a_message(pairs):
    events = [(key, NOW - timedelta(minutes=minutes)) for key, minutes in pairs]
    recent = [(key, at) for key, at in events if at > NOW - SOFT_WINDOW]
    assert soft_bounces(events, NOW) == soft_bounces(recent, NOW) <= len(recent)
    assert soft_bounces(events + recent, NOW) == soft_bounces(events, NOW) + sum(key is None for key, _ in recent)
    assert soft_bounces(events + [("new", NOW)], NOW) == soft_bounces(events, NOW) + 1


def _reply(**headers: str) -> bytes:
    message = EmailMessage()
    for name, value in {"From": "pat@example.com", "To": "followups@example.com", **headers}.items():
        message[name.replace("_", "-")] = value
    message.set_content("I am away until Monday and will answer then.")
    return message.as_bytes()


@pytest.mark.parametrize("headers", [
    {"Subject": "Out of Office: Your reminder"}, {"Subject": "Automatic reply: Your reminder"},
    {"Subject": "=?utf-8?q?Abwesenheitsnotiz=3A_Ihre_Erinnerung?="}, {"Subject": "Re: hi", "X_Autoreply": "yes"},
    {"Subject": "Re: hi", "Precedence": "auto_reply"}, {"Subject": "Re: hi", "Auto_Submitted": "auto-replied"},
])
def test_auto_replies_are_not_bounces(headers):
    with pytest.raises(AutoReply):
        read_bounce(_reply(**headers))


def test_a_message_that_is_neither_is_not_a_bounce():
    with pytest.raises(NotABounce) as raised:
        read_bounce(_reply(Subject="Re: your reminder"))
    assert not isinstance(raised.value, AutoReply)
    with pytest.raises(NotABounce):
        read_bounce(b"\x00\xff{not a message at all")


def _dsn(status: str, returned: str) -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.net
Message-ID: <dsn-1@mx.example.net>
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.
--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; Pat@Example.org
Action: failed
Status: {status}
Diagnostic-Code: smtp; 550 {status} refused

--B
Content-Type: {returned}

Message-ID: <abc123@followups.example>
X-Followups-Key: payment-42/reminder-3d
To: pat@example.org

--B--
""".replace("\n", "\r\n").encode()


@pytest.mark.parametrize("returned", ["text/rfc822-headers", "message/rfc822"])
def test_a_dsn_names_our_message_by_its_returned_headers(returned):
    bounce = read_bounce(_dsn("5.1.1", returned))
    assert (bounce.message_id, bounce.key, bounce.report_id) == ("<abc123@followups.example>",
                                                                 "payment-42/reminder-3d", "<dsn-1@mx.example.net>")
    [event] = bounce.events()
    assert (event.email, event.kind, event.code, event.key) == ("pat@example.org", "bounced", "5.1.1",
                                                                "payment-42/reminder-3d")
    [blocked] = read_bounce(_dsn("5.7.1", returned)).events()
    assert blocked.kind == "failed" and blocked.detail["class"] == "policy"


@pytest.mark.parametrize(("url", "ok"), [
    ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
    ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
    ("http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", False),
    ("https://evil.example/sns.us-east-1.amazonaws.com/x.pem", False),
    ("https://sns.us-east-1.amazonaws.com@evil.example/x.pem", False),
    ("https://user@sns.us-east-1.amazonaws.com/x.pem", False),
    ("https://sns.us-east-1.amazonaws.com:8443/x.pem", False),
    ("https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem", False),
    ("https://s3.amazonaws.com/x.pem", False),
    ("https://sns.us-east-1.amazonaws.com/x.txt", False),
    ("https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
    ("https://sns.ap-southeast-4.amazonaws.com/SimpleNotificationService-abc.pem", True),
    ("https://sns.cn-northwest-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
    # the S3 hosts of a bucket named `sns`: whoever owns it could serve any certificate there
    ("https://sns.s3.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.s3-us-west-2.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.s3-accelerate.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.s3-external-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.s3.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.s3-website-us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.us-east-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", False),  # .cn: China only
    ("https://sns.cn-north-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.US-EAST-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
])
def test_a_certificate_url_must_be_https_on_an_sns_host(url, ok):
    assert sns_url(url, ".pem") is ok


def test_the_region_of_a_certificate_url_and_of_a_topic():
    assert sns_region("https://sns.us-west-2.amazonaws.com/SimpleNotificationService-abc.pem", ".pem") == "us-west-2"
    assert sns_region("https://sns.cn-north-1.amazonaws.com.cn/?Action=ConfirmSubscription") == "cn-north-1"
    assert sns_region("https://sns.s3.amazonaws.com/x.pem", ".pem") is None
    assert topic_region("arn:aws:sns:us-east-1:123456789012:followups-bounces") == "us-east-1"
    assert topic_region("arn:aws-cn:sns:cn-north-1:123456789012:bounces.fifo") == "cn-north-1"
    assert topic_region("arn:aws-us-gov:sns:us-gov-west-1:123456789012:b") == "us-gov-west-1"
    assert topic_region("arn:aws:sqs:us-east-1:123456789012:q") is None and topic_region(None) is None


def _certificate(subject: str | None, sans: list[str] = ()) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)] if subject else [])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_the_names_a_certificate_is_for():
    assert names(_certificate("sns.amazonaws.com")) == {"sns.amazonaws.com"}
    assert names(_certificate(None, ["SNS.amazonaws.com"])) == {"sns.amazonaws.com"}
    assert names(_certificate("attacker.example", ["www.attacker.example"])) == {"attacker.example",
                                                                                 "www.attacker.example"}


@pytest.mark.parametrize(("timestamp", "ok"), [
    ("2026-03-01T12:00:00.000Z", True), ("2026-03-01T11:00:00.000Z", True),  # an hour: SNS's longest retry
    ("2026-03-01T10:59:59.999Z", False), ("2025-12-01T12:00:00.000Z", False),  # a replay after the 90-day purge
    ("2026-03-01T12:05:00.000Z", True), ("2026-03-01T12:05:01.000Z", False),  # five minutes of skew, no more
    ("2026-03-01T12:00:00", False), ("yesterday", False), ("", False), ("1772366400", False),
])
def test_an_sns_message_must_be_fresh(timestamp, ok):
    try:
        fresh(timestamp, NOW)
    except Forged:
        assert not ok
    else:
        assert ok


def test_a_sendgrid_post_must_be_signed_within_15_minutes_of_now():
    key = ec.generate_private_key(ec.SECP256R1())
    sendgrid = SendGrid(base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode())
    body = b'[{"event": "bounce"}]'

    def post(at: datetime) -> tuple[str, str]:
        timestamp = str(int(at.timestamp()))
        return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode(), timestamp

    for moment in (NOW, NOW - timedelta(minutes=15), NOW + timedelta(minutes=15)):
        sendgrid.verify(body, *post(moment), now=NOW)
    for moment in (NOW - timedelta(minutes=16), NOW + timedelta(minutes=16), NOW - timedelta(days=91)):
        with pytest.raises(Forged, match="stale") as refused:
            sendgrid.verify(body, *post(moment), now=NOW)
        assert refused.value.field == "X-Twilio-Email-Event-Webhook-Timestamp"
    with pytest.raises(Forged, match="does not verify"):  # the signature is checked first
        sendgrid.verify(body, post(NOW)[0], str(int(NOW.timestamp()) + 1), now=NOW)


def test_the_string_to_sign_follows_the_message_type():
    notification = {"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "hi", "Timestamp": "ts",
                    "Signature": "s", "SigningCertURL": "u"}
    assert string_to_sign(notification) == b"Message\nhi\nMessageId\nm\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    assert b"Subject\nS\n" in string_to_sign({**notification, "Subject": "S"})
    confirmation = {**notification, "Type": "SubscriptionConfirmation", "Token": "k", "SubscribeURL": "https://x"}
    assert string_to_sign(confirmation) == (b"Message\nhi\nMessageId\nm\nSubscribeURL\nhttps://x\nTimestamp\nts\n"
                                            b"Token\nk\nTopicArn\nt\nType\nSubscriptionConfirmation\n")


@pytest.mark.parametrize(("fields", "kind"), [
    ({"Type": "HardBounce", "TypeCode": 1}, "bounced"), ({"Type": "BadEmailAddress", "TypeCode": 100000}, "bounced"),
    ({"Type": "SoftBounce", "TypeCode": 4096}, "soft_bounced"), ({"Type": "Transient", "TypeCode": 2}, "deferred"),
    ({"Type": "DMARCPolicy", "TypeCode": 100009}, "failed"), ({"Type": "Blocked", "TypeCode": 100006}, "failed"),
    ({"Type": "SpamComplaint", "TypeCode": 100001}, "complained"), ({"TypeCode": 4096}, "soft_bounced"),
    ({"Type": "HardBounce", "TypeCode": 1, "Details": "550 5.7.1 blocked for spam"}, "failed"),
    ({"Type": "AutoResponder", "TypeCode": 64}, None), ({"Type": "Subscribe", "TypeCode": 32}, None),
])
def test_postmark_bounce_types(fields, kind):
    record = {"RecordType": "Bounce", "ID": 7, "Email": "pat@example.com", "Details": "", **fields}
    events = Postmark.events(record)
    assert [e.kind for e in events] == ([kind] if kind else [])


def test_a_mailgun_temporary_failure_is_a_delay_and_a_permanent_one_a_bounce():
    def failed(severity: str, status: dict) -> str:
        [event] = Mailgun.events({"event-data": {"event": "failed", "id": "x", "recipient": "Pat@example.com",
                                                 "severity": severity, "delivery-status": status}})
        return event.kind
    assert failed("temporary", {"code": 452, "message": "4.2.2 over quota"}) == "deferred"
    assert failed("permanent", {"code": 550, "message": "5.1.1 no such user"}) == "bounced"
    assert failed("permanent", {"code": 605, "description": "Not delivering to previously bounced address"}) == "bounced"
    assert failed("permanent", {"code": 550, "message": "5.7.1 rejected: SPF"}) == "failed"


_PIECES = st.sampled_from([b"Subject: ", b"From: ", b"X-Followups-Key: ", b"Message-ID: ", b"Content-Type: ",
                           b"Status: ", b"Final-Recipient: rfc822; ", b"=?", b"?q?", b"\r\n", b"--", b"\x80\xff\x00"])


@given(st.sampled_from(sorted((CORPUS / "data").glob("*.txt"))), st.integers(0, 6000), st.integers(0, 6000),
       st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=8).map(b"".join))
def test_any_bytes_are_read_as_a_bounce_or_refused_never_a_crash(path, cut, at, junk):
    raw = path.read_bytes()[:cut]
    raw = raw[:at] + junk + raw[at:]  # a corpus message cut short, with broken headers and bytes put in
    try:
        bounce = read_bounce(raw)
    except NotABounce:
        return
    for event in bounce.events():
        json.dumps([event.reason, event.key, event.message_id, event.event_id]).encode("utf-8")
