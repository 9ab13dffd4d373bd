"""Every setting of Followups, read once from the environment (`FOLLOWUPS_*`) at the process edge.

`.env.example` documents each one; the README lists them. Nothing below reads the environment
anywhere else: the worker, the API and the CLI receive a `Settings` object and pass it down.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing import Annotated, Literal

import email_validator

from activities.windows import SendWindow


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FOLLOWUPS_", extra="ignore")

    # Temporal: a local dev server, a self-hosted cluster or Temporal Cloud.
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "followups"
    temporal_api_key: SecretStr | None = None  # Temporal Cloud API key (turns TLS on)
    temporal_tls: bool = False
    temporal_tls_cert_path: Path | None = None  # mTLS client certificate
    temporal_tls_key_path: Path | None = None
    temporal_ui_port: int = 8233

    # PostgreSQL. Unset: `followups dev` runs an embedded server under data_dir.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    database_pool_size: int = 10

    # SMTP. Unset host under `followups dev`: the built-in sink writes .eml files to data_dir/outbox.
    smtp_host: str | None = None
    smtp_port: int = 1025
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = 30.0
    smtp_pool_size: int = Field(10, ge=0)  # idle SMTP connections kept open per worker; 0 = one per message
    smtp_messages_per_connection: int = Field(100, ge=1)
    smtp_idle_seconds: float = Field(30.0, gt=0)  # kept connections idle longer are closed, not reused
    # Internationalised addresses (RFC 6531: `аda@example.com`, `用户@例子.广告`) need a server that
    # offers SMTPUTF8. Off: the API refuses them (422). On: they are sent with SMTPUTF8, and a message
    # to one is recorded as failed if the server does not offer it. Non-ASCII domains with an ASCII
    # part before the @ need nothing: they go out as IDNA (ada@xn--bcher-kva.de) either way.
    smtputf8: bool = False

    # Webhook channel (SMS/WhatsApp providers): an HMAC-signed JSON POST per message. Unset URL:
    # messages on the webhook channel are skipped with a reason.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout_seconds: float = 10.0
    # The onboarding saga's backend (account.create, account.revoke, crm.log), signed like the webhook
    # channel but with its own URL and secret: a message bridge's secret must not create accounts.
    # Unset URL: an onboarding fails at its account step (nothing created) and the admin is told.
    accounts_webhook_url: str | None = None
    accounts_webhook_secret: SecretStr | None = None
    accounts_webhook_timeout_seconds: float = 10.0

    # What every message carries.
    sender_email: str = "followups@example.com"
    sender_name: str = "Followups"
    postal_address: str = "Followups, 1 Example Street, 10115 Berlin, Germany"
    public_base_url: str = "http://localhost:8000"  # where unsubscribe links point
    signing_secret: SecretStr = SecretStr("dev-only-signing-secret-change-me")
    # Accept recipients at the special-use `.test` domain (RFC 6761: pat@example.test), which
    # email-validator refuses as undeliverable. On under `followups dev` and in the tests; a
    # process-wide switch, so it takes effect through `apply_process_settings`.
    allow_test_domains: bool = False

    # HTTP API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_keys: Annotated[list[str], NoDecode, Field(repr=False)] = ["dev-key"]
    api_max_body_bytes: int = 1_000_000
    api_max_import_bytes: int = 50_000_000  # a CSV upload to /v1/leads/import (~500k rows), an announcement's list

    # Worker.
    dry_run: bool = False  # render and record every message, deliver none
    max_concurrent_activities: int = 100
    # Journeys kept in memory between their steps: each costs ~80 KB of worker RSS, and each evicted
    # one lingers in reference cycles until a full garbage collection, which a big cache makes rare
    # (RSS +33 MB from 1,000 to 10,000 sleeping journeys at 1,000; +4 MB at 200). One not cached is
    # rebuilt from its history when it wakes (~7-11 ms CPU): with journeys asleep for days, every
    # wake is one anyway. See the README's Performance.
    max_cached_workflows: int = 200
    # After a worker dies, how long its journeys' next tasks wait for it before any worker takes them.
    sticky_schedule_to_start_seconds: float = 2.0
    data_dir: Path = Path(".data")

    # Observability (README: Observability). Tracing follows the standard OTEL_* variables instead.
    log_format: Literal["text", "json"] = "text"  # json: one object a line, with the workflow id and the send's key
    # The worker's Prometheus endpoint (the SDK's metrics and the send step's); unset: none. The
    # API's are at its own /metrics. `followups dev --workers N` gives worker n this port + n - 1.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)

    # Digests (weekly, monthly, manager): one Schedule runs the dispatcher every 30 minutes.
    digest_schedule_id: str = "digest-dispatch"  # the Schedule every worker creates or updates; "" leaves it alone
    digest_grace: timedelta = timedelta(hours=12)  # a digest is not sent later than this after its slot
    digest_batch_size: int = Field(500, ge=1, le=5000)  # recipients per activity of a dispatch
    # Progress pulled per send (else the progress pushed with PUT /v1/progress/{recipient}): a POST
    # signed like the webhook channel.
    progress_callback_url: str | None = None
    progress_callback_secret: SecretStr | None = None
    progress_callback_timeout_seconds: float = 10.0

    # The messaging platform: tracking, send windows, DKIM, provider webhooks, retention.
    tracking: bool = True  # HTML mail gets an open pixel and signed click redirects (README: Tracking)
    # Local hours (the recipient's zone) in which non-critical messages may go out, "08:00-21:00";
    # outside them a message waits durably for the window. Unset: any time. A category and a
    # recipient may set their own (PUT /v1/categories/{name}, PUT /v1/preferences/{email}).
    send_window: str | None = None
    # A time-bound reminder (one with a deadline, like 15 minutes before a class) whose window opens
    # after its deadline: sent at once anyway ("send"), or skipped with the reason ("skip").
    late_reminders: Literal["send", "skip"] = "send"
    dkim_domain: str | None = None  # DKIM-sign every email (d=), with the key and selector below
    dkim_selector: str | None = None
    dkim_private_key: SecretStr | None = None  # PEM (RSA or Ed25519)
    # Provider event webhooks (bounces, complaints, deliveries); each unset one answers 404.
    ses_topic_arns: Annotated[list[str], NoDecode] = []  # SNS topics whose notifications are accepted
    sendgrid_webhook_public_key: str | None = None  # the Event Webhook's verification key (base64 DER)
    mailgun_webhook_signing_key: SecretStr | None = None
    postmark_webhook_username: str | None = None  # basic auth on the Postmark webhook URL (use HTTPS)
    postmark_webhook_password: SecretStr | None = None
    retention_days: int = Field(90, ge=1)  # messages and tracking events older than this are purged
    retention_schedule_id: str = "retention-purge"  # the daily purge's Schedule; "" leaves it alone
    retention_batch_size: int = Field(5000, ge=100, le=100_000)  # rows per DELETE

    # Campaigns (README: Campaigns): their sends run on their own task queue, whose rate the server
    # holds for the whole deployment; every worker must have the same rate.
    campaign_task_queue: str | None = None  # unset: the task queue's name + "-campaigns"
    campaign_rate_per_minute: float = Field(125.0, ge=0)  # emails a minute over all campaigns; 0 = no limit
    campaign_ranges_per_worker: int = Field(4, ge=1, le=100)  # send activities one worker runs at once

    # Event webhooks (README: Event webhooks): the backend is told what happened. Endpoints are
    # registered over the API; for a simple set-up, one comes from these settings.
    events_webhook_url: str | None = None
    events_webhook_secret: SecretStr | None = None  # whsec_… (Standard Webhooks); required with the URL
    events_webhook_types: Annotated[list[str], NoDecode] = []  # comma-separated; empty: every type
    webhook_task_queue: str | None = None  # unset: the task queue's name + "-webhooks"
    events_webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)  # per delivery attempt
    webhook_deliveries_in_flight: int = Field(16, ge=1, le=200)  # per endpoint, at once

    # Policy defaults for the interview journey (each overridable per start).
    interview_followup_after: timedelta = timedelta(hours=48)
    interview_followup_interval: timedelta = timedelta(hours=24)
    interview_max_followups: int = 3
    interview_reminder_before: timedelta = timedelta(hours=24)
    interview_reminder_grace: timedelta = timedelta(hours=2)
    interview_expire_after: timedelta = timedelta(days=14)

    @field_validator("api_keys", "ses_topic_arns", "events_webhook_types", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("send_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            SendWindow.parse(value)  # a ValueError saying what is wrong
        return value

    @property
    def campaign_queue(self) -> str:
        return self.campaign_task_queue or f"{self.temporal_task_queue}-campaigns"

    @property
    def webhook_queue(self) -> str:
        return self.webhook_task_queue or f"{self.temporal_task_queue}-webhooks"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    def as_environment(self) -> dict[str, str]:
        """These settings as the environment variables that read back to them, unset ones left out
        and secrets in clear: what `followups dev --workers N` gives each `followups worker` child."""
        dumped = self.model_dump(mode="json")  # durations as ISO 8601, paths as text
        env = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, list):
                value = ",".join(value)  # api_keys, ses_topic_arns: comma-separated, as _split_keys reads them
            else:
                value = dumped[name]
            env[env_name(name)] = str(value)
        return env


def env_name(field: str) -> str:
    """The environment variable a setting is read from."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"FOLLOWUPS_{field.upper()}"


def apply_process_settings(settings: Settings) -> None:
    """Turn the process-wide switches these settings ask for. Call it once where a process starts
    (the worker's and the API's main, `followups dev`), before any address is validated.

    email-validator keeps its test-environment switch in a module global, read on every
    validation: in the API (requests), in the worker (workflow and activity inputs decoded by
    pydantic; the sandbox passes email_validator through, so workflows see the same global).
    `TEST_ENVIRONMENT` lifts the refusal of `.test` and its subdomains only (`.invalid`,
    `.local`, `.localhost` and the rest stay refused) and would skip DNS checks (pydantic never
    asks for them)."""
    email_validator.TEST_ENVIRONMENT = settings.allow_test_domains
