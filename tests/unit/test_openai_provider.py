"""providers/openai.py: request and response translation (pure), and the HTTP exchange over MockTransport."""

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
from tiergate.providers.base import (
    AuthenticationError,
    BadRequest,
    MalformedResponse,
    Provider,
    ProviderConnectionError,
    ProviderError,
    RateLimited,
    ServerError,
)
from tiergate.providers.http_errors import ErrorMapper
from tiergate.providers.openai import (
    LEGACY_MAX_TOKENS_FIELD,
    OpenAIProvider,
    StreamParser,
    build_body,
    is_strict_compatible,
    parse_completion,
    response_format,
)
from tiergate.request import Chunk, Completion, Message, Request, Usage

KEY = "sk-test-0123456789abcdef"
errors = ErrorMapper("mini", KEY)
CLOSED_SCHEMA = {
    "title": "Verdict",
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}


def req(**kwargs: Any) -> Request:
    messages = kwargs.pop("messages", [Message("system", "be brief"), Message("user", "hello there")])
    return Request(task="t", messages=messages, **kwargs)


def config(**kwargs: Any) -> ModelConfig:
    base = {
        "provider": "openai",
        "model": "gpt-test",
        "base_url": "https://api.test/v1",
        "api_key": SecretStr(KEY),
    }
    return ModelConfig(**(base | kwargs))


# -- build_body -----------------------------------------------------------------------------------------


def test_body_of_a_plain_request() -> None:
    body = build_body(req(), model="gpt-test", default_max_tokens=256, stream=False)
    assert body == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        "max_completion_tokens": 256,
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"max_output_tokens": 0}, {"max_completion_tokens": 256}),  # 0: the model's default
        ({"max_output_tokens": 17}, {"max_completion_tokens": 17}),
        ({"temperature": 0.0}, {"temperature": 0.0}),  # zero is a temperature, not "unset"
        ({"temperature": 0.7}, {"temperature": 0.7}),
    ],
)
def test_body_fields(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    body = build_body(req(**kwargs), model="m", default_max_tokens=256, stream=False)
    assert expected.items() <= body.items()


def test_body_leaves_temperature_out_when_unset() -> None:
    assert "temperature" not in build_body(req(), model="m", default_max_tokens=1, stream=False)


def test_legacy_servers_get_max_tokens() -> None:
    body = build_body(
        req(), model="m", default_max_tokens=9, stream=False, max_tokens_field=LEGACY_MAX_TOKENS_FIELD
    )
    assert body["max_tokens"] == 9 and "max_completion_tokens" not in body


def test_streamed_body_asks_for_usage() -> None:
    body = build_body(req(), model="m", default_max_tokens=1, stream=True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_json_schema_becomes_response_format() -> None:
    body = build_body(
        req(json_schema=orjson.dumps(CLOSED_SCHEMA).decode()), model="m", default_max_tokens=1, stream=False
    )
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Verdict", "schema": CLOSED_SCHEMA, "strict": True},
    }


@pytest.mark.parametrize(
    ("schema", "strict"),
    [
        (CLOSED_SCHEMA, True),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, False),  # open
        ({**CLOSED_SCHEMA, "required": ["label"]}, False),  # an optional property
        ({"type": "string"}, True),
        ({"type": "array", "items": {"type": "object", "properties": {}}}, False),  # nested open object
        (
            {"type": "array", "items": {"type": "object", "properties": {}, "additionalProperties": False}},
            True,
        ),
        ({"anyOf": [CLOSED_SCHEMA, {"type": "object", "properties": {"x": {}}}]}, False),
        ({"$defs": {"v": CLOSED_SCHEMA}, "$ref": "#/$defs/v"}, True),
    ],
)
def test_strict_only_when_the_schema_allows_it(schema: dict[str, Any], strict: bool) -> None:
    assert is_strict_compatible(schema) is strict


@pytest.mark.parametrize(
    ("title", "name"),
    [("Verdict", "Verdict"), ("has spaces", "response"), (None, "response"), ("x" * 65, "response")],
)
def test_schema_name(title: str | None, name: str) -> None:
    schema: dict[str, Any] = {"type": "string"} if title is None else {"type": "string", "title": title}
    assert response_format(orjson.dumps(schema).decode())["json_schema"]["name"] == name


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '"a string"'])
def test_bad_json_schema_is_a_bad_request(bad: str) -> None:
    with pytest.raises(BadRequest):
        build_body(req(json_schema=bad), model="m", default_max_tokens=1, stream=False)


