"""providers/anthropic.py: translation (pure functions) and the HTTP exchange over MockTransport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from tiergate.config import ModelConfig
from tiergate.content import ImagePart, TextPart, Tool, ToolCall, ToolCallDelta, ToolChoice, ToolMode
from tiergate.providers.anthropic import (
    ANSWER_TOOL,
    API_VERSION,
    AnthropicProvider,
    StreamParser,
    answer_tool,
    build_body,
    finish_reason,
    parse_completion,
    parse_usage,
)
from tiergate.providers.base import (
    BadRequest,
    MalformedResponse,
    Overloaded,
    PermissionDenied,
    Provider,
    ProviderConnectionError,
    ProviderError,
    RateLimited,
    ServerError,
)
from tiergate.providers.http_errors import ErrorMapper
from tiergate.request import Chunk, Completion, Message, Request, Usage

KEY = "sk-ant-test-0123456789abcdef"
errors = ErrorMapper("sonnet", KEY)


def req(**kwargs: Any) -> Request:
    messages = kwargs.pop("messages", [Message("system", "be brief"), Message("user", "hello there")])
    return Request(task="t", messages=messages, **kwargs)


def config(**kwargs: Any) -> ModelConfig:
    base = {
        "provider": "anthropic",
        "model": "claude-test",
        "base_url": "https://anthropic.test",
        "api_key": SecretStr(KEY),
    }
    return ModelConfig(**(base | kwargs))


# -- build_body -----------------------------------------------------------------------------------------


def test_system_messages_go_to_the_system_field() -> None:
    messages = [
        Message("system", "be brief"),
        Message("user", "hi"),
        Message("assistant", "hello"),
        Message("developer", "and polite"),
        Message("user", "how are you"),
    ]
    body = build_body(req(messages=messages), model="claude-test", default_max_tokens=300, stream=False)
    assert body == {
        "model": "claude-test",
        "max_tokens": 300,
        "system": "be brief\n\nand polite",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "how are you"},
        ],
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"max_output_tokens": 0}, {"max_tokens": 300}),  # required by the API: the model's default
        ({"max_output_tokens": 12}, {"max_tokens": 12}),
        ({"temperature": 0.0}, {"temperature": 0.0}),
        ({"stream": True}, {}),  # Request.stream does not decide: the method called does
    ],
)
def test_body_fields(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    body = build_body(req(**kwargs), model="m", default_max_tokens=300, stream=False)
    assert expected.items() <= body.items()
    assert "stream" not in body


def test_no_system_field_without_system_messages() -> None:
    body = build_body(req(messages=[Message("user", "hi")]), model="m", default_max_tokens=1, stream=True)
    assert "system" not in body and "temperature" not in body
    assert body["stream"] is True


def test_json_schema_becomes_a_forced_answer_tool() -> None:
    schema = '{"type": "object", "properties": {"a": {"type": "integer"}}}'
    body = build_body(req(json_schema=schema), model="m", default_max_tokens=1, stream=False)
    assert body["system"] == "be brief"
    assert body["tools"] == [
        {
            "name": ANSWER_TOOL,
            "description": body["tools"][0]["description"],
            "input_schema": orjson.loads(schema),
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}


def test_unknown_role_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="function"):
        build_body(req(messages=[Message("function", "{}")]), model="m", default_max_tokens=1, stream=False)


# -- parse_completion, usage, stop reasons --------------------------------------------------------------


def message_body(content: Any = None, stop: Any = "end_turn", usage: Any = None) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": content if content is not None else [{"type": "text", "text": "Hi!"}],
            "stop_reason": stop,
            "usage": usage if usage is not None else {"input_tokens": 10, "output_tokens": 3},
        }
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (message_body(), Completion("Hi!", Usage(10, 3), "stop")),
        (message_body(stop="max_tokens"), Completion("Hi!", Usage(10, 3), "length")),
        (message_body(stop="refusal"), Completion("Hi!", Usage(10, 3), "content_filter")),
        (
            message_body(
                content=[
                    {"type": "thinking", "thinking": "hmm"},
                    {"type": "text", "text": "a"},
                    {"type": "text", "text": "b"},
                ]
            ),
            Completion("ab", Usage(10, 3), "stop"),
        ),
        (message_body(content=[]), Completion("", Usage(10, 3), "stop")),
        (
            message_body(
                usage={
                    "input_tokens": 4,
                    "output_tokens": 2,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 6,
                }
            ),
            Completion("Hi!", Usage(input_tokens=110, output_tokens=2, cached_input_tokens=100), "stop"),
        ),
    ],
)
def test_parse_completion(raw: bytes, expected: Completion) -> None:
    assert parse_completion(raw, errors) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", MalformedResponse),
        (b"[]", MalformedResponse),
        (b'{"type": "message"}', MalformedResponse),
        (message_body(content=[{"type": "text"}]), MalformedResponse),
        (b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}', Overloaded),
    ],
)
def test_parse_completion_failures(raw: bytes, expected: type[ProviderError]) -> None:
    with pytest.raises(expected):
        parse_completion(raw, errors)


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("new_reason", "new_reason"),
        (None, "stop"),
    ],
)
def test_finish_reason(stop: Any, expected: str) -> None:
    assert finish_reason(stop) == expected


def test_usage_updates_keep_what_a_later_event_leaves_out() -> None:
    usage = parse_usage({"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5})
    parse_usage({"output_tokens": 15}, into=usage)
    assert usage == Usage(input_tokens=30, output_tokens=15, cached_input_tokens=5)
    parse_usage({"input_tokens": None, "output_tokens": 16}, into=usage)
    assert usage == Usage(input_tokens=30, output_tokens=16, cached_input_tokens=5)


# -- StreamParser ---------------------------------------------------------------------------------------


def ev(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


MESSAGE_START = ev(
    {
        "type": "message_start",
        "message": {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "content": [],
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    }
)
BLOCK_START = ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
PING = ev({"type": "ping"})
BLOCK_STOP = ev({"type": "content_block_stop", "index": 0})
MESSAGE_DELTA = ev(
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    }
)
MESSAGE_STOP = ev({"type": "message_stop"})


def text_delta(text: str) -> str:
    return ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})


def run_parser(events: list[str]) -> tuple[list[Chunk], StreamParser]:
    parser = StreamParser(errors)
    chunks = [c for c in (parser.feed(e) for e in events) if c is not None]
    return chunks, parser


def test_stream_text_then_final_usage_and_stop_reason() -> None:
    events = [
        MESSAGE_START,
        BLOCK_START,
        PING,
        text_delta("Hel"),
        text_delta("lo"),
        BLOCK_STOP,
        MESSAGE_DELTA,
        MESSAGE_STOP,
    ]
    chunks, parser = run_parser(events)
    assert chunks == [Chunk("Hel"), Chunk("lo")]
    assert parser.done
    assert parser.final() == Chunk("", Usage(input_tokens=25, output_tokens=15), "stop")


def test_not_done_before_message_stop() -> None:
    _, parser = run_parser([MESSAGE_START, text_delta("x"), MESSAGE_DELTA])
    assert not parser.done


def test_non_text_deltas_and_unknown_events_are_ignored() -> None:
    events = [
        MESSAGE_START,
        ev(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm"},
            }
        ),
        ev(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{"},
            }
        ),
        ev({"type": "some_future_event", "x": 1}),
        text_delta("ok"),
        MESSAGE_STOP,
    ]
    chunks, parser = run_parser(events)
    assert chunks == [Chunk("ok")] and parser.done


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}), Overloaded),
        (ev({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}), RateLimited),
        (ev({"type": "error", "error": {"type": "api_error", "message": "oops"}}), ServerError),
        (ev({"type": "error", "error": {"type": "permission_error", "message": "no"}}), PermissionDenied),
        ("{not json", MalformedResponse),
        ('"text"', MalformedResponse),
        (ev({"type": "message_start"}), MalformedResponse),
        (ev({"type": "content_block_delta", "delta": {"type": "text_delta"}}), MalformedResponse),
    ],
)
def test_stream_event_failures(event: str, expected: type[ProviderError]) -> None:
    with pytest.raises(expected):
        StreamParser(errors).feed(event)


@given(st.lists(st.text(min_size=1, max_size=12), max_size=20))
def test_any_token_sequence_round_trips(tokens: list[str]) -> None:
    chunks, parser = run_parser(
        [MESSAGE_START, *(text_delta(t) for t in tokens), MESSAGE_DELTA, MESSAGE_STOP]
    )
    assert "".join(c.text for c in chunks) == "".join(tokens)
    assert parser.done


# -- the HTTP exchange, over httpx.MockTransport --------------------------------------------------------

SSE_OK = "".join(
    f"event: {orjson.loads(e)['type']}\ndata: {e}\n\n"
    for e in [
        MESSAGE_START,
        BLOCK_START,
        PING,
        text_delta("Hi"),
        text_delta("!"),
        BLOCK_STOP,
        MESSAGE_DELTA,
        MESSAGE_STOP,
    ]
).encode()


def provider_with(
    handler: Callable[[httpx.Request], httpx.Response], **cfg: Any
) -> tuple[AnthropicProvider, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return AnthropicProvider("sonnet", config(**cfg), client), client


async def test_complete_sends_the_right_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=message_body())

    provider, client = provider_with(handler, headers={"anthropic-beta": "some-feature"})
    async with client:
        completion = await provider.complete(req())
    assert completion == Completion("Hi!", Usage(10, 3), "stop")
    (sent,) = seen
    assert str(sent.url) == "https://anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == API_VERSION
    assert sent.headers["anthropic-beta"] == "some-feature"
    assert "authorization" not in sent.headers
    assert orjson.loads(sent.content)["system"] == "be brief"
    assert isinstance(provider, Provider)


async def test_stream_over_the_transport() -> None:
    provider, client = provider_with(lambda request: httpx.Response(200, content=SSE_OK))
    async with client:
        chunks = [c async for c in provider.stream(req())]
    assert [c.text for c in chunks] == ["Hi", "!", ""]
    assert chunks[-1] == Chunk("", Usage(25, 15), "stop")


async def test_stream_cut_before_message_stop_is_a_connection_error() -> None:
    cut = SSE_OK[: SSE_OK.index(b"event: message_stop")]
    provider, client = provider_with(lambda request: httpx.Response(200, content=cut))
    async with client:
        with pytest.raises(ProviderConnectionError):
            [c async for c in provider.stream(req())]


@pytest.mark.parametrize("streamed", [False, True])
async def test_529_is_overloaded(streamed: bool) -> None:
    body = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    provider, client = provider_with(lambda request: httpx.Response(529, content=body))
    async with client:
        with pytest.raises(Overloaded, match=r"HTTP 529 \[overloaded_error\] Overloaded"):
            if streamed:
                [c async for c in provider.stream(req())]
            else:
                await provider.complete(req())


# -- tools, images, structured output ----------------------------------------------------------------------

WEATHER = Tool("weather", "Current weather", '{"type": "object", "properties": {"city": {"type": "string"}}}')
CALL = ToolCall("call_1", "weather", '{"city": "Paris"}')
LOOP = [
    Message("user", "Weather in Paris?"),
    Message("assistant", "", tool_calls=[CALL, ToolCall("call_2", "weather", '{"city": "Rome"}')]),
    Message("tool", "18C", tool_call_id="call_1"),
    Message("tool", "25C", tool_call_id="call_2"),
    Message("user", "Thanks"),
]


def test_tool_loop_translates_to_tool_use_and_one_turn_of_tool_results() -> None:
    body = build_body(req(messages=LOOP, tools=[WEATHER]), model="m", default_max_tokens=9, stream=False)
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "25C"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": orjson.loads(WEATHER.parameters),
        }
    ]
    assert "tool_choice" not in body  # auto is Anthropic's default


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (ToolChoice(ToolMode.NONE), None, {"type": "none"}),
        (ToolChoice(ToolMode.REQUIRED), None, {"type": "any"}),
        (ToolChoice(ToolMode.TOOL, "weather"), None, {"type": "tool", "name": "weather"}),
        (ToolChoice(), False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice(), None, None),
    ],
)
def test_tool_choice(choice: ToolChoice, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    request = req(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel)
    assert build_body(request, model="m", default_max_tokens=9, stream=False).get("tool_choice") == expected


@pytest.mark.parametrize(
    ("part", "source"),
    [
        (ImagePart(url="https://x.test/a.png"), {"type": "url", "url": "https://x.test/a.png"}),
        (
            ImagePart(data=b"\x89PNG", mime_type="image/png"),
            {"type": "base64", "media_type": "image/png", "data": "iVBORw=="},
        ),
    ],
)
def test_images_become_image_blocks(part: ImagePart, source: dict[str, Any]) -> None:
    message = Message("user", "What is this?", parts=[TextPart("What is this?"), part])
    body = build_body(req(messages=[message]), model="m", default_max_tokens=9, stream=False)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": source},
    ]


def test_stop_top_p_and_no_seed() -> None:
    body = build_body(req(stop=["END"], top_p=0.5, seed=7), model="m", default_max_tokens=9, stream=False)
    assert (body["stop_sequences"], body["top_p"], "seed" in body) == (["END"], 0.5, False)


def test_parse_completion_with_tool_use() -> None:
    raw = orjson.dumps(
        {
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 7},
        }
    )
    assert parse_completion(raw, errors) == Completion(
        "Let me look.",
        Usage(5, 7),
        "tool_calls",
        tool_calls=[ToolCall("toolu_1", "weather", '{"city":"Paris"}')],
    )


SCHEMA = '{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}'


@pytest.mark.parametrize(
    ("schema", "tool_input", "text"),
    [(SCHEMA, {"n": 3}, '{"n":3}'), ('{"type": "array"}', {"value": [1, 2]}, "[1,2]")],
)
def test_the_forced_answer_tool_is_the_answer(schema: str, tool_input: Any, text: str) -> None:
    answer = answer_tool(req(json_schema=schema))[0]
    raw = orjson.dumps(
        {
            "content": [{"type": "tool_use", "id": "t", "name": ANSWER_TOOL, "input": tool_input}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 7},
        }
    )
    assert parse_completion(raw, errors, answer) == Completion(text, Usage(5, 7), "stop")


def test_an_answer_that_fails_the_schema_is_malformed() -> None:
    raw = orjson.dumps(
        {"content": [{"type": "tool_use", "id": "t", "name": ANSWER_TOOL, "input": {"n": "x"}}], "usage": {}}
    )
    with pytest.raises(MalformedResponse, match="does not validate"):
        parse_completion(raw, errors, answer_tool(req(json_schema=SCHEMA))[0])


def _events(*events: dict[str, Any]) -> list[str]:
    return [orjson.dumps(e).decode() for e in events]


def test_stream_tool_use_becomes_tool_call_deltas_with_stable_indices() -> None:
    parser = StreamParser(errors)
    out = [
        parser.feed(e)
        for e in _events(
            {"type": "message_start", "message": {"usage": {"input_tokens": 4, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Sure."}},
            {"type": "content_block_stop", "index": 0},
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "a", "name": "w"},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"ci'},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 'ty": "P"}'},
            },
            {"type": "content_block_stop", "index": 1},
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "tool_use", "id": "b", "name": "n"},
            },
            {"type": "content_block_stop", "index": 2},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
            {"type": "message_stop"},
        )
    ]
    chunks = [c for c in out if c is not None]
    assert chunks == [
        Chunk("Sure."),
        Chunk(tool_calls=[ToolCallDelta(0, "a", "w", "")]),
        Chunk(tool_calls=[ToolCallDelta(0, arguments='{"ci')]),
        Chunk(tool_calls=[ToolCallDelta(0, arguments='ty": "P"}')]),
        Chunk(tool_calls=[ToolCallDelta(1, "b", "n", "")]),
        Chunk(tool_calls=[ToolCallDelta(1, arguments="{}")]),  # a call without input: {}
    ]
    assert parser.done and parser.final() == Chunk(usage=Usage(4, 9), finish_reason="tool_calls")


def test_stream_answer_tool_input_streams_as_text_and_is_validated() -> None:
    parser = StreamParser(errors, answer_tool(req(json_schema=SCHEMA))[0])
    out = [
        parser.feed(e)
        for e in _events(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t", "name": ANSWER_TOOL},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"n": '},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "3}"},
            },
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
            {"type": "message_stop"},
        )
    ]
    assert [c.text for c in out if c is not None] == ['{"n": ', "3}"]
    assert parser.final().finish_reason == "stop"
