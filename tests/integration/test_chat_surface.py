"""The whole chat surface through the official `openai` SDK against the facade, with an OpenAI-wire upstream
and, through translation, an Anthropic-wire upstream (the fake provider, speaking each real wire format):
a full tool loop, a forced tool, tool_choice none, parallel tool calls, an image part, json_schema strict,
unary and streamed. What reached the Anthropic upstream is checked against the `anthropic` SDK's own types,
and the fake's Anthropic stream event by event with them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import openai
import orjson
import pytest
from anthropic import types as anthropic_types
from pydantic import TypeAdapter

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

ROUTES = ("openai", "anthropic")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
    "required": ["city", "celsius"],
    "additionalProperties": False,
}
_BLOCKS = TypeAdapter(list[anthropic_types.ContentBlockParam])
_TOOLS = TypeAdapter(list[anthropic_types.ToolParam])
_CHOICE = TypeAdapter(anthropic_types.ToolChoiceParam)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    """This module's own fake: JSON-schema requests get JSON sampled from the schema."""
    with FakeProvider(sample_json=True) as server:
        yield server


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    config: dict[str, Any] = {
        "models": {
            "gpt": {"provider": "openai", "base_url": fake.url_openai, "model": "gpt-x", "api_key": "k"},
            "textonly": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "text-x",
                "api_key": "k",
                "vision": False,
            },
            "claude": {
                "provider": "anthropic",
                "base_url": fake.url_anthropic,
                "model": "claude-x",
                "api_key": "k",
            },
        },
        "routes": {
            "default": {"chain": ["gpt"]},
            "openai": {"chain": ["gpt"]},
            "anthropic": {"chain": ["claude"]},
            "mixed": {"chain": ["textonly", "gpt"]},
            "textonly": {"chain": ["textonly"]},
        },
    }
    with run_sidecar(config, tmp_path_factory.mktemp("chat")) as proc:
        yield proc


@pytest.fixture
def client(sidecar: SidecarProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"http://{sidecar.http_address}/v1", api_key="unused", max_retries=0) as c:
        yield c


def upstream(fake: FakeProvider) -> dict[str, Any]:
    """The body of the last request the fake provider received; an Anthropic one checked against the SDK's
    types (content blocks, tools, tool choice)."""
    body: dict[str, Any] = fake.requests[-1].body
    if "/v1/messages" in fake.requests[-1].path:
        for message in body["messages"]:
            if isinstance(message["content"], list):
                _BLOCKS.validate_python(message["content"])
        if "tools" in body:
            _TOOLS.validate_python(body["tools"])
        if "tool_choice" in body:
            _CHOICE.validate_python(body["tool_choice"])
    return body


def streamed(client: openai.OpenAI, **kwargs: Any) -> tuple[str, dict[int, dict[str, str]], str | None]:
    """(text, tool calls by index, finish_reason) of a streamed answer, checking each delta's shape."""
    text, calls, finish = "", {}, None
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        assert chunk.id.startswith("chatcmpl-") and chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            assert choice.logprobs is None
            text += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                if delta.id:
                    assert not call["id"], "a call's id comes once, with its first delta"
                    call["id"] = delta.id
                    assert delta.type == "function"
                if delta.function and delta.function.name:
                    call["name"] = delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
            finish = choice.finish_reason or finish
    return text, calls, finish


@pytest.mark.parametrize("route", ROUTES)
def test_full_tool_loop_unary(client: openai.OpenAI, fake: FakeProvider, route: str) -> None:
    first = client.chat.completions.create(model=route, messages=ASK, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.refusal is None and choice.logprobs is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = upstream(fake)
    if route == "anthropic":
        assert sent["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]  # type: ignore[index]
    else:
        assert sent["tools"] == [WEATHER]

    loop = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    final = client.chat.completions.create(model=route, messages=loop, tools=[WEATHER])
    assert final.choices[0].message.content == "Tool result: 18C and sunny"
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    sent = upstream(fake)
    if route == "anthropic":
        assert sent["messages"][1]["content"] == [
            {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}}
        ]
        assert sent["messages"][2] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}],
        }
    else:
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}