# -- parse_completion -----------------------------------------------------------------------------------


def completion_body(content: Any = "Hi!", finish: Any = "stop", usage: Any = None, **extra: Any) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content, **extra}
    data = {
        "id": "x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage
        if usage is not None
        else {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 8}},
    }
    return orjson.dumps(data)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            completion_body(),
            Completion("Hi!", Usage(input_tokens=12, output_tokens=3, cached_input_tokens=8), "stop"),
        ),
        (completion_body(finish="length"), Completion("Hi!", Usage(12, 3, cached_input_tokens=8), "length")),
        (
            completion_body(usage={"prompt_tokens": 5, "completion_tokens": 1}),
            Completion("Hi!", Usage(5, 1), "stop"),
        ),
        (completion_body(usage={}), Completion("Hi!", Usage(), "stop")),
        (
            completion_body(content=None, refusal="I can't help."),
            Completion("", Usage(12, 3, 0, 8), "stop", refusal="I can't help."),
        ),
        (completion_body(finish=None), Completion("Hi!", Usage(12, 3, 0, 8), "stop")),
    ],
)
def test_parse_completion(raw: bytes, expected: Completion) -> None:
    assert parse_completion(raw, errors) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", MalformedResponse),
        (b"[]", MalformedResponse),
        (b'{"choices": []}', MalformedResponse),
        (b'{"choices": [{"index": 0}]}', MalformedResponse),
        (completion_body(content=42), MalformedResponse),
        (b'{"error": {"type": "server_error", "message": "oops"}}', ServerError),  # an error in a 200 body
    ],
)
def test_parse_completion_failures(raw: bytes, expected: type[ProviderError]) -> None:
    with pytest.raises(expected):
        parse_completion(raw, errors)


# -- StreamParser ---------------------------------------------------------------------------------------


def chunk_event(content: str | None = None, finish: str | None = None, role: str | None = None) -> str:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return orjson.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).decode()


USAGE_EVENT = orjson.dumps(
    {
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}},
    }
).decode()


def run_parser(events: list[str]) -> tuple[list[Chunk], StreamParser]:
    parser = StreamParser(errors)
    chunks = [c for c in (parser.feed(e) for e in events) if c is not None]
    return chunks, parser


def test_stream_text_then_final_usage_and_finish_reason() -> None:
    events = [
        chunk_event("", role="assistant"),
        chunk_event("Hel"),
        chunk_event("lo"),
        chunk_event(finish="stop"),
    ]
    chunks, parser = run_parser([*events, USAGE_EVENT, "[DONE]"])
    assert chunks == [Chunk("Hel"), Chunk("lo")]
    assert parser.done
    assert parser.final() == Chunk("", Usage(input_tokens=7, output_tokens=2, cached_input_tokens=4), "stop")


def test_stream_without_usage_ends_with_zero_usage() -> None:
    _, parser = run_parser([chunk_event("x"), chunk_event(finish="length"), "[DONE]"])
    assert parser.done and parser.final() == Chunk("", Usage(), "length")


def test_stream_not_done_before_the_sentinel() -> None:
    _, parser = run_parser([chunk_event("x"), chunk_event(finish="stop"), USAGE_EVENT])
    assert not parser.done


def test_text_on_the_finishing_event_is_kept() -> None:
    chunks, parser = run_parser([chunk_event("end", finish="stop"), "[DONE]"])
    assert chunks == [Chunk("end")] and parser.final().finish_reason == "stop"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("{not json", MalformedResponse),
        ("[1]", MalformedResponse),
        ('{"choices": ["x"]}', MalformedResponse),
        ('{"choices": [{"delta": {"content": 5}}]}', MalformedResponse),
        ('{"error": {"type": "server_error", "message": "died"}}', ServerError),
        ('{"error": {"type": "rate_limit_error", "message": "slow"}}', RateLimited),
    ],
)
def test_stream_event_failures(event: str, expected: type[ProviderError]) -> None:
    with pytest.raises(expected):
        StreamParser(errors).feed(event)


