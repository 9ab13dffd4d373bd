"""Wires settings → dependencies → a Temporal Worker running every journey and the send step."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from collections.abc import AsyncIterator

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.leads import LeadActivities
from activities.mail import SmtpSettings, SmtpTransport
from activities.render import Renderer
from activities.send import SendActivities, Sender
from activities.roster import RosterActivities
from activities.store import Leads, Outbox, Roster, Suppressions, connect, migrate
from activities.webhook import WebhookTransport
from settings import Settings, apply_process_settings
from starter.connect import connect_temporal
from workflows import registry
from workflows.resend import ResendMessage

WORKFLOWS = [*registry.WORKFLOWS, ResendMessage]
# Passed through (imported once, not again for every journey in the cache): the pure libraries
# the models use, and our own `workflows` and `activities` packages, which hold no module state
# that changes. Measured (bench/memory.py, 1,000 sleeping journeys): worker RSS 171 MB instead of
# 210 MB, and 4.4 instead of 7.4 ms of worker CPU per journey started. A passed-through module is
# not guarded by the sandbox's restrictions (it sees the real `datetime`, not the sandbox's): the
# guard is tests/unit/test_workflow_determinism.py, which refuses any clock, randomness,
# environment or I/O in `workflows/`.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "pydantic", "email_validator", "idna", "workflows", "activities")
)


def send_activities(settings: Settings, pool) -> SendActivities:
    if settings.smtp_host is None:
        raise SystemExit("FOLLOWUPS_SMTP_HOST is not set: the worker has nowhere to send mail")
    smtp = SmtpSettings(
        host=settings.smtp_host, port=settings.smtp_port, tls=settings.smtp_tls, username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        timeout=settings.smtp_timeout_seconds, pool_size=settings.smtp_pool_size,
        messages_per_connection=settings.smtp_messages_per_connection, idle_seconds=settings.smtp_idle_seconds,
    )
    sender = Sender(settings.sender_email, settings.sender_name, settings.postal_address,
                    settings.public_base_url, settings.signing_secret.get_secret_value())
    webhook = None
    if settings.webhook_url:
        if settings.webhook_secret is None:
            raise SystemExit("FOLLOWUPS_WEBHOOK_URL is set but FOLLOWUPS_WEBHOOK_SECRET is not: webhooks must be signed")
        webhook = WebhookTransport(settings.webhook_url, settings.webhook_secret.get_secret_value(),
                                   settings.webhook_timeout_seconds)
    return SendActivities(Outbox(pool), Suppressions(pool), Renderer(), SmtpTransport(smtp), sender,
                          dry_run=settings.dry_run, webhook=webhook)


def build_worker(client: Client, settings: Settings, activities: SendActivities,
                 leads: LeadActivities | None = None, roster: RosterActivities | None = None) -> Worker:
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        workflow_runner=SANDBOX,
        activities=[activities.send_message, activities.recorded_request,
                    *([leads.record_lead_end] if leads else []),
                    *([roster.change_roster, roster.fan_out] if roster else [])],
        max_concurrent_activities=settings.max_concurrent_activities,
        max_cached_workflows=settings.max_cached_workflows,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.sticky_schedule_to_start_seconds),
    )


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, client: Client | None = None) -> AsyncIterator[Worker]:
    """A started worker (migrations applied) for as long as the context lasts."""
    assert settings.database_url, "DATABASE_URL is not set"
    pool = await connect(settings.database_url, settings.database_pool_size)
    try:
        await migrate(pool)
        client = client or await connect_temporal(settings)
        sends = send_activities(settings, pool)
        worker = build_worker(client, settings, sends, LeadActivities(Leads(pool)), RosterActivities(Roster(pool), sends))
        try:
            async with worker:
                yield worker
        finally:
            await sends.transport.close()
    finally:
        await pool.close()


async def main(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    apply_process_settings(settings)
    async with running_worker(settings):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
