"""The `followups` CLI as a user types it, against the real API stack."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

FOLLOWUPS = str(Path(sys.executable).parent / "followups")


async def run(stack, *args: str) -> tuple[int, str]:
    env = {**os.environ, "FOLLOWUPS_API_URL": stack.base_url, "FOLLOWUPS_API_KEY": "test-key", "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(FOLLOWUPS, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def test_start_confirm_show_and_messages(stack, uid):
    code, out = await run(stack, "interview", "start", uid, "--email", f"cli-{uid}@example.com", "--name", "Cli",
                          "--slot-url", "https://jobs.example.com/slots/x", "--followup-after", "48h")
    assert code == 0, out
    assert "pending" in out and "follow-up 1 of 3" in out
    code, out = await run(stack, "interview", "confirm", uid, "+3d")
    assert code == 0, out
    assert "scheduled" in out and "reminder for the interview" in out
    code, out = await run(stack, "interview", "reschedule", uid, "+4d")
    assert code == 0 and "scheduled" in out, out
    code, out = await run(stack, "interview", "cancel", uid, "--reason", "filled")
    assert code == 0 and "cancelled" in out, out
    code, out = await run(stack, "interview", "show", uid)
    assert code == 0 and "cancelled" in out, out
    code, out = await run(stack, "messages", "--status", "sent")
    assert code == 0 and "key" in out, out


async def test_bad_input_gets_a_clear_message_and_a_failing_exit_code(stack, uid):
    code, out = await run(stack, "interview", "confirm", uid, "2030-01-01T09:00:00")
    assert code != 0 and "no time zone" in out
    code, out = await run(stack, "interview", "start", uid, "--email", "not-an-email", "--name", "X",
                          "--slot-url", "https://x.example.com")
    assert code != 0 and "candidate.email" in out
    code, out = await run(stack, "interview", "show", f"missing-{uid}")
    assert code == 1 and "404" in out
    code, out = await run(stack, "interview", "start", uid, "--email", "a@example.com", "--name", "X",
                          "--slot-url", "https://x.example.com", "--followup-after", "soon")
    assert code != 0 and "not a duration" in out


async def test_preview_plays_the_whole_journey(stack):
    code, out = await run(stack, "preview", "interview", "--confirm", "+60h@+7d", "--reschedule", "+100h@+9d")
    assert code == 0, out
    lines = out.splitlines()
    assert any("followup-1" in line and "would send" in line for line in lines)
    assert not any("followup-2" in line for line in lines)  # confirmed before it was due
    assert sum("reminder-" in line and "would send" in line for line in lines) == 1
    assert "journey ended: completed" in out


async def test_previews_of_the_other_journeys(stack):
    code, out = await run(stack, "preview", "appointment", "--at", "+3d", "--remind", "24h", "--remind", "1h",
                          "--reschedule", "+1d@+4d")
    assert code == 0, out
    assert sum("reminder-" in line and "would send" in line for line in out.splitlines()) == 2
    assert "journey ended: completed" in out
    code, out = await run(stack, "preview", "lead", "--converted", "+4d")
    assert code == 0, out
    assert "step-2" in out and "step-3" not in out and "journey ended: converted" in out
    code, out = await run(stack, "preview", "session", "--at", "+2d", "--first-session", "--recording", "+2d2h",
                          "--feedback", "+2d3h", "--checkin-negative", "+2d4h")
    assert code == 0, out
    lines = out.splitlines()
    assert sum("reminder-" in line and "would send" in line for line in lines) == 4  # 2 offsets × 2 students
    assert any("escalation" in line and "would send" in line for line in lines)
    assert [line for line in lines if "feedback/" in line and "would send" in line][0].count("student-2") == 1
    assert not any("feedback/student-1" in line for line in lines)


async def test_sessions_and_bulk_from_the_cli(stack, uid, tmp_path):
    import json
    from datetime import datetime, timedelta, timezone

    start = datetime.now(timezone.utc) + timedelta(days=2)
    session = {"session_id": uid, "title": "Chemistry", "course": f"chem-{uid}", "starts_at": start.isoformat(),
               "ends_at": (start + timedelta(hours=1)).isoformat(),
               "tutor": {"name": "Tia", "email": f"tia-{uid}@example.com"},
               "attendees": [{"attendee_id": "ann", "name": "Ann", "email": f"ann-{uid}@example.com"}]}
    path = tmp_path / "session.json"
    path.write_text(json.dumps(session))
    code, out = await run(stack, "session", "start", str(path))
    assert code == 0 and "scheduled" in out, out
    code, out = await run(stack, "session", "add-attendee", uid, "bob", "--email", f"bob-{uid}@example.com",
                          "--name", "Bob")
    assert code == 0, out
    for _ in range(100):  # visibility is eventually consistent
        code, out = await run(stack, "bulk", "cancel", "--group", f"chem-{uid}", "--reason", "withdrawn",
                              "--request-id", f"r{uid}")
        if "1 matched" in out:
            break
        await asyncio.sleep(0.2)
    assert code == 0 and "1 changed" in out, out
    code, out = await run(stack, "bulk", "cancel")
    assert code == 1 and "journey" in out
    path.write_text("{not json")
    code, out = await run(stack, "session", "start", str(path))
    assert code == 2 and "not JSON" in out


async def run_with_input(stack, text: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "FOLLOWUPS_API_URL": stack.base_url, "FOLLOWUPS_API_KEY": "test-key", "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(FOLLOWUPS, *args, env=env, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate(text.encode())
    return proc.returncode, out.decode()


async def test_payments_from_the_cli_with_no_cli_code(stack, uid):
    """Payment has no line of its own in the CLI: start, events and show come from the registry."""
    payment = ["--payer-email", f"payer-{uid}@example.com", "--payer-name", "Pat", "--currency", "EUR",
               "--payment-url", "https://pay.example.com/i/1"]
    code, out = await run(stack, "payment", "start", uid, *payment, "--amount", "49.90",
                          "--reminder-after", "1d", "--reminder-after", "3d")
    assert code == 0, out
    assert "pending" in out and "49.90 EUR" in out and "reminder 1 of 2" in out
    code, out = await run(stack, "payment", "paid", uid, "--reference", "ch_1", "--event-id", f"evt-{uid}")
    assert code == 0 and "paid" in out and "applied" in out, out
    code, out = await run(stack, "payment", "show", uid)
    assert code == 0 and "paid" in out and f"payment-{uid}/confirmation" in out, out
    code, out = await run(stack, "payment", "cancel", uid)
    assert code == 1 and "409" in out, out

    body = {"payment_id": f"{uid}-2", "payer": {"email": f"p2-{uid}@example.com", "name": "Pia"},
            "currency": "JPY", "amount": "1200", "payment_url": "https://pay.example.com/i/2"}
    import json

    code, out = await run_with_input(stack, json.dumps(body), "payment", "start", "-", "--description", "Kimono")
    assert code == 0 and "1200 JPY" in out, out

    code, out = await run(stack, "payment", "start", f"{uid}-3", *payment, "--amount", "1e3")
    assert code == 2 and "amount" in out and "plain decimal" in out, out
    code, out = await run(stack, "payment", "paid", uid, "--paid-at", "2030-01-01T00:00:00")
    assert code == 2 and "--paid-at" in out and "no time zone" in out, out
    code, out = await run(stack, "payment", "start", f"{uid}-4", *payment, "--amount", "5", "--channels", "sms")
    assert code == 2 and "'sms' is not one of email, webhook" in out, out
    code, out = await run(stack, "payment", "show", f"missing-{uid}")
    assert code == 1 and "404" in out


async def test_a_generated_event_command_for_a_kind_without_cli_code(stack, uid):
    code, out = await run(stack, "lead", "start", uid, "--contact-email", f"lee-{uid}@example.com",
                          "--contact-name", "Lee", "--campaign", f"c-{uid}", "--event-id", "x")
    assert code == 2 and "--event-id" in out  # a start has no event id: refused before anything is sent
    code, out = await run(stack, "lead", "start", uid, "--contact-email", f"lee-{uid}@example.com",
                          "--contact-name", "Lee", "--campaign", f"c-{uid}")
    assert code == 0 and "nurturing" in out and "email 1 of 3" in out, out
    code, out = await run(stack, "lead", "replied", uid, "--event-id", f"reply-{uid}")
    assert code == 0 and "replied" in out and "applied" in out, out
    code, out = await run(stack, "leads", "show", uid)  # the spelling from before the commands were generated
    assert code == 0 and "replied" in out, out


async def test_preview_of_a_payment(stack):
    code, out = await run(stack, "preview", "payment", "--paid", "+4d")
    assert code == 0, out
    lines = out.splitlines()
    assert any("reminder-3d" in line and "would send" in line for line in lines)
    assert any("confirmation" in line and "would send" in line for line in lines)
    assert "journey ended: paid" in out
    code, out = await run(stack, "preview", "payment", "--reminder-after", "1d", "--reminder-after", "5d",
                          "--event", '+2d:paid:{"reference": "ch_9"}')
    assert code == 0, out
    assert any("reminder-1d" in line and "would send" in line for line in out.splitlines())
    assert "reminder-5d" not in out and "journey ended: paid" in out
    code, out = await run(stack, "preview", "payment", "--event", "+1d:refund")
    assert code == 2 and "paid, cancel" in out


def test_every_kind_and_event_route_has_a_cli_command_and_a_preview():
    """A new kind in the registry cannot miss a command, an option for one of its event's fields, or a preview."""
    import typer
    from typer.testing import CliRunner

    from starter.cli import app
    from starter.cli.journeys import command_name, event_fields
    from workflows.registry import KINDS

    cli = typer.main.get_command(app)
    for name, kind in KINDS.items():
        commands = cli.commands[name].commands
        assert {"start", "show"} <= commands.keys()
        routes = {command_name(kind, route): route for route in kind.events}
        assert len(routes) == len(kind.events), f"{name}: two event routes share a command name"
        assert set(commands) == {"start", "show", *routes}
        for command, route in routes.items():
            given = {tuple(p.name[2:].split("__")) if p.name.startswith("f_") else (p.name[2:],)
                     for p in commands[command].params}
            for field in event_fields(kind, route):
                assert field.path in given, f"`followups {name} {command}` has no parameter for {field.dotted}"
            for path_param in route.path_params:
                assert (path_param,) in given
            result = CliRunner().invoke(app, [name, command, "--help"])
            assert result.exit_code == 0, result.output
        assert name in cli.commands["preview"].commands, f"{name} has no preview: give it a `preview` sample"
