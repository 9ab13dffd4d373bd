"""Observability on the real stack (dev server, PostgreSQL, SMTP sink, the API on a socket): the
worker's Prometheus endpoint (the SDK's metrics and the send step's) and the API's /metrics scraped
over HTTP after a real send and a real event; /healthz and /readyz, which answers 503 naming the
queues no worker polls; JSON log lines carrying the workflow id and the send's key; one trace from
the API request through the workflow's update to the send activity."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

import observability
from starter.api import create_app
from starter.sink import free_port
from tests.conftest import running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spans():
    """Spans of this module's stack, in memory. OpenTelemetry lets a process set its tracer provider
    once: set here for this module, put back for the modules after it."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.util._once import Once

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(provider)
    yield exporter
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = before


@pytest.fixture(scope="module")
def logs():
    """Every log line of the process while this module runs, as FOLLOWUPS_LOG_FORMAT=json writes it."""
    stream = io.StringIO()
    handler = observability.log_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


@pytest_asyncio.fixture(scope="module")
async def stack(spans, logs, local_env, database_url, smtp):
    """Tracing on (a tracer provider is set before the stack starts), the worker's metrics on a port."""
    async with running_stack(local_env, database_url, smtp, worker_metrics_port=free_port(),
                             log_format="json") as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


def lead(lead_id: str) -> dict:
    return {"lead_id": lead_id, "contact": {"email": f"{lead_id}@example.com", "name": "Lee Lead"},
            "campaign": "observability", "company": "Acme", "offer_url": "https://shop.example.com/offer"}


async def until(check, timeout: float = 30.0):
    for _ in range(int(timeout * 10)):
        if result := check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("never happened")


@pytest_asyncio.fixture(scope="module")
async def converted(stack, http):
    """A lead started over HTTP (its day-0 email goes out at once), then converted: its id."""
    lead_id = f"obs-{stack.settings.temporal_task_queue}"
    started = await http.post("/v1/leads", json=lead(lead_id))
    assert started.status_code == 201, started.text
    await until(lambda: stack.smtp.sink.keys()[f"lead-{lead_id}/step-1"] == 1)
    event = await http.post(f"/v1/leads/{lead_id}/converted", json={"reference": "order-1"})
    assert event.status_code == 200 and event.json()["event"]["code"] == "applied", event.text
    await asyncio.wait_for(stack.temporal.get_workflow_handle(f"lead-{lead_id}").result(), 30)  # it ends
    again = await http.post(f"/v1/leads/{lead_id}/converted", json={"reference": "order-1"})
    assert again.status_code == 409, again.text
    return lead_id


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def value(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for n, have, v in found if n == name and labels.items() <= have.items())


async def test_the_workers_endpoint_has_the_sdks_metrics_and_the_send_steps(stack, converted):
    queue = stack.settings.temporal_task_queue
    url = f"http://127.0.0.1:{stack.settings.worker_metrics_port}/metrics"
    async with httpx.AsyncClient() as scraper:
        found = samples((await scraper.get(url)).text)
    names = {name for name, _, _ in found}
    for sdk in ("temporal_workflow_task_schedule_to_start_latency_bucket", "temporal_workflow_task_execution_latency_bucket",
                "temporal_activity_execution_latency_bucket", "temporal_activity_schedule_to_start_latency_bucket",
                "temporal_worker_task_slots_available", "temporal_num_pollers"):
        assert sdk in names, sdk
    assert value(found, "temporal_activity_execution_latency_count", task_queue=queue, activity_type="send_message") >= 1
    assert value(found, "followups_sends_total", status="sent", channel="email", journey="lead",
                 task_queue=queue) >= 1
    assert value(found, "followups_send_latency_count", status="sent", channel="email", task_queue=queue) >= 1
    late = value(found, "followups_send_lateness_count", channel="email", journey="lead", task_queue=queue)
    assert late >= 1
    # Sent at once after its start, the day-0 email is under 10 s late (the lateness is in seconds).
    assert value(found, "followups_send_lateness_bucket", channel="email", journey="lead", task_queue=queue,
                 le="10") == late


