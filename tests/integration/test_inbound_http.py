"""Bounces and provider webhooks through the real API (a worker, the Temporal dev server, PostgreSQL,
the SMTP sink): for each provider a payload as its documentation shows it (tests/data/providers),
signed with keys made here, is recorded once and suppresses as the rules say; a forged or missing
signature, a wrong key, a stale timestamp, a certificate off an SNS host (or of another region, or
naming another host) is a 401 that changes nothing in PostgreSQL. The SNS certificate is the one thing served by a stand-in for AWS (this
machine cannot reach it): an HTTP client given to the route's SNS certificate fetcher."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from starter.routes import inbound
from tests.conftest import ROOT, running_stack
from tests.integration.test_appointment_http import _delivered

DATA = ROOT / "tests" / "data" / "providers"
CORPUS = ROOT / ".venv" / "corpora" / "flufl_bounce-6.0.0" / "tests" / "data"
TOPIC = "arn:aws:sns:us-east-1:123456789012:followups-bounces"
SNS_HOST = "https://sns.us-east-1.amazonaws.com"
MAILGUN_KEY = uuid.uuid4().hex
POSTMARK = ("postmark", uuid.uuid4().hex)


def _certificate(key: rsa.RSAPrivateKey, subject: str = "sns.amazonaws.com") -> bytes:
    """A self-signed certificate naming `subject`, as AWS's SNS signing certificates name sns.amazonaws.com."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(SENDGRID_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


