"""The light client (client/, `followups_client`) cannot drift from the API: its generated modules
are what today's OpenAPI document generates, every route it calls is in the document as it calls
it (method, path, parameters, body, answer), and every operation of the document is called by it
or listed below as one a backend never calls. After changing a route or a model, `make client`
regenerates; a new operation also needs a method in followups_client/operations.py or a line in
NOT_FOR_BACKENDS."""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import subprocess
import sys
import tomllib
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import generate
from followups_client import AsyncFollowupsClient, FollowupsClient, FollowupsError, models
from followups_client.kinds import KINDS
from followups_client.operations import ROUTES, Operations
from followups_client.routes import Route
from workflows.registry import KINDS as REGISTRY

ROOT = Path(__file__).resolve().parents[2]

# Operations of the document that a backend never calls, so the client has no method for them.
NOT_FOR_BACKENDS = {
    # Pages a recipient opens from an email: the hosted preference page and one-click unsubscribe
    # (a signed token in the path, HTML or a mail client's POST, no API key).
    ("GET", "/v1/preferences/page/{token}"), ("POST", "/v1/preferences/page/{token}"),
    ("GET", "/v1/unsubscribe/{token}"), ("POST", "/v1/unsubscribe/{token}"),
    # Tracking: the open pixel and the click redirect that mail clients and link scanners load.
    ("GET", "/t/o/{token}"), ("HEAD", "/t/o/{token}"), ("GET", "/t/c/{token}"), ("HEAD", "/t/c/{token}"),
    # What mail providers and mail servers post: signed provider webhooks and raw delivery status
    # notifications (an MTA's pipe), each in its sender's own format.
    ("POST", "/v1/webhooks/ses"), ("POST", "/v1/webhooks/sendgrid"), ("POST", "/v1/webhooks/mailgun"),
    ("POST", "/v1/webhooks/postmark"), ("POST", "/v1/inbound/dsn"),
}

# Bodies the API reads that its document does not declare: the route reads the request itself and
# its openapi_extra names only the CSV (starter/routes/campaigns.py, add_recipients). Drop the line
# once the document declares the JSON body too (the test says when).
UNDECLARED_BODIES = {("POST", "/v1/campaigns/{campaign_id}/recipients"): {"application/json"}}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return generate.openapi()


def _routes() -> list[Route[Any]]:
    journeys = [route for kind in KINDS.values()
                for route in (kind.start_route, kind.show_route, *kind.event_routes.values())]
    return [*ROUTES, *journeys]


def _operation(document: dict[str, Any], route: Route[Any]) -> dict[str, Any]:
    operation = document["paths"].get(route.path, {}).get(route.method.lower())
    assert operation is not None, f"{route.method} {route.path}: the client calls it, the API has no such operation"
    return operation


def _annotation(answer: Any) -> str:
    """A route's answer type as the generator writes it: `list[MessageView]`."""
    if answer is None:
        return "None"
    if args := typing.get_args(answer):
        return f"{typing.get_origin(answer).__name__}[{', '.join(map(_annotation, args))}]"
    return answer.__name__


def test_the_committed_modules_are_what_todays_document_generates(document):
    for path, text in generate.generate(document).items():
        committed = path.read_text(encoding="utf-8") if path.exists() else ""
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True), text.splitlines(True),
                                                 str(path.relative_to(ROOT)), "regenerated"))[:60])
        assert committed == text, f"{path.relative_to(ROOT)} is stale: run `make client`\n{diff}"


