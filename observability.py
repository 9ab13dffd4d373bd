"""Metrics, traces, logs and readiness for the worker and the API (README: Observability).

- The worker's metrics: the SDK's runtime serves its own (task latencies, pollers, slots…) and the
  send step's (`SendMetrics`) on one Prometheus port, FOLLOWUPS_WORKER_METRICS_PORT.
- The API's: `GET /metrics` on the API's own port (requests, event outcomes, running journeys by
  journey and stage), from a registry of its own per app.
- Traces: temporalio's TracingInterceptor on the API's client and the worker's, under the FastAPI
  request's span, so one trace runs from the request through the workflow to the send activity.
  On when a tracer provider is set: OTEL_EXPORTER_OTLP_ENDPOINT in our processes, or the embedder's.
- Logs: FOLLOWUPS_LOG_FORMAT=json|text, each line with the workflow id and the send's key when known.
- `GET /readyz`: 200 only while workers poll every task queue this deployment needs.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, GCCollector, Histogram, PlatformCollector,
    ProcessCollector, generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.runtime import LogForwardingConfig, LoggingConfig, PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import ServiceClient
import temporalio.client
import temporalio.worker
import temporalio.workflow

from settings import Settings
from workflows.contracts import SEND_MESSAGE, DeliveryFailure, SendRequest, SendResult
from workflows.declared.models import DECLARED_CLOSED, DeclaredStatus
from workflows.declared.workflow import workflow_id as declared_workflow_id
from workflows.registry import KINDS

T = TypeVar("T")
log = logging.getLogger(__name__)

# ---- logs --------------------------------------------------------------------------------------

# What a log line is about, beyond what the SDK's own loggers say: set around each send.
_ABOUT: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("followups_log_about", default={})
_REQUEST: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("followups_request", default=None)
CONTEXT_FIELDS = ("workflow_id", "journey", "idempotency_key")


class JourneyContext(logging.Filter):
    """Adds `workflow_id`, `journey` and `idempotency_key` to a record when they are known: from the
    send being made, the SDK's `temporal_workflow`/`temporal_activity` extras, the running activity,
    or the API route's journey id."""

    def filter(self, record: logging.LogRecord) -> bool:
        known = dict(_ABOUT.get())
        details = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None)
        if "workflow_id" not in known:
            if isinstance(details, Mapping) and details.get("workflow_id"):
                known["workflow_id"] = details["workflow_id"]
            elif activity.in_activity() and activity.info().workflow_id:
                known["workflow_id"] = activity.info().workflow_id  # type: ignore[assignment]
            elif (scope := _REQUEST.get()) is not None and (found := _journey_of(scope)) is not None:
                known["workflow_id"] = found
        for name, value in known.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _journey_of(scope: Scope) -> str | None:
    """The workflow id a request's route names (`/v1/leads/{lead_id}/converted`), once routed."""
    path, params = getattr(scope.get("route"), "path", ""), scope.get("path_params") or {}
    if path.startswith("/v1/journeys/{name}/{id}"):
        return declared_workflow_id(params["name"], params["id"])
    for kind in KINDS.values():
        if kind.id_field in params and path.startswith(f"/v1/{kind.plural}/"):
            return kind.workflow_id(params[kind.id_field])
    return None


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        about = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name, None))
        return f"{line} [{about}]" if about else line


def log_handler(log_format: Literal["text", "json"], stream: Any = None) -> logging.Handler:
    """A handler writing `log_format` lines, with the journey's ids, to `stream` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        # Fields of the record beyond these (the SDK's temporal_workflow/temporal_activity, ours) follow.
        handler.setFormatter(JsonFormatter(["levelname", "name", "message"], timestamp=True,
                                           rename_fields={"levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(JourneyContext())
    return handler


# A line per SMTP command of the dev sink (aiosmtpd), per outgoing HTTP request (httpx): warnings only.
QUIET = ("mail.log", "httpx")


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """The root logger writes FOLLOWUPS_LOG_FORMAT lines; uvicorn's loggers propagate to it (run
    uvicorn with `log_config=None`). Once, at a process's edge."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(log_handler(settings.log_format))
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    if settings.log_format == "json":  # the SDK's details travel as fields: not repeated in the message
        temporalio.workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False


