"""The interview journey through the HTTP API, as a backend would drive it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx


async def test_start_twice_is_201_then_200(stack, uid):
    body = {
        "interview_id": uid,
        "candidate": {"email": f"c-{uid}@example.com", "name": "Cy"},
        "slot_selection_url": f"https://jobs.example.com/slots/{uid}",
    }
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers) as http:
        first = await http.post("/v1/interviews", json=body)
        again = await http.post("/v1/interviews", json=body)
        assert (first.status_code, again.status_code) == (201, 200), first.text
        assert first.json()["state"]["status"] == "pending"
        at = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
        confirmed = await http.post(f"/v1/interviews/{uid}/confirm", json={"scheduled_at": at})
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["state"]["next_step"]["kind"] == "reminder"
        shown = await http.get(f"/v1/interviews/{uid}")
        assert shown.json()["state"]["status"] == "scheduled"