@pytest.mark.parametrize("route", ROUTES)
def test_full_tool_loop_streamed(client: openai.OpenAI, fake: FakeProvider, route: str) -> None:
    text, calls, finish = streamed(client, model=route, messages=ASK, tools=[WEATHER])
    assert (text, finish) == ("", "tool_calls")
    assert list(calls) == [0] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assistant = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": calls[0]["id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": calls[0]["arguments"]},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C"}
    text, calls, finish = streamed(client, model=route, messages=[*ASK, assistant, result], tools=[WEATHER])
    assert (text, calls, finish) == ("Tool result: 18C", {}, "stop")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_keep_their_indices(
    client: openai.OpenAI, fake: FakeProvider, route: str, stream: bool
) -> None:
    if stream:
        _, calls, finish = streamed(client, model=route, messages=ASK, tools=[WEATHER, TIME])
        found = [(i, c["name"], json.loads(c["arguments"])) for i, c in sorted(calls.items())]
        ids = [c["id"] for c in calls.values()]
    else:
        choice = client.chat.completions.create(model=route, messages=ASK, tools=[WEATHER, TIME]).choices[0]
        finish = choice.finish_reason
        found = [
            (i, c.function.name, json.loads(c.function.arguments))
            for i, c in enumerate(choice.message.tool_calls or [])
        ]
        ids = [c.id for c in choice.message.tool_calls or []]
    assert finish == "tool_calls"
    assert found == [(0, "get_weather", {"city": "Paris"}), (1, "get_time", {"zone": "UTC"})]
    assert len(set(ids)) == 2 and all(ids)
    # parallel_tool_calls: false passes through (Anthropic: disable_parallel_tool_use), and one call comes.
    one = client.chat.completions.create(
        model=route, messages=ASK, tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    assert [c.function.name for c in one.choices[0].message.tool_calls or []] == ["get_weather"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("stream", [False, True])
def test_forced_tool(client: openai.OpenAI, fake: FakeProvider, route: str, stream: bool) -> None:
    forced: Any = {"type": "function", "function": {"name": "get_time"}}
    if stream:
        _, calls, _ = streamed(client, model=route, messages=ASK, tools=[WEATHER, TIME], tool_choice=forced)
        names = [c["name"] for c in calls.values()]
    else:
        answer = client.chat.completions.create(
            model=route, messages=ASK, tools=[WEATHER, TIME], tool_choice=forced
        )
        names = [c.function.name for c in answer.choices[0].message.tool_calls or []]
    assert names == ["get_time"]
    choice = upstream(fake)["tool_choice"]
    assert choice == ({"type": "tool", "name": "get_time"} if route == "anthropic" else forced)


@pytest.mark.parametrize("route", ROUTES)
def test_tool_choice_none_answers_text(client: openai.OpenAI, fake: FakeProvider, route: str) -> None:
    answer = client.chat.completions.create(model=route, messages=ASK, tools=[WEATHER], tool_choice="none")
    assert answer.choices[0].message.content == fake.reply_text and not answer.choices[0].message.tool_calls
    assert answer.choices[0].finish_reason == "stop"
    text, calls, _ = streamed(client, model=route, messages=ASK, tools=[WEATHER], tool_choice="none")
    assert (text, calls) == (fake.reply_text, {})
    assert upstream(fake)["tool_choice"] == ({"type": "none"} if route == "anthropic" else "none")


@pytest.mark.parametrize("route", ROUTES)
def test_image_parts_reach_the_upstream(client: openai.OpenAI, fake: FakeProvider, route: str) -> None:
    content: Any = [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://images.example/cat.png", "detail": "low"}},
    ]
    answer = client.chat.completions.create(model=route, messages=[{"role": "user", "content": content}])
    assert answer.choices[0].message.content == fake.reply_text
    sent = upstream(fake)["messages"][0]["content"]
    if route == "anthropic":
        assert sent == [
            {"type": "text", "text": "What is in these pictures?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://images.example/cat.png"}},
        ]
    else:
        assert sent == content


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_strict(client: openai.OpenAI, fake: FakeProvider, route: str, stream: bool) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True}}
    if stream:
        text, calls, finish = streamed(client, model=route, messages=ASK, response_format=fmt)
        assert calls == {}
    else:
        choice = client.chat.completions.create(model=route, messages=ASK, response_format=fmt).choices[0]
        text, finish = choice.message.content or "", choice.finish_reason
        assert not choice.message.tool_calls
    assert json.loads(text) == {"city": "Paris", "celsius": 1} and finish == "stop"
    sent = upstream(fake)
    if route == "anthropic":  # a forced tool whose input schema is the schema
        assert sent["tool_choice"] == {"type": "tool", "name": "json_answer"}
        assert sent["tools"][0]["input_schema"] == SCHEMA
    else:
        assert sent["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": SCHEMA, "strict": True},
        }


