"""The HTTP API backends call (OpenAPI at /docs). Writes need `Authorization: Bearer <api key>`.

Every error has one shape: `{"error": Name, "detail": ..., "field": ...}`; validation errors list
each field with its reason. Journeys' routes come from the registry (`starter.routes.journeys`).
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import json
import re
import urllib.parse
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from activities.definitions import Definitions
from activities.store import LeadImports, Leads, Outbox, Suppressions, connect, migrate
import observability
from settings import Settings
from starter.connect import connect_temporal
from starter.declared import Declared
from starter.routes import courses, declared, journeys, leads, notifications, operations, sessions
from starter.routes import digests
from starter.routes import analytics, recipients
from starter.routes import preferences
from starter.routes import tracking
from starter.routes import inbound
from starter.routes import templates
from starter.routes import campaigns
from starter.routes import webhooks
from starter.service import Journeys, ServiceError
from starter.views import ErrorBody
from workflows.core.fields import SMTPUTF8_ADDRESSES
from workflows.registry import KINDS


class Unauthorized(ServiceError):
    status_code = 401


class BodyLimit:
    """413 for bodies over the limit, whether or not Content-Length is honest."""

    def __init__(self, app: ASGIApp, limit: int, limits: dict[str, int] | None = None) -> None:
        """`limits`: path pattern (a regular expression the whole path matches) → its own limit."""
        self.app, self.default = app, limit
        self.limits = [(re.compile(pattern), size) for pattern, size in (limits or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = next((size for pattern, size in self.limits if pattern.fullmatch(scope["path"])), self.default)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(limit, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(limit, send)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PlainUrls:
    """422 for a path or query that PostgreSQL, Temporal or a header could not hold: text that is
    not UTF-8 once percent-decoded, or that carries a control character (`?entity_id=a%00b`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (problem := _url_problem(scope)) is not None:
            body = ErrorBody(error="ValidationError", detail=[{"field": problem[0], "reason": problem[1]}],
                             field=problem[0])
            return await JSONResponse(body.model_dump(), status_code=422)(scope, receive, send)
        await self.app(scope, receive, send)


def _url_problem(scope: Scope) -> tuple[str, str] | None:
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    try:
        path = urllib.parse.unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError as err:
        return "path", f"the path is not UTF-8 once percent-decoded (byte {err.start})"
    if (found := _CONTROL.search(path)) is not None:
        return "path", f"the path must not contain control characters: U+{ord(found.group()):04X}"
    try:
        pairs = urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True,
                                       encoding="utf-8", errors="strict")
    except UnicodeDecodeError as err:
        return "query", f"the query is not UTF-8 once percent-decoded (byte {err.start})"
    for name, value in pairs:
        if (found := _CONTROL.search(name + value)) is not None:
            return name if not _CONTROL.search(name) else "query", \
                f"must not contain control characters: U+{ord(found.group()):04X}"
    return None


class AddressPolicy:
    """Sets, for each request, whether addresses that need SMTPUTF8 are accepted (FOLLOWUPS_SMTPUTF8):
    the models' email fields read it while FastAPI validates the body."""

    def __init__(self, app: ASGIApp, smtputf8: bool) -> None:
        self.app = app
        self.smtputf8 = smtputf8

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = SMTPUTF8_ADDRESSES.set(self.smtputf8)
        try:
            await self.app(scope, receive, send)
        finally:
            SMTPUTF8_ADDRESSES.reset(token)


class _TooLarge(StarletteHTTPException):
    """Raised while the body is read; an HTTPException, so FastAPI's body parsing lets it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body exceeds {limit} bytes")


async def _too_large(limit: int, send: Send) -> None:
    body = json.dumps({"error": "PayloadTooLarge", "detail": f"the body exceeds {limit} bytes",
                       "field": "body"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _unreadable(cause: BaseException | None) -> str:
    """Why a body could not be read as JSON (FastAPI says only "There was an error parsing the body")."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not UTF-8 (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "the JSON nests too deeply"
    return f"the body is not JSON: {cause}" if cause else "the body could not be read"


_HTTP_METHODS = frozenset({"delete", "get", "head", "patch", "post", "put"})


def _methods_at(app: FastAPI, path: str) -> str:
    """The methods the API document lists for this path (`/v1/leads/import` is its own path, not
    a lead called "import"): of the documented paths it matches, the ones with fewest parameters."""
    matches = [(template.count("{"), operations) for template, operations in app.openapi()["paths"].items()
               if compile_path(template)[0].match(path)]
    fewest = min((params for params, _ in matches), default=0)
    methods = {"OPTIONS"} | {method.upper() for params, operations in matches if params == fewest
                             for method in operations if method in _HTTP_METHODS}
    return ", ".join(sorted(methods))


