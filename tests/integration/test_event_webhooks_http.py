"""Event webhooks on the real stack: endpoints registered over HTTP, a journey's events delivered to
a real receiver on a socket that verifies each Standard Webhooks signature, in order per journey;
a receiver that is down for a while gets every event once it is back; a delivery retried by hand;
a deleted endpoint gets nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest
import pytest_asyncio
import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from starter.sink import free_port
from tests.conftest import running_stack
from tests.integration.test_cli import run

pytestmark = pytest.mark.integration


class Receiver:
    """A backend's webhook route: verifies, keeps what it was sent; `answer` is its status code."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.secret: str | None = None
        self.answer = 200
        self.refused: set[str] = set()  # entity ids whose events it answers 500
        self.received: list[dict] = []  # verified: {"id", "type", "data", "timestamp"}
        self.forged = 0
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = self.answer
        if self.refused and json.loads(body)["data"].get("entity_id") in self.refused:
            status = 500
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            self.forged += 1
            status = 400
        else:
            if status == 200:
                self.received.append({"id": headers["webhook-id"], **payload})
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def start(self) -> None:
        self.server = uvicorn.Server(uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning"))
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        assert self.server is not None and self.task is not None
        self.server.should_exit = True
        await self.task

    def of(self, journey_key: str) -> list[dict]:
        return [event for event in self.received if self.key(event) == journey_key]

    @staticmethod
    def key(event: dict) -> str:
        data = event["data"]
        return f"{data.get('journey')}/{data.get('entity_id')}"


@pytest_asyncio.fixture(scope="module")
async def stack(local_env, database_url, smtp):
    async with running_stack(local_env, database_url, smtp) as running:
        yield running


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def receiver(http):
    """A running receiver with its own endpoint (every type), deleted afterwards."""
    hooks = Receiver()
    await hooks.start()
    created = await http.post("/v1/webhook-endpoints", json={"url": hooks.url, "description": "test receiver"})
    assert created.status_code == 201, created.text
    hooks.secret, hooks.endpoint = created.json()["secret"], created.json()["id"]
    yield hooks
    await http.delete(f"/v1/webhook-endpoints/{hooks.endpoint}")
    with contextlib.suppress(Exception):
        await hooks.stop()


def booking(uid: str, seconds: float, offset: int) -> dict:
    return {"appointment_id": uid, "patient": {"email": f"p-{uid}@example.com", "name": "Pat"},
            "scheduled_at": (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat(),
            "doctor": "Dr. Rivera", "policy": {"reminder_offsets": [offset]}}


async def until(check, timeout: float = 60.0, what: str = "") -> None:
    for _ in range(int(timeout * 10)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


async def test_endpoints_refuse_what_could_never_be_delivered(http):
    for body, field in [
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "https://example.com/a b"}, "url"),
        ({"url": "https://example.com/hook", "event_types": ["journey.exploded"]}, "event_types"),
        ({"url": "https://example.com/hook", "secret": "whsec_c2hvcnQ="}, "secret"),
        ({"url": "https://example.com/hook", "secret": "not-a-secret"}, "secret"),
        ({"url": "https://example.com/hook", "colour": "red"}, "colour"),
    ]:
        refused = await http.post("/v1/webhook-endpoints", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["field"].split(".")[0] == field, refused.json()
    assert (await http.get("/v1/webhook-endpoints/ep_nothing")).status_code == 404
    assert (await http.delete("/v1/webhook-endpoints/ep_nothing")).status_code == 404
    types = (await http.get("/v1/webhook-event-types")).json()
    assert {"journey.started", "journey.ended", "message.sent", "payment.reminded"} <= {t["type"] for t in types}


async def test_a_journeys_events_arrive_signed_and_in_order(http, receiver, uid):
    assert (await http.post("/v1/appointments", json=booking(uid, 6, 3))).status_code == 201
    key = f"appointment/{uid}"
    await until(lambda: any(e["type"] == "journey.ended" for e in receiver.of(key)), what="journey.ended")
    events = receiver.of(key)
    assert [e["type"] for e in events] == ["journey.started", "message.sent", "journey.stage_changed",
                                           "journey.ended"]
    started, sent, changed, ended = events
    assert started["data"]["stage"] == "scheduled" and started["data"]["workflow_id"] == f"appointment-{uid}"
    assert sent["data"]["key"].startswith(f"appointment-{uid}/reminder-3s-")
    assert (sent["data"]["status"], sent["data"]["recipient"]) == ("sent", f"p-{uid}@example.com")
    assert (changed["data"]["previous_stage"], changed["data"]["stage"]) == ("scheduled", "completed")
    assert ended["data"]["outcome"] == "completed"
    assert len({e["id"] for e in events}) == 4 and all(e["id"].startswith("evt_") for e in events)
    assert receiver.forged == 0
    page = (await http.get(f"/v1/webhook-endpoints/{receiver.endpoint}/deliveries",
                           params={"status": "delivered", "limit": 500})).json()
    mine = [d for d in page["deliveries"] if d["journey_key"] == key]
    assert [d["event_id"] for d in mine] == [e["id"] for e in events]
    assert all(d["attempts"] == 1 and d["last_status"] == 200 for d in mine)


async def test_a_receiver_down_for_a_while_gets_every_event_once_in_order(http, receiver, uid):
    await receiver.stop()  # connection refused, as a backend being deployed
    ids = [f"{uid}-{n}" for n in range(3)]
    for entity in ids:
        assert (await http.post("/v1/appointments", json=booking(entity, 5, 2))).status_code == 201
    await asyncio.sleep(6)  # the reminders go out and the journeys end while nobody listens
    await receiver.start()
    keys = [f"appointment/{entity}" for entity in ids]
    await until(lambda: all(any(e["type"] == "journey.ended" for e in receiver.of(k)) for k in keys),
                timeout=90, what="every journey.ended after the receiver came back")
    for key in keys:
        assert [e["type"] for e in receiver.of(key)] == ["journey.started", "message.sent",
                                                         "journey.stage_changed", "journey.ended"], key
    counts = defaultdict(int)
    for event in receiver.received:
        counts[event["id"]] += 1
    assert max(counts.values()) == 1
    page = (await http.get(f"/v1/webhook-endpoints/{receiver.endpoint}/deliveries", params={"limit": 500})).json()
    retried = [d for d in page["deliveries"] if d["journey_key"] in keys and d["attempts"] > 1]
    assert retried and all(d["status"] == "delivered" for d in retried)


async def test_a_refused_delivery_waits_with_its_reason_and_goes_when_retried_by_hand(http, receiver, uid):
    receiver.answer = 500
    assert (await http.post("/v1/appointments", json=booking(uid, 3600, 1800))).status_code == 201
    key = f"appointment/{uid}"

    async def mine() -> list[dict]:
        page = (await http.get(f"/v1/webhook-endpoints/{receiver.endpoint}/deliveries", params={"limit": 500})).json()
        return [d for d in page["deliveries"] if d["journey_key"] == key]

    found: list[dict] = []

    async def refused() -> bool:
        found[:] = await mine()
        return bool(found) and found[0]["last_status"] == 500

    for _ in range(300):
        if await refused():
            break
        await asyncio.sleep(0.1)
    [delivery] = found
    assert delivery["status"] == "pending" and "answered 500" in delivery["last_error"]
    assert datetime.fromisoformat(delivery["next_attempt_at"]) > datetime.now(timezone.utc)
    receiver.answer = 200
    retried = await http.post(f"/v1/webhook-endpoints/{receiver.endpoint}/deliveries/{delivery['id']}/retry")
    assert retried.status_code == 200, retried.text
    await until(lambda: receiver.of(key), timeout=30, what="the retried delivery")
    assert [e["type"] for e in receiver.of(key)] == ["journey.started"]
    missing = await http.post(f"/v1/webhook-endpoints/{receiver.endpoint}/deliveries/999999999/retry")
    assert missing.status_code == 404 and missing.json()["field"] == "delivery_id"
    await http.post(f"/v1/appointments/{uid}/cancel", json={"reason": "done", "notify": False})


async def test_a_deleted_endpoint_gets_nothing_more_and_its_workflow_ends(stack, http, receiver, uid):
    only = await http.post("/v1/webhook-endpoints", json={"url": receiver.url, "event_types": ["journey.ended"],
                                                          "secret": receiver.secret})
    assert only.status_code == 201, only.text
    endpoint = only.json()["id"]
    assert (await http.get(f"/v1/webhook-endpoints/{endpoint}/secret")).json() == {"secret": receiver.secret}
    assert endpoint in {e["id"] for e in (await http.get("/v1/webhook-endpoints")).json()}
    assert (await http.delete(f"/v1/webhook-endpoints/{endpoint}")).status_code == 204
    assert (await http.get(f"/v1/webhook-endpoints/{endpoint}")).status_code == 404
    assert (await http.post("/v1/appointments", json=booking(uid, 4, 2))).status_code == 201
    key = f"appointment/{uid}"
    await until(lambda: any(e["type"] == "journey.ended" for e in receiver.of(key)), what="journey.ended")
    assert [e["type"] for e in receiver.of(key)].count("journey.ended") == 1  # the fixture's endpoint only
    handle = stack.temporal.get_workflow_handle(f"webhook-endpoint-{endpoint}")
    with contextlib.suppress(Exception):  # never woken at all is fine too
        await asyncio.wait_for(handle.result(), 30)



async def test_an_endpoint_from_settings_is_written_at_start_and_told(local_env, database_url, smtp, uid):
    hooks = Receiver()
    hooks.secret = "whsec_" + "c2V0dGluZ3Mtc2VjcmV0LW9mLXRoaXJ0eS10d28tYnl0ZXM="
    await hooks.start()
    try:
        async with running_stack(local_env, database_url, smtp, events_webhook_url=hooks.url,
                                 events_webhook_secret=hooks.secret,
                                 events_webhook_types=["journey.started"]) as stack:
            async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as http:
                endpoint = (await http.get("/v1/webhook-endpoints/settings")).json()
                assert (endpoint["url"], endpoint["event_types"]) == (hooks.url, ["journey.started"])
                assert (await http.post("/v1/appointments", json=booking(uid, 3600, 1800))).status_code == 201
                await until(lambda: hooks.of(f"appointment/{uid}"), what="journey.started from the settings' endpoint")
                assert [e["type"] for e in hooks.of(f"appointment/{uid}")] == ["journey.started"]
                await http.post(f"/v1/appointments/{uid}/cancel", json={"reason": "done", "notify": False})
                assert (await http.delete("/v1/webhook-endpoints/settings")).status_code == 204
    finally:
        await hooks.stop()


@pytest.mark.parametrize("secret, types, problem", [
    (None, [], "FOLLOWUPS_EVENTS_WEBHOOK_SECRET"),
    ("hunter2", [], "FOLLOWUPS_EVENTS_WEBHOOK_SECRET"),
    ("whsec_c2hvcnQ=", [], "FOLLOWUPS_EVENTS_WEBHOOK_SECRET"),
    ("whsec_c2V0dGluZ3Mtc2VjcmV0LW9mLXRoaXJ0eS10d28tYnl0ZXM=", ["journey.exploded"], "journey.exploded"),
])
async def test_a_settings_endpoint_that_could_not_be_verified_stops_the_worker(local_env, database_url, smtp,
                                                                               secret, types, problem):
    with pytest.raises(SystemExit, match=problem):
        async with running_stack(local_env, database_url, smtp, events_webhook_url="https://backend.example.com/h",
                                 events_webhook_secret=secret, events_webhook_types=types):
            pass


async def test_the_cli_registers_lists_shows_retries_and_deletes(stack, http, uid):
    hooks = Receiver()
    await hooks.start()
    try:
        code, out = await run(stack, "webhooks", "add", hooks.url, "--type", "journey.started", "--description", uid)
        assert code == 0, out
        endpoint = out.split(":", 1)[0].strip()
        hooks.secret = out.split("secret:", 1)[1].split()[0]
        code, out = await run(stack, "webhooks", "list")
        assert code == 0 and endpoint in out and "journey.started" in out, out
        hooks.answer = 503
        assert (await http.post("/v1/appointments", json=booking(uid, 3600, 1800))).status_code == 201
        page: dict = {}
        for _ in range(300):
            page = (await http.get(f"/v1/webhook-endpoints/{endpoint}/deliveries")).json()
            if page["deliveries"] and page["deliveries"][0]["last_status"] == 503:
                break
            await asyncio.sleep(0.1)
        [delivery] = page["deliveries"]
        code, out = await run(stack, "webhooks", "deliveries", endpoint, "--status", "pending")
        assert code == 0 and "answered 503" in out and "journey.started" in out, out
        code, out = await run(stack, "webhooks", "show", endpoint, "--secret")
        assert code == 0 and "pending: 1" in out and hooks.secret in out, out
        hooks.answer = 200
        code, out = await run(stack, "webhooks", "retry", endpoint, str(delivery["id"]))
        assert code == 0 and "going now" in out, out
        await until(lambda: hooks.of(f"appointment/{uid}"), timeout=30, what="the retried delivery")
        code, out = await run(stack, "webhooks", "delete", endpoint)
        assert code == 0, out
        code, out = await run(stack, "webhooks", "show", endpoint)
        assert code != 0 and "404" in out and "endpoint_id" in out, out
        await http.post(f"/v1/appointments/{uid}/cancel", json={"reason": "done", "notify": False})
    finally:
        await hooks.stop()


async def test_journeys_refused_by_the_receiver_hold_back_only_their_own_events(stack, http, receiver, uid):
    """1,200 events of 300 journeys the receiver refuses, then 40 of 20 others: those 20 arrive at
    once, in order, while the refused ones wait for their retries."""
    pool = await asyncpg.connect(stack.settings.database_url)
    try:
        blocked = [f"blocked-{uid}-{n}" for n in range(300)]
        receiver.refused = set(blocked)
        await pool.executemany("SELECT webhook_emit($1, 'journey.started', $2, $3::jsonb)", [
            (f"{uid}/{entity}/{n}", f"test/{entity}", json.dumps({"journey": "test", "entity_id": entity, "n": n}))
            for entity in blocked for n in range(4)])
        await asyncio.sleep(2)  # the first rounds meet them
        others = [f"other-{uid}-{n}" for n in range(20)]
        await pool.executemany("SELECT webhook_emit($1, 'journey.started', $2, $3::jsonb)", [
            (f"{uid}/{entity}/{n}", f"test/{entity}", json.dumps({"journey": "test", "entity_id": entity, "n": n}))
            for entity in others for n in range(2)])
        await until(lambda: all(len(receiver.of(f"test/{entity}")) == 2 for entity in others), timeout=60,
                    what="the other journeys' events past the refused ones")
        assert all([e["data"]["n"] for e in receiver.of(f"test/{entity}")] == [0, 1] for entity in others)
        assert not any(receiver.of(f"test/{entity}") for entity in blocked)
        waiting = await pool.fetch(
            "SELECT journey_key, attempts FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'",
            receiver.endpoint)
        assert {row["journey_key"] for row in waiting} == {f"test/{entity}" for entity in blocked}
        assert max(row["attempts"] for row in waiting) <= 3  # only each journey's head was tried
    finally:
        await pool.close()


async def test_an_endpoint_refusing_everything_rests_between_rounds(stack, http, receiver, uid):
    """New events for an endpoint that refused a whole round wait for its next retry: a burst of
    events one at a time does not start a round each."""
    receiver.answer = 500
    pool = await asyncpg.connect(stack.settings.database_url)
    try:
        began = time.monotonic()
        for n in range(30):
            await pool.execute("SELECT webhook_emit($1, 'journey.started', $2, '{}')", f"{uid}/rest/{n}",
                               f"rest/{uid}-{n}")
            await asyncio.sleep(0.2)
        history = await stack.temporal.get_workflow_handle(f"webhook-endpoint-{receiver.endpoint}").fetch_history()
        rounds = sum(1 for event in history.events if event.HasField("activity_task_scheduled_event_attributes"))
        # a round, then one per first retry (5 s) at most: not one per event
        assert rounds <= 2 + (time.monotonic() - began) / 5, rounds
    finally:
        await pool.close()