# ---- traces ------------------------------------------------------------------------------------

def configure_tracing(service: str) -> None:
    """An OTLP (HTTP/protobuf) exporter when OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is
    set, configured by the standard OTEL_* variables; nothing otherwise. Once, at a process's edge."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or not (
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: only http/protobuf is installed; exporting with it",
                    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"])
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service)}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def tracing() -> bool:
    """Whether a tracer provider is set (ours from the environment, or an embedder's): without one
    the interceptors would only add work."""
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def configure_process(settings: Settings, service: str) -> None:
    """Logs and traces as the settings and environment ask: where the worker, the API or `followups
    dev` starts."""
    configure_logging(settings)
    configure_tracing(service)


def _tracing_interceptors() -> list:
    if not tracing():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def traced(client: Client) -> Client:
    """The API's client: with the tracing interceptor when tracing is on (the same connection)."""
    added = _tracing_interceptors()
    if not added:
        return client
    config = client.config()
    return Client(**{**config, "interceptors": [*config["interceptors"], *added]})


# ---- the worker's metrics ---------------------------------------------------------------------

SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
# From "on time" to a day late (a message that waited out quiet hours counts from its due time).
LATENESS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600]


def worker_runtime(settings: Settings) -> Runtime | None:
    """The SDK runtime serving the worker's Prometheus endpoint (and, for JSON logs, sending the
    SDK core's own log lines through Python's logging); None when neither is asked for."""
    if settings.worker_metrics_port is None and settings.log_format != "json":
        return None
    metrics = None
    if settings.worker_metrics_port is not None:
        metrics = PrometheusConfig(
            bind_address=f"{settings.worker_metrics_host}:{settings.worker_metrics_port}",
            counters_total_suffix=True, durations_as_seconds=True,  # Prometheus' conventions
            histogram_bucket_overrides={"followups_send_latency": SECONDS, "followups_send_lateness": LATENESS})
    logging_config = LoggingConfig.default
    if settings.log_format == "json":
        logging_config = dataclasses.replace(
            LoggingConfig.default, forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")))
    try:
        return Runtime(telemetry=TelemetryConfig(logging=logging_config, metrics=metrics))
    except ValueError as err:  # the port is taken
        raise SystemExit(f"FOLLOWUPS_WORKER_METRICS_PORT={settings.worker_metrics_port}: {err}") from err


async def worker_client(settings: Settings, client: Client | None = None) -> Client:
    """The worker's client: its runtime (metrics), the tracing and send-metrics interceptors, which
    every Worker built on it runs. A given client (the dev stack's, a test's) keeps its server and
    settings; with a runtime of our own it gets a connection of its own."""
    interceptors = [*_tracing_interceptors(), SendMetrics()]
    runtime = worker_runtime(settings)
    if client is None:
        from starter.connect import connect_temporal

        return await connect_temporal(settings, runtime=runtime, interceptors=interceptors)
    config = client.config()
    if runtime is not None:
        service = await ServiceClient.connect(dataclasses.replace(client.service_client.config, runtime=runtime))
        config["service_client"] = service
    return Client(**{**config, "interceptors": [*config["interceptors"], *interceptors]})


class SendMetrics(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """The send step's metrics and log context, around every `send_message` activity (a client
    interceptor too, so every Worker on the client runs it)."""

    def intercept_activity(self, next: temporalio.worker.ActivityInboundInterceptor
                           ) -> temporalio.worker.ActivityInboundInterceptor:
        return _MeasuredSend(next)


class _MeasuredSend(temporalio.worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        request = input.args[0] if input.args else None
        if activity.info().activity_type != SEND_MESSAGE or not isinstance(request, SendRequest):
            return await self.next.execute_activity(input)
        return await measured(request, lambda: self.next.execute_activity(input))


def count_batch_sends(sends: Any) -> None:
    """Batches (campaign ranges, announcements, digests, roster fan-outs) send each message through
    `SendActivities.send_counted` inside their own activity, where no activity interceptor sees
    it: measured here, as `send_message` is. (A wrapper on the instance, until the send step has a
    hook of its own.)"""
    counted = sends.send_counted

    async def send_counted(request: SendRequest) -> SendResult:
        return await measured(request, lambda: counted(request))

    sends.send_counted = send_counted


async def measured(request: SendRequest, send: Callable[[], Awaitable[SendResult]]) -> SendResult:
    """One send, counted by outcome, timed, and its lateness against `due_at` recorded; its log
    lines carry the journey's workflow id and the send's key."""
    about = {"journey": request.journey, "idempotency_key": request.key}
    if activity.in_activity() and activity.info().workflow_id:
        about["workflow_id"] = activity.info().workflow_id  # type: ignore[assignment]
    token = _ABOUT.set(about)
    began, status = time.monotonic(), "error"
    result: SendResult | None = None
    try:
        result = await send()
        status = "already_done" if result.already_done else result.status.value
        return result
    except ApplicationError as err:
        status = "failed" if err.type in DeliveryFailure.ALL else "error"
        raise
    finally:
        _record(request, status, time.monotonic() - began, result)
        if result is not None:
            log.info("%s: %s%s", request.key, status, f" ({result.reason})" if result.reason else "")
        _ABOUT.reset(token)


def _record(request: SendRequest, status: str, seconds: float, result: SendResult | None) -> None:
    if not activity.in_activity():
        return
    meter = activity.metric_meter()
    labels = {"status": status, "channel": request.channel, "category": str(request.category),
              "journey": request.journey}
    meter.create_counter("followups_sends", "messages through the send step, by outcome").add(1, labels)
    meter.create_histogram_timedelta(
        "followups_send_latency", "one message through the send step (render, gate, deliver, record)", "duration",
    ).record(timedelta(seconds=seconds), {"status": status, "channel": request.channel})
    if result is not None and result.status.delivered and not result.already_done:
        late = max(datetime.now(timezone.utc) - request.due_at, timedelta(0))
        meter.create_histogram_timedelta(
            "followups_send_lateness", "a delivered message's delay after its due time", "duration",
        ).record(late, {"channel": request.channel, "category": str(request.category), "journey": request.journey})


# ---- the API's metrics ------------------------------------------------------------------------

JOURNEYS_FRESH_FOR = 15.0  # seconds the running journeys' counts are served before they are counted again


class ApiMetrics:
    """The API's metrics, in a registry of its own (several apps may share a process: the tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.requests = Counter("followups_api_requests", "HTTP requests by route template, method and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("followups_api_request_duration_seconds", "HTTP request duration by route template",
                                 ["method", "route"], registry=self.registry)
        self.events = Counter("followups_journey_events", "events posted to journeys, by outcome",
                              ["journey", "event", "outcome"], registry=self.registry)
        self.journeys = Gauge("followups_journeys_running", "running journeys by journey and stage (visibility)",
                              ["journey", "stage"], registry=self.registry)
        self._counted_at = float("-inf")
        self._counting = asyncio.Lock()

    async def count_journeys(self, client: Client, declared: list[str]) -> None:
        """Running journeys per (journey, stage), from Temporal's visibility (GROUP BY takes only
        ExecutionStatus there: one count per pair), at most every JOURNEYS_FRESH_FOR seconds."""
        async with self._counting:
            if time.monotonic() - self._counted_at < JOURNEYS_FRESH_FOR:
                return
            pairs = [(kind.name, status.value) for kind in KINDS.values()
                     for status in kind.state_model.model_fields["status"].annotation if status not in kind.closed]
            pairs += [(name, status.value) for name in declared for status in DeclaredStatus
                      if status not in DECLARED_CLOSED]
            gate = asyncio.Semaphore(8)

            async def count(journey: str, stage: str) -> int:
                query = f"ExecutionStatus = 'Running' AND Journey = {_quoted(journey)} AND Stage = {_quoted(stage)}"
                async with gate:
                    return (await client.count_workflows(query)).count

            try:
                counts = await asyncio.gather(*(count(*pair) for pair in pairs))
            except Exception as err:  # noqa: BLE001 (the last counts stay; the scrape still answers)
                log.warning("running journeys not counted: %s", err)
                return
            self.journeys.clear()
            for (journey, stage), number in zip(pairs, counts):
                self.journeys.labels(journey, stage).set(number)
            self._counted_at = time.monotonic()


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class RequestMetrics:
    """Counts and times each request by its route template (`/v1/leads/{lead_id}`, never the raw
    path), and marks the request for the log lines it causes."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = _REQUEST.set(scope)
        began, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unrouted"  # 404s, bodies refused before routing
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - began)
            _REQUEST.reset(token)


async def counted_event(request: Request, journey: str, event: str, answer: Awaitable[T]) -> T:
    """An event's answer, counted by outcome: its code (applied, no_change, duplicate), `accepted`
    (no worker answered in time), or the refusal's (refused 422, conflict 409, not_found, unavailable)."""
    from starter.service import Conflict, NotFound, Rejected, Unavailable

    outcome = "error"
    try:
        reply = await answer
        found = getattr(reply, "event", None)
        outcome = "accepted" if getattr(reply, "accepted", False) else (found.code if found and found.code else
                                                                       "applied" if found and found.applied else
                                                                       "no_change")
        return reply
    except Rejected:
        outcome = "refused"
        raise
    except Conflict:
        outcome = "conflict"
        raise
    except NotFound:
        outcome = "not_found"
        raise
    except Unavailable:
        outcome = "unavailable"
        raise
    finally:
        metrics: ApiMetrics | None = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.events.labels(journey, event, outcome).inc()


# ---- readiness ---------------------------------------------------------------------------------

# An idle poller asks again every minute (the server's long poll): seen within this, it is there.
POLLED_WITHIN = timedelta(seconds=90)


class QueueReadiness(BaseModel):
    task_queue: str
    type: Literal["workflow", "activity"]
    pollers: int  # pollers seen within POLLED_WITHIN


class Readiness(BaseModel):
    status: Literal["ready"]
    queues: list[QueueReadiness]


def needed_queues(settings: Settings) -> list[tuple[str, Literal["workflow", "activity"]]]:
    """Every task queue and type some worker must poll for journeys to move and mail to go out."""
    return [(settings.temporal_task_queue, "workflow"), (settings.temporal_task_queue, "activity"),
            (settings.campaign_queue, "activity"),
            (settings.webhook_queue, "workflow"), (settings.webhook_queue, "activity")]  # event webhooks


async def queue_readiness(client: Client, settings: Settings) -> list[QueueReadiness]:
    now = datetime.now(timezone.utc)

    async def describe(queue: str, kind: Literal["workflow", "activity"]) -> QueueReadiness:
        answer = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=(TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW if kind == "workflow"
                             else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)))
        recent = [poller for poller in answer.pollers
                  if now - poller.last_access_time.ToDatetime(tzinfo=timezone.utc) <= POLLED_WITHIN]
        return QueueReadiness(task_queue=queue, type=kind, pollers=len(recent))

    return list(await asyncio.gather(*(describe(queue, kind) for queue, kind in needed_queues(settings))))


