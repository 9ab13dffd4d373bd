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
