"""Reference gRPC servers for bench_overhead.py: what tiergate's added latency is measured against.

    python benches/grpc_reference_server.py floor
        tiergate's own service (`tiergate.v1.Tiergate/Complete`) answering at once with a canned response:
        the round trip of grpc.aio itself, the floor under any Python gRPC sidecar.
    python benches/grpc_reference_server.py passthrough --upstream http://127.0.0.1:PORT/v1
        a naive pass-through: the handler awaits one POST on a long-lived httpx.AsyncClient to the
        upstream's /chat/completions and copies the answer into the response. No analysis, no routing,
        no breaker, no decision record: what tiergate's request path costs beyond this is its own logic.

    python benches/grpc_reference_server.py passthrough-raw --upstream http://127.0.0.1:PORT/v1
        the same pass-through over a hand-written HTTP/1.1 keep-alive client on asyncio streams (a stack
        of idle connections, a new one when none is idle, so no request waits for another; content-length
        bodies only: enough for benches/fast_upstream.py, not a general client). It shows
        what the HTTP client costs a pass-through: the difference to `passthrough` is httpx's share.

All print `serving gRPC on HOST:PORT` to stderr once listening, like `tiergate serve`, and stop on SIGTERM.
Only the project venv's packages are used (grpcio, httpx, orjson) and tiergate's generated stubs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc
import httpx
import orjson

from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

CANNED = pb.CompleteResponse(
    text="Hello, world!",
    usage=pb.Usage(input_tokens=9, output_tokens=4),
    decision=pb.Decision(route="default", served_by="floor"),
    finish_reason="stop",
)


class Floor(pb_grpc.TiergateServicer):
    async def Complete(
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteResponse:
        return CANNED


class PassThrough(pb_grpc.TiergateServicer):
    def __init__(self, upstream: str, model: str) -> None:
        self._url = upstream.rstrip("/") + "/chat/completions"
        self._model = model
        self._client = httpx.AsyncClient(
            timeout=30.0, limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)
        )

    async def Complete(
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteResponse:
        body = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_completion_tokens": request.max_output_tokens or 1024,
        }
        response = await self._client.post(
            self._url, content=orjson.dumps(body), headers={"content-type": "application/json"}
        )
        if response.status_code != 200:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"upstream answered {response.status_code}")
        data = orjson.loads(response.content)
        usage = data.get("usage") or {}
        return pb.CompleteResponse(
            text=data["choices"][0]["message"]["content"],
            usage=pb.Usage(
                input_tokens=usage.get("prompt_tokens", 0), output_tokens=usage.get("completion_tokens", 0)
            ),
            decision=pb.Decision(route="default", served_by="passthrough"),
            finish_reason=data["choices"][0].get("finish_reason") or "stop",
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class RawPassThrough(pb_grpc.TiergateServicer):
    """The pass-through with the least HTTP client there can be: asyncio streams and a stack of idle ones."""

    def __init__(self, upstream: str, model: str) -> None:
        url = httpx.URL(upstream.rstrip("/") + "/chat/completions")
        self._host, self._port = url.host, url.port or 80
        self._head = (
            f"POST {url.raw_path.decode()} HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n"
            "content-type: application/json\r\ncontent-length: "
        ).encode()
        self._model = model
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _exchange(self, body: bytes) -> bytes:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self._host, self._port)
        writer.write(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        at = lower.find(b"content-length:") + 15
        data = await reader.readexactly(int(lower[at : lower.find(b"\r\n", at)]))
        if not head.startswith(b"HTTP/1.1 200"):
            writer.close()
            raise RuntimeError(f"upstream answered {head.split(b' ', 2)[1].decode()}")
        self._idle.append((reader, writer))
        return data

    async def Complete(
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteResponse:
        body = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_completion_tokens": request.max_output_tokens or 1024,
        }
        data = orjson.loads(await self._exchange(orjson.dumps(body)))
        usage = data.get("usage") or {}
        return pb.CompleteResponse(
            text=data["choices"][0]["message"]["content"],
            usage=pb.Usage(
                input_tokens=usage.get("prompt_tokens", 0), output_tokens=usage.get("completion_tokens", 0)
            ),
            decision=pb.Decision(route="default", served_by="passthrough-raw"),
            finish_reason=data["choices"][0].get("finish_reason") or "stop",
        )


async def serve(servicer: pb_grpc.TiergateServicer, listen: str) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_TiergateServicer_to_server(servicer, server)
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"reference server: serving gRPC on {listen.rsplit(':', 1)[0]}:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(1.0)
        if isinstance(servicer, PassThrough):
            await servicer.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("floor", "passthrough", "passthrough-raw"))
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--upstream", help="passthrough: the upstream's OpenAI base URL (…/v1)")
    parser.add_argument("--model", default="gpt-bench", help="passthrough: the upstream model id")
    args = parser.parse_args(argv)
    if args.mode == "floor":
        servicer: pb_grpc.TiergateServicer = Floor()
    elif not args.upstream:
        parser.error(f"{args.mode} needs --upstream")
    elif args.mode == "passthrough":
        servicer = PassThrough(args.upstream, args.model)
    else:
        servicer = RawPassThrough(args.upstream, args.model)
    asyncio.run(serve(servicer, args.listen))


if __name__ == "__main__":
    main()