def test_sampling_controls_pass_through(client: openai.OpenAI, fake: FakeProvider) -> None:
    client.chat.completions.create(
        model="openai",
        messages=ASK,
        stop=["END", "STOP"],
        top_p=0.5,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
    )
    sent = upstream(fake)
    assert {k: sent[k] for k in ("stop", "top_p", "seed", "presence_penalty", "frequency_penalty")} == {
        "stop": ["END", "STOP"],
        "top_p": 0.5,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
    }
    client.chat.completions.create(model="anthropic", messages=ASK, stop="END", top_p=0.5)
    sent = upstream(fake)
    assert (sent["stop_sequences"], sent["top_p"]) == (["END"], 0.5)


@pytest.mark.parametrize("route", ROUTES)
def test_the_answer_has_every_field_the_spec_requires(
    sidecar: SidecarProcess, client: openai.OpenAI, route: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(model=route, messages=ASK)
    body = json.loads(raw.text)
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and isinstance(body["system_fingerprint"], str)
    [choice] = body["choices"]
    assert choice["logprobs"] is None and choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert {"role", "content", "refusal"} <= choice["message"].keys() and choice["message"]["refusal"] is None
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_the_fakes_anthropic_stream_is_the_real_wire_event_by_event(fake: FakeProvider) -> None:
    """The Anthropic events the sidecar was tested against, parsed one by one with the `anthropic` SDK."""
    body = {
        "model": "claude-x",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}],  # type: ignore[index]
    }
    events = TypeAdapter(anthropic_types.RawMessageStreamEvent)
    kinds = []
    with httpx.stream("POST", f"{fake.url_anthropic}/v1/messages", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = events.validate_python(orjson.loads(line[6:]))
                kinds.append(event.type if event.type != "content_block_delta" else event.delta.type)
    assert kinds == [
        "message_start", "content_block_start", "input_json_delta", "input_json_delta", "input_json_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip


def test_grpc_task_naming_no_route_is_not_found_and_only_empty_means_default(sidecar: SidecarProcess) -> None:
    """The config has a `default` route: a misspelt task must still not fall back to it."""
    hello = [pb.Message(role="user", content="Say hello")]
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.Complete(pb.CompleteRequest(task="anthropc", messages=hello), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "'anthropc' names no route" in (
        info.value.details() or ""
    )
    assert sidecar.stub.Complete(pb.CompleteRequest(messages=hello), timeout=10).decision.route == "default"


def test_a_model_without_vision_is_skipped_with_its_reason(client: openai.OpenAI, fake: FakeProvider) -> None:
    image: Any = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}
    ]
    raw = client.chat.completions.with_raw_response.create(model="mixed", messages=image)
    decision = json.loads(raw.headers["x-tiergate-decision"])
    assert decision["served_by"] == "gpt"
    assert decision["skipped"] == [{"model": "textonly", "reason": "cannot take images"}]
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError, match="textonly: cannot take images"):
        client.chat.completions.create(model="textonly", messages=image)
    assert len(fake.requests) == before  # nothing forwarded
