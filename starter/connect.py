"""One way to reach Temporal, for the worker, the API and the CLI: local, self-hosted or Cloud."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from settings import Settings


async def connect_temporal(settings: Settings, *, runtime: Runtime | None = None,
                           interceptors: Sequence[Interceptor] = ()) -> Client:
    """`runtime`: the worker's, serving its metrics (observability.worker_runtime); `interceptors`:
    tracing and the send step's metrics (observability)."""
    tls: bool | TLSConfig = settings.temporal_tls
    if settings.temporal_tls_cert_path and settings.temporal_tls_key_path:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert_path.read_bytes(),
            client_private_key=settings.temporal_tls_key_path.read_bytes(),
        )
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=True if api_key and tls is False else tls,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        interceptors=interceptors,
    )
