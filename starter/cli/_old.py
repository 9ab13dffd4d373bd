"""`followups`: run the stack (dev, worker, api), steer journeys, read messages, preview a journey."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Optional

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from settings import Settings, apply_process_settings

app = typer.Typer(help="Durable follow-up and reminder journeys on Temporal.", no_args_is_help=True)
interview_app = typer.Typer(help="Start and steer interview journeys (through the HTTP API).", no_args_is_help=True)
preview_app = typer.Typer(help="Play a journey on the time-skipping server and print what it would send.",
                          no_args_is_help=True)
appointment_app = typer.Typer(help="Start and steer appointment journeys (through the HTTP API).",
                              no_args_is_help=True)
session_app = typer.Typer(help="Start and steer class-session journeys (through the HTTP API).", no_args_is_help=True)
bulk_app = typer.Typer(help="Act on every running journey matching a filter (Temporal visibility).",
                       no_args_is_help=True)
app.add_typer(session_app, name="session")
app.add_typer(bulk_app, name="bulk")
leads_app = typer.Typer(help="Import leads, report conversions, read campaign stats.", no_args_is_help=True)
app.add_typer(leads_app, name="leads")
app.add_typer(interview_app, name="interview")
app.add_typer(appointment_app, name="appointment")
app.add_typer(preview_app, name="preview")
console = Console()

_OFFSET = re.compile(r"^\+?(?:\d+(?:\.\d+)?[smhd])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`+60h`, `90m`, `7d`, `2d4h`, `30s`, ISO 8601 `PT48H`, or plain seconds."""
    if _OFFSET.match(text.strip()):
        return sum((timedelta(**{_UNITS[unit]: float(n)}) for n, unit in _PART.findall(text)), timedelta())
    try:
        return TypeAdapter(timedelta).validate_python(text)
    except ValidationError:
        raise typer.BadParameter(f"{text!r} is not a duration (try +60h, 7d, PT48H or seconds)") from None


def parse_when(text: str) -> datetime:
    """An ISO 8601 time with a zone, or an offset from now like +2d."""
    if _OFFSET.match(text.strip()):
        return datetime.now(timezone.utc) + parse_duration(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time or an offset like +2d") from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no time zone: add Z or +01:00")
    return moment


# --- running the stack ------------------------------------------------------------------------


@app.command()
def dev(
    workers: Annotated[Optional[int], typer.Option(
        min=0, help="Run N `followups worker` processes instead of the worker in this process")] = None,
    no_worker: Annotated[bool, typer.Option(
        "--no-worker", help="No worker at all (= --workers 0): attach your own with the printed command")] = False,
) -> None:
    """Everything embedded (PostgreSQL, Temporal + Web UI, SMTP sink, worker, API); Ctrl-C stops it."""
    from starter.dev import run_dev

    if no_worker and workers:
        raise typer.BadParameter(f"--no-worker and --workers {workers} disagree", param_hint="--no-worker")
    try:
        asyncio.run(run_dev(Settings(), workers=0 if no_worker else workers))
    except KeyboardInterrupt:
        pass


@app.command()
def worker() -> None:
    """The worker: runs journeys and sends mail (needs Temporal, DATABASE_URL and SMTP)."""
    import worker as worker_module

    settings = Settings()
    if not settings.database_url:
        raise typer.BadParameter("DATABASE_URL is not set", param_hint="DATABASE_URL")
    asyncio.run(worker_module.main(settings))


@app.command()
def api() -> None:
    """The HTTP API (OpenAPI at /docs)."""
    import uvicorn

    from starter.api import create_app

    settings = Settings()
    apply_process_settings(settings)
    if not settings.database_url:
        raise typer.BadParameter("DATABASE_URL is not set", param_hint="DATABASE_URL")
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


# --- steering journeys through the API ---------------------------------------------------------


