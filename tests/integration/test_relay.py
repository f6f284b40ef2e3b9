"""The relay (`relay.py`): plain text deltas go from the provider's bytes straight to the client, natively.

A real upstream on loopback, speaking the OpenAI or the Anthropic wire, streams a scripted answer — text with
quotes, escapes, non-ASCII and newlines, a comment line, CRLF line ends, a tool call (and on OpenAI a
refusal) in the middle, the finish, usage, the end — to a sidecar with the real gRPC listener and the HTTP
facade. What the client receives must be exactly what the parser path gives (the same run with relaying
switched off), and the relay must really have carried text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from tests.integration.inprocess import serve
from tiergate.providers import anthropic as anthropic_provider
from tiergate.providers import openai as openai_provider
from tiergate.providers.hosted_http import EventStream
from tiergate.server.http import HttpServer
from tiergate.server.openai_facade import OpenAIFacade
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.wire import DECISION_TRAILER


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        "usage": None,
    }


TEXTS = ["Hel", 'lo "wörld"\n', "tab\there \\ back", "∑ 😀", "\u0001ctl"]
TOOL = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":'}}
EVENTS: list[bytes] = [
    json.dumps(_chunk({"role": "assistant", "content": ""})).encode(),
    *(json.dumps(_chunk({"content": t}), ensure_ascii=i % 2 == 0).encode() for i, t in enumerate(TEXTS)),
    json.dumps(_chunk({"tool_calls": [TOOL]})).encode(),
    json.dumps(_chunk({"content": " after the call"})).encode(),
    json.dumps(_chunk({"refusal": "no"})).encode(),
    json.dumps(_chunk({"content": " the end"})).encode(),
    json.dumps(_chunk({}, finish="stop")).encode(),
    json.dumps(
        {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 11}}
    ).encode(),
    b"[DONE]",
]


def _anthropic(kind: str, **fields: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + json.dumps({"type": kind, **fields}).encode()


def _text(index: int, text: str) -> bytes:
    return _anthropic("content_block_delta", index=index, delta={"type": "text_delta", "text": text})


TOOL_BLOCK = {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
ANTHROPIC_EVENTS: list[bytes] = [
    _anthropic("message_start", message={"id": "msg_1", "usage": {"input_tokens": 7, "output_tokens": 1}}),
    _anthropic("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    _anthropic("ping"),
    *(_text(0, t) for t in TEXTS),
    _anthropic("content_block_stop", index=0),
    _anthropic("content_block_start", index=1, content_block=TOOL_BLOCK),
    _anthropic("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"a":'}),
    _anthropic("content_block_stop", index=1),
    _anthropic("content_block_start", index=2, content_block={"type": "text", "text": ""}),
    _text(2, " after the call"),
    _text(2, ""),
    _text(2, " the end"),
    _anthropic("content_block_stop", index=2),
    _anthropic("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 11}),
    _anthropic("message_stop"),
]  # fmt: skip


def _scripted(events: list[bytes]) -> Callable[[web.Request], Any]:
    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body["stream"] is True
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, data in enumerate(events):
            end = b"\r\n" if i % 3 == 0 else b"\n"
            if i == 4:
                await response.write(b": keep-alive" + end + end)
            await response.write(data.replace(b"\n", end) + end + end)
        await response.write_eof()
        return response

    return answer


@asynccontextmanager
async def upstream() -> AsyncIterator[str]:
    """Both wires on one server: OpenAI's base URL is `{url}/v1`, Anthropic's `{url}`."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _scripted([b"data: " + e for e in EVENTS]))
    app.router.add_post("/v1/messages", _scripted(ANTHROPIC_EVENTS))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


WIRE = "openai"  # the wire of the model the tests configure (parametrized by the `wire` fixture)


def config(url: str) -> dict[str, Any]:
    base_url = f"{url}/v1" if WIRE == "openai" else url
    model = {"provider": WIRE, "base_url": base_url, "model": "test-model", "api_key": "k"}
    return {"models": {"m": model}, "routes": {"default": {"chain": ["m"]}}}


