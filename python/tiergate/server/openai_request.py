"""OpenAI's `/v1/chat/completions` request body -> a domain `Request`: the facade's inbound translation.

Pure functions over the parsed JSON: every field OpenAI documents either maps onto the Request or, when
tiergate cannot honour it (`n` > 1, `logprobs`, audio, the deprecated `functions`), is refused with an
InvalidRequest (400) naming it, never silently dropped. Content parts: text, `image_url` (an http(s) URL or
a `data:` URL with base64 bytes). Messages: system / developer, user, assistant (with `tool_calls`), tool
(with `tool_call_id`). `tools` (type function), `tool_choice`, `parallel_tool_calls`, `response_format` (text,
json_object, json_schema with `strict`), `stop`, `top_p`, `seed`, the penalties, `max_completion_tokens` (or
the older `max_tokens`), `user` (the tenant), `metadata`; and tiergate's own `sensitivity`, `max_cost_usd`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tiergate import errors
from tiergate.content import ImagePart, Part, TextPart, Tool, ToolCall, ToolChoice, ToolMode
from tiergate.request import Message, Request, Sensitivity

_SENSITIVITIES = {s.name.lower(): s for s in Sensitivity if s is not Sensitivity.UNSPECIFIED}
# Refused when set: tiergate cannot honour them, and ignoring them would answer a different question.
_UNSUPPORTED = ("functions", "function_call", "audio", "prediction", "web_search_options", "top_logprobs")
_TOOL_MODES = {"auto": ToolMode.AUTO, "none": ToolMode.NONE, "required": ToolMode.REQUIRED}


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A parsed `/v1/chat/completions` body."""

    request: Request
    model: str
    include_usage: bool