def _client():
    import os

    from starter.client import FollowupsClient

    settings = Settings()
    url = os.environ.get("FOLLOWUPS_API_URL", f"http://{settings.api_host}:{settings.api_port}")
    return FollowupsClient(url, api_key=os.environ.get("FOLLOWUPS_API_KEY", settings.api_keys[0]))


def _call(fn, *args, **kwargs):
    from starter.client import FollowupsError

    try:
        with _client() as client:
            return fn(client, *args, **kwargs)
    except FollowupsError as err:
        console.print(f"[red]{err.status} {err.error}[/red]: {err.detail}" + (f" (field: {err.field})" if err.field else ""))
        raise typer.Exit(1) from None
    except Exception as err:  # connection refused and the like
        if type(err).__module__.startswith("httpx"):
            console.print(f"[red]cannot reach the API[/red]: {err}")
            raise typer.Exit(1) from None
        raise


def _show(view) -> None:
    state = view.state
    table = Table(title=view.workflow_id, show_header=False)
    if state is None:
        table.add_row("state", "no worker answered: the journey is there, its state is not readable now")
    else:
        table.add_row("status", state.status.value)
        if hasattr(state, "scheduled_at"):
            table.add_row("scheduled at", str(state.scheduled_at or "—"))
        if hasattr(state, "followups_sent"):
            table.add_row("follow-ups sent", f"{state.followups_sent} of {state.policy.max_followups}")
        sent = getattr(state, "reminders_sent", None) or getattr(state, "sent", None)
        if sent:
            table.add_row("sent", ", ".join(key.split("/", 1)[1] for key in sent))
        if getattr(state, "campaign", None):
            table.add_row("campaign", state.campaign)
        table.add_row("next", state.next_step.label if state.next_step else "nothing: the journey has ended")
        for skip in state.skips:
            table.add_row("skipped", f"{skip.step}: {skip.reason}")
    if view.event is not None:
        table.add_row("event", f"{view.event.event}: {'applied' if view.event.applied else view.event.reason}")
    for message in view.messages:
        table.add_row("message", f"{message.key} · {message.status} · {message.subject or ''}")
    console.print(table)