# ---- the API -----------------------------------------------------------------------------------

def instrument_api(app: FastAPI, settings: Settings) -> None:
    """`/metrics`, `/readyz`, request metrics and, when tracing is on, the request's span."""
    from starter.views import ErrorBody

    metrics = app.state.metrics = ApiMetrics()
    app.add_middleware(RequestMetrics, metrics=metrics)
    if tracing():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="/healthz,/readyz,/metrics",
                                           exclude_spans=["receive", "send"])

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        state = request.app.state
        declared = [version.name for version in await state.declared.definitions.names()]
        await metrics.count_journeys(state.client, declared)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/readyz", tags=["ops"], response_model=Readiness,
             responses={503: {"model": ErrorBody, "description": "a task queue has no worker polling it"}})
    async def readyz(request: Request) -> Any:
        """200 while PostgreSQL answers and a worker polled each task queue in the last 90 s (workflow
        and activity tasks of the task queue and of the webhooks' queue, the campaigns' activities);
        503 saying which has none."""
        await request.app.state.pool.fetchval("SELECT 1")
        queues = await queue_readiness(request.app.state.client, settings)
        if missing := [f"{queue.task_queue} ({queue.type} tasks)" for queue in queues if not queue.pollers]:
            body = ErrorBody(error="NotReady", detail=f"no worker polls {', '.join(missing)}")
            return JSONResponse(body.model_dump(), status_code=503)
        return Readiness(status="ready", queues=queues)