async def test_a_campaigns_messages_are_counted_one_by_one_inside_their_batch(stack, http, uid):
    """A campaign's range sends its messages inside one activity (campaign_send_range): each is counted."""
    campaign_id = f"obs-{uid}"
    created = await http.post("/v1/campaigns", json={
        "campaign_id": campaign_id, "name": "Observed", "template": "course_announcement",
        "context": {"course": "Orbital Mechanics", "title": "Week 4", "url": "https://lms.example.com/w4",
                    "summary": "Transfer orbits."},
        "recipients": [{"email": f"c{n}-{uid}@example.com", "name": f"C {n}"} for n in range(3)]})
    assert created.status_code == 201, created.text
    assert (await http.post(f"/v1/campaigns/{campaign_id}/schedule")).status_code == 202
    await until(lambda: sum(n for key, n in stack.smtp.sink.keys().items() if campaign_id in key) == 3, 60)
    sent: float = 0
    async with httpx.AsyncClient() as scraper:
        for _ in range(50):  # counted once the outbox has it: a moment after the sink
            found = samples((await scraper.get(f"http://127.0.0.1:{stack.settings.worker_metrics_port}/metrics")).text)
            sent = value(found, "followups_sends_total", status="sent", journey="campaign",
                         activity_type="campaign_send_range", task_queue=stack.settings.campaign_queue)
            if sent == 3:
                break
            await asyncio.sleep(0.1)
    assert sent == 3


async def test_the_apis_metrics_count_requests_events_and_running_journeys(stack, http, converted):
    nurturing = f"nurturing-{stack.settings.temporal_task_queue}"
    assert (await http.post("/v1/leads", json=lead(nurturing))).status_code == 201
    await until(lambda: stack.smtp.sink.keys()[f"lead-{nurturing}/step-1"] == 1)
    answer = await http.get("/metrics")  # no API key: scrapers have none
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    assert value(found, "followups_api_requests_total", method="POST", route="/v1/leads", status="201") >= 2
    assert value(found, "followups_api_requests_total", method="POST", route="/v1/leads/{lead_id}/converted",
                 status="409") == 1
    assert value(found, "followups_api_request_duration_seconds_count", method="POST", route="/v1/leads") >= 2
    assert value(found, "followups_journey_events_total", journey="lead", event="converted", outcome="applied") == 1
    assert value(found, "followups_journey_events_total", journey="lead", event="converted", outcome="conflict") == 1
    # The dev server is shared by the session's tests: at least this one is nurturing.
    assert value(found, "followups_journeys_running", journey="lead", stage="nurturing") >= 1
    assert any(name == "followups_journeys_running" and labels["journey"] == "interview" for name, labels, _ in found)
    assert "process_resident_memory_bytes" in {name for name, _, _ in found}
    unknown = await http.get("/no/such/path")
    assert unknown.status_code == 404
    for _ in range(20):  # counted as the response goes out: a moment after the client has it
        found = samples((await http.get("/metrics")).text)
        if value(found, "followups_api_requests_total", route="unrouted", status="404") >= 1:
            break
        await asyncio.sleep(0.05)
    assert value(found, "followups_api_requests_total", route="unrouted", status="404") >= 1
    assert not [labels for name, labels, _ in found if "/no/such/path" in labels.get("route", "")]


