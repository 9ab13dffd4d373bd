"""The onboarding saga's side effects: the temporary password as a one-time secret in PostgreSQL,
and the signed calls to the accounts backend (account.create, account.revoke, crm.log).

The password exists in clear in three places only, each briefly: the `onboarding_secrets` row (from
its issue until the welcome email is sent, or the saga gives up), the account.create request body
(over the wire to the backend, signed) and the rendered welcome email. It is never an activity's
argument or result, so never in Temporal's history, and never logged.
"""

from __future__ import annotations

import json
from datetime import timedelta
import secrets
import string
import time
from typing import Any

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.render import TemplateProblem
from activities.webhook import signature
from workflows.onboarding.models import (
    ACCOUNT_REFUSED, BACKEND_MISSING, CREATE_ACCOUNT, FORGET_SECRET, ISSUE_PASSWORD, LOG_TO_CRM, REVOKE_ACCOUNT,
    AccountRequest, CrmEntry,
)

# Letters and digits without the look-alikes (0/O, 1/l/I), so a password read off a phone can be typed.
ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
PASSWORD_LENGTH = 16  # ≈ 93 bits
SECRET_LIFETIME = timedelta(days=7)  # a row no step used or deleted (a saga stuck for days) is no longer revealed


def temporary_password() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(PASSWORD_LENGTH))


class OneTimeSecrets:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def issue(self, ref: str) -> None:
        """A new password under `ref`, once: a retry keeps the first (the backend may already have it)."""
        await self.pool.execute(
            "INSERT INTO onboarding_secrets (ref, secret, expires_at) VALUES ($1, $2, now() + $3::interval) "
            "ON CONFLICT (ref) DO NOTHING", ref, temporary_password(), SECRET_LIFETIME)

    async def read(self, ref: str) -> str | None:
        return await self.pool.fetchval(
            "SELECT secret FROM onboarding_secrets WHERE ref = $1 AND expires_at > now()", ref)

    async def reveal(self, ref: str) -> dict[str, str]:
        """What the send step adds to an email's render context (only there)."""
        secret = await self.read(ref)
        if secret is None:
            raise TemplateProblem(f"the one-time secret {ref} is gone (sent already, withdrawn or expired)")
        return {"temporary_password": secret}

    async def forget(self, ref: str) -> None:
        await self.pool.execute("DELETE FROM onboarding_secrets WHERE ref = $1", ref)


class AccountsBackend:
    """Signed like the webhook channel (activities/webhook.py): `X-Followups-Key` (the idempotency
    key the backend dedupes on), `X-Followups-Timestamp`, `X-Followups-Signature: sha256=<HMAC>`."""

    def __init__(self, url: str, secret: str, timeout: float = 10.0) -> None:
        self.url, self.secret = url, secret
        self.http = httpx.AsyncClient(timeout=timeout)

    async def post(self, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The backend's JSON answer. 408, 429, 5xx and no answer raise to be retried (same key);
        any other 4xx is its final word (non-retryable AccountRefused)."""
        body = json.dumps({**payload, "idempotency_key": key}, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        response = await self.http.post(self.url, content=body, headers={
            "Content-Type": "application/json", "X-Followups-Key": key, "X-Followups-Timestamp": timestamp,
            "X-Followups-Signature": signature(self.secret, timestamp, body)})
        if response.is_success:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            return answer if isinstance(answer, dict) else {}
        text = response.text[:300]
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise RuntimeError(f"{payload['type']}: the backend answered {response.status_code}: {text}")
        raise ApplicationError(f"{payload['type']}: the backend answered {response.status_code}: {text}",
                               response.status_code, type=ACCOUNT_REFUSED, non_retryable=True)

    async def close(self) -> None:
        await self.http.aclose()


class OnboardingActivities:
    def __init__(self, secrets_: OneTimeSecrets, backend: AccountsBackend | None) -> None:
        self.secrets, self.backend = secrets_, backend

    def _backend(self, what: str) -> AccountsBackend:
        if self.backend is None:
            raise ApplicationError(f"{what}: no accounts backend configured (FOLLOWUPS_ACCOUNTS_WEBHOOK_URL)",
                                   type=BACKEND_MISSING, non_retryable=True)
        return self.backend

    @activity.defn(name=ISSUE_PASSWORD)
    async def issue_password(self, ref: str) -> None:
        await self.secrets.issue(ref)

    @activity.defn(name=FORGET_SECRET)
    async def forget_secret(self, ref: str) -> None:
        await self.secrets.forget(ref)

    @activity.defn(name=CREATE_ACCOUNT)
    async def create_account(self, request: AccountRequest) -> str:
        """The account, with the temporary password read from its one-time secret; the user id."""
        backend = self._backend("account.create")
        password = await self.secrets.read(request.secret_ref) if request.secret_ref else None
        if password is None:
            raise ApplicationError(f"account.create {request.key}: the one-time secret {request.secret_ref} is gone",
                                   type=ACCOUNT_REFUSED, non_retryable=True)
        answer = await backend.post(request.key, {
            "type": "account.create", "onboarding_id": request.onboarding_id, "email": request.email,
            "name": request.name, "phone": request.phone, "temporary_password": password})
        user_id = answer.get("user_id")
        if not isinstance(user_id, str) or not user_id or len(user_id) > 200:
            raise ApplicationError(f"account.create {request.key}: the backend's answer has no user_id "
                                   f"(expected {{\"user_id\": \"...\"}})", type=ACCOUNT_REFUSED, non_retryable=True)
        return user_id

    @activity.defn(name=REVOKE_ACCOUNT)
    async def revoke_account(self, request: AccountRequest) -> None:
        """Undo account.create: by user id, or by the create's idempotency key when its answer never came."""
        try:
            await self._backend("account.revoke").post(request.key, {
                "type": "account.revoke", "onboarding_id": request.onboarding_id, "email": request.email,
                "user_id": request.user_id, "account_key": request.account_key, "reason": request.reason})
        except ApplicationError as err:
            if err.details != (404,):  # no such account: nothing to revoke, which is what we want
                raise

    @activity.defn(name=LOG_TO_CRM)
    async def log_to_crm(self, entry: CrmEntry) -> None:
        await self._backend("crm.log").post(entry.key, {"type": "crm.log", **entry.model_dump(exclude={"key"})})
