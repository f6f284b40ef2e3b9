"""On-device tool calling, the translation half: a conversation with tools -> one prompt text and the JSON
schema every answer must follow; the generated JSON -> text or tool calls.

A small local model has no native tool-call format, so the answer is constrained instead: the schema
(`answer_schema`) admits exactly `{"tool": NAME, "arguments": {...}}` for each offered tool (its `parameters`
schema) or `{"answer": "..."}` (left out when the tool choice is `required` or a named tool; with `none`, only
the answer). The on-device worker turns the schema into a grammar (`local_sampling.json_schema_grammar`) and
generates under it, so a restricted request that uses tools can stay on the device; `parse_answer` reads the
result back. One call per turn: a local model that must choose among several calls at once chooses badly.

Pure functions, no llama.cpp: the on-device provider (`llama_cpp.py`) calls them in the sidecar, and the
worker process generates under the schema like any `json_schema` request.
"""

from __future__ import annotations

import json
from typing import Any

from tiergate.content import Tool, ToolCall, ToolChoice, ToolMode
from tiergate.request import Message

INSTRUCTION = (
    "You can call these tools. Reply with JSON only: "
    '{"tool": <name>, "arguments": {...}} to call one, or {"answer": <text>} to answer.'
)


def answer_schema(tools: list[Tool], choice: ToolChoice) -> dict[str, Any]:
    """The JSON schema every generated answer must follow (see the module docstring)."""
    offered = [t for t in tools if choice.mode != ToolMode.TOOL or t.name == choice.name]
    options: list[dict[str, Any]] = []
    if choice.mode != ToolMode.NONE:
        for tool in offered:
            parameters = json.loads(tool.parameters) if tool.parameters else {"type": "object"}
            options.append(
                {
                    "type": "object",
                    "properties": {"tool": {"const": tool.name}, "arguments": parameters},
                    "required": ["tool", "arguments"],
                    "additionalProperties": False,
                }
            )
    if choice.mode in (ToolMode.AUTO, ToolMode.NONE) or not options:
        options.append(
            {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def prompt_messages(messages: list[Message], tools: list[Tool], choice: ToolChoice) -> list[Message]:
    """The conversation as plain text messages a chat template renders: the tools described in a system
    message, assistant tool calls and tool results written out as the JSON the model is asked to write."""
    described = [
        {"name": t.name, "description": t.description, "parameters": json.loads(t.parameters or "{}")}
        for t in tools
        if choice.mode != ToolMode.TOOL or t.name == choice.name
    ]
    out = []
    if described and choice.mode != ToolMode.NONE:
        out.append(Message("system", f"{INSTRUCTION}\nTools: {json.dumps(described)}"))
    for m in messages:
        if m.tool_calls:
            calls = [{"tool": c.name, "arguments": json.loads(c.arguments)} for c in m.tool_calls]
            out.append(Message("assistant", json.dumps(calls[0] if len(calls) == 1 else calls)))
        elif m.role == "tool":
            out.append(Message("user", f"Tool result ({m.tool_call_id}): {m.content}"))
        else:
            out.append(Message(m.role, m.content))
    return out


def parse_answer(text: str, call_id: str) -> tuple[str, list[ToolCall]]:
    """(answer text, tool calls) of a generated answer that followed `answer_schema`; text that is not such
    JSON (a generation cut short by max tokens) is returned as the answer."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text, []
    if isinstance(data, dict) and isinstance(data.get("tool"), str):
        arguments = data.get("arguments")
        return "", [
            ToolCall(call_id, data["tool"], json.dumps(arguments if isinstance(arguments, dict) else {}))
        ]
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return data["answer"], []
    return text, []
