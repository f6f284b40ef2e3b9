"""A minimal OpenAI-compatible upstream for bench_overhead.py: one canned chat completion, answered at once.

    python benches/fast_upstream.py [--port N]      # prints `fast upstream listening on http://HOST:PORT`

It answers every `POST .../chat/completions` on a keep-alive HTTP/1.1 connection with the same small JSON body
(non-streamed; a request with `"stream": true` gets the same answer as a short SSE stream). It parses only
what it must (the head's end, content-length, the `stream` flag), so it spends less CPU per request than
`tests.fakes.provider_server`: on a 2-core machine every cycle the upstream burns is taken from the client
and the proxy under test. Same upstream for every system measured, so the comparison stays fair.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import orjson

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
)
JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(ANSWER) + ANSWER
)


def _sse_response() -> bytes:
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello, world!"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}},
    ]
    body = b"".join(
        b"data: " + orjson.dumps({"id": "chatcmpl-bench", "model": "gpt-bench", **e}) + b"\n\n"
        for e in events
    )
    body += b"data: [DONE]\n\n"
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    )


SSE_RESPONSE = _sse_response()
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n\r\nnot found"


class _Http(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end]).lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else None])
            if len(buf) < end + 4 + length:
                break
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            if not head.startswith(b"post ") or b"/chat/completions" not in head.split(b"\r\n", 1)[0]:
                out.append(NOT_FOUND)
            elif b'"stream":true' in body.replace(b" ", b""):
                out.append(SSE_RESPONSE)
            else:
                out.append(JSON_RESPONSE)
        if out and self._transport is not None:
            self._transport.write(b"".join(out))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"fast upstream listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Canned OpenAI-compatible upstream for benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
