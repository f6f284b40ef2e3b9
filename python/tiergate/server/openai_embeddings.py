"""`POST /v1/embeddings`, OpenAI's Embeddings API, mounted on the HTTP listener next to the chat facade.

The request's `model` names an embedding route (`embedding_routes`: `"default"` or a configured name; any
other name is a 404). `input` is a string or a list of 1 to 2048 non-empty strings (token arrays are not
accepted: tiergate routes by text); `encoding_format` is `float` (the default) or `base64` (float32
little-endian, what the official SDKs ask for and decode); `dimensions` picks a smaller vector where the
model can give one. Non-standard fields, as on the chat facade: `sensitivity` and `max_cost_usd`.

Errors, the Decision header and the deadline header are the chat facade's (`openai_facade.py`); restricted
text that no on-device embedding model can take is a 403 and is never forwarded.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from tiergate import errors
from tiergate.embeddings.types import EmbedAnswer, EmbedRequest
from tiergate.reload import LiveSidecar
from tiergate.request import Sensitivity
from tiergate.server.http import HttpRequest, Response, StreamResponse
from tiergate.server.openai_facade import (
    JSON,
    TIMEOUT_HEADER,
    decision_header,
    error_body,
    error_status,
    parse_deadline,
)
from tiergate.sidecar import Sidecar

EMBEDDINGS_PATH = "/v1/embeddings"
_SENSITIVITIES = {s.name.lower(): s for s in Sensitivity if s is not Sensitivity.UNSPECIFIED}
_FORMATS = ("float", "base64")


def parse_embeddings(body: bytes, routes: Mapping[str, object]) -> tuple[EmbedRequest, str]:
    """The request in an embeddings body, and its encoding_format. Raises InvalidRequest or UnknownTask."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise errors.InvalidRequest("the request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str):
        raise errors.InvalidRequest("model: required string (an embedding route)")
    if model != "default" and model not in routes:
        raise errors.UnknownTask(
            f"The model {model!r} does not exist: embedding models are tiergate embedding routes "
            f"({', '.join(routes) or 'none configured'})"
        )
    raw = data.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and all(isinstance(text, str) for text in raw):
        inputs = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(t, int | list) for t in raw):
        raise errors.InvalidRequest("input: token arrays are not supported; send text")
    else:
        raise errors.InvalidRequest("input: required string or list of strings")
    encoding = data.get("encoding_format", "float")
    if encoding is None:
        encoding = "float"
    if encoding not in _FORMATS:
        raise errors.InvalidRequest("encoding_format: `float` or `base64`")
    dimensions = data.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)):
        raise errors.InvalidRequest("dimensions: must be an integer")
    if dimensions is not None and dimensions < 1:
        raise errors.InvalidRequest("dimensions: must be at least 1")
    sensitivity = Sensitivity.UNSPECIFIED
    name = data.get("sensitivity")
    if name is not None:
        if name not in _SENSITIVITIES:
            raise errors.InvalidRequest(f"sensitivity: one of {', '.join(_SENSITIVITIES)}")
        sensitivity = _SENSITIVITIES[name]
    max_cost = data.get("max_cost_usd", 0.0)
    if isinstance(max_cost, bool) or not isinstance(max_cost, int | float) or max_cost < 0:
        raise errors.InvalidRequest("max_cost_usd: must be a non-negative number")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise errors.InvalidRequest("user: must be a string")
    request = EmbedRequest(
        task=model,
        inputs=inputs,
        sensitivity=sensitivity,
        tenant=user or "",
        dimensions=dimensions or 0,
        max_cost_usd=float(max_cost),
    )
    return request, str(encoding)


def embeddings_body(answer: EmbedAnswer, model: str, encoding: str) -> dict[str, Any]:
    result = answer.embeddings
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(vector).decode("ascii")
            if encoding == "base64"
            else result.floats(i),
        }
        for i, vector in enumerate(result.vectors)
    ]
    tokens = result.usage.input_tokens
    return {
        "object": "list",
        "data": data,
        "model": answer.decision.served_by or model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


class OpenAIEmbeddings:
    """The `App` serving `POST /v1/embeddings` (see `server/http.py`)."""

    paths = frozenset({EMBEDDINGS_PATH})

    def __init__(self, sidecar: Sidecar | LiveSidecar) -> None:
        self._live = sidecar if isinstance(sidecar, LiveSidecar) else LiveSidecar(sidecar)

    async def __call__(self, request: HttpRequest) -> Response | StreamResponse:
        sidecar = self._live.current  # once per request: a reload swaps it
        if request.method != "POST":
            body = error_body("use POST", "invalid_request_error", code="method_not_allowed")
            return Response(405, body, JSON, (("Allow", "POST"),))
        try:
            deadline = parse_deadline(request.headers.get(TIMEOUT_HEADER))
            embed, encoding = parse_embeddings(request.body, sidecar.config.embedding_routes)
            answer = await sidecar.embed(embed, deadline)
        except errors.TiergateError as exc:
            status, kind = error_status(exc)
            param = "model" if isinstance(exc, errors.UnknownTask) else None
            code = "model_not_found" if isinstance(exc, errors.UnknownTask) else exc.kind
            headers = (decision_header(exc.decision),) if exc.decision is not None else ()
            return Response(status, error_body(str(exc), kind, param=param, code=code), JSON, headers)
        body = orjson.dumps(embeddings_body(answer, embed.task, encoding))
        return Response(200, body, JSON, (decision_header(answer.decision),))
