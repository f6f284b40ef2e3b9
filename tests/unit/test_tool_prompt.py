"""providers/tool_prompt.py: on-device tool calling's translation (schema, prompt, parsing), table-driven."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import validate
from jsonschema.exceptions import ValidationError

from tiergate.content import Tool, ToolCall, ToolChoice, ToolMode
from tiergate.providers.tool_prompt import answer_schema, parse_answer, prompt_messages
from tiergate.request import Message

WEATHER = Tool(
    "weather",
    "Weather",
    '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}',
)
TIME = Tool("time", "Time", "")
CALL = {"tool": "weather", "arguments": {"city": "Paris"}}
ANSWER = {"answer": "It is sunny."}


@pytest.mark.parametrize(
    ("choice", "valid", "invalid"),
    [
        (
            ToolChoice(),
            [CALL, ANSWER, {"tool": "time", "arguments": {}}],
            [{"tool": "weather", "arguments": {}}],
        ),
        (ToolChoice(ToolMode.NONE), [ANSWER], [CALL]),
        (ToolChoice(ToolMode.REQUIRED), [CALL], [ANSWER]),
        (ToolChoice(ToolMode.TOOL, "time"), [{"tool": "time", "arguments": {}}], [CALL, ANSWER]),
    ],
)
def test_answer_schema(choice: ToolChoice, valid: list[Any], invalid: list[Any]) -> None:
    schema = answer_schema([WEATHER, TIME], choice)
    for value in valid:
        validate(value, schema)
    for value in invalid:
        with pytest.raises(ValidationError):
            validate(value, schema)


def test_prompt_messages_write_tools_calls_and_results_as_text() -> None:
    messages = [
        Message("user", "Weather?"),
        Message("assistant", "", tool_calls=[ToolCall("c1", "weather", '{"city": "Paris"}')]),
        Message("tool", "18C", tool_call_id="c1"),
    ]
    out = prompt_messages(messages, [WEATHER], ToolChoice())
    assert [m.role for m in out] == ["system", "user", "assistant", "user"]
    assert '"name": "weather"' in out[0].content
    assert json.loads(out[2].content) == CALL and out[3].content == "Tool result (c1): 18C"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (json.dumps(CALL), ("", [ToolCall("call_0", "weather", '{"city": "Paris"}')])),
        (json.dumps(ANSWER), ("It is sunny.", [])),
        ('{"tool": "weath', ('{"tool": "weath', [])),
    ],
)
def test_parse_answer(text: str, expected: tuple[str, list[ToolCall]]) -> None:
    assert parse_answer(text, "call_0") == expected