@interview_app.command("start")
def interview_start(
    interview_id: str,
    email: Annotated[str, typer.Option(help="The candidate's email")],
    name: Annotated[str, typer.Option(help="The candidate's name")],
    slot_url: Annotated[str, typer.Option(help="The slot-selection link every follow-up carries")],
    time_zone: Annotated[Optional[str], typer.Option(help="IANA zone, e.g. Europe/Berlin")] = None,
    scheduled_at: Annotated[Optional[str], typer.Option(help="Already confirmed: ISO time or +2d")] = None,
    followup_after: Annotated[Optional[str], typer.Option(help="e.g. 48h, PT48H")] = None,
    followup_interval: Annotated[Optional[str], typer.Option()] = None,
    max_followups: Annotated[Optional[int], typer.Option()] = None,
    reminder_before: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    from workflows.interview.models import Invitation

    policy = {k: parse_duration(v) for k, v in dict(followup_after=followup_after, followup_interval=followup_interval,
                                                   reminder_before=reminder_before).items() if v}
    if max_followups is not None:
        policy["max_followups"] = max_followups
    try:
        invitation = Invitation(
            interview_id=interview_id, candidate={"email": email, "name": name, "time_zone": time_zone},
            slot_selection_url=slot_url, scheduled_at=parse_when(scheduled_at) if scheduled_at else None,
            policy=policy,
        )
    except ValidationError as err:
        _invalid(err)
    _show(_call(lambda c: c.interviews.start(invitation)))


@interview_app.command("confirm")
def interview_confirm(interview_id: str, scheduled_at: Annotated[str, typer.Argument(help="ISO time or +2d")]) -> None:
    _show(_call(lambda c: c.interviews.confirm(interview_id, scheduled_at=parse_when(scheduled_at))))


@interview_app.command("reschedule")
def interview_reschedule(interview_id: str, scheduled_at: Annotated[str, typer.Argument(help="ISO time or +2d")]) -> None:
    _show(_call(lambda c: c.interviews.reschedule(interview_id, scheduled_at=parse_when(scheduled_at))))


@interview_app.command("cancel")
def interview_cancel(interview_id: str, reason: Annotated[Optional[str], typer.Option()] = None) -> None:
    _show(_call(lambda c: c.interviews.cancel(interview_id, reason=reason)))


@interview_app.command("complete")
def interview_complete(interview_id: str) -> None:
    _show(_call(lambda c: c.interviews.complete(interview_id)))


@interview_app.command("show")
def interview_show(interview_id: str) -> None:
    _show(_call(lambda c: c.interviews.get(interview_id)))


@appointment_app.command("start")
def appointment_start(
    appointment_id: str,
    email: Annotated[str, typer.Option(help="The patient's email")],
    name: Annotated[str, typer.Option(help="The patient's name")],
    at: Annotated[str, typer.Option(help="When: ISO time or +2d")],
    doctor: Annotated[str, typer.Option(help="Who the appointment is with")],
    clinic: Annotated[Optional[str], typer.Option(help="Clinic / sender name shown in the email")] = None,
    location: Annotated[Optional[str], typer.Option()] = None,
    time_zone: Annotated[Optional[str], typer.Option(help="IANA zone, e.g. Europe/Berlin")] = None,
    confirmed: Annotated[bool, typer.Option(help="Already confirmed by the patient")] = False,
    remind: Annotated[list[str], typer.Option(help="Reminder offset before the time, repeatable: 1h, 24h")] = [],
) -> None:
    from workflows.appointment.models import Booking

    policy = {"reminder_offsets": [parse_duration(v) for v in remind]} if remind else {}
    try:
        booking = Booking(appointment_id=appointment_id, patient={"email": email, "name": name, "time_zone": time_zone},
                          scheduled_at=parse_when(at), doctor=doctor, clinic=clinic, location=location,
                          confirmed=confirmed, policy=policy)
    except ValidationError as err:
        _invalid(err)
    _show(_call(lambda c: c.appointments.start(booking)))


@appointment_app.command("confirm")
def appointment_confirm(appointment_id: str) -> None:
    _show(_call(lambda c: c.appointments.confirm(appointment_id)))


@appointment_app.command("reschedule")
def appointment_reschedule(appointment_id: str, at: Annotated[str, typer.Argument(help="ISO time or +2d")]) -> None:
    _show(_call(lambda c: c.appointments.reschedule(appointment_id, scheduled_at=parse_when(at))))


@appointment_app.command("cancel")
def appointment_cancel(appointment_id: str, reason: Annotated[Optional[str], typer.Option()] = None,
                       notify: Annotated[bool, typer.Option(help="Send the cancellation notice")] = True) -> None:
    _show(_call(lambda c: c.appointments.cancel(appointment_id, reason=reason, notify=notify)))


@appointment_app.command("complete")
def appointment_complete(appointment_id: str) -> None:
    _show(_call(lambda c: c.appointments.complete(appointment_id)))


@appointment_app.command("resend-reminder")
def appointment_resend_reminder(appointment_id: str) -> None:
    """Send the reminder again now."""
    _show(_call(lambda c: c.appointments.resend_reminder(appointment_id)))


@appointment_app.command("show")
def appointment_show(appointment_id: str) -> None:
    _show(_call(lambda c: c.appointments.get(appointment_id)))


IMPORT_CHUNK_ROWS = 2000


@leads_app.command("import")
def leads_import(
    file: Annotated[typer.FileText, typer.Argument(help="CSV with lead_id,email,name[,company,time_zone,offer_url]")],
    campaign: Annotated[Optional[str], typer.Option(help="Campaign for every row (else a campaign column)")] = None,
) -> None:
    """One journey per row, sent in chunks with a progress bar; bad rows are listed with their line."""
    import csv
    import io

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    reader = csv.reader(file)
    try:
        header = next(reader)
    except StopIteration:
        console.print("[red]the file is empty[/red]: expected a header row with lead_id,email,name")
        raise typer.Exit(2) from None
    rows = [(reader.line_num, row) for row in reader]
    totals = {"rows": 0, "started": 0, "already_imported": 0}
    rejected, ignored = [], set()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"importing {file.name}", total=len(rows))
        for start in range(0, max(len(rows), 1), IMPORT_CHUNK_ROWS):
            chunk = rows[start:start + IMPORT_CHUNK_ROWS]
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(header)
            writer.writerows(row for _, row in chunk)
            first_line = chunk[0][0] - 1 if chunk else 1
            report = _call(lambda c, text=buffer.getvalue(), at=first_line: c.import_leads(text, campaign, at))
            for name in totals:
                totals[name] += getattr(report, name)
            rejected += report.rejected
            ignored.update(report.ignored_columns)
            progress.advance(task, len(chunk))
    console.print(f"{totals['rows']} rows: [green]{totals['started']} started[/green], "
                  f"{totals['already_imported']} already imported, [red]{len(rejected)} rejected[/red]")
    if ignored:
        console.print(f"ignored columns: {', '.join(sorted(ignored))}")
    if rejected:
        table = Table("line", "field", "reason", title="rejected rows (skipped)")
        for problem in rejected[:200]:
            table.add_row(str(problem.line), problem.field, problem.reason)
        console.print(table)
        if len(rejected) > 200:
            console.print(f"… and {len(rejected) - 200} more")


