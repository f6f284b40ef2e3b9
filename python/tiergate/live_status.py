"""A sidecar's live state as `Status` reports it: each model's breaker, measured TTFT and speed, on-device
queue and worker, the requests in flight, uptime and version."""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import time
from collections.abc import Mapping

from tiergate._native import CircuitBreaker
from tiergate.config import Config
from tiergate.model_stats import ModelStats
from tiergate.providers.base import Provider
from tiergate.request import ModelState, SidecarStatus

__all__ = ["jobs_ahead", "live_status"]


def live_status(
    config: Config,
    providers: Mapping[str, Provider],
    breakers: Mapping[str, CircuitBreaker],
    stats: Mapping[str, ModelStats],
    in_flight: int,
    started: float,
) -> SidecarStatus:
    models = [
        _with_worker(
            ModelState(
                name=name,
                provider=model.provider,
                on_device=model.is_on_device,
                breaker=breakers[name].state,
                ttft_ms=stats[name].ttft_ms,
                tokens_per_s=stats[name].tokens_per_s,
                samples=stats[name].samples,
                queue=0,  # a hosted model has no queue; `_with_worker` fills an on-device one's
            ),
            providers.get(name),
        )
        for name, model in config.models.items()
    ]
    return SidecarStatus(models, in_flight, time.monotonic() - started, _version())


def jobs_ahead(provider: Provider | None) -> int:
    """Requests queued or generating on a model: only on-device models (a worker) have a queue."""
    live_state = getattr(provider, "live_state", None)
    return int(live_state().jobs_ahead) if live_state is not None else 0


def _with_worker(model: ModelState, provider: Provider | None) -> ModelState:
    """Adds an on-device model's queue and worker state (a hosted model has neither)."""
    live_state = getattr(provider, "live_state", None)
    if live_state is None:
        return model
    state = live_state()
    return dataclasses.replace(
        model,
        queue=int(state.jobs_ahead),
        worker=str(state.worker),
        worker_restarts=state.restarts,
        worker_error=state.last_error,
    )


@functools.cache
def _version() -> str:
    return importlib.metadata.version("tiergate")
