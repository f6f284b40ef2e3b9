"""server/openai_request.py: an OpenAI chat-completions body -> Request, table-driven."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tiergate.content import ImagePart, TextPart, Tool, ToolCall, ToolChoice, ToolMode
from tiergate.errors import InvalidRequest, UnknownTask
from tiergate.request import Message, Request
from tiergate.server.openai_request import parse_chat

ROUTES = {"default": None, "chat": None}
USER = {"role": "user", "content": "hi"}


def parse(**body: Any) -> Request:
    return parse_chat(orjson.dumps({"model": "chat", "messages": [USER], **body}), ROUTES).request


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "developer", "content": "be brief"}], [Message("system", "be brief")]),
        (
            [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            [Message("user", "ab")],
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "see"},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                    ],
                }
            ],
            [
                Message(
                    "user",
                    "see",
                    parts=[TextPart("see"), ImagePart(url="https://x.test/a.png", detail="high")],
                )
            ],
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAE="}}],
                }
            ],
            [Message("user", "", parts=[ImagePart(data=b"\x00\x01", mime_type="image/jpeg")])],
        ),
        (
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "42"}]},
            ],
            [
                Message("assistant", "", tool_calls=[ToolCall("c", "f", "{}")]),
                Message("tool", "42", tool_call_id="c"),
            ],
        ),
        ([{"role": "user", "content": "hi", "name": "ann"}], [Message("user", "hi", name="ann")]),
    ],
)
def test_messages(messages: list[dict[str, Any]], expected: list[Message]) -> None:
    assert parse(messages=messages).messages == expected


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "object"}, "strict": True},
                    }
                ]
            },
            "tools",
            [Tool("f", "", '{"type":"object"}', True)],
        ),
        ({"tool_choice": "required"}, "tool_choice", ToolChoice(ToolMode.REQUIRED)),
        (
            {"tool_choice": {"type": "function", "function": {"name": "f"}}},
            "tool_choice",
            ToolChoice(ToolMode.TOOL, "f"),
        ),
        ({"parallel_tool_calls": False}, "parallel_tool_calls", False),
        ({"stop": "END"}, "stop", ["END"]),
        ({"stop": ["A", "B"]}, "stop", ["A", "B"]),
        ({"top_p": 1}, "top_p", 1.0),
        ({"seed": 42}, "seed", 42),
        ({"presence_penalty": 0.5}, "presence_penalty", 0.5),
        ({"frequency_penalty": -1}, "frequency_penalty", -1.0),
        ({"response_format": {"type": "json_object"}}, "json_object", True),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
                }
            },
            "json_schema_strict",
            True,
        ),
        ({"response_format": {"type": "text"}}, "json_schema", ""),
        ({"user": "t1"}, "tenant", "t1"),
        ({"modalities": ["text"], "n": 1, "logprobs": False}, "task", "chat"),
    ],
)
def test_fields(body: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(parse(**body), field) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"n": 2}, "n=2 is not supported"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
            "parameters: wrong type",
        ),
        ({"tool_choice": "any"}, "tool_choice"),
        ({"stop": [1]}, "stop"),
        ({"seed": 1.5}, "seed: wrong type"),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}
                ]
            },
            "system messages take text",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "user messages take text and image_url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
                    }
                ]
            },
            "data:<type>;base64",
        ),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "deprecated `function` role"),
        ({"messages": [{"role": "user", "tool_calls": []}]}, "content: required"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}],
                    }
                ]
            },
            "arguments: required",
        ),
    ],
)
def test_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse(**body)


def test_a_model_that_names_no_route_is_unknown() -> None:
    with pytest.raises(UnknownTask, match="'gpt-4o'"):
        parse_chat(orjson.dumps({"model": "gpt-4o", "messages": [USER]}), ROUTES)
