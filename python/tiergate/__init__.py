"""tiergate: an LLM routing sidecar. Applications name a task; tiergate picks the model.

From Python: `Client` / `AsyncClient` call a running sidecar over gRPC; `Router` / `AsyncRouter` run the same
routing inside this process. All four have the same methods and return the types below.

Importing `tiergate` stays cheap: the clients, the router and the config load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tiergate._native import count_tokens
from tiergate.errors import (
    AllAttemptsFailed,
    DeadlineExceeded,
    InvalidRequest,
    LimitExceeded,
    PolicyBlocked,
    SensitiveDataBlocked,
    ShuttingDown,
    StateUnavailable,
    StreamInterrupted,
    TiergateError,
    UnknownTask,
)
from tiergate.request import Attempt, Chunk, Decision, Message, Response, Sensitivity, Usage

if TYPE_CHECKING:
    from tiergate.client import AsyncClient, Client
    from tiergate.client_api import TokenCount
    from tiergate.client_errors import AuthenticationError, ConnectError, TransportError
    from tiergate.config import Config, ConfigError
    from tiergate.config import load as load_config
    from tiergate.request import ModelState, SidecarStatus
    from tiergate.router import AsyncRouter, Router

# Public name -> (module, attribute), imported on first access: grpc, pydantic and the request path are
# heavy, and a script that only counts tokens needs none of them.
_LAZY = {
    "AsyncClient": ("tiergate.client", "AsyncClient"),
    "Client": ("tiergate.client", "Client"),
    "AsyncRouter": ("tiergate.router", "AsyncRouter"),
    "Router": ("tiergate.router", "Router"),
    "SidecarStatus": ("tiergate.request", "SidecarStatus"),
    "TokenCount": ("tiergate.client_api", "TokenCount"),
    "TransportError": ("tiergate.client_errors", "TransportError"),
    "ConnectError": ("tiergate.client_errors", "ConnectError"),
    "AuthenticationError": ("tiergate.client_errors", "AuthenticationError"),
    "ModelState": ("tiergate.request", "ModelState"),
    "Config": ("tiergate.config", "Config"),
    "ConfigError": ("tiergate.config", "ConfigError"),
    "load_config": ("tiergate.config", "load"),
}

__all__ = [
    "AllAttemptsFailed",
    "AsyncClient",
    "AsyncRouter",
    "Attempt",
    "AuthenticationError",
    "Chunk",
    "Client",
    "Config",
    "ConfigError",
    "ConnectError",
    "DeadlineExceeded",
    "Decision",
    "InvalidRequest",
    "LimitExceeded",
    "Message",
    "ModelState",
    "PolicyBlocked",
    "Response",
    "Router",
    "SensitiveDataBlocked",
    "Sensitivity",
    "ShuttingDown",
    "SidecarStatus",
    "StateUnavailable",
    "StreamInterrupted",
    "TiergateError",
    "TokenCount",
    "TransportError",
    "UnknownTask",
    "Usage",
    "count_tokens",
    "load_config",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tiergate' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
