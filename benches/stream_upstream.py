"""A cheap OpenAI-wire upstream that streams: every streamed chat completion gets N SSE chunks, T ms apart.

    python benches/stream_upstream.py --chunks 100 --interval-ms 20 [--port N]
    # prints `stream upstream listening on http://HOST:PORT`

Each `data:` event is the size of a real OpenAI chunk (~230 bytes: id, model, created, one delta of a few
characters), sent as one HTTP chunk of a chunked body, followed by a finish event, a usage event and
`[DONE]`. A non-streamed request gets benches/fast_upstream.py's canned JSON answer. One timer per
connection drives its stream, so 1,000 streams cost this process little more than the writes.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benches.*, when run as a script

from benches.fast_upstream import JSON_RESPONSE, NOT_FOUND

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _event(payload: dict[str, object]) -> bytes:
    data = b"data: " + orjson.dumps(payload) + b"\n\n"
    return b"%x\r\n%b\r\n" % (len(data), data)


def _chunk_event(i: int) -> bytes:
    return _event(
        {
            "id": "chatcmpl-bench0123456789",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-bench",
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": {"content": f" tok{i % 10}"}, "logprobs": None,
                         "finish_reason": None}],
        }
    )  # fmt: skip


CHUNKS = [_chunk_event(i) for i in range(10)]
TAIL = (
    _event({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "gpt-bench", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    + _event({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
              "model": "gpt-bench", "choices": [],
              "usage": {"prompt_tokens": 9, "completion_tokens": 100, "total_tokens": 109}})
    + b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
)  # fmt: skip


class _Http(asyncio.Protocol):
    chunks = 100
    interval_s = 0.02

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0 or self._transport is None:
            return
        head = bytes(buf[:end]).lower()
        length = 0
        at = head.find(b"content-length:")
        if at >= 0:
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end >= 0 else None])
        if len(buf) < end + 4 + length:
            return
        body = bytes(buf[end + 4 : end + 4 + length])
        del buf[: end + 4 + length]
        if not head.startswith(b"post ") or b"/chat/completions" not in head.split(b"\r\n", 1)[0]:
            self._transport.write(NOT_FOUND)
        elif b'"stream":true' in body.replace(b" ", b""):
            self._transport.write(HEAD)
            self._sent = 0
            self._tick()
        else:
            self._transport.write(JSON_RESPONSE)

    def _tick(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._sent >= self.chunks:
            transport.write(TAIL)
            self._timer = None
            return
        transport.write(CHUNKS[self._sent % 10])
        self._sent += 1
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.interval_s, self._tick) if self.interval_s > 0 else None
        if self._timer is None:
            loop.call_soon(self._tick)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, host, port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"stream upstream listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Streaming OpenAI-compatible upstream for benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    args = parser.parse_args()
    _Http.chunks = args.chunks
    _Http.interval_s = args.interval_ms / 1000.0
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