@contextlib.asynccontextmanager
async def api_only(stack, task_queue: str) -> AsyncIterator[str]:
    """Another API on its own socket whose task queue no worker polls."""
    port = free_port()
    settings = stack.settings.model_copy(update={"temporal_task_queue": task_queue, "api_port": port})
    server = uvicorn.Server(uvicorn.Config(create_app(settings, client=stack.temporal), host="127.0.0.1", port=port,
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_ready_while_workers_poll_every_queue_and_503_naming_those_none_polls(stack, http, uid):
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    queue = stack.settings.temporal_task_queue
    assert {(q["task_queue"], q["type"]) for q in ready.json()["queues"] if q["pollers"] >= 1} == {
        (queue, "workflow"), (queue, "activity"), (f"{queue}-campaigns", "activity"),
        (f"{queue}-webhooks", "workflow"), (f"{queue}-webhooks", "activity")}
    async with api_only(stack, f"idle-{uid}") as base, httpx.AsyncClient(base_url=base) as idle:
        assert (await idle.get("/healthz")).status_code == 200  # alive: PostgreSQL and Temporal answer
        not_ready = await idle.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json() == {
            "error": "NotReady", "field": None,
            "detail": f"no worker polls idle-{uid} (workflow tasks), idle-{uid} (activity tasks), "
                      f"idle-{uid}-campaigns (activity tasks), idle-{uid}-webhooks (workflow tasks), "
                      f"idle-{uid}-webhooks (activity tasks)"}
    schema = (await http.get("/openapi.json")).json()["paths"]
    assert "/readyz" in schema and "503" in schema["/readyz"]["get"]["responses"] and "/metrics" not in schema


async def test_json_log_lines_carry_the_workflow_id_and_the_sends_key(stack, http, logs, converted):
    access, handler = logging.getLogger("uvicorn.access"), observability.log_handler("json", logs)
    level = access.level  # the stack's uvicorn keeps its access lines quiet and to itself
    access.setLevel(logging.INFO)
    access.addHandler(handler)
    try:
        assert (await http.get(f"/v1/leads/{converted}")).status_code == 200
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert lines and all({"timestamp", "level", "logger", "message"} <= line.keys() for line in lines)
    workflow_id, key = f"lead-{converted}", f"lead-{converted}/step-1"
    sent = [line for line in lines if line.get("idempotency_key") == key]
    assert sent and all(line["workflow_id"] == workflow_id and line["journey"] == "lead" for line in sent)
    assert any(line["message"] == f"{key}: sent" and line["level"] == "INFO" for line in sent)
    # The journey's own line, through the SDK's workflow logger (its temporal_workflow extras)
    event = [line for line in lines if line.get("workflow_id") == workflow_id and line["logger"] == "temporalio.workflow"
             and "order-1" in line["message"]]
    assert event and event[0]["temporal_workflow"]["workflow_id"] == workflow_id
    # The API's own line, on a journey's route
    assert [line for line in lines if line["logger"] == "uvicorn.access" and line.get("workflow_id") == workflow_id]


async def test_one_trace_from_the_request_through_the_update_to_the_send(stack, spans, converted):
    workflow_id = f"lead-{converted}"
    finished = spans.get_finished_spans()
    by_id = {span.context.span_id: span for span in finished}
    send = next(span for span in finished if span.name == "RunActivity:send_message"
                and span.attributes.get("temporalWorkflowID") == workflow_id)
    chain, span = [], send
    while span is not None:
        chain.append(span.name)
        span = by_id.get(span.parent.span_id) if span.parent is not None else None
    # request → update-with-start (the start) → the workflow → its send → the activity, one trace
    assert chain[-1] == "POST /v1/leads" and chain[-2] == "StartUpdateWithStartWorkflow:LeadJourney", chain
    assert chain[:2] == ["RunActivity:send_message", "StartActivity:send_message"], chain
    trace_id = send.context.trace_id
    in_trace = {span.name for span in finished if span.context.trace_id == trace_id}
    assert {"RunWorkflow:LeadJourney", "HandleUpdate:start_journey"} <= in_trace, in_trace
    # The event's update runs in the journey's trace, linked to the request that posted it.
    update = next(span for span in finished if span.name == "HandleUpdate:apply_event"
                  and span.attributes.get("temporalWorkflowID") == workflow_id)
    assert update.context.trace_id == trace_id
    linked = {link.context.span_id for link in update.links}
    posted = [span for span in finished if span.name == "POST /v1/leads/{lead_id}/converted"]
    assert any(by_id.get(span_id) and by_id[span_id].context.trace_id in {p.context.trace_id for p in posted}
               for span_id in linked), [by_id.get(s).name if by_id.get(s) else s for s in linked]
