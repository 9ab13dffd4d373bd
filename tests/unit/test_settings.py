"""Settings: read from FOLLOWUPS_* (and DATABASE_URL), every one documented in .env.example."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import email_validator
import pytest
from pydantic import EmailStr, TypeAdapter, ValidationError

from settings import Settings, apply_process_settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def env_name(field: str) -> str:
    return "DATABASE_URL" if field == "database_url" else f"FOLLOWUPS_{field.upper()}"


def test_every_setting_is_documented_and_nothing_else():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert documented == {env_name(f) for f in Settings.model_fields}


def test_the_names_the_issue_promises_exist():
    for name in ("FOLLOWUPS_SMTP_HOST", "FOLLOWUPS_SMTP_PORT", "FOLLOWUPS_API_PORT", "FOLLOWUPS_API_KEYS",
                 "FOLLOWUPS_TEMPORAL_ADDRESS", "FOLLOWUPS_TEMPORAL_UI_PORT", "FOLLOWUPS_DATA_DIR"):
        assert name in {env_name(f) for f in Settings.model_fields}


def test_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("FOLLOWUPS_API_KEYS", "k1, k2")
    monkeypatch.setenv("FOLLOWUPS_SMTP_PORT", "2525")
    monkeypatch.setenv("DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("FOLLOWUPS_INTERVIEW_FOLLOWUP_AFTER", "PT72H")
    settings = Settings()
    assert settings.api_keys == ["k1", "k2"]
    assert settings.smtp_port == 2525
    assert settings.database_url == "postgresql://x/y"
    assert settings.interview_followup_after == timedelta(hours=72)
    shown = repr(Settings(signing_secret="s3cr3t-value", smtp_password="pa55word"))
    assert "s3cr3t-value" not in shown and "pa55word" not in shown and "k2" not in shown


def test_bad_values_fail_loudly(monkeypatch):
    monkeypatch.setenv("FOLLOWUPS_SMTP_TLS", "sometimes")
    with pytest.raises(ValidationError, match="smtp_tls"):
        Settings()


def test_test_domains_are_refused_unless_the_settings_allow_them(monkeypatch):
    monkeypatch.setattr(email_validator, "TEST_ENVIRONMENT", email_validator.TEST_ENVIRONMENT)  # put back after
    address = TypeAdapter(EmailStr)
    assert Settings.model_fields["allow_test_domains"].default is False
    apply_process_settings(Settings(allow_test_domains=False))  # production
    with pytest.raises(ValidationError, match="special-use or reserved name"):
        address.validate_python("pat@example.test")

    monkeypatch.setenv("FOLLOWUPS_ALLOW_TEST_DOMAINS", "true")  # as `followups dev` hands it to its workers
    apply_process_settings(Settings())
    assert address.validate_python("pat@example.test") == "pat@example.test"
    with pytest.raises(ValidationError, match="special-use or reserved name"):
        address.validate_python("pat@example.invalid")  # only .test is lifted


def test_settings_read_back_from_their_environment(monkeypatch):
    """What `followups dev --workers N` gives each worker process reads back to the same settings."""
    settings = Settings(
        database_url="postgresql://u:p@db.example.com:5432/followups?sslmode=require", smtp_host="smtp.example.com",
        smtp_password="pa55 word", api_keys=["k1", "k2"], temporal_tls_cert_path=Path("/certs/client.pem"),
        interview_followup_after=timedelta(hours=72, minutes=30), smtp_timeout_seconds=12.5, allow_test_domains=True,
        postal_address="Followups, 1 Example Street, 10115 Berlin",
    )
    for name in list(os.environ):
        if name.startswith("FOLLOWUPS_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in settings.as_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings
    assert settings.as_environment()["FOLLOWUPS_SMTP_PASSWORD"] == "pa55 word"  # in clear: for a child's environment
    assert "FOLLOWUPS_WEBHOOK_URL" not in settings.as_environment()  # unset stays unset
