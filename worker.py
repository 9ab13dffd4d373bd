"""Wires settings → dependencies → a Temporal Worker running every journey and the send step."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from collections.abc import AsyncIterator

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.announcements import AnnouncementActivities, Announcements
from activities.campaigns import CampaignActivities, Campaigns, activities_per_second, set_queue_rate
from activities.event_webhooks import EVENT_TYPES, Endpoints, Wakener, WebhookActivities, usable_secret
from activities.digest import DigestActivities, DigestRecipients, ProgressCallback, dispatch_schedule, ensure_dispatch_schedule
from activities.leads import LeadActivities
from activities.dkim import DkimKey
from activities.gate import Gate, Timing
from activities.mail import SmtpSettings, SmtpTransport, Unbuildable
from activities.onboarding import AccountsBackend, OnboardingActivities, OneTimeSecrets
from activities.render import Renderer
from activities.retention import Retention, RetentionActivities, ensure_retention_schedule
from activities.outgoing import Platform, Sender
from activities.send import SendActivities
from activities.roster import RosterActivities
from activities.store import Leads, Outbox, Roster, connect, migrate
from activities.template_store import TemplateStore
from activities.tracking import Tracker
from activities.webhook import WebhookTransport
from activities.windows import SendWindow
import observability
from settings import Settings, apply_process_settings
from workflows import registry
from workflows.announcement import AnnouncementDelivery
from workflows.campaign.workflow import CampaignDelivery
from workflows.declared.workflow import DeclaredJourney
from workflows.digest.workflow import DigestDispatch
from workflows.resend import ResendMessage
from workflows.retention import RetentionPurge
from workflows.webhooks import EndpointDelivery

WORKFLOWS = [*registry.WORKFLOWS, DeclaredJourney, ResendMessage, DigestDispatch, AnnouncementDelivery, RetentionPurge,
             CampaignDelivery]
# Journeys run without Temporal's sandbox. With it, every workflow instance (each start, each
# replay after a cache eviction) re-imports what is not passed through, and every payload the SDK
# encodes enters the sandbox again; our own `workflows` package was already passed through, so it
# guarded nothing of ours. Measured: replaying the recorded appointment histories costs 16 instead
# of 36 ms of CPU each; the worker's CPU per reminder: README, Performance. The guard is tests/unit/test_workflow_determinism.py, which refuses any
# clock, randomness, environment or I/O in `workflows/`, and the replay tests of recorded histories.
RUNNER = UnsandboxedWorkflowRunner()


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
    renderer = Renderer()
    return SendActivities(Outbox(pool), renderer, SmtpTransport(smtp), sender,
                          platform(settings, pool, renderer), dry_run=settings.dry_run, webhook=webhook)


def platform(settings: Settings, pool, renderer: Renderer) -> Platform:
    """Templates from PostgreSQL, preferences and timing, tracking and DKIM, as the settings ask."""
    dkim = None
    if settings.dkim_domain or settings.dkim_selector or settings.dkim_private_key:
        if not (settings.dkim_domain and settings.dkim_selector and settings.dkim_private_key):
            raise SystemExit("DKIM needs all of FOLLOWUPS_DKIM_DOMAIN, FOLLOWUPS_DKIM_SELECTOR and "
                             "FOLLOWUPS_DKIM_PRIVATE_KEY")
        dkim = DkimKey(settings.dkim_selector, settings.dkim_domain,
                       settings.dkim_private_key.get_secret_value().encode())
        try:
            dkim.signer  # an unusable key stops the worker at start, not at its first send
        except Unbuildable as err:
            raise SystemExit(str(err)) from err
    timing = Timing(SendWindow.parse(settings.send_window) if settings.send_window else None, settings.late_reminders)
    tracker = Tracker(settings.public_base_url, settings.signing_secret.get_secret_value()) if settings.tracking else None
    return Platform(TemplateStore(pool, renderer), Gate(pool, timing), tracker, dkim)


def digest_activities(settings: Settings, pool, sends: SendActivities) -> DigestActivities:
    callback = None
    if settings.progress_callback_url:
        if settings.progress_callback_secret is None:
            raise SystemExit("FOLLOWUPS_PROGRESS_CALLBACK_URL is set but FOLLOWUPS_PROGRESS_CALLBACK_SECRET is not: "
                             "progress requests must be signed")
        callback = ProgressCallback(settings.progress_callback_url, settings.progress_callback_secret.get_secret_value(),
                                    settings.progress_callback_timeout_seconds)
    return DigestActivities(DigestRecipients(pool), sends, grace=settings.digest_grace, callback=callback)


def onboarding_activities(settings: Settings, pool) -> OnboardingActivities:
    backend = None
    if settings.accounts_webhook_url:
        if settings.accounts_webhook_secret is None:
            raise SystemExit("FOLLOWUPS_ACCOUNTS_WEBHOOK_URL is set but FOLLOWUPS_ACCOUNTS_WEBHOOK_SECRET is not: "
                             "account requests must be signed")
        backend = AccountsBackend(settings.accounts_webhook_url, settings.accounts_webhook_secret.get_secret_value(),
                                  settings.accounts_webhook_timeout_seconds)
    return OnboardingActivities(OneTimeSecrets(pool), backend)


async def ensure_digest_schedule(client: Client, settings: Settings) -> None:
    """The one digest Schedule (README: Digests), created or updated by every worker at start."""
    if settings.digest_schedule_id:
        schedule = dispatch_schedule(settings.temporal_task_queue, settings.digest_schedule_id,
                                     settings.digest_grace, settings.digest_batch_size)
        await ensure_dispatch_schedule(client, schedule, settings.digest_schedule_id)


def build_worker(client: Client, settings: Settings, activities: SendActivities,
                 leads: LeadActivities | None = None, roster: RosterActivities | None = None,
                 digests: DigestActivities | None = None,
                 announcements: AnnouncementActivities | None = None,
                 onboarding: OnboardingActivities | None = None,
                 retention: RetentionActivities | None = None,
                 campaigns: CampaignActivities | None = None, webhooks: WebhookActivities | None = None) -> Worker:
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        workflow_runner=RUNNER,
        activities=[activities.send_message, activities.recorded_request,
                    *([leads.record_lead_end] if leads else []),
                    *([roster.change_roster, roster.fan_out] if roster else []),
                    *([digests.plan, digests.send_batch] if digests else []),
                    *([announcements.announce_batch] if announcements else []),
                    *([onboarding.issue_password, onboarding.forget_secret, onboarding.create_account,
                       onboarding.revoke_account, onboarding.log_to_crm] if onboarding else []),
                    *([retention.purge] if retention else []),
                    *([campaigns.freeze, campaigns.mark, campaigns.decide] if campaigns else []),
                    *([webhooks.announce_journey] if webhooks else [])],
        max_concurrent_activities=settings.max_concurrent_activities,
        max_cached_workflows=settings.max_cached_workflows,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.sticky_schedule_to_start_seconds),
    )


def build_campaign_worker(client: Client, settings: Settings, campaigns: CampaignActivities) -> Worker:
    """The campaigns' sends, on their own queue: the server holds it to the deployment's rate
    (`max_task_queue_activities_per_second` is the whole queue's, not this worker's; the queue's own
    config, set at start where the server has it, overrides it with the same value)."""
    return Worker(
        client,
        task_queue=settings.campaign_queue,
        activities=[campaigns.send_range],
        max_concurrent_activities=settings.campaign_ranges_per_worker,
        max_task_queue_activities_per_second=activities_per_second(settings.campaign_rate_per_minute),
    )


def build_webhook_worker(client: Client, settings: Settings, webhooks: WebhookActivities) -> Worker:
    """The endpoints' deliveries, on their own queue: a slow or dead receiver never takes a slot a
    journey's send step needs."""
    return Worker(client, task_queue=settings.webhook_queue, workflows=[EndpointDelivery], workflow_runner=RUNNER,
                  activities=[webhooks.deliver_due], max_concurrent_activities=settings.max_concurrent_activities)


