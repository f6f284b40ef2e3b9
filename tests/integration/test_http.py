"""server/http.py on a real loopback socket: the three endpoints, keep-alive, HEAD, and bad requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from tiergate.server.http import HttpRequest, HttpServer, Response, StreamResponse, observability_routes
from tiergate.telemetry import Telemetry


@pytest.fixture
async def served() -> AsyncIterator[tuple[Telemetry, int]]:
    telemetry = Telemetry()
    server = HttpServer(observability_routes(telemetry))
    _, port = await server.start("127.0.0.1:0")
    try:
        yield telemetry, port
    finally:
        await server.stop()


async def exchange(
    port: int, raw: bytes, responses: int = 1, heads: frozenset[int] = frozenset()
) -> list[tuple[int, dict[str, str], bytes]]:
    """Sends raw bytes on one connection and reads `responses` responses (those in `heads` answer HEAD)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    out = []
    try:
        for i in range(responses):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(head[0].split(" ")[1])
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            body = b"" if i in heads else await reader.readexactly(int(headers["content-length"]))
            out.append((status, headers, body))
    finally:
        writer.close()
        await writer.wait_closed()
    return out


async def test_probes_and_readiness(served: tuple[Telemetry, int]) -> None:
    telemetry, port = served
    ((status, _, body),) = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"ok\n")
    ((status, _, body),) = await exchange(port, b"GET /readyz HTTP/1.1\r\n\r\n")
    assert (status, body) == (503, b"not ready\n")
    telemetry.ready = True
    ((status, _, body),) = await exchange(port, b"GET /readyz?verbose=1 HTTP/1.1\r\n\r\n")
    assert (status, body) == (200, b"ready\n")


async def test_keep_alive_serves_several_requests_on_one_connection(served: tuple[Telemetry, int]) -> None:
    telemetry, port = served
    telemetry.metrics.reload("ok")
    raw = b"GET /metrics HTTP/1.1\r\n\r\nHEAD /metrics HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"
    (metrics, head, health) = await exchange(port, raw, responses=3, heads=frozenset({1}))
    assert metrics[0] == 200
    assert metrics[1]["content-type"].startswith("text/plain; version=")
    assert b'tiergate_config_reloads_total{result="ok"} 1.0' in metrics[2]
    assert b"# TYPE tiergate_requests_total counter" in metrics[2]
    # HEAD: the same headers, no body (the next response follows at once).
    assert head[0] == 200 and int(head[1]["content-length"]) > 0
    assert health == (200, health[1], b"ok\n")


@pytest.mark.parametrize(
    ("raw", "status", "closes"),
    [
        (b"GET /nothing HTTP/1.1\r\n\r\n", 404, False),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, False),
        (b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413, True),
        (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413, True),
        (b"NONSENSE\r\n\r\n", 400, True),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400, True),
        (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431, True),
        (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 200, True),
        (b"GET /healthz HTTP/1.0\r\n\r\n", 200, True),
    ],
)
async def test_answers_and_connection_handling(
    served: tuple[Telemetry, int], raw: bytes, status: int, closes: bool
) -> None:
    _, port = served
    ((got, headers, _),) = await exchange(port, raw)
    assert got == status
    assert (headers.get("connection") == "close") is closes
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


async def test_stop_closes_idle_keep_alive_connections() -> None:
    server = HttpServer(observability_routes(Telemetry()))
    _, port = await server.start("127.0.0.1:0")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    await reader.readuntil(b"ok\n")
    async with asyncio.timeout(5):  # not the 60 s idle timeout
        await server.stop()
        assert await reader.read() == b""  # closed by the server
    writer.close()
    await writer.wait_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_bad_address_is_an_os_error() -> None:
    with pytest.raises(OSError, match="not host:port"):
        await HttpServer({}).start("8080")


class EchoApp:
    """A mounted App: echoes POST bodies to /echo, streams them back in pieces to /stream."""

    paths = frozenset({"/echo", "/stream"})

    async def __call__(self, request: HttpRequest) -> Response | StreamResponse:
        if request.path == "/echo":
            return Response(200, request.body, headers=(("X-Method", request.method),))

        async def pieces() -> AsyncGenerator[bytes, None]:
            for byte in request.body:
                yield bytes([byte])

        return StreamResponse(200, pieces(), "text/event-stream")


@pytest.mark.parametrize(
    ("raw", "status", "body"),
    [
        (b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello"),
        (b"POST /echo HTTP/1.1\r\n\r\n", 200, b""),
        (b"POST /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, b"malformed Content-Length\n"),
        (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413, b"send a Content-Length\n"),
        (
            b"POST /echo HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
            413,
            b"request body over 4194304 bytes (limits.max_request_bytes)\n",
        ),
    ],
)
async def test_a_mounted_app_gets_bodies(raw: bytes, status: int, body: bytes) -> None:
    server = HttpServer({})
    server.mount(EchoApp())
    _, port = await server.start("127.0.0.1:0")
    try:
        ((got, headers, answer),) = await exchange(port, raw)
    finally:
        await server.stop()
    assert (got, answer) == (status, body)
    assert (headers.get("x-method") == "POST") is (status == 200)


async def test_a_mounted_app_streams_chunked() -> None:
    server = HttpServer({})
    server.mount(EchoApp())
    _, port = await server.start("127.0.0.1:0")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /stream HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert await reader.readuntil(b"0\r\n\r\n") == b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n"
        writer.close()
        await writer.wait_closed()
    finally:
        await server.stop()
