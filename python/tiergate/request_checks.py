"""Validation of a request at the door, before any work is done: every problem is an InvalidRequest.

Tools and their calls are checked here too, so that a malformed one is never forwarded: tool names, their
parameter schemas (valid JSON Schema objects), tool-call arguments (JSON objects), tool results that answer a
call an earlier assistant message made, images (an http(s) URL, or inline bytes of an image type under
`content.MAX_IMAGE_BYTES` and `limits.max_request_bytes`, which inline images count towards), and the
sampling controls' ranges.
"""

from __future__ import annotations

import math
import re

import orjson

from tiergate.config import LimitsConfig
from tiergate.content import IMAGE_MIME_TYPES, IMAGE_URL_SCHEMES, MAX_IMAGE_BYTES, ImagePart, ToolMode
from tiergate.errors import InvalidRequest
from tiergate.request import Message, Request
from tiergate.validation import answer_validator

ROLES = frozenset({"system", "user", "assistant", "tool"})
# OpenAI's rule for function names; Anthropic's is the same with a shorter limit that this one meets.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_STOP_SEQUENCES = 4  # OpenAI's limit (Anthropic takes more)


def check_request(request: Request, limits: LimitsConfig) -> None:
    if not request.messages:
        raise InvalidRequest("messages is empty: send at least one message")
    size = sum(len(t.description) + len(t.parameters) for t in request.tools) if request.tools else 0
    calls: set[str] = set()
    for i, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise InvalidRequest(
                f"messages[{i}].role: {message.role!r} is not one of {', '.join(sorted(ROLES))}"
            )
        size += len(message.content)
        if message.tool_calls:
            size += sum(len(c.arguments) for c in message.tool_calls)
        if message.parts:
            size += sum(len(image.data) for image in message.images)
        # A plain text message (no tool call or result, no parts) has nothing more to check.
        if message.tool_calls or message.tool_call_id or message.parts or message.role == "tool":
            _check_message(i, message, calls, min(MAX_IMAGE_BYTES, limits.max_request_bytes))
    if size > limits.max_request_bytes:
        raise InvalidRequest(
            f"the messages hold {size} characters, over the limit of {limits.max_request_bytes} "
            "(limits.max_request_bytes)"
        )
    if not any(m.content.strip() or m.parts or m.tool_calls for m in request.messages):
        raise InvalidRequest("every message is empty")
    if request.max_output_tokens < 0 or request.max_output_tokens > limits.max_output_tokens:
        raise InvalidRequest(
            f"max_output_tokens {request.max_output_tokens} is out of range "
            f"(0 to {limits.max_output_tokens}, limits.max_output_tokens)"
        )
    _check_range("temperature", request.temperature, 0.0, 2.0)
    _check_range("top_p", request.top_p, 0.0, 1.0)
    _check_range("presence_penalty", request.presence_penalty, -2.0, 2.0)
    _check_range("frequency_penalty", request.frequency_penalty, -2.0, 2.0)
    if len(request.stop) > MAX_STOP_SEQUENCES or not all(request.stop):
        raise InvalidRequest(f"stop: up to {MAX_STOP_SEQUENCES} non-empty sequences")
    if not 0 <= request.max_cost_usd < math.inf:  # NaN included: it would read as "no limit"
        raise InvalidRequest(f"max_cost_usd {request.max_cost_usd} is not a cost (0: no limit)")
    if request.json_schema:
        answer_validator(request.json_schema)  # compiled now, kept for the cascade
    _check_tools(request)


def _check_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:  # NaN fails both comparisons
        raise InvalidRequest(f"{name} {value} is out of range ({low:g} to {high:g})")