@given(st.lists(st.text(min_size=1, max_size=12), max_size=20))
def test_any_token_sequence_round_trips(tokens: list[str]) -> None:
    chunks, parser = run_parser([*(chunk_event(t) for t in tokens), chunk_event(finish="stop"), "[DONE]"])
    assert "".join(c.text for c in chunks) == "".join(tokens)
    assert parser.done


# -- the HTTP exchange, over httpx.MockTransport --------------------------------------------------------

SSE_OK = (
    f"data: {chunk_event('', role='assistant')}\n\n"
    f"data: {chunk_event('Hi')}\n\n"
    f"data: {chunk_event('!')}\n\n"
    f"data: {chunk_event(finish='stop')}\n\n"
    f"data: {USAGE_EVENT}\n\n"
    "data: [DONE]\n\n"
).encode()


def provider_with(
    handler: Callable[[httpx.Request], httpx.Response], **cfg: Any
) -> tuple[OpenAIProvider, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return OpenAIProvider("mini", config(**cfg), client), client


async def test_complete_sends_the_right_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=completion_body())

    provider, client = provider_with(handler, headers={"OpenAI-Organization": "org-1"})
    async with client:
        completion = await provider.complete(req(max_output_tokens=5))
    assert completion.text == "Hi!" and completion.usage.cached_input_tokens == 8
    (sent,) = seen
    assert str(sent.url) == "https://api.test/v1/chat/completions"
    assert sent.method == "POST"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["openai-organization"] == "org-1"
    assert orjson.loads(sent.content)["max_completion_tokens"] == 5
    assert isinstance(provider, Provider)


async def test_trailing_slash_in_base_url() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=completion_body())

    provider, client = provider_with(handler, base_url="http://127.0.0.1:9/v1/")
    async with client:
        await provider.complete(req())
    assert seen == ["http://127.0.0.1:9/v1/chat/completions"]


async def test_stream_over_the_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert orjson.loads(request.content)["stream"] is True
        return httpx.Response(200, content=SSE_OK, headers={"content-type": "text/event-stream"})

    provider, client = provider_with(handler)
    async with client:
        chunks = [c async for c in provider.stream(req())]
    assert [c.text for c in chunks] == ["Hi", "!", ""]
    assert chunks[-1].usage == Usage(7, 2, cached_input_tokens=4)
    assert chunks[-1].finish_reason == "stop"


async def test_stream_cut_before_done_is_a_connection_error() -> None:
    cut = SSE_OK[: SSE_OK.index(b"data: [DONE]")]
    provider, client = provider_with(lambda request: httpx.Response(200, content=cut))
    async with client:
        with pytest.raises(ProviderConnectionError, match="stream ended before the final event"):
            [c async for c in provider.stream(req())]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (401, {}, AuthenticationError),
        (429, {"retry-after": "3"}, RateLimited),
        (503, {}, ServerError),
    ],
)
async def test_error_statuses(
    streamed: bool, status: int, headers: dict[str, str], expected: type[ProviderError]
) -> None:
    body = orjson.dumps({"error": {"message": f"bad key {KEY}", "type": "x"}})
    provider, client = provider_with(lambda request: httpx.Response(status, content=body, headers=headers))
    async with client:
        with pytest.raises(expected) as info:
            if streamed:
                [c async for c in provider.stream(req())]
            else:
                await provider.complete(req())
    assert info.value.status == status
    assert KEY not in str(info.value)
    assert "hello there" not in str(info.value)  # never the prompt
    if isinstance(info.value, RateLimited):
        assert info.value.retry_after_s == 3.0


async def test_transport_errors_are_mapped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    provider, client = provider_with(handler)
    async with client:
        with pytest.raises(ProviderConnectionError):
            await provider.complete(req())
        with pytest.raises(ProviderConnectionError):
            [c async for c in provider.stream(req())]


async def test_owned_client_is_closed_by_aclose() -> None:
    provider = OpenAIProvider("mini", config())
    await provider.aclose()
    with pytest.raises(RuntimeError, match="client has been closed"):
        await provider.complete(req())


async def test_shared_client_is_left_open() -> None:
    provider, client = provider_with(lambda request: httpx.Response(200, content=completion_body()))
    async with client:
        await provider.aclose()
        assert (await provider.complete(req())).text == "Hi!"


