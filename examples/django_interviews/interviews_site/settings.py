"""A minimal Django project for seed 000's interviews, with Followups instead of the cron job.
Everything comes from the environment, so the same code runs under `make dev` and in the tests."""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-only-for-this-example")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", *filter(None, os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","))]

INSTALLED_APPS = ["interviews"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "interviews_site.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
ASGI_APPLICATION = "interviews_site.asgi.application"
WSGI_APPLICATION = "interviews_site.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("INTERVIEWS_DB", str(BASE_DIR / "db.sqlite3")),
        # The web server (webhooks) and a management command may write at the same moment:
        # IMMEDIATE takes the write lock up front, and a writer waits for it instead of failing.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# Followups: where its API is, and the secret of the webhook endpoint registered for this app
# (POST /v1/webhook-endpoints answers it, or takes the one you give it).
FOLLOWUPS_URL = os.environ.get("FOLLOWUPS_URL", "http://127.0.0.1:8000")
FOLLOWUPS_API_KEY = os.environ.get("FOLLOWUPS_API_KEY", "dev-key")
FOLLOWUPS_WEBHOOK_SECRET = os.environ.get("FOLLOWUPS_WEBHOOK_SECRET", "")
# Several apps or environments on one Followups: each one's interview ids apart (`staging-42`).
FOLLOWUPS_ID_PREFIX = os.environ.get("FOLLOWUPS_ID_PREFIX", "")
# Overrides of the journey's timings for every start, e.g. '{"followup_after": "PT10S"}' for a
# demo; empty: the seed's (48 h, every 24 h, 3 at most, a reminder 24 h before).
FOLLOWUPS_INTERVIEW_POLICY = json.loads(os.environ.get("FOLLOWUPS_INTERVIEW_POLICY") or "{}")
# Where this app is reached: the candidate's slot-selection link in every follow-up points here.
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8001").rstrip("/")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"interviews": {"handlers": ["console"], "level": "INFO"}},
}