def test_every_route_the_client_calls_is_in_the_document_as_it_calls_it(document):
    schemas = generate.Schemas(document["components"]["schemas"])
    for route in _routes():
        where = f"{route.method} {route.path}"
        operation = _operation(document, route)
        parameters = {(p["in"], p["name"]): p for p in operation.get("parameters", [])}
        assert {name for place, name in parameters if place == "path"} == set(route.path_params), where
        query = {name for place, name in parameters if place == "query"}
        required = {name for (place, name), p in parameters.items() if place == "query" and p.get("required")}
        assert set(route.query) <= query, f"{where}: the API takes no {set(route.query) - query}"
        assert required <= set(route.query), f"{where}: the client never sends {required - set(route.query)}"
        body = operation.get("requestBody")
        declared = set((body or {}).get("content", {}))
        undeclared = UNDECLARED_BODIES.get((route.method, route.path), set())
        assert not undeclared & declared, f"{where}: now declares {undeclared}: drop it from UNDECLARED_BODIES"
        assert set(route.body) <= declared | undeclared, f"{where}: the API takes no {set(route.body) - declared}"
        assert route.body or not (body or {}).get("required"), f"{where}: the API needs a body the client never sends"
        answers = {schemas.annotation(response["content"]["application/json"]["schema"], where)
                   if "application/json" in response.get("content", {}) else "None"
                   for status, response in operation["responses"].items() if status.startswith("2")}
        assert answers == {_annotation(route.answer)}, f"{where}: the API answers {answers}"


def test_every_operation_in_the_document_is_called_by_the_client_or_not_for_backends(document):
    operations = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method in generate.HTTP_METHODS}
    called = {(route.method, route.path) for route in _routes()}
    uncovered = operations - called - NOT_FOR_BACKENDS
    assert not uncovered, (f"operations the light client does not call: {sorted(uncovered)}; run `make client`, then "
                           "give each a method in client/followups_client/operations.py, or a line in "
                           "NOT_FOR_BACKENDS saying why a backend never calls it")
    assert not NOT_FOR_BACKENDS - operations, f"no longer in the API: {NOT_FOR_BACKENDS - operations}"
    assert not NOT_FOR_BACKENDS & called


def test_the_journey_table_is_the_registrys():
    assert {name: (kind.plural, set(kind.events)) for name, kind in KINDS.items()} == \
        {name: (kind.plural, {route.kind for route in kind.events}) for name, kind in REGISTRY.items()}