def _check_message(i: int, message: Message, calls: set[str], max_image_bytes: int) -> None:
    where = f"messages[{i}]"
    if message.tool_calls and message.role != "assistant":
        raise InvalidRequest(f"{where}: only assistant messages carry tool_calls")
    for j, call in enumerate(message.tool_calls):
        if not call.id:
            raise InvalidRequest(f"{where}.tool_calls[{j}].id: required")
        if not TOOL_NAME.match(call.name):
            raise InvalidRequest(f"{where}.tool_calls[{j}].name: {call.name[:80]!r} is not a tool name")
        try:
            arguments = orjson.loads(call.arguments)
        except orjson.JSONDecodeError:
            raise InvalidRequest(f"{where}.tool_calls[{j}].arguments: not valid JSON") from None
        if not isinstance(arguments, dict):
            raise InvalidRequest(f"{where}.tool_calls[{j}].arguments: must be a JSON object")
        calls.add(call.id)
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequest(f"{where}.tool_call_id: required for a tool result")
        if message.tool_call_id not in calls:
            raise InvalidRequest(
                f"{where}.tool_call_id: {message.tool_call_id[:80]!r} answers no tool call of an earlier "
                "assistant message"
            )
        if message.images:
            raise InvalidRequest(f"{where}: a tool result carries text only")
    elif message.tool_call_id:
        raise InvalidRequest(f"{where}.tool_call_id: only tool messages answer a tool call")
    for j, part in enumerate(message.parts):
        if isinstance(part, ImagePart):
            _check_image(f"{where}.content[{j}]", part, max_image_bytes)
    if message.images and message.role != "user":
        raise InvalidRequest(f"{where}: only user messages carry images")


def _check_image(where: str, image: ImagePart, max_bytes: int) -> None:
    if image.url and image.data:
        raise InvalidRequest(f"{where}: an image is a URL or inline data, not both")
    if image.url:
        if not image.url.startswith(IMAGE_URL_SCHEMES):
            scheme = image.url.split(":", 1)[0][:20]
            raise InvalidRequest(f"{where}: image URL scheme {scheme!r} is not supported (https or http)")
        return
    if not image.data:
        raise InvalidRequest(f"{where}: an image needs a URL or inline data")
    if image.mime_type not in IMAGE_MIME_TYPES:
        raise InvalidRequest(
            f"{where}: image type {image.mime_type[:40]!r} is not one of "
            + ", ".join(sorted(IMAGE_MIME_TYPES))
        )
    if len(image.data) > max_bytes:
        raise InvalidRequest(
            f"{where}: inline image of {len(image.data)} bytes, over the limit of {max_bytes} "
            "(the smaller of 5 MiB and limits.max_request_bytes)"
        )
    if image.detail not in ("", "auto", "low", "high"):
        raise InvalidRequest(f"{where}: detail {image.detail[:20]!r} is not one of auto, low, high")


def _check_tools(request: Request) -> None:
    names: set[str] = set()
    for i, tool in enumerate(request.tools):
        if not TOOL_NAME.match(tool.name):
            raise InvalidRequest(
                f"tools[{i}].name: {tool.name[:80]!r} is not a tool name (letters, digits, _ and -, 1-64)"
            )
        if tool.name in names:
            raise InvalidRequest(f"tools[{i}].name: {tool.name!r} is defined twice")
        names.add(tool.name)
        if tool.parameters:
            try:
                schema = orjson.loads(tool.parameters)
            except orjson.JSONDecodeError:
                raise InvalidRequest(f"tools[{i}].parameters ({tool.name}): not valid JSON") from None
            if not isinstance(schema, dict) or schema.get("type", "object") != "object":
                raise InvalidRequest(
                    f"tools[{i}].parameters ({tool.name}): must be a JSON schema of an object"
                )
            try:
                answer_validator(tool.parameters)
            except InvalidRequest as exc:
                raise InvalidRequest(f"tools[{i}].parameters ({tool.name}): {exc}") from None
    choice = request.tool_choice
    if choice.mode == ToolMode.TOOL and choice.name not in names:
        raise InvalidRequest(f"tool_choice: {choice.name[:80]!r} is not one of the request's tools")
    if choice.mode == ToolMode.REQUIRED and not names:
        raise InvalidRequest("tool_choice: required, but the request has no tools")
