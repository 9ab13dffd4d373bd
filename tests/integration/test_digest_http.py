"""`PUT/GET/DELETE /v1/progress/{recipient}` through the real API and PostgreSQL: a recipient is
stored with their zone, digests and progress, read back with each digest's next due time, replaced,
deleted; what the edge refuses is a 422 naming the field, and nothing is stored."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest
import pytest_asyncio

from workflows.digest.models import PROGRESS_MAX_BYTES


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


def _body(uid: str, **fields) -> dict:
    return {"email": f"ann-{uid}@example.test", "name": "Ann Example", "time_zone": "Asia/Kathmandu",
            "digests": ["weekly", "monthly"],
            "progress": {"headline": "Ann's week", "summary": "Four lessons.\nOne quiz.",
                         "items": [{"label": "Lessons", "value": "4 of 6"}], "url": "https://lms.example.com/me"},
            **fields}


async def test_put_get_replace_delete(http, uid):
    put = await http.put(f"/v1/progress/ann-{uid}", json=_body(uid))
    assert put.status_code == 201, put.text
    view = put.json()
    assert view["created"] is True and view["time_zone"] == "Asia/Kathmandu"
    assert view["progress"]["items"] == [{"label": "Lessons", "value": "4 of 6"}]
    weekly = view["next"]["weekly"]
    at = datetime.fromisoformat(weekly["at"])
    assert at > datetime.now(timezone.utc) and (at.hour, at.minute, at.weekday()) == (3, 15, 0)  # Mon 09:00 +05:45
    assert weekly["period"].startswith(f"{at.isocalendar()[0]}-W")
    monthly = datetime.fromisoformat(view["next"]["monthly"]["at"])
    assert (monthly.day, monthly.hour, monthly.minute) == (1, 3, 15)
    assert view["next"]["monthly"]["period"] == f"{monthly:%Y-%m}"

    got = await http.get(f"/v1/progress/ann-{uid}")
    assert got.status_code == 200 and got.json()["progress"] == view["progress"] and got.json()["created"] is None

    again = await http.put(f"/v1/progress/ann-{uid}", json=_body(uid, time_zone="America/St_Johns",
                                                                digests=["manager"], progress=None))
    assert again.status_code == 200 and again.json()["created"] is False, again.text
    assert again.json()["progress"] is None and list(again.json()["next"]) == ["manager"]
    assert datetime.fromisoformat(again.json()["next"]["manager"]["at"]).minute == 30  # -03:30 / -02:30

    assert (await http.delete(f"/v1/progress/ann-{uid}")).status_code == 204
    assert (await http.get(f"/v1/progress/ann-{uid}")).status_code == 404
    gone = await http.delete(f"/v1/progress/ann-{uid}")
    assert gone.status_code == 404 and gone.json()["field"] == "recipient"


@pytest.mark.parametrize("fields, field", [
    ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
    ({"time_zone": "../../etc/passwd"}, "time_zone"),
    ({"time_zone": None}, "time_zone"),
    ({"email": "not an address"}, "email"),
    ({"name": "Ann\x1b[31m"}, "name"),
    ({"digests": []}, "digests"),
    ({"digests": ["weekly", "weekly"]}, "digests"),
    ({"digests": ["daily"]}, "digests.0"),
    ({"progress": {"summary": "bell\x07"}}, "progress"),
    ({"progress": {"note": "nul\x00"}}, "progress"),
    ({"progress": {"\x00key": 1}}, "progress"),
    ({"progress": {"big": "x" * (PROGRESS_MAX_BYTES + 1)}}, "progress"),
    ({"progress": {"deep": [[[[[[[[[["too deep"]]]]]]]]]]}}, "progress"),
    ({"progress": {"items": "not a list"}}, "progress"),
    ({"progress": {"team": [{"summary": "no name"}]}}, "progress"),
    ({"progress": {"url": "javascript:alert(1)"}}, "progress"),
    ({"progress": [1, 2]}, "progress"),
    ({"unknown": 1}, "unknown"),
])
async def test_the_edge_refuses_what_a_digest_cannot_use(http, uid, fields, field):
    refused = await http.put(f"/v1/progress/bad-{uid}", json=_body(uid, **fields))
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field, refused.text
    assert (await http.get(f"/v1/progress/bad-{uid}")).status_code == 404  # nothing stored


async def test_non_finite_numbers_and_bad_ids_are_refused(http, uid):
    nan = await http.put(f"/v1/progress/nan-{uid}", content=b'{"email": "a@example.test", "name": "A", '
                         b'"time_zone": "UTC", "progress": {"score": NaN}}', headers={"Content-Type": "application/json"})
    assert nan.status_code == 422 and nan.json()["field"] == "progress", nan.text
    bad_id = await http.put("/v1/progress/has%20space", json=_body(uid))
    assert bad_id.status_code == 422 and bad_id.json()["field"] == "recipient", bad_id.text
    unauthorised = await http.get(f"/v1/progress/x-{uid}", headers={"Authorization": "Bearer wrong"})
    assert unauthorised.status_code == 401


async def test_the_python_client(stack, uid):
    import asyncio

    from starter.client import FollowupsClient, FollowupsError

    def use() -> None:
        with FollowupsClient(stack.base_url, api_key=stack.settings.api_keys[0]) as followups:
            put = followups.put_progress(f"lee-{uid}", email=f"lee-{uid}@example.test", name="Lee",
                                         time_zone="Australia/Eucla", digests=["manager"],
                                         progress={"team": [{"name": "Ann", "summary": "4 lessons"}]})
            assert put.created and put.next["manager"].at.minute == 15  # +08:45
            assert followups.get_progress(f"lee-{uid}").progress == {"team": [{"name": "Ann", "summary": "4 lessons"}]}
            followups.delete_progress(f"lee-{uid}")
            with pytest.raises(FollowupsError) as missing:
                followups.delete_progress(f"lee-{uid}")
            assert missing.value.status == 404 and missing.value.field == "recipient"

    await asyncio.to_thread(use)
