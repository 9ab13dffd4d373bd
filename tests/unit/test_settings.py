"""Settings: read from FOLLOWUPS_* (and DATABASE_URL), every one documented in .env.example."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from settings import Settings

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
