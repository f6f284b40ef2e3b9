"""A fake hosted provider: a real HTTP/1.1 loopback server speaking OpenAI and Anthropic, failing on cue.

    with FakeProvider() as fake:
        fake.url_openai          # http://127.0.0.1:PORT/v1   (POST /v1/chat/completions)
        fake.url_anthropic       # http://127.0.0.1:PORT      (POST /v1/messages)
                                 # and POST /v1/embeddings (deterministic vectors)
        fake.script("status:503", "ok")       # the next two requests: a 503, then a normal answer
        ...
        fake.requests            # what it received, and when each client went away

Which fault a request meets, first match wins:
  1. its upstream model id, when it reads `fault:<spec>` (e.g. `"model": "fault:stall_first_byte"`);
  2. the next fault scripted for that model id (`fake.script(..., model="gpt-x")`);
  3. the next fault scripted for any model (`fake.script(...)`);
  4. the server's default (`ok`), or what the default callable returns (a random mix of faults, say).

Fault specs and their kinds: `provider_faults`. A request offering tools, or ending with tool results, gets
the answer `provider_tools` describes (tool calls streamed as each wire streams them).

Every request is recorded (path, headers with credentials redacted, JSON body, fault, timestamps on the
`time.monotonic()` clock of this process), including `client_closed_at`: when the client closed the connection
during or after that request. The server runs on its own event loop in a background thread, so it serves async
tests, sync tests and subprocesses alike. `python -m tests.fakes.provider_server --port N` runs it standalone
(instant answers, nothing recorded) as the upstream of benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.fakes.provider_faults import Fault
from tests.fakes.provider_http import chunk, json_response, stream_headers
from tests.fakes.provider_tools import answer_plan, tool_response
from tests.fakes.provider_wire import AnthropicWire, OpenAIWire, Wire, count_words, embeddings_response

FAULT_PREFIX = "fault:"
DEFAULT_REPLY = ("Hello", ",", " world", "!")
REDACTED_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})
ROUTES: dict[str, Wire] = {
    "/v1/chat/completions": OpenAIWire,
    "/chat/completions": OpenAIWire,
    "/v1/messages": AnthropicWire,
}
# POST /v1/embeddings (OpenAI): deterministic vectors (`provider_wire.fake_vector`); faults of kind `status`
# and `reset` apply as to chat requests.
EMBEDDING_PATHS = frozenset({"/v1/embeddings", "/embeddings"})


@dataclass(slots=True)
class RecordedRequest:
    """One request as the server saw it. Times are `time.monotonic()` of this process; None: not (yet)."""

    index: int
    connection: int  # which TCP connection carried it (keep-alive reuse shows as a repeated number)
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased; credential values replaced by "[redacted]"
    body: Any  # the parsed JSON body, or the raw bytes when it is not JSON
    fault: Fault
    received_at: float
    responded_at: float | None = None  # response headers written
    finished_at: float | None = None  # whole response written
    client_closed_at: float | None = None  # the client closed the connection (during or after this request)
    server_closed: bool = False  # the server closed the connection (reset, drop_mid_stream, shutdown)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


@dataclass(slots=True)
class _Connection:
    id: int
    last: RecordedRequest | None = None
    buffer: bytearray = field(default_factory=bytearray)


class _BadRequestLine(Exception):
    pass


class _ClientGone(Exception):
    """The client closed the connection; `at` is when the server noticed."""

    def __init__(self, at: float | None = None) -> None:
        super().__init__()
        self.at = time.monotonic() if at is None else at


class FakeServer:
    """The asyncio server itself; `FakeProvider` runs one on a background thread."""

    def __init__(
        self,
        *,
        default: Fault | str | Callable[[], Fault] = "ok",
        reply: tuple[str, ...] = DEFAULT_REPLY,
        record: bool = True,
        sample_json: bool = False,
    ):
        self.default = Fault.parse(default) if isinstance(default, str) else default
        self.reply = reply
        self.record = record
        self.sample_json = sample_json
        self.requests: list[RecordedRequest] = []
        self.changed = threading.Condition()
        self._queues: dict[str | None, deque[Fault]] = {}
        self._lock = threading.Lock()
        self._conn_ids = itertools.count()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, host, port, backlog=1024)
        port_number: int = self._server.sockets[0].getsockname()[1]
        return port_number

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers))
        if self._server is not None:
            await self._server.wait_closed()

    def script(self, *faults: Fault | str, model: str | None = None) -> None:
        parsed = [Fault.parse(f) if isinstance(f, str) else f for f in faults]
        with self._lock:
            self._queues.setdefault(model, deque()).extend(parsed)

    def _choose(self, body: Any) -> Fault:
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str) and model.startswith(FAULT_PREFIX):
            return Fault.parse(model[len(FAULT_PREFIX) :])
        if self._queues:
            with self._lock:
                for key in (model if isinstance(model, str) else None, None):
                    queue = self._queues.get(key)
                    if queue:
                        return queue.popleft()
        return self.default if isinstance(self.default, Fault) else self.default()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    # -- connections -----------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = _Connection(next(self._conn_ids))
        try:
            while await self._serve_one(conn, reader, writer):
                pass
        except _ClientGone as gone:
            self._client_closed(conn, gone.at)
        except ConnectionError:
            self._client_closed(conn, time.monotonic())
        except _BadRequestLine:
            writer.write(json_response(400, b'{"error": {"message": "malformed HTTP request"}}', False))
        except asyncio.CancelledError:
            if conn.last is not None:
                conn.last.server_closed = True
            raise
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _client_closed(self, conn: _Connection, at: float) -> None:
        last = conn.last
        if last is not None and last.client_closed_at is None and not last.server_closed:
            last.client_closed_at = at
            self._notify()

    async def _read_more(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        data = await reader.read(65536)
        if not data:
            raise _ClientGone
        conn.buffer += data

    async def _serve_one(
        self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Reads one request and answers it; False when the connection is to be closed."""
        buf = conn.buffer
        while (end := buf.find(b"\r\n\r\n")) < 0:
            await self._read_more(conn, reader)
        head = bytes(buf[:end]).decode("latin-1")
        del buf[: end + 4]
        request_line, *header_lines = head.split("\r\n")
        try:
            method, path, _version = request_line.split(" ", 2)
        except ValueError:
            raise _BadRequestLine from None
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length_header = headers.get("content-length", "0")
        if not length_header.isdigit() or "transfer-encoding" in headers:
            raise _BadRequestLine  # the clients under test always send a Content-Length
        length = int(length_header)
        while len(buf) < length:
            await self._read_more(conn, reader)
        raw = bytes(buf[:length])
        del buf[:length]
        keep_alive = headers.get("connection", "").lower() != "close"

        try:
            body: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        try:
            fault = self._choose(body)
        except ValueError as exc:  # a bad `fault:` model id: tell the test author, loudly
            fault = Fault(kind="status", status=400)
            bad_spec = str(exc)
        else:
            bad_spec = ""
        record = RecordedRequest(
            index=len(self.requests),
            connection=conn.id,
            method=method,
            path=path,
            headers={k: ("[redacted]" if k in REDACTED_HEADERS else v) for k, v in headers.items()},
            body=body,
            fault=fault,
            received_at=time.monotonic(),
        )
        if self.record:
            self.requests.append(record)
            conn.last = record
            self._notify()

        if path in EMBEDDING_PATHS and method == "POST" and isinstance(body, dict) and fault.kind == "ok":
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            status, payload = embeddings_response(body)
            await self._write(writer, record, json_response(status, payload, keep_alive))
            record.finished_at = time.monotonic()
            return keep_alive
        wire = ROUTES.get(path) or (OpenAIWire if path in EMBEDDING_PATHS else None)
        if method != "POST" or wire is None or not isinstance(body, dict) or bad_spec:
            status = 404 if wire is None else 400
            message = bad_spec or f"fake provider: cannot serve {method} {path} with this body"
            payload = (wire or OpenAIWire).error_body(status, message)
            await self._write(writer, record, json_response(status, payload, keep_alive))
            return keep_alive
        if fault.kind == "ok" and fault.latency_ms == 0:
            # The fast path (benchmarks): nothing to wait for, so nothing to watch.
            await self._write(writer, record, self._answer_bytes(wire, body, fault, keep_alive))
            record.finished_at = time.monotonic()
            return keep_alive
        return await self._watched(conn, reader, self._respond(writer, record, wire, body, fault, keep_alive))

    async def _watched(
        self, conn: _Connection, reader: asyncio.StreamReader, respond: Awaitable[bool]
    ) -> bool:
        """Runs a slow response while watching the socket, so a client hanging up is seen at once."""
        responder = asyncio.ensure_future(respond)
        watcher = asyncio.ensure_future(reader.read(65536))
        try:
            await asyncio.wait((responder, watcher), return_when=asyncio.FIRST_COMPLETED)
            if watcher.done():
                try:
                    data = watcher.result()
                except ConnectionError:
                    raise _ClientGone from None
                if not data:
                    raise _ClientGone
                conn.buffer += data  # a pipelined request: keep it for the next round
            return await responder
        finally:
            pending = [task for task in (responder, watcher) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    # -- responses -------------------------------------------------------------------------------------

    def _tokens(self, fault: Fault) -> list[str]:
        if fault.tokens is None:
            return list(self.reply)
        return [self.reply[i % len(self.reply)] for i in range(fault.tokens)]

    def _plan(self, wire: Wire, body: dict[str, Any], fault: Fault) -> tuple[str, list[str], str, int]:
        model = str(body.get("model", ""))
        text, _ = answer_plan(wire is OpenAIWire, body, self.sample_json)
        # A tool loop's final answer or a JSON-schema answer (see provider_tools), else the scripted reply.
        tokens = self._tokens(fault) if text is None else [text[i : i + 8] for i in range(0, len(text), 8)]
        finish = wire.stop
        limit = wire.max_tokens(body)
        if limit is not None and 0 <= limit < len(tokens):
            tokens, finish = tokens[:limit], wire.length
        return model, tokens, finish, count_words(body)

    def _answer_bytes(self, wire: Wire, body: dict[str, Any], fault: Fault, keep_alive: bool) -> bytes:
        tools = tool_response(wire is OpenAIWire, body, keep_alive, count_words(body))
        if tools is not None:
            return tools
        model, tokens, finish, prompt = self._plan(wire, body, fault)
        if body.get("stream") is True:
            events = wire.stream_head(model, prompt, fault.cached)
            for token in tokens:
                events += wire.stream_token(model, token)
            events += wire.stream_tail(model, finish, prompt, len(tokens), fault.cached, body)
            return stream_headers(keep_alive) + chunk(events) + b"0\r\n\r\n"
        payload = wire.completion(model, "".join(tokens), finish, prompt, len(tokens), fault.cached)
        return json_response(200, payload, keep_alive)

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        wire: Wire,
        body: dict[str, Any],
        fault: Fault,
        keep_alive: bool,
    ) -> bool:
        kind = fault.kind
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if kind in ("stall_first_byte", "latency"):
            await _pause(fault.ms)
        if kind == "reset":
            record.server_closed = True
            return False
        if kind in ("status", "content_policy"):
            status = 400 if kind == "content_policy" else fault.status
            payload = wire.error_body(status, f"fake {status}", content_policy=kind == "content_policy")
            extra = {}
            if fault.retry_after is not None:
                extra["retry-after"] = fault.retry_after
            if fault.retry_after_ms is not None:
                extra["retry-after-ms"] = fault.retry_after_ms
            await self._write(writer, record, json_response(status, payload, keep_alive, extra))
            record.finished_at = time.monotonic()
            return keep_alive
        stream = body.get("stream") is True
        if kind == "malformed_json" or (kind == "malformed_sse" and not stream):
            payload = wire.completion("m", "text", wire.stop, 1, 1, 0)[:-7]
            await self._write(writer, record, json_response(200, payload, keep_alive))
            record.finished_at = time.monotonic()
            return keep_alive
        tools = tool_response(wire is OpenAIWire, body, keep_alive, count_words(body))
        if tools is not None:
            await self._write(writer, record, tools)
            record.finished_at = time.monotonic()
            return keep_alive
        if not stream:
            return await self._respond_json(writer, record, wire, body, fault, keep_alive)
        return await self._respond_stream(writer, record, wire, body, fault, keep_alive)

    async def _respond_json(
        self,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        wire: Wire,
        body: dict[str, Any],
        fault: Fault,
        keep_alive: bool,
    ) -> bool:
        model, tokens, finish, prompt = self._plan(wire, body, fault)
        if fault.kind == "error_event":
            payload = wire.error_object(fault.error_type, "fake error")
            await self._write(writer, record, json_response(200, payload, keep_alive))
            record.finished_at = time.monotonic()
            return keep_alive
        if fault.kind == "drip" and fault.ms:
            await asyncio.sleep(fault.ms * len(tokens) / 1000)
        payload = wire.completion(model, "".join(tokens), finish, prompt, len(tokens), fault.cached)
        response = json_response(200, payload, keep_alive)
        if fault.kind in ("stall_mid_stream", "drop_mid_stream"):
            cut = len(response) - len(payload) // 2
            await self._write(writer, record, response[:cut])
            if fault.kind == "drop_mid_stream":
                record.server_closed = True
                return False
            await _pause(fault.ms)
            response = response[cut:]
        await self._write(writer, record, response)
        record.finished_at = time.monotonic()
        return keep_alive

    async def _respond_stream(
        self,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        wire: Wire,
        body: dict[str, Any],
        fault: Fault,
        keep_alive: bool,
    ) -> bool:
        model, tokens, finish, prompt = self._plan(wire, body, fault)
        kind = fault.kind
        await self._write(
            writer,
            record,
            stream_headers(keep_alive) + chunk(wire.stream_head(model, prompt, fault.cached)),
        )
        for i in range(len(tokens) + 1):
            if i == fault.after or (i == len(tokens) and fault.after > len(tokens)):
                if kind == "stall_mid_stream":
                    await _pause(fault.ms)
                elif kind == "drop_mid_stream":
                    record.server_closed = True
                    return False
                elif kind == "error_event":
                    await self._write(writer, record, chunk(wire.error_event(fault.error_type, "fake error")))
                    await self._write(writer, record, b"0\r\n\r\n")
                    record.finished_at = time.monotonic()
                    return keep_alive
                elif kind == "malformed_sse":
                    await self._write(writer, record, chunk(b"data: {not json\n\n"))
            if i == len(tokens):
                break
            if kind == "drip" and fault.ms:
                await asyncio.sleep(fault.ms / 1000)
            await self._write(writer, record, chunk(wire.stream_token(model, tokens[i])))
        tail = wire.stream_tail(model, finish, prompt, len(tokens), fault.cached, body)
        await self._write(writer, record, chunk(tail) + b"0\r\n\r\n")
        record.finished_at = time.monotonic()
        return keep_alive

    async def _write(self, writer: asyncio.StreamWriter, record: RecordedRequest, data: bytes) -> None:
        if writer.is_closing():
            raise _ClientGone
        writer.write(data)
        if record.responded_at is None:
            record.responded_at = time.monotonic()
        await writer.drain()


