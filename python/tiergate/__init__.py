"""tiergate: an LLM routing sidecar. Applications name a task; tiergate picks the model.

From Python: `Client` / `AsyncClient` call a running sidecar over gRPC; `Router` / `AsyncRouter` run the same
routing inside this process. All four have the same methods and return the types below.

Importing `tiergate` stays cheap: the clients, the router and the config load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tiergate._native import count_tokens
from tiergate.content import ImagePart, TextPart, Tool, ToolCall, ToolCallDelta
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
    from tiergate.config import Config, ConfigError
    from tiergate.config import load as load_config
    from tiergate.request import ModelState, SidecarStatus
    from tiergate.sdk.api import ChatOptions, TokenCount
    from tiergate.sdk.client import AsyncClient, Client
    from tiergate.sdk.inprocess import AsyncRouter, Router
    from tiergate.sdk.transport_errors import AuthenticationError, ConnectError, TransportError

# Public name -> (module, attribute), imported on first access: grpc, pydantic and the request path are
# heavy, and a script that only counts tokens needs none of them.
_LAZY = {
    "AsyncClient": ("tiergate.sdk.client", "AsyncClient"),
    "Client": ("tiergate.sdk.client", "Client"),
    "AsyncRouter": ("tiergate.sdk.inprocess", "AsyncRouter"),
    "Router": ("tiergate.sdk.inprocess", "Router"),
    "SidecarStatus": ("tiergate.request", "SidecarStatus"),
    "TokenCount": ("tiergate.sdk.api", "TokenCount"),
    "ChatOptions": ("tiergate.sdk.api", "ChatOptions"),
    "TransportError": ("tiergate.sdk.transport_errors", "TransportError"),
    "ConnectError": ("tiergate.sdk.transport_errors", "ConnectError"),
    "AuthenticationError": ("tiergate.sdk.transport_errors", "AuthenticationError"),
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
    "ChatOptions",
    "Chunk",
    "Client",
    "Config",
    "ConfigError",
    "ConnectError",
    "DeadlineExceeded",
    "Decision",
    "ImagePart",
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
    "TextPart",
    "TiergateError",
    "TokenCount",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
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
