"""Both hosted providers against the real loopback fake provider, for every fault it can inject.

Each row: a fault spec, and what `complete()` and `stream()` must produce: the exception type (and
retry_after_s), or the text and usage. Then cancellation: whatever way a caller gives up, the upstream
must see its connection closed at once, and finished exchanges must keep their pooled connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from tests.fakes.provider_server import FakeProvider, RecordedRequest
from tiergate.config import ModelConfig
from tiergate.providers.anthropic import AnthropicProvider
from tiergate.providers.base import (
    AuthenticationError,
    BadRequest,
    ContentPolicy,
    MalformedResponse,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RequestTooLarge,
    ServerError,
)
from tiergate.providers.openai import OpenAIProvider
from tiergate.request import Chunk, Completion, Message, Request, Usage

KEY = "sk-test-integration-0123456789"
PROMPT = [Message("system", "be brief"), Message("user", "hello there")]  # 4 words: the fake's token count
REPLY = "Hello, world!"
TIMEOUT_MS = 400  # the read (and, for complete, total) timeout of every provider in this module
CLOSE_WITHIN_S = 0.1

Provider = OpenAIProvider | AnthropicProvider


def make_provider(wire: str, fake: FakeProvider, model: str, **cfg: Any) -> Provider:
    settings: dict[str, Any] = {
        "provider": wire,
        "model": model,
        "base_url": fake.url_openai if wire == "openai" else fake.url_anthropic,
        "api_key": SecretStr(KEY),
        "request_timeout_ms": TIMEOUT_MS,
        "connect_timeout_ms": 1000,
    } | cfg
    config = ModelConfig(**settings)
    if wire == "openai":
        return OpenAIProvider("mini", config)
    return AnthropicProvider("sonnet", config)


@contextlib.asynccontextmanager
async def provider(wire: str, fake: FakeProvider, model: str = "m", **cfg: Any) -> AsyncIterator[Provider]:
    p = make_provider(wire, fake, model, **cfg)
    try:
        yield p
    finally:
        await p.aclose()


async def run(p: Provider, mode: str) -> Completion:
    """complete(), or stream() folded into a Completion (checking that only the last chunk has usage)."""
    request = Request(task="t", messages=list(PROMPT))
    if mode == "complete":
        return await p.complete(request)
    chunks = [c async for c in p.stream(request)]
    assert chunks, "a stream yields at least its final chunk"
    *body, last = chunks
    assert all(c.usage is None and c.finish_reason is None for c in body)
    assert last.usage is not None and last.finish_reason is not None
    return Completion("".join(c.text for c in chunks), last.usage, last.finish_reason)


@dataclass(frozen=True)
class Row:
    fault: str
    error: type[ProviderError] | None = None  # None: success
    retry_after_s: float | None = None
    text: str = REPLY
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=4, output_tokens=4))
    finish: str = "stop"
    wires: tuple[str, ...] = ("openai", "anthropic")
    modes: tuple[str, ...] = ("complete", "stream")


ROWS = [
    Row("ok"),
    Row("ok;tokens=7;cached=3", text="Hello, world!Hello, world", usage=Usage(4, 7, cached_input_tokens=3)),
    Row("status:500", ServerError),
    Row("status:502", ServerError),
    Row("status:503", ServerError),
    Row("status:504", ServerError),
    Row("status:408", ServerError),
    Row("status:529", Overloaded),
    Row("status:429;retry_after=2", RateLimited, retry_after_s=2.0),
    Row("status:429;retry_after_ms=1500", RateLimited, retry_after_s=1.5),
    Row("status:429", RateLimited, retry_after_s=None),
    Row("status:400", BadRequest),
    Row("status:422", BadRequest),
    Row("status:401", AuthenticationError),
    Row("status:403", PermissionDenied),
    Row("status:404", ModelNotFound),
    Row("status:413", RequestTooLarge),
    Row("content_policy", ContentPolicy, wires=("openai",)),
    Row("latency:100"),
    Row("stall_first_byte:100"),
    Row("stall_first_byte", ProviderTimeout),
    Row("stall_mid_stream:100"),
    Row("stall_mid_stream:100;after=0"),
    Row("stall_mid_stream", ProviderTimeout),
    Row("stall_mid_stream;after=0", ProviderTimeout),
    Row("drop_mid_stream", ProviderConnectionError),
    Row("drop_mid_stream;after=0", ProviderConnectionError),
    Row("reset", ProviderConnectionError),
    Row("malformed_json", MalformedResponse),
    Row("malformed_sse", MalformedResponse),
    Row("drip:20"),
    Row("error_event", Overloaded),
    Row("error_event:rate_limit_error", RateLimited, retry_after_s=None),
    Row("error_event:api_error;after=0", ServerError),
]

CASES = [
    pytest.param(row, wire, mode, id=f"{wire}-{mode}-{row.fault}")
    for row in ROWS
    for wire in row.wires
    for mode in row.modes
]


@pytest.mark.parametrize(("row", "wire", "mode"), CASES)
async def test_fault(fake_provider: FakeProvider, row: Row, wire: str, mode: str) -> None:
    async with provider(wire, fake_provider, model=f"fault:{row.fault}") as p:
        if row.error is None:
            completion = await run(p, mode)
            assert completion == Completion(row.text, row.usage, row.finish)
        else:
            with pytest.raises(ProviderError) as info:
                await run(p, mode)
            assert type(info.value) is row.error, str(info.value)
            if isinstance(info.value, RateLimited):
                assert info.value.retry_after_s == row.retry_after_s
            assert KEY not in str(info.value)
            assert "hello there" not in str(info.value)
    (recorded,) = fake_provider.requests
    assert recorded.stream is (mode == "stream")


async def test_stall_times_out_on_the_configured_read_timeout(fake_provider: FakeProvider) -> None:
    async with provider("openai", fake_provider, model="fault:stall_first_byte", request_timeout_ms=200) as p:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await run(p, "stream")
        assert 0.18 <= time.monotonic() - started < 1.0


async def test_drip_arrives_token_by_token(fake_provider: FakeProvider) -> None:
    async with provider("anthropic", fake_provider, model="fault:drip:50") as p:
        arrivals = []
        async for chunk in p.stream(Request(task="t", messages=list(PROMPT))):
            if chunk.text:
                arrivals.append(time.monotonic())
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert len(arrivals) == 4
        assert all(gap >= 0.03 for gap in gaps), gaps


async def test_scripted_faults_then_ok(fake_provider: FakeProvider) -> None:
    fake_provider.script("status:503", "status:429;retry_after=1", model="gpt-x")
    async with provider("openai", fake_provider, model="gpt-x") as p:
        with pytest.raises(ServerError):
            await run(p, "complete")
        with pytest.raises(RateLimited):
            await run(p, "stream")
        assert (await run(p, "complete")).text == REPLY
    assert [r.fault.kind for r in fake_provider.requests] == ["status", "status", "ok"]


async def test_the_fake_records_what_was_sent_without_credentials(fake_provider: FakeProvider) -> None:
    async with provider("openai", fake_provider, model="gpt-x", headers={"X-Trace": "t1"}) as p:
        await run(p, "stream")
    async with provider("anthropic", fake_provider, model="claude-x", max_output_tokens=77) as p:
        await run(p, "complete")
    openai_req, anthropic_req = fake_provider.requests
    assert openai_req.path == "/v1/chat/completions"
    assert openai_req.headers["authorization"] == "[redacted]"
    assert openai_req.headers["x-trace"] == "t1"
    assert openai_req.body["stream_options"] == {"include_usage": True}
    assert openai_req.body["max_completion_tokens"] == 1024
    assert anthropic_req.path == "/v1/messages"
    assert anthropic_req.headers["x-api-key"] == "[redacted]"
    assert anthropic_req.headers["anthropic-version"] == "2023-06-01"
    assert anthropic_req.body["system"] == "be brief"
    assert anthropic_req.body["max_tokens"] == 77
    assert all(KEY not in str(r.headers) for r in fake_provider.requests)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_output_limit_reaches_the_server(fake_provider: FakeProvider, wire: str) -> None:
    async with provider(wire, fake_provider, model="m", max_output_tokens=2) as p:
        completion = await run(p, "stream")
    assert completion == Completion("Hello,", Usage(4, 2), "length")


# -- connection reuse and cancellation ------------------------------------------------------------------


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_finished_exchanges_reuse_one_connection(fake_provider: FakeProvider, wire: str) -> None:
    async with provider(wire, fake_provider) as p:
        for mode in ("complete", "stream", "stream", "complete", "stream"):
            await run(p, mode)
        connections = {r.connection for r in fake_provider.requests}
        assert len(connections) == 1
        assert all(r.client_closed_at is None for r in fake_provider.requests)
    # aclose() releases the pool: the server sees the idle connection go.
    await fake_provider.until(lambda rs: rs[-1].client_closed_at is not None, timeout=2)


def closed_within(recorded: RecordedRequest, since: float) -> float:
    assert recorded.client_closed_at is not None
    assert not recorded.server_closed
    return recorded.client_closed_at - since


async def cancel_when(
    fake: FakeProvider, task: asyncio.Task[Any], ready: Callable[[list[RecordedRequest]], bool]
) -> float:
    await fake.until(ready, timeout=2)
    await asyncio.sleep(0.05)  # let the client settle into waiting
    cancelled_at = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await fake.until(lambda rs: rs[0].client_closed_at is not None, timeout=2)
    return cancelled_at


def received(rs: list[RecordedRequest]) -> bool:
    return len(rs) >= 1


def responded(rs: list[RecordedRequest]) -> bool:
    return len(rs) >= 1 and rs[0].responded_at is not None


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("fault", "mode", "ready"),
    [
        ("stall_first_byte", "stream", received),
        ("stall_mid_stream;after=0", "stream", responded),
        ("stall_mid_stream;after=2", "stream", responded),
        ("stall_first_byte", "complete", received),
        ("stall_mid_stream", "complete", responded),
    ],
)
async def test_cancelling_the_consumer_closes_the_upstream_connection(
    fake_provider: FakeProvider,
    wire: str,
    fault: str,
    mode: str,
    ready: Callable[[list[RecordedRequest]], bool],
) -> None:
    fake_provider.script(fault, "ok")
    async with provider(wire, fake_provider, request_timeout_ms=30_000) as p:
        task = asyncio.create_task(run(p, mode))
        cancelled_at = await cancel_when(fake_provider, task, ready)
        assert closed_within(fake_provider.requests[0], cancelled_at) < CLOSE_WITHIN_S
        # The provider is still usable: a fresh connection serves the next request.
        assert (await run(p, mode)).text == REPLY
    first, second = fake_provider.requests
    assert first.connection != second.connection


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_closing_the_stream_early_closes_the_upstream_connection(
    fake_provider: FakeProvider, wire: str
) -> None:
    async with provider(wire, fake_provider, model="fault:drip:200") as p:
        stream = p.stream(Request(task="t", messages=list(PROMPT)))
        first = await anext(stream)
        assert first == Chunk("Hello")
        closed_at = time.monotonic()
        await stream.aclose()
        await fake_provider.until(lambda rs: rs[0].client_closed_at is not None, timeout=2)
        assert closed_within(fake_provider.requests[0], closed_at) < CLOSE_WITHIN_S
        assert fake_provider.requests[0].finished_at is None  # the server never got to finish


async def test_abandoned_connection_is_not_reused(fake_provider: FakeProvider) -> None:
    fake_provider.script("drip:100", "ok", "ok")
    async with provider("openai", fake_provider, request_timeout_ms=30_000) as p:
        stream = p.stream(Request(task="t", messages=list(PROMPT)))
        await anext(stream)
        await stream.aclose()
        await run(p, "stream")
        await run(p, "complete")
    first, second, third = fake_provider.requests
    assert first.connection != second.connection
    assert second.connection == third.connection


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_stopping_at_the_final_chunk_still_pools_the_connection(
    fake_provider: FakeProvider, wire: str
) -> None:
    """The dispatcher stops reading at the chunk carrying usage and closes the stream: the provider has
    already read the end of the body by then, so the connection goes back to the pool."""
    async with provider(wire, fake_provider) as p:
        for _ in range(3):
            async with contextlib.aclosing(p.stream(Request(task="t", messages=list(PROMPT)))) as stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        break
        assert len({r.connection for r in fake_provider.requests}) == 1
        assert all(r.client_closed_at is None for r in fake_provider.requests)