def parse_chat(body: bytes, routes: Mapping[str, object]) -> ChatCall:
    """The request in a chat-completions body. Raises InvalidRequest (400) or UnknownTask (404)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise errors.InvalidRequest("the request body must be a JSON object")
    model = field(data, "model", str, required=True)
    if model not in routes:
        raise errors.UnknownTask(
            f"The model {model!r} does not exist: models are tiergate routes ({', '.join(routes)})"
        )
    raw_messages = field(data, "messages", list, required=True)
    if not raw_messages:
        raise errors.InvalidRequest("messages: must not be empty")
    messages = [_message(i, m) for i, m in enumerate(raw_messages)]
    _refuse_unsupported(data)
    stream = field(data, "stream", bool) or False
    options = field(data, "stream_options", dict) or {}
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise errors.InvalidRequest("stream_options.include_usage: must be a boolean")
    max_tokens = field(data, "max_completion_tokens", int)
    if max_tokens is None:
        max_tokens = field(data, "max_tokens", int)
    if max_tokens is not None and max_tokens < 0:
        raise errors.InvalidRequest("max_tokens: must not be negative")
    metadata = field(data, "metadata", dict) or {}
    if not all(isinstance(v, str) for v in metadata.values()):
        raise errors.InvalidRequest("metadata: values must be strings")
    json_schema, json_object, strict = _response_format(data.get("response_format"))
    request = Request(
        task=model,
        messages=messages,
        sensitivity=_sensitivity(data),
        max_output_tokens=max_tokens or 0,
        temperature=_float(data, "temperature"),
        tenant=field(data, "user", str) or "",
        metadata=dict(metadata),
        json_schema=json_schema,
        max_cost_usd=_float(data, "max_cost_usd") or 0.0,
        stream=stream,
        tools=_tools(data.get("tools")),
        tool_choice=_tool_choice(data.get("tool_choice")),
        parallel_tool_calls=field(data, "parallel_tool_calls", bool),
        json_object=json_object,
        json_schema_strict=strict,
        stop=_stop(data.get("stop")),
        top_p=_float(data, "top_p"),
        seed=field(data, "seed", int),
        presence_penalty=_float(data, "presence_penalty"),
        frequency_penalty=_float(data, "frequency_penalty"),
    )
    return ChatCall(request, model, include_usage)


def field(data: Mapping[str, Any], name: str, kind: Any, *, required: bool = False, where: str = "") -> Any:
    """`data[name]` when it has the `kind` asked for; None when absent or null. InvalidRequest otherwise."""
    value = data.get(name)
    if value is None:
        if required:
            raise errors.InvalidRequest(f"{where}{name}: required")
        return None
    # bool is an int in Python; a JSON true is no token count.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise errors.InvalidRequest(f"{where}{name}: wrong type ({type(value).__name__})")
    return value


def _float(data: Mapping[str, Any], name: str) -> float | None:
    value = field(data, name, (int, float))
    return float(value) if value is not None else None


def _refuse_unsupported(data: Mapping[str, Any]) -> None:
    for name in _UNSUPPORTED:
        if data.get(name):
            raise errors.InvalidRequest(f"{name}: not supported by tiergate")
    if data.get("logprobs"):
        raise errors.InvalidRequest("logprobs: not supported by tiergate (choices[].logprobs is always null)")
    if data.get("logit_bias"):
        raise errors.InvalidRequest("logit_bias: not supported by tiergate")
    modalities = data.get("modalities")
    if modalities not in (None, ["text"]):
        raise errors.InvalidRequest("modalities: tiergate answers text only")
    n = field(data, "n", int)
    if n not in (None, 1):
        raise errors.InvalidRequest(f"n: tiergate returns one choice per request; n={n} is not supported")


def _sensitivity(data: Mapping[str, Any]) -> Sensitivity:
    name = field(data, "sensitivity", str)
    if name is None:
        return Sensitivity.UNSPECIFIED
    if name not in _SENSITIVITIES:
        raise errors.InvalidRequest(f"sensitivity: one of {', '.join(_SENSITIVITIES)}")
    return _SENSITIVITIES[name]


def _message(index: int, raw: Any) -> Message:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise errors.InvalidRequest(f"{where}: must be an object")
    role = raw.get("role")
    if not isinstance(role, str) or not role:
        raise errors.InvalidRequest(f"{where}.role: required string")
    if role == "developer":  # OpenAI's newer name for the system role
        role = "system"
    if role == "function" or raw.get("function_call"):
        raise errors.InvalidRequest(f"{where}: the deprecated `function` role is not supported: use tools")
    parts = _content(where, role, raw.get("content"))
    calls = _tool_calls(where, raw.get("tool_calls")) if role == "assistant" else []
    if raw.get("tool_calls") and role != "assistant":
        raise errors.InvalidRequest(f"{where}.tool_calls: only assistant messages carry tool calls")
    if not parts and not calls and role != "assistant":
        raise errors.InvalidRequest(f"{where}.content: required string or list of parts")
    tool_call_id = field(raw, "tool_call_id", str, where=f"{where}.") or ""
    name = field(raw, "name", str, where=f"{where}.") or ""
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    images = any(isinstance(p, ImagePart) for p in parts)
    return Message(role, text, parts if images else [], calls, tool_call_id, name)


def _content(where: str, role: str, content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise errors.InvalidRequest(f"{where}.content: a string or a list of parts")
    parts: list[Part] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(TextPart(part["text"]))
        elif kind == "refusal" and role == "assistant" and isinstance(part.get("refusal"), str):
            parts.append(TextPart(part["refusal"]))
        elif kind == "image_url" and role == "user":
            parts.append(_image(f"{where}.content[{j}]", part.get("image_url")))
        else:
            allowed = "text and image_url" if role == "user" else "text"
            raise errors.InvalidRequest(f"{where}.content[{j}]: {role} messages take {allowed} parts")
    return parts


def _image(where: str, raw: Any) -> ImagePart:
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        raise errors.InvalidRequest(f"{where}.image_url.url: required string")
    url: str = raw["url"]
    detail = field(raw, "detail", str, where=f"{where}.image_url.") or ""
    if not url.startswith("data:"):
        return ImagePart(url=url, detail=detail)  # the scheme is checked with the rest of the request
    head, sep, payload = url[5:].partition(",")
    mime_type, _, encoding = head.partition(";")
    if not sep or encoding != "base64":
        raise errors.InvalidRequest(f"{where}.image_url.url: a data URL must be data:<type>;base64,<data>")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidRequest(f"{where}.image_url.url: the data URL is not valid base64") from None
    return ImagePart(data=data, mime_type=mime_type, detail=detail)


def _tool_calls(where: str, raw: Any) -> list[ToolCall]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise errors.InvalidRequest(f"{where}.tool_calls: must be a list")
    calls = []
    for j, call in enumerate(raw):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise errors.InvalidRequest(f"{at}: a function call {{id, type: function, function}}")
        calls.append(
            ToolCall(
                field(call, "id", str, required=True, where=f"{at}."),
                field(function, "name", str, required=True, where=f"{at}.function."),
                field(function, "arguments", str, required=True, where=f"{at}.function."),
            )
        )
    return calls


def _tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise errors.InvalidRequest("tools: must be a list")
    tools = []
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            raise errors.InvalidRequest(f"tools[{i}]: {{type: function, function: {{name, parameters}}}}")
        parameters = field(function, "parameters", dict, where=f"tools[{i}].function.")
        tools.append(
            Tool(
                field(function, "name", str, required=True, where=f"tools[{i}].function."),
                field(function, "description", str, where=f"tools[{i}].function.") or "",
                orjson.dumps(parameters).decode() if parameters is not None else "",
                field(function, "strict", bool, where=f"tools[{i}].function.") or False,
            )
        )
    return tools


def _tool_choice(raw: Any) -> ToolChoice:
    if raw is None:
        return ToolChoice()
    if isinstance(raw, str) and raw in _TOOL_MODES:
        return ToolChoice(_TOOL_MODES[raw])
    function = raw.get("function") if isinstance(raw, dict) and raw.get("type") == "function" else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return ToolChoice(ToolMode.TOOL, function["name"])
    raise errors.InvalidRequest(
        'tool_choice: "none", "auto", "required" or {"type": "function", "function": {"name"}}'
    )


def _stop(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return list(raw)
    raise errors.InvalidRequest("stop: a string or a list of strings")


def _response_format(raw: Any) -> tuple[str, bool, bool | None]:
    """(json_schema, json_object, strict) of a `response_format`."""
    if raw is None:
        return "", False, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return "", False, None
    if kind == "json_object":
        return "", True, None
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            strict = field(spec, "strict", bool, where="response_format.json_schema.")
            return orjson.dumps(spec["schema"]).decode(), False, strict
    raise errors.InvalidRequest(
        "response_format: {type: text}, {type: json_object} or "
        "{type: json_schema, json_schema: {name, schema}}"
    )
