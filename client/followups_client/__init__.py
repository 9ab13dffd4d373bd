"""The light Python client of the Followups HTTP API: httpx and pydantic, nothing of the service.

`FollowupsClient` (sync) and `AsyncFollowupsClient` (async) have the same methods; `models` holds
the API's models, generated from its OpenAPI document; `FollowupsError` is any answer the API
refused, with its status and the field it names."""

from followups_client import models
from followups_client.client import AsyncFollowupsClient, AsyncJourneyClient, FollowupsClient, JourneyClient
from followups_client.routes import FollowupsError

__all__ = ["AsyncFollowupsClient", "AsyncJourneyClient", "FollowupsClient", "FollowupsError", "JourneyClient",
           "models"]
