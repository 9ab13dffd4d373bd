"""New-content notices (seed 001) through the HTTP API and the CLI, on the real stack: everyone
enrolled in a course (the enrollment journeys of that group, minus those who left) or a given
list, notified once per announcement id, with counts by outcome."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import httpx
import pytest_asyncio

from activities.store import Suppressions, connect
from tests.integration.test_cli import run


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


async def _done(http: httpx.AsyncClient, course: str, announcement_id: str, timeout: float = 30) -> dict:
    for _ in range(int(timeout * 10)):
        body = (await http.get(f"/v1/courses/{course}/announcements/{announcement_id}")).json()
        if body.get("done"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"announcement {announcement_id} never finished: {body}")


async def _enroll(http: httpx.AsyncClient, course: str, student: str) -> None:
    started = await http.post("/v1/journeys/enrollment", json={
        "id": f"{course}-{student}", "group": course, "anchors": {"enrolled_at": datetime.now(timezone.utc).isoformat()},
        "recipient": {"email": f"{student}@example.com", "name": student.title()},
        "context": {"course_title": course, "course_url": f"https://lms.example.com/{course}"}})
    assert started.status_code == 201, started.text


async def test_everyone_enrolled_is_told_once_and_counts_come_back(stack, http, uid):
    course = f"c-{uid}"
    for student in ("ann", "bob", "cy"):
        await _enroll(http, course, f"{student}-{uid}")
    left = await http.post(f"/v1/journeys/enrollment/{course}-cy-{uid}/events/unenrolled")
    assert left.status_code == 200 and left.json()["state"]["status"] == "exited", left.text
    pool = await connect(stack.settings.database_url, 1)
    try:
        await Suppressions(pool).add(f"bob-{uid}@example.com", "unsubscribe", "test")
    finally:
        await pool.close()
    body = {"announcement_id": "video-7", "title": "Lesson 7: factoring", "url": "https://lms.example.com/v/7"}
    posted = await http.post(f"/v1/courses/{course}/announcements", json=body)
    assert posted.status_code == 202 and posted.json()["audience"] == 2, posted.text  # cy left the course
    done = await _done(http, course, "video-7")
    assert (done["sent"], done["failed"], done["skipped"], done["remaining"]) == (1, 0, {"recipient suppressed": 1}, 0)
    key = f"announcement-{course}-video-7/ann-{uid}@example.com"
    assert stack.smtp.sink.keys()[key] == 1
    [mail] = [m for m in stack.smtp.sink.messages if m["X-Followups-Key"] == key]
    assert mail["Subject"] == f"New in {course}: Lesson 7: factoring"

    again = await http.post(f"/v1/courses/{course}/announcements", json=body)
    assert again.status_code == 200 and again.json()["created"] is False and again.json()["sent"] == 1
    other = await http.post(f"/v1/courses/{course}/announcements", json={**body, "title": "Lesson 8"})
    assert other.status_code == 409 and other.json()["field"] == "title", other.text
    await asyncio.sleep(1)
    assert stack.smtp.sink.keys()[key] == 1  # nothing went twice


async def test_a_given_list_and_the_refusals(stack, http, uid):
    nobody = await http.post(f"/v1/courses/empty-{uid}/announcements", json={
        "announcement_id": "a1", "title": "T", "url": "https://lms.example.com/t"})
    assert nobody.status_code == 422 and nobody.json()["field"] == "recipients", nobody.text
    assert (await http.get(f"/v1/courses/empty-{uid}/announcements/a1")).status_code == 404
    bad = await http.post(f"/v1/courses/x-{uid}/announcements", json={
        "announcement_id": "a1", "title": "T", "url": "javascript:alert(1)", "recipients": [
            {"email": "a@example.com", "name": "A"}]})
    assert bad.status_code == 422 and bad.json()["field"] == "url", bad.text
    people = [{"email": f"p{n}-{uid}@example.com", "name": f"P {n}"} for n in range(450)]
    posted = await http.post(f"/v1/courses/list-{uid}/announcements", json={
        "announcement_id": "a1", "title": "Exam dates", "url": "https://lms.example.com/exams", "recipients": people})
    assert posted.status_code == 202 and posted.json()["audience"] == 450
    done = await _done(http, f"list-{uid}", "a1", timeout=60)
    assert done["sent"] == 450  # three batches of at most 200
    sent = stack.smtp.sink.keys()
    assert all(sent[f"announcement-list-{uid}-a1/p{n}-{uid}@example.com"] == 1 for n in range(450))


async def test_the_cli_shows_progress_and_the_counts(stack, http, uid, tmp_path):
    path = tmp_path / "people.json"
    path.write_text(json.dumps({"recipients": [{"email": f"q{n}-{uid}@example.com", "name": f"Q {n}"}
                                               for n in range(30)]}))
    code, out = await run(stack, "announce", f"cli-{uid}", "n1", "--title", "New quiz", "--url",
                          "https://lms.example.com/quiz", "--recipients", str(path))
    assert code == 0, out
    assert "30/30" in out and "audience 30: sent 30, skipped none, failed 0, remaining 0" in out, out
    code, out = await run(stack, "announce", f"cli-{uid}", "n1", "--title", "New quiz", "--url",
                          "https://lms.example.com/quiz", "--recipients", str(path))
    assert code == 0 and "posted before" in out, out
