"""FastTransport against real loopback servers: body framings, keep-alive reuse, closing, timeouts, errors.

A tiny asyncio server (in the test's own loop) answers each request with whatever the test scripts, and
records which connection carried it and when the client closed each connection. The fake provider's fault
matrix runs over this transport too: `test_provider_faults.py` (hosted_http.new_client uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fakes.provider_server import FakeProvider
from tiergate.config import ModelConfig
from tiergate.providers.fast_transport import FastTransport
from tiergate.providers.hosted_http import new_client

# A reply writes the response; it returns False to close the connection after it.
Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Seen"], Awaitable[bool]]


class ClientGone(Exception):
    """The client closed the connection while a reply waited."""


async def pause(reader: asyncio.StreamReader, seconds: float) -> None:
    """Sleeps, but raises ClientGone as soon as the client hangs up (it sends nothing mid-response)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            with contextlib.suppress(ConnectionError):
                await reader.read(1)
            raise ClientGone


@dataclass
class Seen:
    """One request the server read."""

    connection: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Loopback:
    """A scripted HTTP/1.1 server: each request gets the next reply (the last one repeats)."""

    replies: list[Reply]
    seen: list[Seen] = field(default_factory=list)
    opened: int = 0
    closed_at: dict[int, float] = field(default_factory=dict)  # connection -> when the client closed it
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        conn = self.opened
        self.opened += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_at[conn] = time.monotonic()
                    return
                line, *lines = head[:-4].decode("latin-1").split("\r\n")
                method, path, _ = line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
                if headers.get("transfer-encoding") == "chunked":
                    body = b""
                    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                        body += (await reader.readexactly(size + 2))[:-2]
                    await reader.readexactly(2)
                else:
                    body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(conn, method, path, headers, body)
                self.seen.append(seen)
                reply = self.replies[min(len(self.seen) - 1, len(self.replies) - 1)]
                if not await reply(reader, writer, seen):
                    return
        except ClientGone:
            self.closed_at[conn] = time.monotonic()
        except asyncio.CancelledError:
            pass  # the server is stopping (or a test dropped the connection)
        finally:
            self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def closed(self, conn: int, timeout: float = 2.0) -> float:
        deadline = time.monotonic() + timeout
        while conn not in self.closed_at:
            assert time.monotonic() < deadline, f"connection {conn} was not closed by the client"
            await asyncio.sleep(0.002)
        return self.closed_at[conn]


@contextlib.asynccontextmanager
async def loopback(*replies: Reply) -> AsyncIterator[Loopback]:
    lb = Loopback(list(replies))
    lb.server = await asyncio.start_server(lb.handle, "127.0.0.1", 0)
    try:
        yield lb
    finally:
        lb.server.close()
        for task in list(lb.tasks):
            task.cancel()
        if lb.tasks:
            await asyncio.wait(list(lb.tasks))
        await lb.server.wait_closed()


@contextlib.asynccontextmanager
async def client(
    *, max_connections: int | None = 256, max_idle_per_host: int = 64, keepalive_expiry: float = 20.0
) -> AsyncIterator[httpx.AsyncClient]:
    transport = FastTransport(
        max_connections=max_connections,
        max_idle_per_host=max_idle_per_host,
        keepalive_expiry=keepalive_expiry,
    )
    async with httpx.AsyncClient(transport=transport, timeout=2.0) as c:
        yield c


def fixed(body: bytes = b"hello", *, extra: str = "", status: int = 200) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> bool:
        head = f"HTTP/1.1 {status} OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
        writer.write(head if seen.method == "HEAD" else head + body)
        await writer.drain()
        return "connection: close" not in extra

    return reply


def chunked(*parts: bytes, gap_s: float = 0.0) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in parts:
            if gap_s:
                await pause(reader, gap_s)
            writer.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\nx-trailer: t\r\n\r\n")
        await writer.drain()
        return True

    return reply


def raw(data: bytes, *, keep: bool = False, then_sleep_s: float = 0.0) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> bool:
        writer.write(data)
        await writer.drain()
        if then_sleep_s:
            await pause(reader, then_sleep_s)
        return keep

    return reply


def stall() -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> bool:
        await pause(reader, 3600)
        return False

    return reply


# -- framing and reuse ----------------------------------------------------------------------------------


