"""Where the sidecar's CPU goes when it relays one SSE chunk: each stage of the relay timed on its own.

    .venv/bin/python benches/profile_stream_relay.py     # ~1 minute, writes results/profile_stream_relay.md

Every stage runs in this process, on CPU time (`time.process_time`, so other processes on a busy machine
do not count), over many chunks, and all stages run in the same invocation so their ratios are side by
side. The stages of one relayed chunk, in order:

  upstream read     socket read, HTTP chunked decoding and line splitting of a streamed response from
                    benches/stream_upstream.py (another process), through the client `hosted_http` uses
  SSE framing       `SSEDecoder.feed_line` over the event's lines
  JSON + domain     `openai.StreamParser.feed`: orjson decode, dict navigation, a `Chunk`
  sidecar layers    `Sidecar.stream` and dispatch over a provider yielding ready-made Chunks (generators,
                    bookkeeping per chunk)
  protobuf encode   `wire.chunk_to_proto` and serialisation of the message
  facade event      `openai_facade._sse`'s per-chunk event: a dict, orjson, chunked framing
  native relay      what replaces SSE framing, JSON + domain, the sidecar layers and the encoding for a plain
                    text delta since the relay (`relay.py`): `SseRelay.feed` + `relay_sse` (framing, the
                    text-delta check, the event from its template), one native call each

The end to end figure (sidecar CPU per relayed chunk from /proc, with the gRPC and HTTP writes, the event
loop and grpc's own threads) is benches/bench_streams.py's; the difference is what this table leaves out.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benches.*, when run as a script

import orjson

from benches.harness import PYTHON, machine, report_head, run_server, table, write_result
from benches.stream_upstream import CHUNKS
from tiergate.config import ModelConfig, parse, resolve
from tiergate.providers.http_errors import ErrorMapper
from tiergate.providers.openai import StreamParser
from tiergate.providers.sse import SSEDecoder
from tiergate.relay import SseRelay
from tiergate.request import Chunk, Message, Request, Usage
from tiergate.sidecar import Sidecar
from tiergate.wire import chunk_to_proto

BENCHES = Path(__file__).resolve().parent
STREAM_CHUNKS = 2000
ROUNDS = 5
# The upstream read stage: this many streams at once, each chunk in its own write (as a model emits them),
# so each chunk costs its own socket read and event-loop wake-up.
READ_STREAMS = 20
READ_CHUNKS = 100
READ_INTERVAL_MS = 2


def cpu_us_per(n: int, fn: Callable[[], None]) -> float:
    """Best of ROUNDS: CPU microseconds per item of `fn`, which handles `n` items."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        fn()
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


async def acpu_us_per(n: int, fn: Callable[[], Awaitable[None]]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        await fn()
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


def sse_lines() -> list[str]:
    payload = CHUNKS[0].split(b"\r\n")[1].decode()  # "data: {...}\n\n"
    return payload.split("\n")[:-1]  # ["data: {...}", ""]


async def read_fast_transport(url: str) -> None:
    """Before issue 16: httpx over the hand-written FastTransport, lines by `aiter_lines`."""
    import httpx
    from tiergate.providers.fast_transport import FastTransport  # type: ignore[import-not-found]

    async with (
        httpx.AsyncClient(transport=FastTransport()) as client,
        client.stream("POST", url, content=b'{"stream":true}') as response,
    ):
        async for _ in response.aiter_lines():
            pass


async def read_aiohttp(url: str) -> None:
    """After: `http_client.AiohttpClient`, the body in pieces as they arrive."""
    from tiergate.providers.hosted_http import timeouts
    from tiergate.providers.http_client import AiohttpClient

    client = AiohttpClient()
    try:
        async with client.post(
            url, b'{"stream":true}', {}, timeouts(ModelConfig(provider="openai", model="m"))
        ) as reply:
            async for _ in reply.chunks():
                pass
    finally:
        await client.aclose()


async def read_and_frame_aiohttp(url: str) -> None:
    """After: the same, with `SSEDecoder.feed` making the events (what hosted_http.EventStream does)."""
    from tiergate.providers.hosted_http import timeouts
    from tiergate.providers.http_client import AiohttpClient

    client = AiohttpClient()
    decoder = SSEDecoder()
    try:
        async with client.post(
            url, b'{"stream":true}', {}, timeouts(ModelConfig(provider="openai", model="m"))
        ) as reply:
            async for piece in reply.chunks():
                decoder.feed(piece)
    finally:
        await client.aclose()


class _MemoryProvider:
    """Yields STREAM_CHUNKS ready-made chunks, the last with usage: only tiergate's own layers run."""

    on_device = False

    def __init__(self, name: str) -> None:
        self.name = name

    async def complete(self, request: Request) -> object:
        raise NotImplementedError

    async def stream(self, request: Request) -> AsyncGenerator[Chunk, None]:
        chunk = Chunk(text=" tok")
        for _ in range(STREAM_CHUNKS - 1):
            yield chunk
        yield Chunk(text="", usage=Usage(9, STREAM_CHUNKS), finish_reason="stop")

    async def aclose(self) -> None:
        return None


async def sidecar_layers() -> Callable[[], Awaitable[None]]:
    config = resolve(parse({
        "listen": {"grpc": "127.0.0.1:0", "http": None},
        "models": {"m": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x",
                         "model": "m"}},
        "routes": {"default": {"chain": ["m"]}},
    }))  # fmt: skip
    sidecar = Sidecar(config, {"m": _MemoryProvider("m")})  # type: ignore[dict-item]
    request = Request(task="default", messages=[Message("user", "hi")], stream=True)

    async def run() -> None:
        async for _ in sidecar.stream(request):
            pass

    return run


