"""wire.py: domain <-> protobuf, both directions (the client and the server use the same functions)."""

from __future__ import annotations

import pytest

from tiergate.content import ImagePart, TextPart, Tool, ToolCall, ToolCallDelta, ToolChoice, ToolMode
from tiergate.errors import InvalidRequest
from tiergate.request import Chunk, Completion, Decision, Message, Request, Usage
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.wire import (
    chunk_from_proto,
    chunk_to_proto,
    decision_from_proto,
    decision_to_proto,
    request_from_proto,
    request_to_proto,
    response_from_proto,
    response_to_proto,
)

FULL = Request(
    task="chat",
    messages=[
        Message(
            "user",
            "see this",
            parts=[TextPart("see "), ImagePart(data=b"\x01", mime_type="image/png"), TextPart("this")],
        ),
        Message("assistant", "", tool_calls=[ToolCall("c1", "lookup", '{"q": 1}')]),
        Message("tool", "found", tool_call_id="c1", name="lookup"),
    ],
    tools=[Tool("lookup", "Find", '{"type": "object"}', strict=True)],
    tool_choice=ToolChoice(ToolMode.TOOL, "lookup"),
    parallel_tool_calls=False,
    json_schema='{"type": "object"}',
    json_schema_strict=True,
    stop=["END"],
    top_p=0.5,
    seed=7,
    presence_penalty=0.25,
    frequency_penalty=-0.5,
)


@pytest.mark.parametrize(
    "request_",
    [
        FULL,
        Request("", [Message("user", "hi")]),
        Request("", [Message("user", "hi")], json_object=True),
        Request("", [Message("user", "hi")], tools=[Tool("t")], tool_choice=ToolChoice(ToolMode.NONE)),
    ],
)
def test_requests_round_trip(request_: Request) -> None:
    assert request_from_proto(request_to_proto(request_), stream=False) == request_


def test_text_only_parts_are_plain_content() -> None:
    msg = pb.CompleteRequest(
        messages=[pb.Message(role="user", parts=[pb.ContentPart(text="a"), pb.ContentPart(text="b")])]
    )
    assert request_from_proto(msg, stream=False).messages == [Message("user", "ab")]


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (
            pb.CompleteRequest(
                messages=[pb.Message(role="user", content="x", parts=[pb.ContentPart(text="y")])]
            ),
            "not both",
        ),
        (
            pb.CompleteRequest(messages=[pb.Message(role="user", parts=[pb.ContentPart()])]),
            "needs `text` or `image`",
        ),
        (pb.CompleteRequest(response_format="xml"), "response_format"),
        (pb.CompleteRequest(response_format="json_schema"), "needs `json_schema`"),
        (pb.CompleteRequest(tool_choice=pb.ToolChoice(mode="often")), "tool_choice.mode"),
    ],
)
def test_bad_requests(msg: pb.CompleteRequest, error: str) -> None:
    with pytest.raises(InvalidRequest, match=error):
        request_from_proto(msg, stream=False)


def test_answers_carry_tool_calls_and_refusals() -> None:
    completion = Completion("", Usage(1, 2), "tool_calls", tool_calls=[ToolCall("a", "f", "{}")], refusal="")
    response = response_from_proto(response_to_proto(completion, Decision("r", "t")))
    assert (response.tool_calls, response.finish_reason) == ([ToolCall("a", "f", "{}")], "tool_calls")
    chunk = Chunk(tool_calls=[ToolCallDelta(1, "b", "g", '{"x"')], refusal="no")
    assert chunk_from_proto(chunk_to_proto(chunk, None)) == chunk


def test_a_decision_carries_the_response_cache_hit() -> None:
    decision = Decision(
        "r", "t", cache="hit", cost_saved_usd=0.002, cache_match="semantic", cache_similarity=0.97
    )
    back = decision_from_proto(decision_to_proto(decision))
    assert (back.cache, back.cache_match, back.cost_saved_usd) == ("hit", "semantic", 0.002)
    assert back.cache_similarity == pytest.approx(0.97)