@pytest_asyncio.fixture(scope="module")
async def bounce_stack(local_env, database_url, smtp):
    asked: list[str] = []  # every URL the route fetched from "AWS"
    pem, other = _certificate(SNS_KEY), _certificate(SNS_KEY, "attacker.example")

    def aws(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.path.endswith(".pem"):  # the right key, but a certificate for another host
            return httpx.Response(200, content=other if "other-subject" in request.url.path else pem)
        return httpx.Response(200 if request.url.params.get("Action") == "ConfirmSubscription" else 404)

    inbound.SNS.client = httpx.AsyncClient(transport=httpx.MockTransport(aws))
    try:
        async with running_stack(local_env, database_url, smtp, ses_topic_arns=[TOPIC],
                                 sendgrid_webhook_public_key=SENDGRID_PUBLIC, mailgun_webhook_signing_key=MAILGUN_KEY,
                                 postmark_webhook_username=POSTMARK[0], postmark_webhook_password=POSTMARK[1]) as stack:
            stack.asked = asked
            yield stack
    finally:
        await inbound.SNS.client.aclose()
        inbound.SNS.client = None


@pytest_asyncio.fixture
async def http(bounce_stack):
    async with httpx.AsyncClient(base_url=bounce_stack.base_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def db(database_url):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def _snapshot(db) -> tuple:
    """Everything a webhook could change."""
    return (await db.fetchval("SELECT count(*) FROM message_events"), await db.fetchval("SELECT count(*) FROM suppressions"),
            await db.fetchval("SELECT count(*) FROM webhook_tokens"))


async def _source(db, email: str) -> str | None:
    return await db.fetchval("SELECT source FROM suppressions WHERE email = $1", email)


def _payload(name: str, **replace: str) -> str:
    text = (DATA / name).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


# --- Amazon SES through SNS -----------------------------------------------------------------------

def _sns(message: str, uid: str, version: str = "2", **fields: str) -> bytes:
    """An SNS message as SNS posts it, signed as AWS documents (the string to sign written out here,
    independently of the code under test)."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    envelope = {**json.loads(_payload("sns_notification.json")), "TopicArn": TOPIC, "Message": message,
                "MessageId": f"sns-{uid}-{uuid.uuid4().hex[:6]}", "SignatureVersion": version, "Timestamp": now,
                "SigningCertURL": f"{SNS_HOST}/SimpleNotificationService-{uid}.pem", **fields}
    order = (["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"] if envelope["Type"] == "Notification"
             else ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"])
    signed = "".join(f"{name}\n{envelope[name]}\n" for name in order if name in envelope).encode()
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    envelope["Signature"] = base64.b64encode(SNS_KEY.sign(signed, padding.PKCS1v15(), algorithm)).decode()
    return json.dumps(envelope).encode()


async def test_ses_bounce_complaint_and_delivery_are_recorded_once_and_suppress(http, db, uid):
    jane, richard = f"jane-{uid}@example.com", f"richard-{uid}@example.com"
    bounce = _sns(_payload("ses_bounce.json", **{"jane@example.com": jane}), uid, version="2")
    first = await http.post("/v1/webhooks/ses", content=bounce, headers={"Content-Type": "text/plain"})
    assert first.status_code == 200, first.text
    assert first.json() | {"result": None} == {"result": None, "received": 1, "recorded": 1, "duplicates": 0, "suppressed": 1}
    assert await _source(db, jane) == "hard_bounce"
    again = await http.post("/v1/webhooks/ses", content=bounce)  # SNS retries with the same message
    assert (again.json()["recorded"], again.json()["duplicates"]) == (0, 1)
    row = await db.fetchrow("SELECT * FROM message_events WHERE email = $1", jane)
    assert (row["kind"], row["provider"], json.loads(row["detail"])["code"]) == ("bounced", "ses", "5.1.1")

    complaint = _sns(_payload("ses_complaint.json", **{"richard@example.com": richard}), uid, version="1")
    assert (await http.post("/v1/webhooks/ses", content=complaint)).json()["suppressed"] == 1
    assert await _source(db, richard) == "complaint"
    delivered = await http.post("/v1/webhooks/ses", content=_sns(_payload("ses_delivery.json", **{
        "jane@example.com": f"mary-{uid}@example.com"}), uid))
    assert delivered.json()["suppressed"] == 0 and await _source(db, f"mary-{uid}@example.com") is None
    assert await db.fetchval("SELECT kind FROM message_events WHERE email = $1", f"mary-{uid}@example.com") == "delivered"


async def test_ses_subscription_is_confirmed_only_once_it_verifies_on_an_sns_host(bounce_stack, http, db, uid):
    confirmation = json.loads(_payload("sns_subscription_confirmation.json"))
    subscribe = f"{SNS_HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={uid}"
    signed = _sns(confirmation["Message"], uid, version="1", Type="SubscriptionConfirmation", Token=uid,
                  SubscribeURL=subscribe)
    confirmed = await http.post("/v1/webhooks/ses", content=signed)
    assert confirmed.status_code == 200 and confirmed.json()["result"] == "subscription confirmed", confirmed.text
    assert subscribe in bounce_stack.asked
    elsewhere = f"https://attacker.example/?Action=ConfirmSubscription&Token={uid}"
    refused = await http.post("/v1/webhooks/ses", content=_sns(confirmation["Message"], uid, Type="SubscriptionConfirmation",
                                                               Token=uid, SubscribeURL=elsewhere))
    assert refused.status_code == 401 and elsewhere not in bounce_stack.asked, refused.text


async def test_forged_ses_messages_are_refused_and_change_nothing(bounce_stack, http, db, uid):
    jane = f"jane-{uid}@example.com"
    message = _payload("ses_bounce.json", **{"jane@example.com": jane})
    before = await _snapshot(db)
    genuine = json.loads(_sns(message, uid))
    tampered = {**genuine, "Message": message.replace("Permanent", "Transient")}
    off_host = f"https://sns.us-east-1.amazonaws.com.attacker.example/SimpleNotificationService-{uid}.pem"
    plain_http = f"http://sns.us-east-1.amazonaws.com/SimpleNotificationService-{uid}.pem"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong_key = {**genuine, "Signature": base64.b64encode(other_key.sign(b"x", padding.PKCS1v15(), hashes.SHA256())).decode()}
    for forged in (tampered, wrong_key, json.loads(_sns(message, uid, SigningCertURL=off_host)),
                   json.loads(_sns(message, uid, SigningCertURL=plain_http)), json.loads(_sns(message, uid, TopicArn=TOPIC + "x")),
                   {key: value for key, value in genuine.items() if key != "Signature"}):
        answer = await http.post("/v1/webhooks/ses", content=json.dumps(forged))
        assert answer.status_code == 401, answer.text
    assert (await http.post("/v1/webhooks/ses", content=b"not json")).status_code == 401
    assert off_host not in bounce_stack.asked and plain_http not in bounce_stack.asked  # refused before any fetch
    assert await _snapshot(db) == before


async def test_a_certificate_only_from_sns_of_the_topics_region_and_naming_sns_is_taken(bounce_stack, http, db, uid):
    message = _payload("ses_bounce.json", **{"jane@example.com": f"jane-{uid}@example.com"})
    before = await _snapshot(db)
    pem = f"SimpleNotificationService-{uid}.pem"
    s3 = [f"https://sns.{host}/{pem}" for host in ("s3.amazonaws.com", "s3-us-west-2.amazonaws.com",
                                                   "s3-accelerate.amazonaws.com", "s3.us-east-1.amazonaws.com",
                                                   "s3-external-1.amazonaws.com")]
    other_region = f"https://sns.us-west-2.amazonaws.com/{pem}"  # an SNS host, but the topic is in us-east-1
    for url in (*s3, other_region):  # the bucket `sns` could serve anything at these: refused before any fetch
        answer = await http.post("/v1/webhooks/ses", content=_sns(message, uid, SigningCertURL=url))
        assert answer.status_code == 401, answer.text
    region = await http.post("/v1/webhooks/ses", content=_sns(message, uid, SigningCertURL=other_region))
    assert "not in the topic's region us-east-1" in region.json()["detail"], region.text
    assert not {*s3, other_region} & set(bounce_stack.asked)

    named = f"{SNS_HOST}/SimpleNotificationService-other-subject-{uid}.pem"  # signed by the right key, even
    answer = await http.post("/v1/webhooks/ses", content=_sns(message, uid, SigningCertURL=named))
    assert answer.status_code == 401 and "attacker.example" in answer.json()["detail"], answer.text
    assert named in bounce_stack.asked

    subscribe = f"https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={uid}"
    confirmation = _sns("subscribe?", uid, Type="SubscriptionConfirmation", Token=uid, SubscribeURL=subscribe)
    assert (await http.post("/v1/webhooks/ses", content=confirmation)).status_code == 401
    assert subscribe not in bounce_stack.asked
    assert await _snapshot(db) == before


async def test_a_stale_or_future_sns_message_is_refused_as_a_replay(bounce_stack, http, db, uid):
    message = _payload("ses_bounce.json", **{"jane@example.com": f"jane-{uid}@example.com"})
    before = await _snapshot(db)

    def at(delta: timedelta) -> str:
        return (datetime.now(timezone.utc) + delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    for when, said in ((at(-timedelta(minutes=61)), "stale SNS message"), (at(-timedelta(days=91)), "stale SNS message"),
                       (at(timedelta(minutes=10)), "in the future"), ("yesterday", "not an ISO 8601 time")):
        answer = await http.post("/v1/webhooks/ses", content=_sns(message, uid, Timestamp=when))
        assert answer.status_code == 401 and said in answer.json()["detail"], (when, answer.text)
    assert await _snapshot(db) == before
    late = await http.post("/v1/webhooks/ses", content=_sns(message, uid, Timestamp=at(-timedelta(minutes=50))))
    assert late.status_code == 200 and late.json()["recorded"] == 1, late.text  # an SNS retry within its hour


# --- SendGrid -------------------------------------------------------------------------------------

def _sendgrid(body: bytes, key: ec.EllipticCurvePrivateKey = SENDGRID_KEY, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(at or time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp, "Content-Type": "application/json"}


async def test_sendgrid_batch_is_verified_recorded_once_and_classified(http, db, uid):
    events = json.loads(_payload("sendgrid_events.json", **{"@test.com": f"-{uid}@example.com"}))
    for event in events:
        event["sg_event_id"] += uid
    body = json.dumps(events).encode()
    first = await http.post("/v1/webhooks/sendgrid", content=body, headers=_sendgrid(body))
    assert first.status_code == 200, first.text
    assert (first.json()["recorded"], first.json()["suppressed"]) == (8, 2)  # "processed" is not an event of ours
    assert await _source(db, f"bounced-{uid}@example.com") == "hard_bounce"
    assert await _source(db, f"spam-{uid}@example.com") == "complaint"
    assert await _source(db, f"blocked-{uid}@example.com") is None  # 5.7.1: the sender was refused, not the address
    kinds = {row["email"].split("-")[0]: row["kind"] for row in await db.fetch(
        "SELECT email, kind FROM message_events WHERE provider = 'sendgrid' AND email LIKE $1 AND email NOT LIKE "
        "'example-%'", f"%-{uid}@%")}
    assert kinds == {"bounced": "bounced", "blocked": "failed", "spam": "complained", "dropped": "failed"}
    assert sorted(row["kind"] for row in await db.fetch("SELECT kind FROM message_events WHERE email = $1",
                                                        f"example-{uid}@example.com")) == ["clicked", "deferred", "delivered", "opened"]
    assert await db.fetchval("SELECT machine FROM message_events WHERE email = $1 AND kind = 'opened'",
                             f"example-{uid}@example.com")  # sg_machine_open
    again = await http.post("/v1/webhooks/sendgrid", content=body, headers=_sendgrid(body))
    assert (again.json()["recorded"], again.json()["duplicates"]) == (0, 8)


async def test_forged_sendgrid_posts_are_refused_and_change_nothing(http, db, uid):
    events = json.loads(_payload("sendgrid_events.json", **{"@test.com": f"-{uid}@example.com"}))
    body = json.dumps(events).encode()
    before = await _snapshot(db)
    headers = _sendgrid(body)
    for forged_body, forged_headers in (
        (body.replace(b"5.1.1", b"4.1.1"), headers),  # the body changed after signing
        (body, _sendgrid(body, ec.generate_private_key(ec.SECP256R1()))),  # signed by another key
        (body, {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": str(int(time.time()) + 1)}),
        (body, {"Content-Type": "application/json"}),  # no signature at all
        (body, _sendgrid(body, at=time.time() - 16 * 60)),  # rightly signed, but captured and replayed later
        (body, _sendgrid(body, at=time.time() - 91 * 24 * 3600)),  # after the events were purged
        (body, _sendgrid(body, at=time.time() + 16 * 60)),
    ):
        answer = await http.post("/v1/webhooks/sendgrid", content=forged_body, headers=forged_headers)
        assert answer.status_code == 401, answer.text
    stale = await http.post("/v1/webhooks/sendgrid", content=body, headers=_sendgrid(body, at=time.time() - 16 * 60))
    assert stale.json()["field"] == "X-Twilio-Email-Event-Webhook-Timestamp", stale.text
    assert "stale" in stale.json()["detail"]
    assert await _snapshot(db) == before


# --- Mailgun --------------------------------------------------------------------------------------

def _mailgun(name: str, uid: str, key: str = MAILGUN_KEY, at: float | None = None, **replace: str) -> dict:
    payload = json.loads(_payload(name, **{"alice@example.com": f"alice-{uid}@example.com", **replace}))
    payload["event-data"]["id"] += uid
    timestamp, token = str(int(at or time.time())), uuid.uuid4().hex
    payload["signature"] = {"timestamp": timestamp, "token": token, "signature": hmac.new(
        key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()}
    return payload


async def test_mailgun_is_verified_and_refuses_replays_stale_and_wrong_keys(http, db, uid):
    alice = f"alice-{uid}@example.com"
    delayed = await http.post("/v1/webhooks/mailgun", json=_mailgun("mailgun_failed_temporary.json", uid))
    assert delayed.status_code == 200 and delayed.json()["suppressed"] == 0, delayed.text
    assert await db.fetchval("SELECT kind FROM message_events WHERE email = $1", alice) == "deferred"
    failed = _mailgun("mailgun_failed_permanent.json", uid)
    first = await http.post("/v1/webhooks/mailgun", json=failed)
    assert first.status_code == 200 and first.json()["suppressed"] == 1, first.text
    assert await _source(db, alice) == "hard_bounce"
    before = await _snapshot(db)
    replayed = await http.post("/v1/webhooks/mailgun", json=failed)  # the same token again
    stale = await http.post("/v1/webhooks/mailgun", json=_mailgun("mailgun_complained.json", uid, at=time.time() - 20 * 60))
    wrong = await http.post("/v1/webhooks/mailgun", json=_mailgun("mailgun_complained.json", uid, key="not-the-key"))
    unsigned = await http.post("/v1/webhooks/mailgun", json={"event-data": failed["event-data"]})
    assert [r.status_code for r in (replayed, stale, wrong, unsigned)] == [401] * 4, replayed.text
    assert await _snapshot(db) == before
    retried = await http.post("/v1/webhooks/mailgun", json={**failed, "signature": _mailgun(
        "mailgun_failed_permanent.json", uid)["signature"]})  # Mailgun's own retry, freshly signed
    assert (retried.status_code, retried.json()["duplicates"]) == (200, 1), retried.text


async def test_two_concurrent_posts_with_one_mailgun_token_are_taken_once(http, db, uid):
    for n in range(5):  # the race of a look-then-insert check is narrow: run it a few times
        payload = _mailgun("mailgun_failed_temporary.json", f"{uid}r{n}")
        answers = await asyncio.gather(*(http.post("/v1/webhooks/mailgun", json=payload) for _ in range(2)))
        assert sorted(a.status_code for a in answers) == [200, 401], [a.text for a in answers]
        [taken] = [a.json() for a in answers if a.status_code == 200]
        [refused] = [a.json() for a in answers if a.status_code == 401]
        assert taken["recorded"] == 1 and refused["field"] == "signature.token"
        assert await db.fetchval("SELECT count(*) FROM message_events WHERE provider = 'mailgun' AND "
                                 "provider_event_id = $1", payload["event-data"]["id"]) == 1
        assert await db.fetchval("SELECT count(*) FROM webhook_tokens WHERE token = $1",
                                 payload["signature"]["token"]) == 1


# --- Postmark -------------------------------------------------------------------------------------

def _postmark(name: str, uid: str, auth: tuple[str, str] = POSTMARK, **fields) -> dict:
    record = {**json.loads(_payload(name, **{"john@example.com": f"john-{uid}@example.com"})), **fields}
    return {"json": record, "auth": auth}


async def test_postmark_behind_basic_auth_and_three_soft_bounces_suppress(http, db, uid):
    john = f"john-{uid}@example.com"
    before = await _snapshot(db)
    for auth in (("postmark", "wrong"), ("other", POSTMARK[1])):
        assert (await http.post("/v1/webhooks/postmark", **_postmark("postmark_bounce.json", uid, auth))).status_code == 401
    assert (await http.post("/v1/webhooks/postmark", json={"RecordType": "Bounce"})).status_code == 401
    assert await _snapshot(db) == before

    def soft(n: int) -> dict:  # bounced now: the documented example's 2019 bounce is outside any 30-day window
        return _postmark("postmark_bounce.json", uid, ID=f"{uid}{n}", Type="SoftBounce", TypeCode=4096,
                         Details="smtp;552 5.2.2 mailbox full", BouncedAt=datetime.now(timezone.utc).isoformat())

    for n in (1, 2):
        assert (await http.post("/v1/webhooks/postmark", **soft(n))).json()["suppressed"] == 0
    dmarc = _postmark("postmark_bounce.json", uid, ID=f"{uid}9", Type="DMARCPolicy", TypeCode=100009,
                      BouncedAt=datetime.now(timezone.utc).isoformat())
    assert (await http.post("/v1/webhooks/postmark", **dmarc)).json()["suppressed"] == 0  # never counts as soft
    assert await _source(db, john) is None
    third = await http.post("/v1/webhooks/postmark", **soft(3))
    assert third.json()["suppressed"] == 1 and await _source(db, f"john-{uid}@example.com") == "soft_bounce"
    assert (await http.post("/v1/webhooks/postmark", **soft(3))).json()["duplicates"] == 1

    other = f"john2-{uid}@example.com"
    hard = _postmark("postmark_bounce.json", uid, ID=f"{uid}h", Email=other)
    assert (await http.post("/v1/webhooks/postmark", **hard)).json()["suppressed"] == 1
    assert await _source(db, other) == "hard_bounce"
    complaint = _postmark("postmark_spam_complaint.json", uid, ID=f"{uid}c", Email=f"john3-{uid}@example.com")
    assert (await http.post("/v1/webhooks/postmark", **complaint)).json()["suppressed"] == 1
    assert await _source(db, f"john3-{uid}@example.com") == "complaint"


# --- RFC 3464 bounce messages ---------------------------------------------------------------------

async def test_a_corpus_bounce_suppresses_its_permanent_address(bounce_stack, http, db, uid):
    api = {"Authorization": f"Bearer {bounce_stack.settings.api_keys[0]}", "Content-Type": "message/rfc822"}
    joe = f"joem-{uid}@example.com"
    raw = (CORPUS / "dsn_11.txt").read_bytes().replace(b"joem@example.com", joe.encode())
    assert (await http.post("/v1/inbound/dsn", content=raw)).status_code == 401  # the API key is required
    answer = await http.post("/v1/inbound/dsn", content=raw, headers=api)
    assert answer.status_code == 200, answer.text
    assert answer.json()["suppressed"] == [joe] and answer.json()["events"][0]["code"] == "5.1.1"
    assert await _source(db, joe) == "hard_bounce"
    assert (await http.post("/v1/inbound/dsn", content=raw, headers=api)).json()["duplicates"] == 1
    away = (CORPUS / "qmail_08.txt").read_bytes()
    assert (await http.post("/v1/inbound/dsn", content=away, headers=api)).json()["result"] == "ignored: auto-reply"
    refused = await http.post("/v1/inbound/dsn", content=b"Subject: hello\r\n\r\njust a note\r\n", headers=api)
    assert refused.status_code == 422 and refused.json()["detail"].startswith("not a bounce"), refused.text


async def test_a_bounce_of_our_own_message_ends_the_recipients_running_journey(bounce_stack, http, db, uid):
    api = {"Authorization": f"Bearer {bounce_stack.settings.api_keys[0]}"}
    payer = f"payer-{uid}@example.com"
    started = await http.post("/v1/payments", headers=api, json={
        "payment_id": uid, "payer": {"email": payer, "name": "Pat Payer"}, "amount": "12.50", "currency": "EUR",
        "payment_url": f"https://pay.example.com/{uid}", "policy": {"reminder_after": ["PT1S"]}})
    assert started.status_code == 201, started.text
    [reminder] = await _delivered(bounce_stack.smtp, f"payment-{uid}/reminder-1s")
    for _ in range(100):  # the bulk cancel finds journeys by their Recipient search attribute
        if [w async for w in bounce_stack.temporal.list_workflows(f"Recipient = '{payer}' AND ExecutionStatus = 'Running'")]:
            break
        await asyncio.sleep(0.1)
    headers = "".join(f"{name}: {value}\r\n" for name, value in reminder.items())
    dsn = (f"From: MAILER-DAEMON@mx.example.net\r\nMessage-ID: <dsn-{uid}@mx.example.net>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\n"
           "Content-Type: text/plain\r\n\r\nDelivery failed.\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
           f"Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; {payer}\r\nAction: failed\r\n"
           f"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--B\r\n"
           f"Content-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--B--\r\n")
    answer = await http.post("/v1/inbound/dsn", content=dsn, headers={**api, "Content-Type": "message/rfc822"})
    assert answer.status_code == 200 and answer.json()["suppressed"] == [payer], answer.text
    assert answer.json()["message_id"] == reminder["Message-ID"]
    event = await db.fetchrow("SELECT key, kind FROM message_events WHERE email = $1 AND provider = 'dsn'", payer)
    assert (event["key"], event["kind"]) == (f"payment-{uid}/reminder-1s", "bounced")
    assert await db.fetchval("SELECT lifecycle FROM messages WHERE key = $1", event["key"]) == "bounced"
    for _ in range(150):
        state = (await http.get(f"/v1/payments/{uid}", headers=api)).json().get("state") or {}
        if state.get("status") == "cancelled":
            break
        await asyncio.sleep(0.1)
    assert state.get("status") == "cancelled", state


async def test_a_provider_not_configured_answers_404_naming_its_setting(local_env, database_url, smtp):
    async with running_stack(local_env, database_url, smtp) as plain:
        async with httpx.AsyncClient(base_url=plain.base_url) as client:
            for provider, setting in (("ses", "FOLLOWUPS_SES_TOPIC_ARNS"),
                                      ("sendgrid", "FOLLOWUPS_SENDGRID_WEBHOOK_PUBLIC_KEY"),
                                      ("mailgun", "FOLLOWUPS_MAILGUN_WEBHOOK_SIGNING_KEY"),
                                      ("postmark", "FOLLOWUPS_POSTMARK_WEBHOOK_PASSWORD")):
                answer = await client.post(f"/v1/webhooks/{provider}", json={})
                assert answer.status_code == 404 and answer.json()["field"] == setting, answer.text