async def main() -> None:
    lines = sse_lines()
    data = lines[0][len("data: ") :]
    errors = ErrorMapper("m")
    rows: list[tuple[str, float]] = []

    def sse_framing() -> None:
        decoder = SSEDecoder()
        for _ in range(STREAM_CHUNKS):
            for line in lines:
                decoder.feed_line(line)

    def json_domain() -> None:
        parser = StreamParser(errors)
        for _ in range(STREAM_CHUNKS):
            parser.feed(data)

    def protobuf() -> None:
        chunk = Chunk(text=" tok3")
        for _ in range(STREAM_CHUNKS):
            chunk_to_proto(chunk, None).SerializeToString()

    def facade_event() -> None:
        head = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1}
        for _ in range(STREAM_CHUNKS):
            body = {"index": 0, "delta": {"content": " tok3"}, "finish_reason": None, "logprobs": None}
            event = b"data: " + orjson.dumps({**head, "model": "m", "choices": [body]}) + b"\n\n"
            b"%x\r\n%b\r\n" % (len(event), event)

    def native_relay() -> None:
        relay = SseRelay()
        event = ("\n".join(lines) + "\n").encode()  # "data: {...}\n\n"
        prefix, suffix = b'data: {"id":"chatcmpl-x","choices":[{"delta":{"content":', b"}}]}\n\n"
        for _ in range(STREAM_CHUNKS):
            relay.feed(event)
            relay.relay_sse(prefix, suffix)
        relay.take_text()

    with ExitStack() as stack:
        upstream = stack.enter_context(
            run_server(
                "upstream",
                [PYTHON, str(BENCHES / "stream_upstream.py"), "--chunks", str(READ_CHUNKS),
                 "--interval-ms", str(READ_INTERVAL_MS)],
                r"listening on (http://\S+)",
            )
        )  # fmt: skip
        url = upstream.found.group(1) + "/v1/chat/completions"
        n = READ_STREAMS * READ_CHUNKS

        def streams(read: Callable[[str], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                await asyncio.gather(*(read(url) for _ in range(READ_STREAMS)))

            return run

        try:
            rows.append(("upstream read, lines: httpx + FastTransport (before)",
                         await acpu_us_per(n, streams(read_fast_transport))))  # fmt: skip
        except ImportError:
            print("FastTransport is gone (issue 16): its row is left out", file=sys.stderr)
        rows.append(("upstream read, pieces: aiohttp (after)",
                     await acpu_us_per(n, streams(read_aiohttp))))  # fmt: skip
        rows.append(("upstream read + SSE framing from bytes: aiohttp + SSEDecoder.feed (after)",
                     await acpu_us_per(n, streams(read_and_frame_aiohttp))))  # fmt: skip
    framing = "SSE framing from lines (SSEDecoder.feed_line; native since the relay)"
    rows.append((framing, cpu_us_per(STREAM_CHUNKS, sse_framing)))
    rows.append(("JSON decode + domain (StreamParser.feed)", cpu_us_per(STREAM_CHUNKS, json_domain)))
    rows.append(
        (
            "sidecar layers (Sidecar.stream + dispatch)",
            await acpu_us_per(STREAM_CHUNKS, await sidecar_layers()),
        )
    )
    rows.append(("protobuf encode (chunk_to_proto + serialise)", cpu_us_per(STREAM_CHUNKS, protobuf)))
    rows.append(("facade SSE event (dict + orjson + chunk framing)", cpu_us_per(STREAM_CHUNKS, facade_event)))
    rows.append(
        (
            "native relay (SseRelay.feed + relay_sse): replaces framing, JSON, layers, event",
            cpu_us_per(STREAM_CHUNKS, native_relay),
        )
    )

    report = report_head("Profile: CPU per relayed SSE chunk, stage by stage", machine())
    report += [
        f"Each stage handles {STREAM_CHUNKS} chunks in this process, best of {ROUNDS} rounds, on process CPU",
        "time (other processes on the shared machine do not count). All rows are from the same run. The",
        f"upstream rows read {READ_STREAMS} concurrent streams of {READ_CHUNKS} chunks sent "
        f"{READ_INTERVAL_MS} ms apart (one socket read and event-loop wake-up per chunk, as in production);",
        "the others run on data in memory.",
        "",
        *table(["stage", "CPU µs per chunk"], [(name, f"{us:.1f}") for name, us in rows]),
        "",
    ]
    write_result("profile_stream_relay", report)


if __name__ == "__main__":
    asyncio.run(main())