@pytest.fixture(params=["openai", "anthropic"])
def wire(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(__import__(__name__, fromlist=["WIRE"]), "WIRE", request.param)
    return str(request.param)


def _switch_off(wire: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relaying off: the parser names no wire."""
    if wire == "openai":
        monkeypatch.setattr(openai_provider.StreamParser, "relays", None)
        return
    init = anthropic_provider.StreamParser.__init__

    def no_relay(self: anthropic_provider.StreamParser, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.relays = None

    monkeypatch.setattr(anthropic_provider.StreamParser, "__init__", no_relay)


@pytest.fixture
def relayed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The text each `EventStream.relay` call forwarded."""
    texts: list[str] = []
    relay = EventStream.relay

    async def watched(self: EventStream, sink: Any, wire: str) -> str:
        text = await relay(self, sink, wire)
        texts.append(text)
        return text

    monkeypatch.setattr(EventStream, "relay", watched)
    return texts


def _grpc_view(chunks: list[pb.CompleteChunk]) -> list[Any]:
    view = []
    for c in chunks:
        calls = [(t.index, t.id, t.name, t.arguments) for t in c.tool_calls]
        usage = (c.usage.input_tokens, c.usage.output_tokens) if c.HasField("usage") else None
        view.append((c.text, c.refusal, calls, c.finish_reason, usage, c.decision.served_by))
    return view


async def _grpc_stream(base_url: str) -> list[Any]:
    async with serve(config(base_url)) as side:
        ask = pb.CompleteRequest(messages=[pb.Message(role="user", content="go")])
        return _grpc_view([c async for c in side.stub.StreamComplete(ask)])


async def _http_stream(base_url: str, include_usage: bool) -> list[dict[str, Any]]:
    async with serve(config(base_url)) as side:
        server = HttpServer({})
        _, port = await server.start("127.0.0.1:0")
        server.mount(OpenAIFacade(side.sidecar))
        body: dict[str, Any] = {
            "model": "default",
            "stream": True,
            "messages": [{"role": "user", "content": "go"}],
        }
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        events = []
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as reply:
                    raw = await reply.read()
        finally:
            await server.stop()
        for block in raw.decode().split("\n\n"):
            if not block:
                continue
            assert block.startswith("data: ")
            data = block.removeprefix("data: ")
            if data == "[DONE]":
                events.append({"done": True})
                continue
            event = json.loads(data)
            assert event.pop("id").startswith("chatcmpl-")
            event.pop("created")
            event.pop("tiergate_decision", None)  # its timings differ run to run
            events.append(event)
        return events


async def _both(
    run: Callable[[str], Any], wire: str, relayed: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Any]:
    async with upstream() as url:
        with_relay = await run(url)
        carried = "".join(relayed)
        _switch_off(wire, monkeypatch)
        relayed.clear()
        without = await run(url)
    assert relayed == []  # switched off, nothing went the native way
    # The relay carried the text deltas between the first chunk and each event for the parser.
    assert carried == "".join(TEXTS[1:]) + " after the call" + " the end"
    return with_relay, without


async def test_grpc_client_gets_what_the_parser_path_gives(
    wire: str, relayed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_relay, without = await _both(_grpc_stream, wire, relayed, monkeypatch)
    assert with_relay == without
    texts = [view[0] for view in with_relay if view[0]]
    assert texts == [*TEXTS, " after the call", " the end"]  # one message per delta, in order
    calls = [call for view in with_relay for call in view[2]]
    assert [c[2] for c in calls if c[2]] == ["f"] and "".join(c[3] for c in calls) == '{"a":'
    assert [view[1] for view in with_relay if view[1]] == (["no"] if wire == "openai" else [])
    assert with_relay[-1][3:] == ("stop", (7, 11), "m")


@pytest.mark.parametrize("include_usage", [False, True])
async def test_http_facade_events_are_those_of_the_parser_path(
    wire: str, relayed: list[str], monkeypatch: pytest.MonkeyPatch, include_usage: bool
) -> None:
    with_relay, without = await _both(
        lambda url: _http_stream(url, include_usage), wire, relayed, monkeypatch
    )
    assert with_relay == without
    contents = [e["choices"][0]["delta"].get("content") for e in with_relay if e.get("choices")]
    assert [c for c in contents if c] == [*TEXTS, " after the call", " the end"]
    assert with_relay[-1] == {"done": True}


# -- a client that goes away while text is being relayed ----------------------------------------------------


@asynccontextmanager
async def endless_upstream() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An OpenAI-wire upstream streaming text every 5 ms until its client (the sidecar) goes away."""
    gone = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for _ in range(10_000):
                await response.write(b"data: " + json.dumps(_chunk({"content": "tok "})).encode() + b"\n\n")
                await asyncio.sleep(0.005)
        except (ConnectionError, asyncio.CancelledError):
            gone.set()
            raise
        return response

    app = web.Application(handler_args={"handler_cancellation": True})
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", gone
    finally:
        await runner.cleanup()


@pytest.fixture
def relaying(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set once an `EventStream.relay` has started (it may never return: these tests end streams midway)."""
    started = asyncio.Event()
    relay = EventStream.relay

    async def watched(self: EventStream, sink: Any, wire: str) -> str:
        started.set()
        return await relay(self, sink, wire)

    monkeypatch.setattr(EventStream, "relay", watched)
    return started


@pytest.mark.parametrize("door", ["grpc", "http"])
async def test_a_client_leaving_mid_relay_closes_the_upstream_and_is_not_the_models_fault(
    door: str, relaying: asyncio.Event
) -> None:
    async with endless_upstream() as (url, gone), serve(config(url)) as side:
        if door == "grpc":
            call = side.stub.StreamComplete(
                pb.CompleteRequest(messages=[pb.Message(role="user", content="go")])
            )
            for _ in range(20):
                await call.read()
            call.cancel()
        else:
            server = HttpServer({})
            _, port = await server.start("127.0.0.1:0")
            server.mount(OpenAIFacade(side.sidecar))
            body = {"model": "default", "stream": True, "messages": [{"role": "user", "content": "go"}]}
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            raw = json.dumps(body).encode()
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (len(raw), raw)
            )
            received = b""
            while received.count(b"tok ") < 20:
                received += await reader.read(65536)
            writer.transport.abort()  # gone, mid-stream
        await asyncio.wait_for(gone.wait(), 10)  # the upstream's connection was closed
        if door == "http":
            await server.stop()
        breaker = side.sidecar.breakers["m"].metrics()
        assert breaker["failed"] == 0
    assert relaying.is_set()  # the client left while the text went the relay's way


async def test_a_deadline_passing_mid_relay_ends_the_stream_with_its_status_and_closes_the_upstream(
    relaying: asyncio.Event,
) -> None:
    async with endless_upstream() as (url, gone), serve(config(url)) as side:
        ask = pb.CompleteRequest(messages=[pb.Message(role="user", content="go")])
        call = side.stub.StreamComplete(ask, timeout=1.0)
        texts = []
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for chunk in call:
                texts.append(chunk.text)
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        trailers = dict(ended.value.trailing_metadata() or ())
        assert (
            DECISION_TRAILER in trailers
        )  # the sidecar's own answer, with its decision, not the client's timer
        assert relaying.is_set() and len(texts) > 20  # it ran out while the text went the relay's way
        await asyncio.wait_for(gone.wait(), 10)  # and the upstream's connection was closed
