"""What a message carries besides plain text, and what a request may ask of the answer's shape.

A message's `content` is its text; `parts` (when not empty) is the same content as an ordered list of text
and image parts, for messages that carry images. An assistant message may carry `tool_calls` (the model
asked for tools to be run), a `tool` message the result of one (`tool_call_id` names the call). A request
may offer `tools`, say how the model may use them (`ToolChoice`), and ask for JSON (`FormatKind`).

Answers carry tool calls whole (`ToolCall`, on a Completion) or, streamed, as `ToolCallDelta`s: the first
delta of a call has its `index`, `id` and `name`, the following ones add pieces of its `arguments` under the
same index, as OpenAI streams them. `AnswerBuilder` puts streamed pieces back together.

Plain dataclasses with slots, like `tiergate.request`: no pydantic, no protobuf, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# Inline images larger than this are refused at the door (bytes, after base64 decoding): the hosted providers
# refuse larger ones too (OpenAI 20 MB, Anthropic 5 MB per image over the API).
MAX_IMAGE_BYTES = 5 * 1024 * 1024
IMAGE_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
IMAGE_URL_SCHEMES = ("https://", "http://")


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image, by URL (`url`) or inline (`data` with its `mime_type`). `detail` is OpenAI's hint
    ("auto", "low", "high"; "" = not given)."""

    url: str = ""
    data: bytes = b""
    mime_type: str = ""
    detail: str = ""


Part = TextPart | ImagePart


@dataclass(slots=True)
class ToolCall:
    """A call the model asked for: `arguments` is JSON text (an object), as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call. `index` is stable for one call across the stream; `id` and `name`
    come with the call's first delta, `arguments` in pieces that concatenate to the call's JSON."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call. `parameters` is a JSON schema (JSON text, an object)."""

    name: str
    description: str = ""
    parameters: str = ""
    strict: bool = False


class ToolMode(enum.StrEnum):
    AUTO = "auto"  # the model decides (the default when tools are given)
    NONE = "none"  # no tool call
    REQUIRED = "required"  # at least one tool call
    TOOL = "tool"  # a call of the tool `ToolChoice.name`


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ToolMode = ToolMode.AUTO
    name: str = ""  # the tool, for ToolMode.TOOL


class FormatKind(enum.StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # JSON valid against the request's json_schema


@dataclass(slots=True)
class AnswerBuilder:
    """Collects a streamed answer's text, refusal and tool-call deltas into whole values."""

    parts: list[str] = field(default_factory=list)
    refusal_parts: list[str] = field(default_factory=list)
    calls: dict[int, ToolCall] = field(default_factory=dict)

    def add(self, text: str, refusal: str, deltas: list[ToolCallDelta]) -> None:
        if text:
            self.parts.append(text)
        if refusal:
            self.refusal_parts.append(refusal)
        for delta in deltas:
            call = self.calls.get(delta.index)
            if call is None:
                self.calls[delta.index] = ToolCall(delta.id, delta.name, delta.arguments)
            else:
                call.id = call.id or delta.id
                call.name = call.name or delta.name
                call.arguments += delta.arguments

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def refusal(self) -> str:
        return "".join(self.refusal_parts)

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [self.calls[i] for i in sorted(self.calls)]


def call_deltas(calls: list[ToolCall]) -> list[ToolCallDelta]:
    """Whole tool calls as the deltas of one chunk (index = position)."""
    return [ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(calls)]