class FakeProvider:
    """Runs a `FakeServer` on 127.0.0.1 (a free port) in a background thread; a context manager.

    Args:
        default: the fault for requests nothing else chose one for (default `ok`); a callable is called once
            per such request, on the server's thread.
        reply: the answer's tokens; the text of an `ok` answer is their concatenation.
        record: keep `requests` (turn off for long benchmarks).
        sample_json: answer an OpenAI `json_schema` request with JSON sampled from the schema
            (`provider_tools`) instead of `reply`.
    """

    def __init__(
        self,
        *,
        default: Fault | str | Callable[[], Fault] = "ok",
        reply: tuple[str, ...] = DEFAULT_REPLY,
        record: bool = True,
        port: int = 0,
        sample_json: bool = False,
    ) -> None:
        self._server = FakeServer(default=default, reply=reply, record=record, sample_json=sample_json)
        self._want_port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_openai(self) -> str:
        """An OpenAI `base_url`: the provider POSTs to `{url_openai}/chat/completions`."""
        return f"{self.url}/v1"

    @property
    def url_anthropic(self) -> str:
        """An Anthropic `base_url`: the provider POSTs to `{url_anthropic}/v1/messages`."""
        return self.url

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        return list(self._server.requests)

    @property
    def reply_text(self) -> str:
        return "".join(self._server.reply)

    @property
    def open_connections(self) -> int:
        """Client connections open right now (idle keep-alive ones included)."""
        return len(self._server._handlers)

    def script(self, *faults: Fault | str, model: str | None = None) -> None:
        """Queues faults for the next requests (of `model`, or of any model), one each, in order."""
        self._server.script(*faults, model=model)

    def wait(self, predicate: Callable[[list[RecordedRequest]], bool], timeout: float = 5.0) -> None:
        """Blocks until `predicate(requests)` holds (for sync tests); TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._server.changed:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("fake provider: condition not met in time")
                self._server.changed.wait(min(left, 0.05))

    async def until(self, predicate: Callable[[list[RecordedRequest]], bool], timeout: float = 5.0) -> None:
        """Awaits until `predicate(requests)` holds (for async tests); TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not predicate(self.requests):
            if time.monotonic() >= deadline:
                raise TimeoutError("fake provider: condition not met in time")
            await asyncio.sleep(0.001)

    def __enter__(self) -> FakeProvider:
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError("fake provider failed to start") from self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001  # handed to the starting thread, which raises it
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.port = await self._server.start(port=self._want_port)
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self._server.stop()


async def _pause(ms: float | None) -> None:
    if ms is None:
        await asyncio.get_running_loop().create_future()  # forever: until cancelled
    else:
        await asyncio.sleep(ms / 1000)


async def _serve_forever(host: str, port: int) -> None:
    server = FakeServer(record=False)
    bound = await server.start(host, port)
    print(f"fake provider listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic upstream answering at once.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    args = parser.parse_args(argv)
    asyncio.run(_serve_forever(args.host, args.port))


if __name__ == "__main__":
    main()