async def put_settings_endpoint(settings: Settings, endpoints: Endpoints) -> None:
    """FOLLOWUPS_EVENTS_WEBHOOK_URL's endpoint, as the settings say now."""
    if not settings.events_webhook_url:
        return
    if settings.events_webhook_secret is None or usable_secret(settings.events_webhook_secret.get_secret_value()):
        raise SystemExit("FOLLOWUPS_EVENTS_WEBHOOK_URL is set but FOLLOWUPS_EVENTS_WEBHOOK_SECRET is not a whsec_… "
                         "secret (base64 of at least 24 bytes): event webhooks must be signed")
    if unknown := [kind for kind in settings.events_webhook_types if kind not in EVENT_TYPES]:
        raise SystemExit(f"FOLLOWUPS_EVENTS_WEBHOOK_TYPES: no such event type {', '.join(unknown)} "
                         f"(one of {', '.join(EVENT_TYPES)})")
    await endpoints.put_from_settings(settings.events_webhook_url, settings.events_webhook_secret.get_secret_value(),
                                      settings.events_webhook_types)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, client: Client | None = None) -> AsyncIterator[Worker]:
    """A started worker (migrations applied) for as long as the context lasts."""
    assert settings.database_url, "DATABASE_URL is not set"
    pool = await connect(settings.database_url, settings.database_pool_size)
    try:
        await migrate(pool)
        client = await observability.worker_client(settings, client)  # metrics port, tracing, send metrics
        sends = send_activities(settings, pool)
        observability.count_batch_sends(sends)
        digests = digest_activities(settings, pool, sends)
        worker = build_worker(client, settings, sends, LeadActivities(Leads(pool)), RosterActivities(Roster(pool), sends),
                              digests=digests, announcements=AnnouncementActivities(Announcements(pool), sends),
                              onboarding=(onboarding := onboarding_activities(settings, pool)),
                              retention=RetentionActivities(Retention(pool)),
                              campaigns=(campaigns := CampaignActivities(Campaigns(pool), sends,
                                                                         settings.campaign_rate_per_minute)),
                              webhooks=(webhooks := WebhookActivities(endpoints := Endpoints(pool),
                                                                      settings.events_webhook_timeout_seconds,
                                                                      settings.webhook_deliveries_in_flight)))
        try:
            await set_queue_rate(client, settings.campaign_queue, settings.campaign_rate_per_minute)
            await put_settings_endpoint(settings, endpoints)
            async with worker, build_campaign_worker(client, settings, campaigns), \
                    build_webhook_worker(client, settings, webhooks):
                await ensure_digest_schedule(client, settings)
                await ensure_retention_schedule(client, settings)
                wakener = asyncio.create_task(Wakener(settings.database_url, endpoints, client,
                                                      settings.webhook_queue).run())
                try:
                    yield worker
                finally:
                    wakener.cancel()
        finally:
            await webhooks.close()
            await sends.transport.close()
            sends.renderer.close()  # the render sandbox's child process, if a saved template started it
            if digests.callback is not None:
                await digests.callback.close()
            if onboarding.backend is not None:
                await onboarding.backend.close()
    finally:
        await pool.close()


async def main(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    apply_process_settings(settings)
    observability.configure_process(settings, "followups-worker")
    async with running_worker(settings):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
