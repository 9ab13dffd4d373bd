"""How the client calls the API, written once for the sync and the async client.

A `Route` is one operation as the client calls it: method, path, query parameters, the media types
of its body, and the type its answer is read into; tests/unit/test_light_client.py holds every
route to the API's OpenAPI document. Calling a route gives a `Call`, a request with the way to read
its answer, which each client sends with its own transport. An `operation` is a method written once
as the `Call` it makes: a `Sync` client returns the answer, an `Async` one a coroutine.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from string import Formatter
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

T = TypeVar("T")
U = TypeVar("U")
P = ParamSpec("P")
V = TypeVar("V", bound=BaseModel)

JSON = "application/json"


class FollowupsError(Exception):
    """The API said no: `status` is the HTTP status, `error`/`detail`/`field` its JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        body = body if isinstance(body, dict) else {"detail": body}
        self.status = status
        self.error = body.get("error", "HTTPError")
        self.detail = body.get("detail")
        self.field = body.get("field")
        super().__init__(f"{status} {self.error}: {self.detail}")


def jsonable(value: Any) -> Any:
    """A value as JSON. A model gives only the fields that were set: a default it leaves out is the
    server's to apply (a policy's defaults are the server's settings, not this client's)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return to_jsonable_python(value)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, ready for either transport, and how to read its answer."""

    method: str
    url: str  # below the client's base URL
    params: dict[str, Any]
    json: Any
    content: bytes | None
    headers: dict[str, str]
    read: Callable[[httpx.Response], T]

    def then(self, step: Callable[[T], U]) -> Call[U]:
        """The same request, its answer passed through `step` (a page's list, a count)."""
        read = self.read
        return Call(self.method, self.url, self.params, self.json, self.content, self.headers,
                    lambda response: step(read(response)))


@dataclass(frozen=True)
class Route(Generic[T]):
    """One operation of the API: `Route("GET", "/v1/campaigns/{campaign_id}", CampaignView)`."""

    method: str
    path: str  # each {name} is filled from the call, percent-encoded
    answer: type[T] | None  # what a success's JSON is read into; None: a success has no body (204)
    query: tuple[str, ...] = ()  # the query parameters the client may send
    body: tuple[str, ...] = ()  # the media types of the bodies the client may send

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(name for _, name, _, _ in Formatter().parse(self.path) if name)

    @functools.cached_property
    def adapter(self) -> TypeAdapter[T]:
        return TypeAdapter(cast(Any, self.answer))

    def __call__(self, *, query: dict[str, Any] | None = None, json: Any = None, content: str | bytes | None = None,
                 media_type: str = JSON, **path: Any) -> Call[T]:
        """`CAMPAIGN(campaign_id="spring")`: see `call`."""
        return self.call(path, query=query, json=json, content=content, media_type=media_type)

    def call(self, path: dict[str, Any], *, query: dict[str, Any] | None = None, json: Any = None,
             content: str | bytes | None = None, media_type: str = JSON) -> Call[T]:
        """The request: `path` fills the path's names, `query` values left None are not sent, `json`
        None sends no body. Anything the route does not declare is refused here, so the route stays
        the whole truth about what the client sends."""
        where = f"{self.method} {self.path}"
        if set(path) != set(self.path_params):
            raise TypeError(f"{where} takes the path parameters {self.path_params}, not {tuple(path)}")
        if unknown := set(query or {}) - set(self.query):
            raise TypeError(f"{where} declares no query parameter {', '.join(sorted(unknown))}")
        has_body = json is not None or content is not None
        if has_body and media_type not in self.body:
            raise TypeError(f"{where} declares no {media_type} body")
        return Call(
            method=self.method,
            url=self.path.format(**{name: quote(str(value), safe="") for name, value in path.items()}),
            params={name: jsonable(value) for name, value in (query or {}).items() if value is not None},
            json=None if json is None else jsonable(json),
            content=content.encode() if isinstance(content, str) else content,
            headers={"Content-Type": media_type} if content is not None else {},
            read=self.read,
        )

    def read(self, response: httpx.Response) -> T:
        if response.is_error:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text}
            raise FollowupsError(response.status_code, body)
        if self.answer is None:
            return cast(T, None)
        return self.adapter.validate_json(response.content)


@dataclass(frozen=True)
class Event:
    """One event of a journey kind: `Event("DELETE", "attendees/{attendee_id}", SessionRemoveAttendeeBody)`;
    the path's names other than the journey's id are the event's fields of that name."""

    method: str
    path: str  # below /v1/{plural}/{id}/
    body: type[BaseModel] | None


@dataclass(frozen=True, eq=False)
class Kind(Generic[V]):
    """A journey kind: `POST /v1/{plural}` starts one, `GET /v1/{plural}/{id}` reads it, each event
    steers it; every one of them answers with the kind's view."""

    name: str
    plural: str
    start: type[BaseModel]
    view: type[V]
    events: dict[str, Event]

    @property
    def id_field(self) -> str:
        return f"{self.name}_id"

    @property
    def attribute(self) -> str:
        """The client's attribute for the kind: `client.interviews`."""
        return self.plural.replace("-", "_")

    @functools.cached_property
    def start_route(self) -> Route[V]:
        return Route("POST", f"/v1/{self.plural}", self.view, body=(JSON,))

    @functools.cached_property
    def show_route(self) -> Route[V]:
        return Route("GET", f"/v1/{self.plural}/{{{self.id_field}}}", self.view)

    @functools.cached_property
    def event_routes(self) -> dict[str, Route[V]]:
        return {name: Route(event.method, f"/v1/{self.plural}/{{{self.id_field}}}/{event.path}", self.view,
                            body=(JSON,) if event.body is not None else ())
                for name, event in self.events.items()}


class Sync:
    """A client whose operations answer at once."""

    def _send(self, call: Call[T]) -> T:
        raise NotImplementedError


class Async:
    """A client whose operations are coroutines."""

    async def _send(self, call: Call[T]) -> T:
        raise NotImplementedError


class operation(Generic[P, T]):  # noqa: N801 (a decorator, named like one)
    """A method written once, as the `Call` it makes: on a `Sync` client it returns the answer, on
    an `Async` client it is a coroutine function. Signatures and docstrings are the method's own."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.__name__, self.__doc__, self.__wrapped__ = build.__name__, build.__doc__, build
        signature = inspect.signature(build)
        answer = re.fullmatch(r"Call\[(.*)\]", str(signature.return_annotation))
        signature = signature.replace(return_annotation=answer.group(1) if answer else signature.return_annotation)

        @functools.wraps(build)
        def run(client: Sync, /, *args: Any, **kwargs: Any) -> Any:
            return client._send(build(client, *args, **kwargs))

        @functools.wraps(build)
        async def run_async(client: Async, /, *args: Any, **kwargs: Any) -> Any:
            return await client._send(build(client, *args, **kwargs))

        run.__signature__ = run_async.__signature__ = signature  # type: ignore[attr-defined]
        self.build, self.run, self.run_async = build, run, run_async

    @overload
    def __get__(self, client: None, owner: type | None = None) -> operation[P, T]: ...
    @overload
    def __get__(self, client: Async, owner: type | None = None) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, client: Sync, owner: type | None = None) -> Callable[P, T]: ...

    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self
        if isinstance(client, Async):
            return types.MethodType(self.run_async, client)
        if isinstance(client, Sync):
            return types.MethodType(self.run, client)
        raise TypeError(f"{type(client).__name__} is neither a Sync nor an Async client")