async def test_content_length_bodies_reuse_one_connection() -> None:
    async with (
        loopback(fixed(b'{"ok": true}', extra="content-type: application/json\r\n")) as lb,
        client() as c,
    ):
        for i in range(3):
            r = await c.post(f"{lb.url}/v1/x?i={i}", content=b'{"q": 1}', headers={"x-a": "b"})
            assert r.status_code == 200
            assert r.json() == {"ok": True}
            assert r.http_version == "HTTP/1.1"
        assert [s.connection for s in lb.seen] == [0, 0, 0]
        assert [s.path for s in lb.seen] == ["/v1/x?i=0", "/v1/x?i=1", "/v1/x?i=2"]
        assert lb.seen[0].body == b'{"q": 1}'
        assert lb.seen[0].headers["x-a"] == "b"
        assert lb.seen[0].headers["host"] == lb.url.removeprefix("http://")
        assert not lb.closed_at


async def test_chunked_body_arrives_chunk_by_chunk_and_pools_the_connection() -> None:
    async with loopback(chunked(b"data: 1\n\n", b"data: 2\n\n", gap_s=0.05)) as lb, client() as c:
        async with c.stream("POST", f"{lb.url}/s", content=b"{}") as r:
            arrivals = [(part, time.monotonic()) async for part in r.aiter_raw()]
        assert b"".join(p for p, _ in arrivals) == b"data: 1\n\ndata: 2\n\n"
        assert arrivals[-1][1] - arrivals[0][1] >= 0.04
        r2 = await c.post(f"{lb.url}/s", content=b"{}")
        assert r2.text == "data: 1\n\ndata: 2\n\n"
        assert [s.connection for s in lb.seen] == [0, 0]


async def test_connection_close_response_is_not_pooled() -> None:
    async with loopback(fixed(b"bye", extra="connection: close\r\n")) as lb, client() as c:
        assert (await c.get(f"{lb.url}/")).text == "bye"
        assert (await c.get(f"{lb.url}/")).text == "bye"
        assert [s.connection for s in lb.seen] == [0, 1]


