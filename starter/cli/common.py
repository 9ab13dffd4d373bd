"""What every `followups` command shares: the console, times and durations as users type them,
the API client, and how an answer, a refusal or bad input is printed."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from settings import Settings

console = Console()

_OFFSET = re.compile(r"^\+?(?:\d+(?:\.\d+)?[smhd])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def is_offset(text: str) -> bool:
    return bool(_OFFSET.match(text.strip()))


def parse_duration(text: str) -> timedelta:
    """`+60h`, `90m`, `7d`, `2d4h`, `30s`, ISO 8601 `PT48H`, or plain seconds."""
    if is_offset(text):
        return sum((timedelta(**{_UNITS[unit]: float(n)}) for n, unit in _PART.findall(text)), timedelta())
    try:
        return TypeAdapter(timedelta).validate_python(text)
    except ValidationError:
        raise typer.BadParameter(f"{text!r} is not a duration (try +60h, 7d, PT48H or seconds)") from None


def parse_when(text: str) -> datetime:
    """An ISO 8601 time with a zone, or an offset from now like +2d."""
    if is_offset(text):
        return datetime.now(timezone.utc) + parse_duration(text)
    return parse_moment(text)


def parse_moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time or an offset like +2d") from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no time zone: add Z or +01:00")
    return moment


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise typer.BadParameter(f"not JSON: {err}") from None


def is_json_source(source: str) -> bool:
    """`-` (stdin), a name ending in .json, a path, or a file that exists: a JSON body, not an id
    (ids never contain a slash)."""
    return source == "-" or source.lower().endswith(".json") or "/" in source or Path(source).is_file()


def read_json_object(source: str) -> dict[str, Any]:
    """The JSON object in a file, or on stdin for `-`; bad JSON exits with 2 and says why."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as err:
        console.print(f"[red]cannot read {source}[/red]: {err.strerror}")
        raise typer.Exit(2) from None
    try:
        body = json.loads(text)
    except ValueError as err:
        console.print(f"[red]not JSON[/red] ({'stdin' if source == '-' else source}): {err}")
        raise typer.Exit(2) from None
    if not isinstance(body, dict):
        console.print(f"[red]not a JSON object[/red] ({source}): the body is {type(body).__name__}")
        raise typer.Exit(2)
    return body


def invalid(err: ValidationError, context: str = "") -> NoReturn:
    """Every problem with its field (`candidate.email: value is not a valid email address`), or
    the model's name for a check across fields; exit 2."""
    for problem in err.errors():
        where = ".".join(map(str, problem["loc"])) or err.title
        console.print(f"{context}[red]{where}[/red]: {problem['msg']}")
    raise typer.Exit(2) from None


# --- the API ----------------------------------------------------------------------------------


def _client():
    import os

    from starter.client import FollowupsClient

    settings = Settings()
    url = os.environ.get("FOLLOWUPS_API_URL", f"http://{settings.api_host}:{settings.api_port}")
    return FollowupsClient(url, api_key=os.environ.get("FOLLOWUPS_API_KEY", settings.api_keys[0]))


def call(fn, *args, **kwargs):
    """`fn(client, …)` against the API; a refusal or an unreachable API is printed, exit 1."""
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


def show(view) -> None:
    """A journey's view: status, what was sent, the next step, skips, the event's outcome, messages."""
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
        if getattr(state, "amount", None):
            table.add_row("amount", f"{state.amount} {state.currency}"
                          + (f", paid {state.paid_at}" if getattr(state, "paid_at", None) else ""))
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