def create_app(settings: Settings, *, client=None, pool=None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_pool = pool is None
        app.state.pool = pool or await connect(settings.database_url or "", settings.database_pool_size)
        await migrate(app.state.pool)
        app.state.client = observability.traced(client or await connect_temporal(settings))
        app.state.journeys = {name: Journeys(app.state.client, settings, kind) for name, kind in KINDS.items()}
        app.state.lead_store = Leads(app.state.pool)
        app.state.lead_imports = LeadImports(app.state.pool)
        app.state.outbox = Outbox(app.state.pool)
        app.state.suppressions = Suppressions(app.state.pool)
        app.state.declared = Declared(app.state.client, settings, Definitions(app.state.pool))
        await app.state.declared.definitions.install_builtins(app.state.declared.templates)
        app.openapi()  # built once now, not by the first request that needs it
        # Everything loaded so far lives as long as the process: out of the collector's sight, a full
        # collection (triggered by a large import's churn) scans what requests create, not the app.
        gc.collect()
        gc.freeze()
        yield
        if own_pool:
            await app.state.pool.close()

    app = FastAPI(
        title="Followups",
        version="0.2.0",
        description="Durable follow-up and reminder journeys on Temporal.",
        lifespan=lifespan,
        responses={code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 422, 503)},
    )
    app.add_middleware(declared.YamlBodies)  # inside the body limit: YAML is read after it is bounded
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes,
                       limits={"/v1/leads/import": settings.api_max_import_bytes,  # lists of people
                               "/v1/courses/[^/]+/announcements": settings.api_max_import_bytes,
                               "/v1/campaigns(/[^/]+/recipients)?": settings.api_max_import_bytes})
    app.add_middleware(PlainUrls)
    app.add_middleware(AddressPolicy, smtputf8=settings.smtputf8)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, err: ServiceError) -> JSONResponse:
        body = ErrorBody(error=type(err).__name__, detail=err.detail, field=err.field)
        return JSONResponse(body.model_dump(), status_code=err.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        if err.status_code == 405:  # Allow: every method some route takes at this path, not one route's
            allowed = _methods_at(app, request.url.path)
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allowed})
            err.headers = {**(err.headers or {}), "Allow": allowed}
        name = {400: "MalformedBody", 404: "NotFound", 405: "MethodNotAllowed",
                413: "PayloadTooLarge"}.get(err.status_code, "HTTPError")
        detail = _unreadable(err.__cause__) if err.status_code == 400 else err.detail
        body = ErrorBody(error=name, detail=detail, field="body" if err.status_code in (400, 413) else None)
        return JSONResponse(body.model_dump(), status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        def field(problem: dict) -> str:
            location = list(problem["loc"])
            if problem.get("type") == "json_invalid":
                return "body"
            if location and location[0] in ("body", "path", "query", "header", "cookie"):
                location = location[1:]
            return ".".join(str(part) for part in location) or "body"

        problems = [{"field": field(problem), "reason": problem["msg"]} for problem in err.errors()]
        first = problems[0]["field"] if problems else None
        return JSONResponse(ErrorBody(error="ValidationError", detail=problems, field=first).model_dump(),
                            status_code=422)

    def require_key(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(key, k) for k in settings.api_keys):
            raise Unauthorized("missing or wrong API key: send Authorization: Bearer <key>", field="authorization")

    authed = [Depends(require_key)]

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> dict[str, str]:
        await request.app.state.pool.fetchval("SELECT 1")
        await request.app.state.client.service_client.check_health()
        return {"status": "ok"}

    observability.instrument_api(app, settings)  # /metrics, /readyz, request metrics, traces

    app.include_router(leads.router(authed))  # before the journeys: /v1/leads/import is not a lead id
    app.include_router(journeys.router(authed, after_start={"lead": leads.record_lead}))
    app.include_router(sessions.router(authed))
    app.include_router(notifications.router(authed))
    app.include_router(operations.router(authed, settings))
    app.include_router(declared.router(authed))
    app.include_router(courses.router(authed, settings))
    app.include_router(digests.router(authed))
    app.include_router(analytics.router(authed))
    app.include_router(recipients.router(authed, settings))
    app.include_router(preferences.router(authed, settings))
    app.include_router(tracking.router(settings))
    app.include_router(inbound.router(authed, settings))
    app.include_router(templates.router(authed))
    app.include_router(campaigns.router(authed, settings))
    app.include_router(webhooks.router(authed, settings))
    webhooks.describe(app.webhooks)
    return app