# -- tools, images, structured output, sampling controls -----------------------------------------------------

TOOL = Tool(
    "lookup", "Find a thing", '{"type": "object", "properties": {"q": {"type": "string"}}}', strict=True
)
FUNCTION = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Find a thing",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        "strict": True,
    },
}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"tools": [TOOL]}, {"tools": [FUNCTION]}),
        (
            {"tools": [TOOL], "tool_choice": ToolChoice(ToolMode.NONE)},
            {"tools": [FUNCTION], "tool_choice": "none"},
        ),
        (
            {"tools": [TOOL], "tool_choice": ToolChoice(ToolMode.REQUIRED), "parallel_tool_calls": False},
            {"tools": [FUNCTION], "tool_choice": "required", "parallel_tool_calls": False},
        ),
        (
            {"tools": [TOOL], "tool_choice": ToolChoice(ToolMode.TOOL, "lookup")},
            {"tools": [FUNCTION], "tool_choice": {"type": "function", "function": {"name": "lookup"}}},
        ),
        ({"json_object": True}, {"response_format": {"type": "json_object"}}),
        (
            {"json_schema": '{"type": "object"}', "json_schema_strict": False},
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": False},
                }
            },
        ),
        (
            {"stop": ["END"], "top_p": 0.5, "seed": 1, "presence_penalty": 0.1, "frequency_penalty": -0.1},
            {"stop": ["END"], "top_p": 0.5, "seed": 1, "presence_penalty": 0.1, "frequency_penalty": -0.1},
        ),
    ],
)
def test_every_field_passes_through(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    body = build_body(req(**kwargs), model="m", default_max_tokens=5, stream=False)
    assert {k: body[k] for k in expected} == expected


def test_messages_with_parts_tool_calls_and_results() -> None:
    messages = [
        Message(
            "user",
            "what",
            parts=[TextPart("what"), ImagePart(data=b"\x00\x01", mime_type="image/png", detail="low")],
        ),
        Message("assistant", "", tool_calls=[ToolCall("c1", "lookup", '{"q": "x"}')]),
        Message("tool", "found", tool_call_id="c1"),
    ]
    body = build_body(req(messages=messages), model="m", default_max_tokens=5, stream=False)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAE=", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
            ],
        },
        {"role": "tool", "content": "found", "tool_call_id": "c1"},
    ]


def test_parse_completion_with_tool_calls() -> None:
    raw = orjson.dumps(
        {
            "choices": [
                {
                    "message": {
                        "content": None,
                        "tool_calls": [
                            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                            {
                                "id": "b",
                                "type": "function",
                                "function": {"name": "g", "arguments": '{"x":1}'},
                            },
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ]
        }
    )
    assert parse_completion(raw, errors) == Completion(
        "", Usage(), "tool_calls", tool_calls=[ToolCall("a", "f", "{}"), ToolCall("b", "g", '{"x":1}')]
    )


def test_stream_tool_call_deltas_keep_openais_indices() -> None:
    parser = StreamParser(errors)
    events = [
        {"choices": [{"delta": {"role": "assistant", "content": None}}]},
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "a",
                                "type": "function",
                                "function": {"name": "f", "arguments": ""},
                            }
                        ]
                    }
                }
            ]
        },
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"x"'}}]}}]},
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]
                    }
                }
            ]
        },
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]},
        {"choices": [{"delta": {"refusal": "no"}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
    ]
    chunks = [parser.feed(orjson.dumps(e).decode()) for e in events]
    assert [c for c in chunks if c is not None] == [
        Chunk(tool_calls=[ToolCallDelta(0, "a", "f", "")]),
        Chunk(tool_calls=[ToolCallDelta(0, arguments='{"x"')]),
        Chunk(tool_calls=[ToolCallDelta(1, "b", "g", "{}")]),
        Chunk(tool_calls=[ToolCallDelta(0, arguments=":1}")]),
        Chunk(refusal="no"),
    ]
    assert parser.final().finish_reason == "tool_calls"


def test_a_tool_call_delta_without_an_index_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        StreamParser(errors).feed('{"choices": [{"delta": {"tool_calls": [{"id": "a"}]}}]}')