@leads_app.command("stats")
def leads_stats(campaign: str) -> None:
    """Leads started, emailed per step, converted, conversion rate, replied, unsubscribed."""
    stats = _call(lambda c: c.campaign_stats(campaign))
    table = Table(title=f"campaign {stats.campaign}", show_header=False)
    table.add_row("leads started", str(stats.started))
    for step, count in stats.emailed_per_step.items():
        table.add_row(f"emailed {step}", str(count))
    table.add_row("converted", f"{stats.converted} ({stats.conversion_rate:.1%})")
    table.add_row("replied", str(stats.replied))
    table.add_row("unsubscribed", str(stats.unsubscribed))
    console.print(table)


@leads_app.command("converted")
def leads_converted(lead_id: str, reference: Annotated[Optional[str], typer.Option()] = None) -> None:
    """The lead converted: nothing more is sent."""
    _show(_call(lambda c: c.leads.converted(lead_id, reference=reference)))


@leads_app.command("show")
def leads_show(lead_id: str) -> None:
    _show(_call(lambda c: c.leads.get(lead_id)))


@session_app.command("start")
def session_start(file: Annotated[typer.FileText, typer.Argument(help="The session as JSON (POST /v1/sessions body)")]) -> None:
    """Start a session from a JSON file: session_id, title, course, starts_at, ends_at, tutor, attendees…."""
    import json

    from workflows.session.models import ClassSession

    try:
        session = ClassSession.model_validate(json.load(file))
    except ValueError as err:
        if isinstance(err, ValidationError):
            _invalid(err)
        console.print(f"[red]not JSON[/red]: {err}")
        raise typer.Exit(2) from None
    _show(_call(lambda c: c.sessions.start(session)))


@session_app.command("add-attendee")
def session_add_attendee(session_id: str, attendee_id: str, email: Annotated[str, typer.Option()],
                         name: Annotated[str, typer.Option()],
                         phone: Annotated[Optional[str], typer.Option(help="E.164, for the webhook channel")] = None,
                         channel: Annotated[list[str], typer.Option(help="email and/or webhook")] = ["email"]) -> None:
    from workflows.session.models import Attendee

    try:
        attendee = Attendee(attendee_id=attendee_id, email=email, name=name, phone=phone, channels=channel)
    except ValidationError as err:
        _invalid(err)
    _show(_call(lambda c: c.sessions.add_attendee(session_id, attendee=attendee)))


