"""DKIM signing in `activities.mail.build`: messages signed with fresh RSA and Ed25519 keys verify
with dkimpy against the public record a DNS server would publish, and stop verifying once changed."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from email import message_from_bytes, policy

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from activities.dkim import DkimKey
from activities.mail import Envelope, Unbuildable, build
from activities.render import Rendered
from tests.unit.test_send_parts import ENVELOPE  # the same envelope the message-building tests use

RENDERED = Rendered(subject="Grüße: please pick a time", text="Hello Ann\n", html="<p>Hello Ann</p>")
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, as `openssl genpkey` writes it."""
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def rsa_key() -> tuple[bytes, str]:
    """A PKCS#8 PEM private key and its DNS TXT record (SubjectPublicKeyInfo, as dknewkey writes)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem(private), f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


def ed25519_key() -> tuple[bytes, str]:
    """RFC 8463: the record holds the raw 32-byte public key."""
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pem(private), f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"


KEYS = {"rsa": rsa_key(), "ed25519": ed25519_key()}
# A 512-bit RSA key (cryptography will not make one): a test fixture, signs nothing real.
WEAK_RSA = b"""-----BEGIN PRIVATE KEY-----
MIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEAnPr+Uct7vRO3Ox8G
ODOOS4bSamwSNZg33jX0ZUjXOIpGXmoAdy0lQ41tR5UDxTuKACchjxUM3ng417yh
GY3k9QIDAQABAkEAl8mV6W8w2XVb4b2w3Nz1BRB7Gs4emVXzB1jyVJEnEZIWaFjk
PiANAu2t9yyyNzEobfERWUBGpeTs1tst+1BobQIhAM+gBiWvEXZDchC1pJngRkUr
6dkIXy+jNHw+n0KGNE4XAiEAwY452qoZXkO17Qn9+1tjY1l9vd2nMisSFZBquYnX
uNMCIHUkZFN+ouuGwiSLV4M59muwiw/YmVvXSRWQf2qZLYmhAiB4OqV7S2/Imxy1
qiBG82SQQPWXa8jAo/puxK9WouYKGwIgDCeEwzM1JeO2KQR7h8vdC+3dd1albqnf
R+v81pQ2KEs=
-----END PRIVATE KEY-----
"""


def dns(record: str, name: bytes = b"mail2026._domainkey.example.com.") -> Callable[..., bytes | None]:
    """What dkimpy's resolver would answer: the record at its one name, nothing elsewhere."""
    def lookup(qname: bytes, timeout: int = 5) -> bytes | None:
        return record.encode() if qname == name else None
    return lookup


def signed(kind: str, envelope: Envelope = ENVELOPE) -> bytes:
    pem, _ = KEYS[kind]
    return build(envelope, RENDERED, DkimKey("mail2026", "example.com", pem)).data


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_a_signed_message_verifies_against_the_published_key(kind: str) -> None:
    data = signed(kind)
    assert data.startswith(b"DKIM-Signature: ")
    assert dkim.verify(data, dnsfunc=dns(KEYS[kind][1]))
    assert b"a=ed25519-sha256" in data if kind == "ed25519" else b"a=rsa-sha256" in data


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_the_signature_covers_the_one_click_unsubscribe_headers(kind: str) -> None:
    signature = message_from_bytes(signed(kind), policy=policy.compat32)["DKIM-Signature"]
    tags = dict(tag.strip().split("=", 1) for tag in re.sub(r"\s+", "", signature).split(";") if tag.strip())
    covered = set(tags["h"].lower().split(":"))
    assert {"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post",
            "mime-version", "content-type"} <= covered
    assert tags["d"] == "example.com" and tags["s"] == "mail2026" and tags["c"] == "relaxed/relaxed"


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
@pytest.mark.parametrize("change", [
    (b"Hello Ann", b"Hello Bob"),  # the body
    (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nothing"),
    (b"/u/abc.def.ghi>", b"/u/abc.def.xyz>"),  # where the unsubscribe link points
], ids=["body", "one-click header", "unsubscribe URL"])
def test_a_changed_message_fails_verification(kind: str, change: tuple[bytes, bytes]) -> None:
    data = signed(kind)
    assert change[0] in data
    assert not dkim.verify(data.replace(change[0], change[1]), dnsfunc=dns(KEYS[kind][1]))


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_another_key_of_the_same_kind_does_not_verify(kind: str) -> None:
    _, other = rsa_key() if kind == "rsa" else ed25519_key()
    assert not dkim.verify(signed(kind), dnsfunc=dns(other))


def test_an_smtputf8_recipient_is_signed_as_8bit() -> None:
    envelope = Envelope(**{**ENVELOPE.__dict__, "recipient_email": "用户@例子.广告", "recipient_name": "Zoë"})
    for kind in KEYS:
        out = build(envelope, RENDERED, DkimKey("mail2026", "example.com", KEYS[kind][0]))
        assert out.smtputf8 and "用户".encode() in out.data
        assert dkim.verify(out.data, dnsfunc=dns(KEYS[kind][1]))


def test_an_ed25519_seed_as_dknewkey_writes_it_is_accepted() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    out = build(ENVELOPE, RENDERED, DkimKey("mail2026", "example.com", base64.b64encode(seed) + b"\n"))
    assert dkim.verify(out.data, dnsfunc=dns(f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"))


def test_a_pem_with_crlf_line_ends_still_signs() -> None:
    pem, record = KEYS["rsa"]
    out = build(ENVELOPE, RENDERED, DkimKey("mail2026", "example.com", pem.replace(b"\n", b"\r\n")))
    assert dkim.verify(out.data, dnsfunc=dns(record))


def test_without_a_key_the_message_is_as_before() -> None:
    data = build(ENVELOPE, RENDERED).data
    assert b"DKIM-Signature" not in data and data.startswith(b"Content-Type: multipart/alternative")


@pytest.mark.parametrize("key, reason", [
    (pem(ec.generate_private_key(ec.SECP256R1())), "DKIM signs with RSA or Ed25519"),
    (WEAK_RSA, "under 1024"),
    (pem(ed25519.Ed25519PrivateKey.generate(), password=b"secret"), "cannot be read"),
    (b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "cannot be read"),
    (b"c2hvcnQ=", "not a 32-byte Ed25519 seed"),
    (b"not base64 at all!", "neither PEM nor a base64 Ed25519 seed"),
], ids=["ecdsa", "short rsa", "encrypted", "garbage pem", "short seed", "garbage"])
def test_a_key_dkimpy_cannot_use_is_unbuildable_with_the_reason(key: bytes, reason: str) -> None:
    with pytest.raises(Unbuildable, match=reason):
        build(ENVELOPE, RENDERED, DkimKey("mail2026", "example.com", key))


def test_a_selector_that_is_not_ascii_is_unbuildable() -> None:
    with pytest.raises(Unbuildable, match="cannot be DKIM-signed"):
        build(ENVELOPE, RENDERED, DkimKey("sélecteur", "example.com", KEYS["ed25519"][0]))
