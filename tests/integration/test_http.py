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
    port: int,
    raw: bytes,
    responses: int = 1,
    heads: frozenset[int] = frozenset(),
    *,
    until_closed: bool = False,
) -> list[tuple[int, dict[str, str], bytes]]:
    """Sends raw bytes on one connection and reads `responses` responses (those in `heads` answer HEAD);
    with `until_closed`, then waits for the server to close the connection (nothing more may come)."""
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
        if until_closed:
            assert await reader.read() == b""
    finally:
        writer.close()
        await writer.wait_closed()
    return out


async def test_probes_and_readiness(served: tuple[Telemetry, int]) -> None:
    telemetry, port = served
    ((status, _, body),) = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"ok\n")
    ((status, _, body),) = await exchange(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (503, b"not ready\n")
    telemetry.ready = True
    ((status, _, body),) = await exchange(port, b"GET /readyz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"ready\n")


async def test_keep_alive_serves_several_requests_on_one_connection(served: tuple[Telemetry, int]) -> None:
    telemetry, port = served
    telemetry.metrics.reload("ok")
    raw = (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    )  # pipelined: all three sent at once, each answered in turn
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
        (b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404, False),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, False),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413, True),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 413, True),
        (b"NONSENSE\r\n\r\n", 400, True),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, True),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 400, True),
        # RFC 9112 probes: whitespace between a field name and its colon is a request-smuggling vector (400);
        # HTTP/1.1 without Host (400); Content-Length and Transfer-Encoding together (400).
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For : 1.2.3.4\r\n\r\n", 400, True),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400, True),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            True,
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, True),
        (b"GET /healthz HTTP/1.0\r\n\r\n", 200, True),
    ],
)
async def test_answers_and_connection_handling(
    served: tuple[Telemetry, int], raw: bytes, status: int, closes: bool
) -> None:
    _, port = served
    # After the answer: the server closes the connection, or it serves the next request on it.
    then = b"" if closes else b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = await exchange(port, raw + then, responses=1 if closes else 2, until_closed=closes)
    got, headers, _ = answers[0]
    assert got == status
    if not closes:
        assert answers[1][0] == 200
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


async def test_stop_closes_idle_keep_alive_connections() -> None:
    server = HttpServer(observability_routes(Telemetry()))
    _, port = await server.start("127.0.0.1:0")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
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


TOO_LARGE = b"request body over 64 bytes (limits.max_request_bytes)\n"


@pytest.mark.parametrize(
    ("raw", "status", "body"),
    [
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello"),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n", 200, b""),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", 400, None),
        # A chunked body (Go and Node clients send them), chunk extensions and trailers included.
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: t\r\n\r\n",
            200,
            b"hello",
        ),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, None),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413, TOO_LARGE),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"20\r\n" + b"a" * 32 + b"\r\n"
            + b"20\r\n" + b"a" * 32 + b"\r\n"
            + b"20\r\n" + b"a" * 32 + b"\r\n0\r\n\r\n",
            413,
            TOO_LARGE,
        ),
    ],
)  # fmt: skip
async def test_a_mounted_app_gets_bodies(raw: bytes, status: int, body: bytes | None) -> None:
    server = HttpServer({}, max_body_bytes=64)
    server.mount(EchoApp())
    _, port = await server.start("127.0.0.1:0")
    try:
        ((got, headers, answer),) = await exchange(port, raw)
    finally:
        await server.stop()
    assert got == status
    if body is not None:
        assert answer == body
    assert (headers.get("x-method") == "POST") is (status == 200)


async def test_two_pipelined_requests_get_two_answers_in_order() -> None:
    server = HttpServer({})
    server.mount(EchoApp())
    _, port = await server.start("127.0.0.1:0")
    try:
        raw = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
        )
        answers = await exchange(port, raw, responses=2)
    finally:
        await server.stop()
    assert [(status, body) for status, _, body in answers] == [(200, b"one"), (200, b"two")]


async def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    server = HttpServer({})
    server.mount(EchoApp())
    _, port = await server.start("127.0.0.1:0")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(5) == b"hello"
        writer.close()
        await writer.wait_closed()
    finally:
        await server.stop()


async def test_a_mounted_app_streams_chunked() -> None:
    server = HttpServer({})
    server.mount(EchoApp())
    _, port = await server.start("127.0.0.1:0")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert b"Cache-Control: no-cache" in head
        assert await reader.readuntil(b"0\r\n\r\n") == b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n"
        writer.close()
        await writer.wait_closed()
    finally:
        await server.stop()
