"""The two wire formats the fake provider speaks: response bodies and stream events, as bytes.

OpenAI Chat Completions (`/v1/chat/completions`) and Anthropic Messages (`/v1/messages`), the subset tiergate
uses. Kept free of I/O so the server stays a loop of "read request, pick fault, write these bytes".
"""

from __future__ import annotations

from typing import Any

import orjson

# Anthropic's error `type` for each status it documents.
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
}


def count_words(body: dict[str, Any]) -> int:
    """The fake's 'token' count of a prompt: whitespace-separated words of every message and the system."""
    total = 0
    system = body.get("system")
    if isinstance(system, str):
        total += len(system.split())
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                total += len(content.split())
    return total


def sse(data: bytes, event: str | None = None) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class OpenAIWire:
    name = "openai"
    stop = "stop"
    length = "length"

    @staticmethod
    def max_tokens(body: dict[str, Any]) -> int | None:
        value = body.get("max_completion_tokens", body.get("max_tokens"))
        return value if isinstance(value, int) else None

    @staticmethod
    def completion(model: str, text: str, finish: str, prompt: int, output: int, cached: int) -> bytes:
        return orjson.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": _openai_usage(prompt, output, cached),
            }
        )

    @staticmethod
    def stream_head(model: str, prompt: int, cached: int) -> bytes:
        return sse(_openai_chunk(model, {"role": "assistant", "content": ""}, None))

    @staticmethod
    def stream_token(model: str, token: str) -> bytes:
        return sse(_openai_chunk(model, {"content": token}, None))

    @staticmethod
    def stream_tail(
        model: str, finish: str, prompt: int, output: int, cached: int, body: dict[str, Any]
    ) -> bytes:
        out = sse(_openai_chunk(model, {}, finish))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": _openai_usage(prompt, output, cached),
            }
            out += sse(orjson.dumps(usage))
        return out + sse(b"[DONE]")

    @staticmethod
    def error_body(status: int, message: str, content_policy: bool = False) -> bytes:
        err_type, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
        if content_policy:
            err_type, code = "invalid_request_error", "content_policy_violation"
        return orjson.dumps({"error": {"message": message, "type": err_type, "param": None, "code": code}})

    @staticmethod
    def error_object(error_type: str, message: str) -> bytes:
        return orjson.dumps({"error": {"message": message, "type": error_type, "code": None}})

    @staticmethod
    def error_event(error_type: str, message: str) -> bytes:
        return sse(OpenAIWire.error_object(error_type, message))


class AnthropicWire:
    name = "anthropic"
    stop = "end_turn"
    length = "max_tokens"

    @staticmethod
    def max_tokens(body: dict[str, Any]) -> int | None:
        value = body.get("max_tokens")
        return value if isinstance(value, int) else None

    @staticmethod
    def completion(model: str, text: str, finish: str, prompt: int, output: int, cached: int) -> bytes:
        return orjson.dumps(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": finish,
                "stop_sequence": None,
                "usage": _anthropic_usage(prompt, output, cached),
            }
        )

    @staticmethod
    def stream_head(model: str, prompt: int, cached: int) -> bytes:
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": _anthropic_usage(prompt, 1, cached),
            },
        }
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        return (
            sse(orjson.dumps(start), "message_start")
            + sse(orjson.dumps(block), "content_block_start")
            + sse(b'{"type": "ping"}', "ping")
        )

    @staticmethod
    def stream_token(model: str, token: str) -> bytes:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}}
        return sse(orjson.dumps(delta), "content_block_delta")

    @staticmethod
    def stream_tail(
        model: str, finish: str, prompt: int, output: int, cached: int, body: dict[str, Any]
    ) -> bytes:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": finish, "stop_sequence": None},
            "usage": {"output_tokens": output},
        }
        return (
            sse(b'{"type": "content_block_stop", "index": 0}', "content_block_stop")
            + sse(orjson.dumps(delta), "message_delta")
            + sse(b'{"type": "message_stop"}', "message_stop")
        )

    @staticmethod
    def error_body(status: int, message: str, content_policy: bool = False) -> bytes:
        err_type = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": err_type, "message": message}})

    @staticmethod
    def error_object(error_type: str, message: str) -> bytes:
        return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})

    @staticmethod
    def error_event(error_type: str, message: str) -> bytes:
        return sse(AnthropicWire.error_object(error_type, message), "error")


Wire = type[OpenAIWire] | type[AnthropicWire]


def _openai_chunk(model: str, delta: dict[str, Any], finish: str | None) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _openai_usage(prompt: int, output: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _anthropic_usage(prompt: int, output: int, cached: int) -> dict[str, int]:
    # Anthropic counts cache reads apart from input_tokens.
    return {
        "input_tokens": prompt - cached,
        "output_tokens": output,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


FAKE_EMBEDDING_DIMENSIONS = 8


def fake_vector(text: str, dimensions: int = FAKE_EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for `text` (from its sha256): equal texts, equal vectors."""
    import hashlib
    import math

    seed = hashlib.sha256(text.encode()).digest()
    values = [(seed[i % len(seed)] - 127.5) / 127.5 + i * 1e-3 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def embeddings_response(body: dict[str, Any]) -> tuple[int, bytes]:
    """(status, body) of `POST /v1/embeddings`: the OpenAI shape, floats or base64 as asked."""
    import base64
    import struct

    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        return 400, OpenAIWire.error_body(400, "fake: input must be a string or a list of strings")
    dimensions = body.get("dimensions") or FAKE_EMBEDDING_DIMENSIONS
    data = []
    for i, text in enumerate(inputs):
        vector = fake_vector(text, dimensions)
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(len(t.split()) for t in inputs)
    payload = {
        "object": "list",
        "data": data,
        "model": body.get("model", ""),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return 200, orjson.dumps(payload)
