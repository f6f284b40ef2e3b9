"""`tiergate.AsyncRouter` and `tiergate.Router`: tiergate's routing and dispatch inside this process, with
no server — for laptops, notebooks and scripts.

    with tiergate.Router() as router:          # the embedded default: the on-device model, plus hosted ones
        print(router.complete("Say hello").text)  # whose API key is in the environment

Both wrap the `Sidecar` the gRPC server runs, so a request is analysed, planned, dispatched and reported
exactly as the sidecar would; the methods and results are `tiergate.Client`'s (`sdk/api.py`), and errors are
the same `tiergate.errors` classes, raised directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncGenerator

from tiergate import config as config_mod
from tiergate.config import Config
from tiergate.embeddings.types import EmbedAnswer, EmbedRequest
from tiergate.policy.canary import CanaryState
from tiergate.request import Chunk, Decision, Request, Response, SidecarStatus
from tiergate.sdk.api import AsyncAPI, TokenCount
from tiergate.sdk.sync import SyncAPI
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry

ConfigLike = Config | str | os.PathLike[str] | None


class AsyncRouter(AsyncAPI):
    """tiergate in this process, from async code: requests run on the caller's event loop.

    Models load on `async with` (or the first request); `aclose()` closes them.

    Args:
        config: a `Config` (e.g. from `tiergate.load_config`), the path of a YAML config, or None for the
            embedded default (the bundled on-device model, plus each hosted provider whose key is set).
        timeout: the default latency budget of each request in seconds (None: only the routes' `total_ms`).
    """

    def __init__(self, config: ConfigLike = None, *, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self._config = config
        self._sidecar: Sidecar | None = None
        self._telemetry: Telemetry | None = None
        self._owned = True  # closing the router closes the Sidecar
        self._closed = False
        self._starting = asyncio.Lock()

    @classmethod
    def from_sidecar(cls, sidecar: Sidecar, *, timeout: float | None = None) -> AsyncRouter:
        """A router over a Sidecar started elsewhere (say, the one a gRPC server in this process serves):
        the same models, breakers and limits. Closing the router leaves the Sidecar to its owner."""
        router = cls(sidecar.config, timeout=timeout)
        router._sidecar, router._owned = sidecar, False
        return router

    def __repr__(self) -> str:
        models = ", ".join(self._sidecar.config.models) if self._sidecar is not None else "not started"
        return f"{type(self).__name__}({models})"

    @property
    def config(self) -> Config | None:
        """The config in use, once started."""
        return self._sidecar.config if self._sidecar is not None else None

    async def _open(self) -> None:
        await self._ready()

    async def _ready(self) -> Sidecar:
        if self._sidecar is not None:
            return self._sidecar
        async with self._starting:
            if self._closed:
                raise RuntimeError("this tiergate router is closed")
            if self._sidecar is None:
                config = _load(self._config)
                telemetry = Telemetry(config)
                self._sidecar = await Sidecar.start(config, telemetry=telemetry)
                self._telemetry = telemetry
            return self._sidecar

    async def aclose(self) -> None:
        self._closed = True
        sidecar, self._sidecar = self._sidecar, None
        if sidecar is not None and self._owned:
            await sidecar.aclose()
        telemetry, self._telemetry = self._telemetry, None
        if telemetry is not None:
            await telemetry.aclose()

    async def _complete(self, request: Request, timeout: float | None) -> Response:
        sidecar = await self._ready()
        # The caller's active span (OpenTelemetry's current context) is the request's parent.
        parent = sidecar.telemetry.current_parent()
        answer = await sidecar.complete(request, _deadline(timeout), parent=parent)
        c = answer.completion
        return Response(c.text, c.usage, answer.decision, c.finish_reason, c.tool_calls, c.refusal)

    async def _stream(self, request: Request, timeout: float | None) -> AsyncGenerator[Chunk, None]:
        sidecar = await self._ready()
        # Sidecar.stream is an async generator: closed at once when the caller stops early.
        parent = sidecar.telemetry.current_parent()
        async with contextlib.aclosing(sidecar.stream(request, _deadline(timeout), parent=parent)) as chunks:
            async for chunk, decision in chunks:
                if decision is not None:
                    chunk = dataclasses.replace(
                        chunk, finish_reason=chunk.finish_reason or "stop", decision=decision
                    )
                yield chunk

    async def _explain(self, request: Request, timeout: float | None) -> Decision:
        return (await self._ready()).explain(request)

    async def _count_tokens(self, text: str, encoding: str, model: str, timeout: float | None) -> TokenCount:
        return TokenCount(*await (await self._ready()).count_tokens(text, encoding, model))

    async def _status(self, timeout: float | None) -> SidecarStatus:
        return (await self._ready()).status()

    async def _feedback(
        self, request_id: str, score: float | None, label: str, timeout: float | None
    ) -> tuple[str, str, str]:
        served = (await self._ready()).rate(request_id, score, label)
        return served.route, served.model, served.arm

    async def _canary(self, route: str, percent: float | None, timeout: float | None) -> CanaryState:
        return await (await self._ready()).canary(route, percent)

    async def _embed(self, request: EmbedRequest, timeout: float | None) -> EmbedAnswer:
        return await (await self._ready()).embed(request, _deadline(timeout))


class Router(SyncAPI[AsyncRouter]):
    """tiergate in this process, blocking: `AsyncRouter`'s methods and results, without `await`.

    Runs its own event loop in a background thread, so it works where a loop is already running (Jupyter).
    Models load in the constructor (the first use of the embedded model assembles it, with progress on
    stderr). Use as `with`, or call `close()` when done. Args: as `AsyncRouter`.
    """

    def __init__(self, config: ConfigLike = None, *, timeout: float | None = None) -> None:
        super().__init__(AsyncRouter(config, timeout=timeout), what="router")

    @property
    def config(self) -> Config | None:
        """The config in use."""
        return self._inner.config

    def __repr__(self) -> str:
        return repr(self._inner).replace("AsyncRouter", "Router", 1)


def _load(config: ConfigLike) -> Config:
    if config is None:
        return config_mod.default_config()
    if isinstance(config, Config):
        return config
    return config_mod.load(config)


def _deadline(timeout: float | None) -> float | None:
    """A timeout as a deadline on the Sidecar's clock (`time.monotonic()`), as the gRPC server passes it."""
    return None if timeout is None else time.monotonic() + timeout
