"""The two clients: the same operations (`followups_client.operations`), sent over httpx's sync or
async transport. One journey client per kind in the API, as an attribute named like its route:

    from followups_client import FollowupsClient, models
    with FollowupsClient("http://localhost:8000", api_key="dev-key") as followups:
        followups.interviews.start(models.Invitation(interview_id="42", ...))
        followups.interviews.confirm("42", scheduled_at=datetime(2026, 12, 1, 9, tzinfo=timezone.utc))
        followups.interviews.get("42").state.next_step

    async with AsyncFollowupsClient("http://localhost:8000", api_key="dev-key") as followups:
        await followups.payments.paid("inv-7", reference="ch_123", event_id="stripe-evt-1")
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from followups_client.kinds import KINDS, AsyncJourneys, Journeys
from followups_client.operations import JourneyOperations, Operations
from followups_client.routes import Async, Call, Kind, Sync, V

T = TypeVar("T")


def _headers(api_key: str, call: Call[Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", **call.headers}


class JourneyClient(JourneyOperations[V], Sync):
    def __init__(self, owner: FollowupsClient, kind: Kind[V]) -> None:
        super().__init__(kind)
        self.owner = owner

    def _send(self, call: Call[T]) -> T:
        return self.owner._send(call)

    def __getattr__(self, event: str) -> Callable[..., V]:
        """One method per event: `confirm(id, scheduled_at=…)` is `send(id, "confirm", scheduled_at=…)`."""
        return functools.partial(self.send, event=self._event(event))


class AsyncJourneyClient(JourneyOperations[V], Async):
    def __init__(self, owner: AsyncFollowupsClient, kind: Kind[V]) -> None:
        super().__init__(kind)
        self.owner = owner

    async def _send(self, call: Call[T]) -> T:
        return await self.owner._send(call)

    def __getattr__(self, event: str) -> Callable[..., Awaitable[V]]:
        return functools.partial(self.send, event=self._event(event))


class FollowupsClient(Operations, Journeys, Sync):
    """`http`: an httpx.Client of your own (used as it is, left open); else one is made with
    `timeout` and `transport` (an `httpx.MockTransport`, an ASGI app's transport in tests)."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, *, http: httpx.Client | None = None) -> None:
        self.base_url, self.api_key = base_url.rstrip("/"), api_key
        self.own_http = http is None
        self.http = http or httpx.Client(timeout=timeout, transport=transport)
        self.journeys = {name: JourneyClient(self, kind) for name, kind in KINDS.items()}
        for kind in KINDS.values():
            setattr(self, kind.attribute, self.journeys[kind.name])

    def __enter__(self) -> FollowupsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.own_http:
            self.http.close()

    def _send(self, call: Call[T]) -> T:
        return call.read(self.http.request(call.method, self.base_url + call.url, params=call.params,
                                           json=call.json, content=call.content, headers=_headers(self.api_key, call)))


class AsyncFollowupsClient(Operations, AsyncJourneys, Async):
    """As `FollowupsClient`, every operation a coroutine: `await followups.interviews.get("42")`."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, *, http: httpx.AsyncClient | None = None) -> None:
        self.base_url, self.api_key = base_url.rstrip("/"), api_key
        self.own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout, transport=transport)
        self.journeys = {name: AsyncJourneyClient(self, kind) for name, kind in KINDS.items()}
        for kind in KINDS.values():
            setattr(self, kind.attribute, self.journeys[kind.name])

    async def __aenter__(self) -> AsyncFollowupsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.own_http:
            await self.http.aclose()

    async def _send(self, call: Call[T]) -> T:
        response = await self.http.request(call.method, self.base_url + call.url, params=call.params, json=call.json,
                                           content=call.content, headers=_headers(self.api_key, call))
        return call.read(response)
