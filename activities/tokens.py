"""Signed unsubscribe tokens: the link names the address and the message, and nobody can forge one."""

from __future__ import annotations

import base64
import hashlib
import hmac


class BadToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: only the one canonical spelling decodes, so a token has exactly one valid form."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("non-canonical base64")
    return data


def _mac(secret: str, email: str, key: str) -> bytes:
    return hmac.new(secret.encode(), f"unsubscribe\0{email}\0{key}".encode(), hashlib.sha256).digest()[:16]


def sign(secret: str, email: str, key: str) -> str:
    return ".".join((_b64(email.lower().encode()), _b64(key.encode()), _b64(_mac(secret, email.lower(), key))))


def verify(secret: str, token: str) -> tuple[str, str]:
    """(email, message key) of a token this service signed; BadToken otherwise."""
    try:
        email_part, key_part, mac_part = token.split(".")
        email, key, mac = _unb64(email_part).decode(), _unb64(key_part).decode(), _unb64(mac_part)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadToken("malformed unsubscribe token") from err
    if not hmac.compare_digest(mac, _mac(secret, email, key)):
        raise BadToken("unsubscribe token signature does not match")
    return email, key