@session_app.command("remove-attendee")
def session_remove_attendee(session_id: str, attendee_id: str) -> None:
    _show(_call(lambda c: c.sessions.remove_attendee(session_id, attendee_id=attendee_id)))


@session_app.command("reschedule")
def session_reschedule(session_id: str, starts_at: Annotated[str, typer.Argument(help="ISO time or +2d")],
                       ends_at: Annotated[str, typer.Argument(help="ISO time or +2d1h")]) -> None:
    _show(_call(lambda c: c.sessions.reschedule(session_id, starts_at=parse_when(starts_at), ends_at=parse_when(ends_at))))


@session_app.command("cancel")
def session_cancel(session_id: str, reason: Annotated[Optional[str], typer.Option()] = None,
                   notify: Annotated[bool, typer.Option(help="Tell the roster")] = True) -> None:
    _show(_call(lambda c: c.sessions.cancel(session_id, reason=reason, notify=notify)))


@session_app.command("recording")
def session_recording(session_id: str, url: str) -> None:
    """The recording is online: the roster gets the link."""
    _show(_call(lambda c: c.sessions.recording_available(session_id, recording_url=url)))


@session_app.command("feedback")
def session_feedback(session_id: str, attendee_id: str) -> None:
    _show(_call(lambda c: c.sessions.feedback(session_id, attendee_id=attendee_id)))


@session_app.command("checkin")
def session_checkin(session_id: str, ok: Annotated[bool, typer.Option("--ok/--not-ok")],
                    comment: Annotated[Optional[str], typer.Option()] = None) -> None:
    """The tutor's answer to the first-session check-in (--not-ok escalates to the manager)."""
    _show(_call(lambda c: c.sessions.checkin_answer(session_id, ok=ok, comment=comment)))


@session_app.command("show")
def session_show(session_id: str) -> None:
    _show(_call(lambda c: c.sessions.get(session_id)))


_KINDS = ("interview", "appointment", "lead", "session")


def _print_bulk(report) -> None:
    console.print(f"[bold]{report.matched}[/bold] matched ({report.query}), [green]{report.changed} changed[/green], "
                  f"{report.unchanged} unchanged · request id {report.request_id}")
    for problem in report.problems[:50]:
        console.print(f"  {problem}")


@bulk_app.command("cancel")
def bulk_cancel(
    journey: Annotated[Optional[str], typer.Option(help="interview, appointment, lead or session")] = None,
    group: Annotated[Optional[str], typer.Option(help="A session's course or a lead's campaign")] = None,
    recipient: Annotated[Optional[str], typer.Option(help="The journey's recipient email")] = None,
    reason: Annotated[Optional[str], typer.Option()] = None,
    request_id: Annotated[Optional[str], typer.Option(help="Reuse to retry safely")] = None,
) -> None:
    """Cancel every running journey matching the filter, e.g. `--journey session --group math-101`."""
    _print_bulk(_call(lambda c: c.bulk_cancel(journey=journey, group=group, recipient=recipient, reason=reason,
                                              request_id=request_id)))


