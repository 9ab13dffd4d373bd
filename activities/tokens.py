"""Signed links: the one-click unsubscribe link names the address and the message, the preference
page link names the address; nobody can forge either, nor use one as the other.

Each purpose signs its own text (`unsubscribe\\0{email}\\0{key}`, `preferences\\0{email}`) and has
its own number of parts, so a token signed for one purpose never verifies as another.
"""

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


def _mac(secret: str, purpose: str, *fields: str) -> bytes:
    # The unsubscribe text is what links in mail already sent were signed over: never change it.
    return hmac.new(secret.encode(), "\0".join((purpose, *fields)).encode(), hashlib.sha256).digest()[:16]


def _sign(secret: str, purpose: str, *fields: str) -> str:
    return ".".join([*(_b64(field.encode()) for field in fields), _b64(_mac(secret, purpose, *fields))])


def _verify(secret: str, purpose: str, what: str, token: str, count: int) -> list[str]:
    try:
        *encoded, mac_part = token.split(".")
        if len(encoded) != count:
            raise ValueError(f"expected {count + 1} parts")
        fields, mac = [_unb64(part).decode() for part in encoded], _unb64(mac_part)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadToken(f"malformed {what}") from err
    if not hmac.compare_digest(mac, _mac(secret, purpose, *fields)):
        raise BadToken(f"{what} signature does not match")
    return fields


def sign(secret: str, email: str, key: str) -> str:
    """The one-click unsubscribe token of message `key` sent to `email`."""
    return _sign(secret, "unsubscribe", email.lower(), key)


def verify(secret: str, token: str) -> tuple[str, str]:
    """(email, message key) of an unsubscribe token this service signed; BadToken otherwise."""
    email, key = _verify(secret, "unsubscribe", "unsubscribe token", token, 2)
    return email, key


def sign_preferences(secret: str, email: str) -> str:
    """The preference page token of `email`: it names no message, so it lasts as long as the address."""
    return _sign(secret, "preferences", email.lower())


def verify_preferences(secret: str, token: str) -> str:
    """The address of a preference page token this service signed; BadToken otherwise."""
    (email,) = _verify(secret, "preferences", "preference link", token, 1)
    return email
