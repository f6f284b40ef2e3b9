"""The upstream HTTP client (`providers/http_client.py`, aiohttp) against real loopback servers: keep-alive
reuse, closing early, cancelling, timeouts, broken responses, https, and proxies (a real tinyproxy).

A tiny asyncio server (in the test's own loop) answers each request with whatever the test scripts, and
records which connection carried it and when the client closed each connection. The fake provider's fault
matrix runs over this client too: `test_provider_faults.py` (hosted_http.new_client makes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest
from pydantic import SecretStr

from tests.fakes.provider_server import FakeProvider
from tests.integration.proxy_server import Proxy, run_tinyproxy, tinyproxy_path
from tiergate.config import ModelConfig
from tiergate.providers.base import ProviderConnectionError, ProviderError, ProviderTimeout
from tiergate.providers.hosted_http import HostedEndpoint, new_client
from tiergate.providers.http_client import DIRECT, AiohttpClient, Timeouts
from tiergate.providers.http_errors import ErrorMapper

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


def fixed(body: bytes = b"hello", *, extra: str = "", status: int = 200) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> bool:
        head = f"HTTP/1.1 {status} OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
        writer.write(head if seen.method == "HEAD" else head + body)
        await writer.drain()
        return "connection: close" not in extra

    return reply


def chunked(*parts: bytes, gap_s: float = 0.0, status: int = 200) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> bool:
        writer.write(b"HTTP/1.1 %d OK\r\ntransfer-encoding: chunked\r\n\r\n" % status)
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


T = Timeouts(connect_s=2.0, request_s=2.0)
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
              "all_proxy")  # fmt: skip


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without proxies in the environment (and sets the ones it means to use)."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@contextlib.asynccontextmanager
async def client(**kwargs: object) -> AsyncIterator[AiohttpClient]:
    c = AiohttpClient(**kwargs)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        await c.aclose()


async def post(c: AiohttpClient, url: str, body: bytes = b"{}", timeouts: Timeouts = T) -> tuple[int, bytes]:
    async with c.post(url, body, {"x-a": "b"}, timeouts) as reply:
        return reply.status, await reply.read()


# -- framing and reuse ----------------------------------------------------------------------------------


async def test_content_length_bodies_reuse_one_connection() -> None:
    async with (
        loopback(fixed(b'{"ok": true}', extra="content-type: application/json\r\n")) as lb,
        client() as c,
    ):
        for i in range(3):
            assert await post(c, f"{lb.url}/v1/x?i={i}", b'{"q": 1}') == (200, b'{"ok": true}')
        assert [s.connection for s in lb.seen] == [0, 0, 0]
        assert [s.path for s in lb.seen] == ["/v1/x?i=0", "/v1/x?i=1", "/v1/x?i=2"]
        assert lb.seen[0].body == b'{"q": 1}'
        assert lb.seen[0].headers["x-a"] == "b"
        assert lb.seen[0].headers["host"] == lb.url.removeprefix("http://")
        assert not lb.closed_at


async def test_chunked_body_arrives_piece_by_piece_and_pools_the_connection() -> None:
    async with loopback(chunked(b"data: 1\n\n", b"data: 2\n\n", gap_s=0.05)) as lb, client() as c:
        async with c.post(f"{lb.url}/s", b"{}", {}, T) as reply:
            pieces = [piece async for piece in reply.chunks()]
        assert b"".join(pieces) == b"data: 1\n\ndata: 2\n\n"
        assert len(pieces) >= 2  # the first piece was handed out before the second was sent
        assert await post(c, f"{lb.url}/s") == (200, b"data: 1\n\ndata: 2\n\n")
        assert [s.connection for s in lb.seen] == [0, 0]


async def test_connection_close_response_is_not_pooled() -> None:
    async with loopback(fixed(b"bye", extra="connection: close\r\n")) as lb, client() as c:
        assert await post(c, f"{lb.url}/") == (200, b"bye")
        assert await post(c, f"{lb.url}/") == (200, b"bye")
        assert [s.connection for s in lb.seen] == [0, 1]


async def test_body_until_close() -> None:
    async with (
        loopback(raw(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")) as lb,
        client() as c,
    ):
        assert await post(c, f"{lb.url}/") == (200, b"all of it")
        assert await post(c, f"{lb.url}/") == (200, b"all of it")
        assert [s.connection for s in lb.seen] == [0, 1]


# -- closing early, cancelling --------------------------------------------------------------------------


async def test_closing_a_reply_early_closes_its_connection() -> None:
    async with loopback(chunked(b"a", b"b", b"c", gap_s=0.2), fixed()) as lb, client() as c:
        async with c.post(f"{lb.url}/", b"{}", {}, T) as reply:
            async for _ in reply.chunks():
                break
        await lb.closed(0)
        assert await post(c, f"{lb.url}/") == (200, b"hello")
        assert [s.connection for s in lb.seen] == [0, 1]


async def test_cancelling_while_waiting_for_the_head_closes_the_connection() -> None:
    async with loopback(stall(), fixed()) as lb, client() as c:
        task = asyncio.create_task(post(c, f"{lb.url}/", b"x"))
        while not lb.seen:
            await asyncio.sleep(0.005)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await lb.closed(0)
        assert await post(c, f"{lb.url}/") == (200, b"hello")


# -- errors, mapped by http_errors ------------------------------------------------------------------------


async def test_read_timeout_on_head_and_on_body_is_a_provider_timeout() -> None:
    head_only = raw(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", then_sleep_s=5)
    short = Timeouts(connect_s=2.0, request_s=0.1)
    async with loopback(stall(), head_only) as lb, client() as c:
        for _ in range(2):
            with pytest.raises(aiohttp.ClientError) as caught:
                await post(c, f"{lb.url}/", timeouts=short)
            assert isinstance(ErrorMapper("m").from_exception(caught.value), ProviderTimeout)
        await asyncio.gather(lb.closed(0), lb.closed(1))


async def test_connect_error_is_a_connection_error() -> None:
    async with loopback(fixed()) as lb:
        url = lb.url
    async with client() as c:
        with pytest.raises(aiohttp.ClientError) as caught:
            await post(c, url)
        assert isinstance(ErrorMapper("m").from_exception(caught.value), ProviderConnectionError)


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
async def test_broken_responses_are_connection_errors_and_the_next_request_reconnects(data: bytes) -> None:
    async with loopback(raw(data), fixed()) as lb, client() as c:
        with pytest.raises(aiohttp.ClientError) as caught:
            await post(c, f"{lb.url}/")
        assert isinstance(ErrorMapper("m").from_exception(caught.value), ProviderConnectionError)
        assert await post(c, f"{lb.url}/") == (200, b"hello")
        assert [s.connection for s in lb.seen] == [0, 1]


async def test_closed_client_refuses_to_send() -> None:
    c = AiohttpClient()
    await c.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await post(c, "http://127.0.0.1:9/")


def test_proxy_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="proxy"):
        AiohttpClient(proxy="socks5://127.0.0.1:1080")


# -- fetch: a whole answer in one call (a non-streamed request) -------------------------------------------


async def fetch(c: AiohttpClient, url: str, max_error_bytes: int = 1024) -> tuple[int, bytes]:
    got = await c.fetch(url, b'{"q": 1}', {"x-a": "b"}, T, max_error_bytes)
    return got.status, got.body


async def test_fetch_reads_whole_answers_over_one_connection() -> None:
    async with loopback(fixed(b'{"ok": true}'), chunked(b"ab", b"cd")) as lb, client() as c:
        assert await fetch(c, f"{lb.url}/v1/x") == (200, b'{"ok": true}')
        assert await fetch(c, f"{lb.url}/v1/y") == (200, b"abcd")
        assert await fetch(c, f"{lb.url}/v1/x") == (200, b"abcd")
        assert [s.connection for s in lb.seen] == [0, 0, 0]
        assert [s.path for s in lb.seen] == ["/v1/x", "/v1/y", "/v1/x"]
        assert lb.seen[0].body == b'{"q": 1}'
        assert lb.seen[0].headers["x-a"] == "b"


async def test_fetch_reads_an_error_body_only_up_to_the_bound() -> None:
    error_pieces = chunked(b"e" * 300, b"f" * 300, gap_s=0.05, status=500)
    async with loopback(fixed(b"no", status=429), error_pieces, fixed()) as lb, client() as c:
        got = await c.fetch(f"{lb.url}/", b"{}", {}, T, 1024)
        assert (got.status, got.headers["content-length"], got.body) == (429, "2", b"no")
        assert await fetch(c, f"{lb.url}/", max_error_bytes=100) == (500, b"e" * 300)
        await lb.closed(0)  # the rest of that body was not read: the connection was closed, not pooled
        assert await fetch(c, f"{lb.url}/") == (200, b"hello")
        assert [s.connection for s in lb.seen] == [0, 0, 1]


async def test_fetch_error_body_cut_short_is_empty() -> None:
    cut = raw(b"HTTP/1.1 503 Unavailable\r\ncontent-length: 10\r\n\r\nabc")
    async with loopback(cut, fixed()) as lb, client() as c:
        assert await fetch(c, f"{lb.url}/") == (503, b"")
        assert await fetch(c, f"{lb.url}/") == (200, b"hello")


async def test_fetch_cancelled_waiting_for_the_head_or_the_body_closes_the_connection() -> None:
    head_only = raw(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", then_sleep_s=3600)
    async with loopback(stall(), head_only, fixed()) as lb, client() as c:
        for conn in (0, 1):
            # fetch sets no limit of its own on the response: the caller's (here a timeout) ends it.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await fetch(c, f"{lb.url}/")
            await lb.closed(conn)
        assert await fetch(c, f"{lb.url}/") == (200, b"hello")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="no-response"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", id="body-cut"),
        pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", id="chunk-garbage"),
    ],
)
async def test_fetch_broken_responses_are_connection_errors(data: bytes) -> None:
    async with loopback(raw(data), fixed()) as lb, client() as c:
        with pytest.raises(aiohttp.ClientError) as caught:
            await fetch(c, f"{lb.url}/")
        assert isinstance(ErrorMapper("m").from_exception(caught.value), ProviderConnectionError)
        assert await fetch(c, f"{lb.url}/") == (200, b"hello")
        assert [s.connection for s in lb.seen] == [0, 1]


async def test_fetch_on_a_closed_client_refuses_to_send() -> None:
    c = AiohttpClient()
    await c.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await fetch(c, "http://127.0.0.1:9/")


async def test_fetch_goes_through_the_proxy_from_the_environment(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with loopback(fixed(b"via proxy")) as lb, client() as c:
        assert await fetch(c, f"{lb.url}/v1/a") == (200, b"via proxy")
        assert proxy.requests() == [f"POST {lb.url}/v1/a HTTP/1.1"]


# -- the product's client --------------------------------------------------------------------------------


async def test_new_client_against_the_fake_provider(fake_provider: FakeProvider) -> None:
    config = ModelConfig(provider="openai", model="m", base_url=fake_provider.url_openai)
    c = new_client(config)
    try:
        for stream in (False, True, False):
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            status, text = await post(c, f"{fake_provider.url_openai}/chat/completions", orjson.dumps(body))
            assert status == 200
            assert b"Hello" in text
    finally:
        await c.aclose()
    assert len({r.connection for r in fake_provider.requests}) == 1
    await fake_provider.until(lambda rs: rs[-1].client_closed_at is not None, timeout=2)


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


@contextlib.asynccontextmanager
async def tls_loopback(tls_files: tuple[Path, Path], *replies: Reply) -> AsyncIterator[Loopback]:
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    lb = Loopback(list(replies))
    lb.server = await asyncio.start_server(lb.handle, "127.0.0.1", 0, ssl=server_ctx)
    try:
        yield lb
    finally:
        lb.server.close()
        for task in list(lb.tasks):
            task.cancel()
        if lb.tasks:
            await asyncio.wait(list(lb.tasks))
        await lb.server.wait_closed()


async def test_https_with_keep_alive_and_certificate_checks(tls_files: tuple[Path, Path]) -> None:
    async with tls_loopback(tls_files, chunked(b"secure", b" stream")) as lb:
        url = lb.url.replace("http://", "https://")
        trusting = ssl.create_default_context(cafile=str(tls_files[0]))
        async with client(ssl_context=trusting) as c:
            for _ in range(2):
                assert await post(c, url) == (200, b"secure stream")
            assert [s.connection for s in lb.seen] == [0, 0]
        # The default context does not trust a self-signed certificate.
        async with client() as c:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await post(c, url)


# -- proxies, through a real tinyproxy on loopback --------------------------------------------------------


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    if tinyproxy_path() is None:
        pytest.skip("tinyproxy is not installed (make setup installs it: apt-get install tinyproxy)")
    with run_tinyproxy() as running:
        yield running


async def test_https_proxy_from_the_environment_tunnels_with_connect(
    proxy: Proxy, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    async with tls_loopback(tls_files, fixed(b"through the tunnel")) as lb:
        port = lb.url.rsplit(":", 1)[1]
        trusting = ssl.create_default_context(cafile=str(tls_files[0]))
        async with client(ssl_context=trusting) as c:
            for _ in range(2):
                assert await post(c, f"https://127.0.0.1:{port}/v1/x") == (200, b"through the tunnel")
        assert proxy.requests() == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"]  # one tunnel, kept alive
        assert [s.path for s in lb.seen] == ["/v1/x", "/v1/x"]


async def test_http_proxy_from_the_environment_and_no_proxy(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with loopback(fixed(b"via proxy")) as lb:
        async with client() as c:
            assert await post(c, f"{lb.url}/v1/a") == (200, b"via proxy")
        assert proxy.requests() == [f"POST {lb.url}/v1/a HTTP/1.1"]
        # The environment is read when a client is made (a provider's, at start or on a reload).
        monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
        async with client() as c:
            assert await post(c, f"{lb.url}/v1/b") == (200, b"via proxy")
        assert len(proxy.requests()) == 1  # NO_PROXY: straight to the upstream


async def test_back_to_back_requests_through_a_forwarding_proxy_all_get_through(proxy: Proxy) -> None:
    """tinyproxy closes its client connection after each forwarded answer without `Connection: close`:
    a pooled connection would fail every second request before sending it."""
    async with loopback(*(fixed(b"via proxy") for _ in range(6))) as lb, client(proxy=proxy.url) as c:
        for _ in range(3):
            assert await post(c, f"{lb.url}/v1/a") == (200, b"via proxy")
            assert await fetch(c, f"{lb.url}/v1/b") == (200, b"via proxy")
        assert len(proxy.requests()) == 6


def test_proxy_credentials_from_the_environment_go_in_a_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://u:env-secret@proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "socks5://proxy.example:1080")
    c = AiohttpClient()
    via = c._proxy_for("https://api.example/v1/x")
    assert str(via.url) == "http://proxy.example:3128"
    assert via.headers is not None and via.headers["Proxy-Authorization"].startswith("Basic ")
    assert c._proxy_for("http://api.example/v1/x").url is None  # a socks proxy: not spoken, direct


async def test_a_models_proxy_setting_overrides_the_environment(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    async with loopback(fixed(b"ok")) as lb:
        config = ModelConfig(provider="openai", model="m", base_url=lb.url, proxy=SecretStr(proxy.url))
        c = new_client(config)
        try:
            assert await post(c, f"{lb.url}/v1/a") == (200, b"ok")
        finally:
            await c.aclose()
        assert proxy.requests() == [f"POST {lb.url}/v1/a HTTP/1.1"]
        async with client(proxy=DIRECT) as c:
            assert await post(c, f"{lb.url}/v1/b") == (200, b"ok")
        assert len(proxy.requests()) == 1


async def test_proxy_credentials_are_sent_and_never_in_error_messages(
    tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    if tinyproxy_path() is None:
        pytest.skip("tinyproxy is not installed (make setup installs it: apt-get install tinyproxy)")
    with run_tinyproxy(user="tg", password="hunter2-proxy") as authed:
        good = authed.url.replace("http://", "http://tg:hunter2-proxy@")
        bad = authed.url.replace("http://", "http://tg:wrong-secret@")
        async with tls_loopback(tls_files, fixed(b"ok")) as lb:
            url = lb.url.replace("http://", "https://")
            trusting = ssl.create_default_context(cafile=str(tls_files[0]))
            async with client(proxy=good, ssl_context=trusting) as c:
                assert await post(c, url) == (200, b"ok")
            config = ModelConfig(provider="openai", model="m", request_timeout_ms=5_000)
            errors = ErrorMapper("m")
            async with client(proxy=bad, ssl_context=trusting) as c:
                endpoint = HostedEndpoint(url, {}, config, errors, c)
                with pytest.raises(ProviderError) as caught:
                    await endpoint.post_json(b"{}")
            assert "ClientHttpProxyError" in str(caught.value)  # tinyproxy refuses the CONNECT
            assert "wrong-secret" not in str(caught.value)
            assert "wrong-secret" not in repr(caught.value.__cause__)
