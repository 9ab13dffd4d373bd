"""The webhook channel: one HMAC-signed JSON POST per message, for SMS/WhatsApp provider bridges.

The receiver verifies `X-Followups-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`
with `X-Followups-Timestamp` (reject stale ones) and dedupes on `X-Followups-Key`: like SMTP, an
HTTP call cannot be made exactly-once, and the key makes a repeat recognisable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookRefused(Exception):
    """The receiver answered with a status a retry cannot fix (4xx other than 408/429)."""

    status: int
    text: str

    def __str__(self) -> str:
        return f"webhook answered {self.status}: {self.text[:200]}"


class WebhookTransient(Exception):
    """429, 408, 5xx: retried with backoff."""


class WebhookTransport:
    def __init__(self, url: str, secret: str, timeout: float = 10.0) -> None:
        self.url, self.secret = url, secret
        self.http = httpx.AsyncClient(timeout=timeout)

    async def deliver(self, key: str, payload: dict[str, Any]) -> str:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
        timestamp = str(int(time.time()))
        response = await self.http.post(self.url, content=body, headers={
            "Content-Type": "application/json",
            "X-Followups-Key": key,
            "X-Followups-Timestamp": timestamp,
            "X-Followups-Signature": signature(self.secret, timestamp, body),
        })
        if response.is_success:
            return f"{response.status_code} {response.text[:200]}".strip()
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise WebhookTransient(f"webhook answered {response.status_code}: {response.text[:200]}")
        raise WebhookRefused(response.status_code, response.text)

    async def close(self) -> None:
        await self.http.aclose()
