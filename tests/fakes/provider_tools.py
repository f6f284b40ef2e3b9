"""How the fake provider answers requests that carry tools, tool results or a JSON schema, on both wires.

Deterministic, so tests can assert exact answers:
  - tools offered and the choice allows calls (OpenAI `auto` / `required` / a named function; Anthropic `auto`
    / `any` / `tool`), and the conversation does not end with tool results: call the forced tool, or every
    offered tool in order (one only when parallel calls are off). Arguments are sampled from each tool's
    schema (`sample`): strings "Paris" (or an enum's first value), integers 1, numbers 1.5, booleans true;
  - the conversation ends with tool results: the text `Tool result: <results joined by " | ">`;
  - OpenAI `response_format` json_schema, on a fake made with `sample_json=True`: the text is a JSON value
    sampled from the schema (other fakes answer their scripted reply, for tests of bad answers);
  - otherwise None: the usual scripted reply.

The byte builders write tool calls the way each provider streams them: OpenAI `tool_calls` deltas (the first
with index, id, type and name, then argument pieces), Anthropic `tool_use` content blocks whose input arrives
as `input_json_delta` pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tests.fakes.provider_http import chunk, json_response, stream_headers
from tests.fakes.provider_wire import _anthropic_usage, _openai_chunk, _openai_usage, sse


@dataclass(frozen=True, slots=True)
class FakeCall:
    id: str
    name: str
    arguments: str  # JSON text


def sample(schema: Any) -> Any:
    """A value valid against a simple JSON schema."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {name: sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [sample(schema.get("items"))]
    return {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True}.get(str(kind))


def answer_plan(openai: bool, body: dict[str, Any], sample_json: bool) -> tuple[str | None, list[FakeCall]]:
    """(text or None for the scripted reply, tool calls) for a request on either wire."""
    return openai_plan(body, sample_json) if openai else anthropic_plan(body)


def tool_response(openai: bool, body: dict[str, Any], keep_alive: bool, prompt: int) -> bytes | None:
    """The whole HTTP response when the request makes the fake call tools, else None."""
    calls = answer_plan(openai, body, sample_json=False)[1]
    if not calls:
        return None
    model = str(body.get("model", ""))
    if body.get("stream") is True:
        events = (openai_tool_stream if openai else anthropic_tool_stream)(model, calls, prompt, body)
        return stream_headers(keep_alive) + chunk(events) + b"0\r\n\r\n"
    whole = (openai_tool_completion if openai else anthropic_tool_completion)(model, calls, prompt)
    return json_response(200, whole, keep_alive)


def _split(text: str) -> list[str]:
    """Argument JSON in three pieces, as a provider streams it."""
    third = max(len(text) // 3, 1)
    return [p for p in (text[:third], text[third : 2 * third], text[2 * third :]) if p]


# -- OpenAI ------------------------------------------------------------------------------------------------


def openai_plan(body: dict[str, Any], sample_json: bool = True) -> tuple[str | None, list[FakeCall]]:
    """(text or None for the scripted reply, tool calls) for an OpenAI request."""
    messages = body.get("messages") or []
    results = []
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "tool":
            break
        results.insert(0, str(message.get("content")))
    if results:
        return "Tool result: " + " | ".join(results), []
    tools = [t["function"] for t in body.get("tools") or []]
    choice = body.get("tool_choice", "auto")
    if tools and choice != "none":
        if isinstance(choice, dict):
            tools = [t for t in tools if t["name"] == choice["function"]["name"]]
        elif body.get("parallel_tool_calls") is False:
            tools = tools[:1]
        calls = [
            FakeCall(f"call_{i}", t["name"], orjson.dumps(sample(t.get("parameters"))).decode())
            for i, t in enumerate(tools)
        ]
        return None, calls
    fmt = body.get("response_format")
    if sample_json and isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return orjson.dumps(sample(fmt["json_schema"]["schema"])).decode(), []
    return None, []


def openai_tool_completion(model: str, calls: list[FakeCall], prompt: int) -> bytes:
    message = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
    }
    return orjson.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls", "logprobs": None}],
            "usage": _openai_usage(prompt, 10 * len(calls), 0),
        }
    )


def openai_tool_stream(model: str, calls: list[FakeCall], prompt: int, body: dict[str, Any]) -> bytes:
    out = sse(_openai_chunk(model, {"role": "assistant", "content": None}, None))
    for i, c in enumerate(calls):
        head = {"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}
        out += sse(_openai_chunk(model, {"tool_calls": [head]}, None))
        for piece in _split(c.arguments):
            out += sse(
                _openai_chunk(model, {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, None)
            )
    out += sse(_openai_chunk(model, {}, "tool_calls"))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}
        usage.update({"choices": [], "usage": _openai_usage(prompt, 10 * len(calls), 0)})
        out += sse(orjson.dumps(usage))
    return out + sse(b"[DONE]")


# -- Anthropic ---------------------------------------------------------------------------------------------


def anthropic_plan(body: dict[str, Any]) -> tuple[str | None, list[FakeCall]]:
    """(text or None for the scripted reply, tool calls) for an Anthropic request."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, list):
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            texts = []
            for block in results:
                inner = block.get("content")
                if isinstance(inner, list):
                    inner = "".join(p.get("text", "") for p in inner if isinstance(p, dict))
                texts.append(str(inner))
            return "Tool result: " + " | ".join(texts), []
    tools = list(body.get("tools") or [])
    choice = body.get("tool_choice") or {"type": "auto"}
    if tools and choice.get("type") != "none":
        if choice.get("type") == "tool":
            tools = [t for t in tools if t["name"] == choice["name"]]
        elif choice.get("disable_parallel_tool_use"):
            tools = tools[:1]
        calls = [
            FakeCall(f"toolu_{i}", t["name"], orjson.dumps(sample(t.get("input_schema"))).decode())
            for i, t in enumerate(tools)
        ]
        return None, calls
    return None, []


def anthropic_tool_completion(model: str, calls: list[FakeCall], prompt: int) -> bytes:
    content = [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": orjson.loads(c.arguments)} for c in calls
    ]
    return orjson.dumps(
        {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": _anthropic_usage(prompt, 10 * len(calls), 0),
        }
    )


def anthropic_tool_stream(model: str, calls: list[FakeCall], prompt: int, body: dict[str, Any]) -> bytes:
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
            "usage": _anthropic_usage(prompt, 1, 0),
        },
    }
    out = sse(orjson.dumps(start), "message_start")
    for i, c in enumerate(calls):
        block = {"type": "tool_use", "id": c.id, "name": c.name, "input": {}}
        out += sse(
            orjson.dumps({"type": "content_block_start", "index": i, "content_block": block}),
            "content_block_start",
        )
        for piece in _split(c.arguments):
            delta = {
                "type": "content_block_delta",
                "index": i,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            out += sse(orjson.dumps(delta), "content_block_delta")
        out += sse(orjson.dumps({"type": "content_block_stop", "index": i}), "content_block_stop")
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 10 * len(calls)},
    }
    return out + sse(orjson.dumps(delta), "message_delta") + sse(b'{"type": "message_stop"}', "message_stop")
