"""Declared journeys from the `followups` CLI as a user types it: a definition previewed before it
is saved, saved from YAML, a journey of it started, steered and shown, against the real stack."""

from __future__ import annotations

import json

from tests.integration.test_cli import run

QUIZ = """\
description: a nudge two days before the deadline
anchors: {deadline: start}
roster: true
steps:
  - {name: nudge, at: deadline - 48h, until: deadline - 24h, template: assignment_reminder}
events:
  submitted: {member_exits: true}
  deadline_moved: {sets: deadline}
"""


async def test_preview_then_save_start_steer_and_show_a_definition(stack, uid, tmp_path):
    path = tmp_path / "quiz.yaml"
    path.write_text(QUIZ)
    code, out = await run(stack, "preview", "definition", str(path), "--anchor", "deadline=+5d", "--members", "3",
                          "--event", '+1d:submitted:{"member_id": "m2"}', "--event", "+3d12h:deadline_moved:"
                          '{"at": "+9d"}', "--context", '{"assignment_title": "Quiz", "submit_url": "https://x.example.com"}')
    assert code == 0, out
    sends = [line for line in out.splitlines() if "would send" in line]
    assert len(sends) == 4 and all("Assignment due soon: Quiz" in line for line in sends), out  # 2 members × 2 deadlines
    assert sum("3.00d" in line for line in sends) == 2 and sum("7.00d" in line for line in sends) == 2
    assert "journey ended: completed" in out

    code, out = await run(stack, "definitions", "save", f"quiz_{uid}", str(path))
    assert code == 0 and "version 1 saved" in out, out
    code, out = await run(stack, "definitions", "save", f"quiz_{uid}", str(path))
    assert code == 0 and "version 1 unchanged" in out, out
    code, out = await run(stack, "definitions", "show", f"quiz_{uid}")
    assert code == 0 and "deadline - 2d" in out, out

    start = {"id": uid, "anchors": {"deadline": "2030-01-10T09:00:00+00:00"}, "context": {
        "assignment_title": "Quiz", "submit_url": "https://lms.example.com/q"},
        "roster": [{"member_id": "ann", "recipient": {"email": f"ann-{uid}@example.com", "name": "Ann"}}]}
    code, out = await run(stack, "journey", "start", f"quiz_{uid}", json.dumps(start))
    assert code == 0 and "active (version 1)" in out and "2029-12-08" not in out, out
    code, out = await run(stack, "journey", "event", f"quiz_{uid}", uid, "deadline_moved", "--at", "2030-01-20T09:00:00Z")
    assert code == 0 and "2030-01-20T09:00:00+00:00" in out and "nudge (assignment_reminder) due 2030-01-18" in out, out
    code, out = await run(stack, "journey", "event", f"quiz_{uid}", uid, "submitted")
    assert code == 1 and "member_id" in out, out
    code, out = await run(stack, "journey", "event", f"quiz_{uid}", uid, "cancel")
    assert code == 0 and "cancelled" in out, out


async def test_a_bad_definition_file_is_refused_with_its_fields(stack, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(QUIZ.replace("deadline - 48h", "dedline - 48h").replace("assignment_reminder", "nope"))
    code, out = await run(stack, "preview", "definition", str(path))
    assert code == 2 and "steps.0.at" in out and "steps.0.template" in out, out
    path.write_text("anchors: {deadline: start\n")
    code, out = await run(stack, "definitions", "save", "bad_one", str(path))
    assert code == 2 and "line" in out, out