def test_the_methods_are_the_service_clients_with_the_same_parameters():
    from starter.client import FollowupsClient as ServiceClient, JourneyClient as ServiceJourneys

    def parameters(function: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    for name, method in vars(ServiceClient).items():
        if not name.startswith("_") and callable(method):
            assert name in vars(Operations), f"starter.client has {name}, the light client has not"
            assert parameters(vars(Operations)[name].build) == parameters(method), name
    journey_methods = {name for name in vars(ServiceJourneys) if not name.startswith("_")}
    for name in journey_methods:
        light = getattr(FollowupsClient("http://api", "key").interviews, name)
        assert parameters(light) == parameters(getattr(ServiceJourneys, name))[1:], name


def test_the_sync_client_answers_and_the_async_one_awaits_every_operation():
    names = [name for name, value in vars(Operations).items() if hasattr(value, "build")]
    sync, concurrent = FollowupsClient("http://api", "key"), AsyncFollowupsClient("http://api", "key")
    for name in names:
        assert not inspect.iscoroutinefunction(getattr(sync, name)), name
        assert inspect.iscoroutinefunction(getattr(concurrent, name)), name
    assert {kind.attribute for kind in KINDS.values()} <= set(vars(sync)) & set(vars(concurrent))


def _recording(answers: dict[tuple[str, str], httpx.Response]) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.get((request.method, request.url.path), httpx.Response(404, text="no route"))

    return seen, httpx.MockTransport(handle)


def test_requests_carry_the_key_and_only_what_was_given():
    seen, transport = _recording({
        ("GET", "/api/v1/messages"): httpx.Response(200, json=[]),
        ("POST", "/api/v1/leads/import"): httpx.Response(422, json={"error": "ValidationError", "detail": [],
                                                                    "field": "csv"}),
        ("DELETE", "/api/v1/progress/ann@example.com"): httpx.Response(204),
        ("PUT", "/api/v1/journey-definitions/welcome"): httpx.Response(500, text="boom"),
    })
    with FollowupsClient("http://api/api/", "secret", transport=transport) as followups:
        assert followups.messages(journey="lead") == []
        with pytest.raises(FollowupsError) as refused:
            followups.import_leads("email,name\n", campaign="spring")
        assert (refused.value.status, refused.value.field) == (422, "csv")
        assert followups.delete_progress("ann@example.com") is None
        with pytest.raises(FollowupsError) as broken:
            followups.save_definition("welcome", "name: welcome\n")
        assert (broken.value.status, broken.value.detail) == (500, "boom")
    listed, imported, deleted, saved = seen
    assert listed.headers["authorization"] == "Bearer secret"
    assert dict(listed.url.params) == {"journey": "lead", "limit": "100"}  # None is not sent
    assert imported.headers["content-type"] == "text/csv" and imported.content == b"email,name\n"
    assert dict(imported.url.params) == {"campaign": "spring", "first_line": "1"}
    assert deleted.url.raw_path == b"/api/v1/progress/ann%40example.com"
    assert saved.headers["content-type"] == "application/yaml"


def test_journey_events_put_path_fields_in_the_path_and_models_send_only_what_was_set():
    view = {"session_id": "s-1", "workflow_id": "session-s-1", "state": {"session_id": "s-1", "status": "scheduled"},
            "messages": []}
    seen, transport = _recording({
        ("DELETE", "/v1/sessions/s-1/attendees/ann"): httpx.Response(200, json=view),
        ("POST", "/v1/interviews/42/confirm"): httpx.Response(409, json={"error": "JourneyClosed", "detail": "ended",
                                                                        "field": "interview_id"}),
        ("POST", "/v1/interviews"): httpx.Response(422, json={"error": "ValidationError", "detail": [],
                                                             "field": "candidate.email"}),
    })
    followups = FollowupsClient("http://api", "key", transport=transport)
    removed = followups.sessions.remove_attendee("s-1", attendee_id="ann", event_id=None)
    assert isinstance(removed, models.SessionView) and removed.state.status == "scheduled"
    with pytest.raises(FollowupsError) as ended:
        followups.interviews.confirm("42", scheduled_at=datetime(2030, 1, 2, 9, tzinfo=timezone.utc))
    assert (ended.value.status, ended.value.field) == (409, "interview_id")
    with pytest.raises(FollowupsError):
        followups.interviews.start(models.Invitation(interview_id="42", slot_selection_url="https://x.example/s",
                                                     candidate=models.Recipient(email="a@b", name="A")))
    with pytest.raises(ValueError, match="no event 'paid'"):
        followups.interviews.send("42", "paid")
    with pytest.raises(TypeError, match="attendee_id"):
        followups.sessions.remove_attendee("s-1")
    removal, confirm, start = seen
    assert removal.content == b""  # no field given, no body
    assert confirm.read() == b'{"scheduled_at":"2030-01-02T09:00:00Z"}'
    # the policy's defaults (the server's settings) are not sent: only what the caller set
    assert json.loads(start.read()) == {"interview_id": "42", "slot_selection_url": "https://x.example/s",
                                        "candidate": {"email": "a@b", "name": "A"}}


def test_the_async_client_sends_the_same_requests():
    seen, transport = _recording({("GET", "/v1/notifications/unread-count"): httpx.Response(
        200, json={"recipient": "ann", "unread": 4})})

    async def count() -> int:
        async with AsyncFollowupsClient("http://api", "key", transport=transport) as followups:
            return await followups.unread_count("ann")

    assert asyncio.run(count()) == 4
    assert str(seen[0].url) == "http://api/v1/notifications/unread-count?recipient=ann"


def test_a_schema_the_generator_does_not_know_stops_it():
    document = {"paths": {}, "components": {"schemas": {"Shape": {
        "type": "object", "properties": {"side": {"oneOf": [{"type": "integer"}, {"type": "string"}]}}}}}}
    with pytest.raises(generate.GenerateError, match="Shape.side: oneOf"):
        generate.Schemas(document["components"]["schemas"]).module()


def test_the_distribution_needs_only_httpx_and_pydantic_and_imports_nothing_of_the_service():
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert sorted(requirement.split(">")[0] for requirement in project["dependencies"]) == ["httpx", "pydantic"]
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, followups_client; print(' '.join(sorted(sys.modules)))"],
        cwd="/", capture_output=True, text=True, check=True).stdout.split()
    service = {"temporalio", "asyncpg", "jinja2", "fastapi", "starter", "workflows", "activities", "settings"}
    assert not service & {module.split(".")[0] for module in loaded}