async def test_body_until_close() -> None:
    async with (
        loopback(raw(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")) as lb,
        client() as c,
    ):
        assert (await c.get(f"{lb.url}/")).text == "all of it"
        assert (await c.get(f"{lb.url}/")).text == "all of it"
        assert [s.connection for s in lb.seen] == [0, 1]


async def test_empty_bodies_pool_the_connection() -> None:
    async with loopback(fixed(b"", status=204), fixed(b"abc")) as lb, client() as c:
        assert (await c.delete(f"{lb.url}/")).status_code == 204
        assert (await c.head(f"{lb.url}/")).headers["content-length"] == "3"
        assert (await c.get(f"{lb.url}/")).text == "abc"
        assert [s.connection for s in lb.seen] == [0, 0, 0]


async def test_streamed_request_body_is_sent_chunked() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b""
        yield b"defg"

    async with loopback(fixed(b"ok")) as lb, client() as c:
        assert (await c.post(f"{lb.url}/", content=parts())).text == "ok"
        assert lb.seen[0].body == b"abcdefg"
        assert lb.seen[0].headers["transfer-encoding"] == "chunked"


async def test_server_closing_an_idle_connection_is_noticed_before_reuse() -> None:
    async with loopback(fixed(b"once", extra="", status=200)) as lb, client() as c:
        assert (await c.get(f"{lb.url}/")).text == "once"
        # The server drops the idle connection (as an upstream's idle timeout would).
        for task in list(lb.tasks):
            task.cancel()
        await asyncio.sleep(0.05)
        assert (await c.post(f"{lb.url}/", content=b"x")).text == "once"
        assert [s.connection for s in lb.seen] == [0, 1]


async def test_expired_idle_connection_is_not_reused() -> None:
    async with loopback(fixed()) as lb, client(keepalive_expiry=0.05) as c:
        await c.get(f"{lb.url}/")
        await asyncio.sleep(0.1)
        await c.get(f"{lb.url}/")
        assert [s.connection for s in lb.seen] == [0, 1]
        await lb.closed(0)


async def test_idle_connections_per_host_are_bounded_and_aclose_closes_them() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> bool:
        await asyncio.sleep(0.05)
        return await fixed()(reader, writer, seen)

    async with loopback(slow) as lb:
        transport = FastTransport(max_idle_per_host=2)
        async with httpx.AsyncClient(transport=transport, timeout=2.0) as c:
            await asyncio.gather(*(c.get(f"{lb.url}/") for _ in range(4)))
            assert lb.opened == 4
            await asyncio.gather(lb.closed(0), lb.closed(1))
            assert len(lb.closed_at) == 2
        await asyncio.gather(lb.closed(2), lb.closed(3))


async def test_max_connections_waits_then_pool_timeout() -> None:
    async with loopback(stall()) as lb, client(max_connections=1) as c:
        first = asyncio.create_task(c.get(f"{lb.url}/"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await c.get(f"{lb.url}/", timeout=httpx.Timeout(5.0, pool=0.05))
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await lb.closed(0)


# -- closing early, cancelling --------------------------------------------------------------------------


async def test_closing_a_response_early_closes_its_connection() -> None:
    async with loopback(chunked(b"a", b"b", b"c", gap_s=0.2), fixed()) as lb, client() as c:
        async with c.stream("GET", f"{lb.url}/") as r:
            async for _ in r.aiter_raw():
                break
            closed = time.monotonic()
        assert await lb.closed(0) - closed < 0.1
        await c.get(f"{lb.url}/")
        assert [s.connection for s in lb.seen] == [0, 1]


async def test_cancelling_while_waiting_for_the_head_closes_the_connection() -> None:
    async with loopback(stall(), fixed()) as lb, client() as c:
        task = asyncio.create_task(c.post(f"{lb.url}/", content=b"x"))
        while not lb.seen:
            await asyncio.sleep(0.005)
        cancelled = time.monotonic()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await lb.closed(0) - cancelled < 0.1
        assert (await c.get(f"{lb.url}/")).text == "hello"


# -- errors as httpcore reports them ----------------------------------------------------------------------


async def test_read_timeout_on_head_and_on_body() -> None:
    head_only = raw(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", then_sleep_s=5)
    async with loopback(stall(), head_only) as lb, client() as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"{lb.url}/", timeout=0.1)
        with pytest.raises(httpx.ReadTimeout):
            await c.get(f"{lb.url}/", timeout=0.1)
        await asyncio.gather(lb.closed(0), lb.closed(1))


async def test_connect_error_and_unsupported_scheme() -> None:
    async with loopback(fixed()) as lb:
        url = lb.url
    async with client() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(url)
        with pytest.raises(httpx.UnsupportedProtocol):
            await c.get("ftp://127.0.0.1/")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="no-response"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-len", id="head-cut"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", id="body-cut"),
        pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab", id="chunk-cut"),
        pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", id="chunk-garbage"),
        pytest.param(b"SSH-2.0-OpenSSH\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", id="bad-length"),
    ],
)
async def test_broken_responses_raise_remote_protocol_error(data: bytes) -> None:
    async with loopback(raw(data), fixed()) as lb, client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(f"{lb.url}/")
        assert (await c.get(f"{lb.url}/")).text == "hello"
        assert [s.connection for s in lb.seen] == [0, 1]


async def test_reset_connection_raises_a_network_error() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.transport.abort()
        return False

    async with loopback(reset) as lb, client() as c:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await c.get(f"{lb.url}/")


# -- the product's client --------------------------------------------------------------------------------


async def test_new_client_runs_over_fast_transport_against_the_fake_provider(
    fake_provider: FakeProvider,
) -> None:
    config = ModelConfig(provider="openai", model="m", base_url=fake_provider.url_openai)
    async with new_client(config) as c:
        assert isinstance(c._transport, FastTransport)
        for stream in (False, True, False):
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            r = await c.post(f"{fake_provider.url_openai}/chat/completions", json=body)
            assert r.status_code == 200
            assert "Hello" in r.text
    assert len({r.connection for r in fake_provider.requests}) == 1
    await fake_provider.until(lambda rs: rs[-1].client_closed_at is not None, timeout=2)


# -- https ----------------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made by the openssl command line)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_with_keep_alive_and_certificate_checks(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    lb = Loopback([chunked(b"secure", b" stream")])
    lb.server = await asyncio.start_server(lb.handle, "127.0.0.1", 0, ssl=server_ctx)
    url = lb.url.replace("http://", "https://")
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(transport=FastTransport(ssl_context=trusting), timeout=2.0) as c:
            for _ in range(2):
                assert (await c.post(url, content=b"{}")).text == "secure stream"
            assert [s.connection for s in lb.seen] == [0, 0]
        # The default context does not trust a self-signed certificate.
        async with httpx.AsyncClient(transport=FastTransport(), timeout=2.0) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(url)
    finally:
        lb.server.close()
        for task in list(lb.tasks):
            task.cancel()
        if lb.tasks:
            await asyncio.wait(list(lb.tasks))
        await lb.server.wait_closed()