@bulk_app.command("signal")
def bulk_signal(
    journey: Annotated[str, typer.Option(help="interview, appointment, lead or session")],
    event: Annotated[str, typer.Option(help='The event as JSON, e.g. {"kind": "remove_attendee", "attendee_id": "ann"}')],
    group: Annotated[Optional[str], typer.Option()] = None,
    recipient: Annotated[Optional[str], typer.Option()] = None,
    request_id: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """Send one event to every running journey of a kind matching the filter."""
    import json

    try:
        payload = json.loads(event)
    except ValueError as err:
        raise typer.BadParameter(f"not JSON: {err}", param_hint="--event") from None
    _print_bulk(_call(lambda c: c.bulk_signal(payload, journey=journey, group=group, recipient=recipient,
                                              request_id=request_id)))


def _invalid(err: ValidationError):
    for problem in err.errors():
        console.print(f"[red]{'.'.join(map(str, problem['loc']))}[/red]: {problem['msg']}")
    raise typer.Exit(2) from None


@app.command()
def messages(
    journey: Annotated[Optional[str], typer.Option()] = None,
    status: Annotated[Optional[str], typer.Option(help="queued, sending, sent, skipped, failed, dry_run")] = None,
    limit: int = 100,
) -> None:
    """Every message recorded by the send step, oldest first."""
    rows = _call(lambda c: c.messages(journey=journey, status=status, limit=limit))
    table = Table("key", "status", "to", "subject", "reason")
    for m in rows:
        table.add_row(m.key, m.status, m.recipient, m.subject or "", m.reason or "")
    console.print(table)


@app.command()
def resend(key: str) -> None:
    """Force one step out again (new key `KEY/resend-N`); the original record stays as it was."""
    view = _call(lambda c: c.resend(key))
    console.print(f"resending {view.original_key} as [bold]{view.new_key}[/bold] ({view.workflow_id})")


@preview_app.command("interview")
def preview_interview(
    scheduled_at: Annotated[Optional[str], typer.Option(help="Confirmed at the start for invite + OFFSET")] = None,
    confirm: Annotated[Optional[str], typer.Option(help="AT@WHEN: confirm at invite+AT for invite+WHEN, e.g. +60h@+7d")] = None,
    reschedule: Annotated[list[str], typer.Option(help="AT@WHEN, repeatable")] = [],
    cancel: Annotated[Optional[str], typer.Option(help="Cancel at invite + OFFSET")] = None,
    complete: Annotated[Optional[str], typer.Option(help="Complete at invite + OFFSET")] = None,
    followup_after: Annotated[Optional[str], typer.Option()] = None,
    followup_interval: Annotated[Optional[str], typer.Option()] = None,
    max_followups: Annotated[Optional[int], typer.Option()] = None,
    reminder_before: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """Run the real interview workflow on the time-skipping server for a scenario and print every
    message it would send, and when (rendered for real, delivered nowhere). E.g.:
    `followups preview interview --confirm +60h@+7d --reschedule +100h@+9d`."""
    from starter.preview import Scenario, run_interview_preview

    events: list[tuple[timedelta, str, timedelta | None]] = []
    if confirm:
        at, when = _pair(confirm)
        events.append((at, "confirm", when))
    for item in reschedule:
        at, when = _pair(item)
        events.append((at, "reschedule", when))
    if cancel:
        events.append((parse_duration(cancel), "cancel", None))
    if complete:
        events.append((parse_duration(complete), "complete", None))
    policy = {k: parse_duration(v) for k, v in dict(followup_after=followup_after, followup_interval=followup_interval,
                                                   reminder_before=reminder_before).items() if v}
    if max_followups is not None:
        policy["max_followups"] = max_followups
    scenario = Scenario(scheduled_at=parse_duration(scheduled_at) if scheduled_at else None,
                        events=sorted(events, key=lambda e: e[0]), policy=policy)
    _print_preview(asyncio.run(run_interview_preview(scenario, Settings())), "invite +")


@preview_app.command("appointment")
def preview_appointment(
    at: Annotated[str, typer.Option(help="The appointment, as an offset from the booking: +3d")] = "+3d",
    remind: Annotated[list[str], typer.Option(help="Reminder offset before the time, repeatable: 1h, 24h")] = [],
    reschedule: Annotated[list[str], typer.Option(help="AT@WHEN: at booking+AT move it to booking+WHEN")] = [],
    cancel: Annotated[Optional[str], typer.Option(help="Cancel at booking + OFFSET")] = None,
    resend: Annotated[list[str], typer.Option(help="Force a resend of the reminder at booking + OFFSET")] = [],
) -> None:
    """The real appointment workflow on the time-skipping server, e.g.
    `followups preview appointment --at +3d --remind 24h --remind 1h --reschedule +1d@+4d`."""
    from starter.preview import Scenario, run_appointment_preview

    events: list[tuple[timedelta, str, timedelta | None]] = [(a, "reschedule", w) for a, w in map(_pair, reschedule)]
    events += [(parse_duration(offset), "resend_reminder", None) for offset in resend]
    if cancel:
        events.append((parse_duration(cancel), "cancel", None))
    policy = {"reminder_offsets": [parse_duration(v) for v in remind]} if remind else {}
    scenario = Scenario(scheduled_at=parse_duration(at), events=events, policy=policy)
    _print_preview(asyncio.run(run_appointment_preview(scenario, Settings())), "booking +")


@preview_app.command("lead")
def preview_lead(
    converted: Annotated[Optional[str], typer.Option(help="Converted at day 0 + OFFSET, e.g. +4d")] = None,
    replied: Annotated[Optional[str], typer.Option(help="Replied at day 0 + OFFSET")] = None,
) -> None:
    """The real lead nurture workflow, e.g. `followups preview lead --converted +4d`."""
    from starter.preview import Scenario, run_lead_preview

    events = [(parse_duration(v), kind, None) for kind, v in (("converted", converted), ("replied", replied)) if v]
    _print_preview(asyncio.run(run_lead_preview(Scenario(events=events), Settings())), "day 0 +")


@preview_app.command("session")
def preview_session(
    at: Annotated[str, typer.Option(help="The class (1 h long), as an offset from now: +2d")] = "+2d",
    attendees: Annotated[int, typer.Option(min=1, max=50)] = 2,
    first_session: Annotated[bool, typer.Option(help="The tutor's first session: check-in after it")] = False,
    reschedule: Annotated[list[str], typer.Option(help="AT@WHEN: at +AT move the class to +WHEN")] = [],
    cancel: Annotated[Optional[str], typer.Option(help="Cancel at + OFFSET")] = None,
    recording: Annotated[Optional[str], typer.Option(help="Recording available at + OFFSET")] = None,
    feedback: Annotated[Optional[str], typer.Option(help="student-1 gives feedback at + OFFSET")] = None,
    checkin_negative: Annotated[Optional[str], typer.Option(help="The tutor answers the check-in badly at + OFFSET")] = None,
) -> None:
    """The real session workflow, e.g. `followups preview session --at +2d --first-session --recording +2d2h
    --checkin-negative +2d4h`."""
    from starter.preview import Scenario, run_session_preview

    events: list[tuple[timedelta, str, timedelta | None]] = [(a, "reschedule", w) for a, w in map(_pair, reschedule)]
    for kind, value in (("cancel", cancel), ("recording_available", recording), ("feedback", feedback),
                        ("checkin_negative", checkin_negative)):
        if value:
            events.append((parse_duration(value), kind, None))
    scenario = Scenario(scheduled_at=parse_duration(at), events=events)
    _print_preview(asyncio.run(run_session_preview(scenario, Settings(), attendees, first_session)), "now +")


def _pair(text: str) -> tuple[timedelta, timedelta]:
    at, sep, when = text.partition("@")
    if not sep:
        raise typer.BadParameter(f"{text!r}: expected AT@WHEN, e.g. +60h@+7d")
    return parse_duration(at), parse_duration(when)


def _print_preview(result, anchor: str) -> None:
    table = Table(anchor, "when (UTC)", "step", "status", "subject / reason")
    for line in result.lines:
        table.add_row(line.offset, line.at, line.step, line.status, line.text)
    console.print(table)
    console.print(f"journey ended: [bold]{result.final_status}[/bold]")


if __name__ == "__main__":
    app()
