"""Bad input at every door of a real `tiergate serve`: each gets a clear, typed error, no provider is called,
and the sidecar goes on serving. The config doors (bad types, unknown keys, invalid regex, unknown model in a
route, an empty chain or a model twice in one) fail at start, naming the key."""

from __future__ import annotations

import errno
import http.client
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

LIMIT = 4096  # limits.max_request_bytes
HELLO = [pb.Message(role="user", content="Say hello")]


def config(fake: FakeProvider) -> dict[str, Any]:
    return {
        "limits": {"max_request_bytes": LIMIT, "max_output_tokens": 4000},
        "models": {
            "hosted": {"provider": "openai", "base_url": fake.url_openai, "model": "m", "api_key": "k"}
        },
        "routes": {"chat": {"chain": ["hosted"]}},  # no `default` route: an unknown task has nowhere to go
    }


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with run_sidecar(config(fake), tmp_path_factory.mktemp("bad-input")) as proc:
        yield proc


@pytest.fixture
def untouched(sidecar: SidecarProcess, fake: FakeProvider) -> Iterator[None]:
    """Asserts the test's bad input reached no provider and that the sidecar still serves afterwards."""
    before = len(fake.requests)
    yield
    assert len(fake.requests) == before, "bad input reached a provider"
    assert sidecar.health() == health_pb2.HealthCheckResponse.SERVING
    answer = sidecar.stub.Complete(pb.CompleteRequest(task="chat", messages=HELLO), timeout=10)
    assert answer.text == fake.reply_text


# -- gRPC ----------------------------------------------------------------------------------------------------


def req(**fields: Any) -> pb.CompleteRequest:
    return pb.CompleteRequest(**{"task": "chat", "messages": HELLO, **fields})


GRPC_CASES = {
    "empty messages": (req(messages=[]), "INVALID_ARGUMENT", "messages is empty"),
    "only blank messages": (
        req(messages=[pb.Message(role="user", content=" \n")]),
        "INVALID_ARGUMENT",
        "empty",
    ),
    "unknown role": (req(messages=[pb.Message(role="wizard", content="x")]), "INVALID_ARGUMENT", "'wizard'"),
    "unknown task": (req(task="nope"), "NOT_FOUND", "nope"),
    "oversized": (
        req(messages=[pb.Message(role="user", content="x" * (LIMIT + 1))]),
        "INVALID_ARGUMENT",
        "limits.max_request_bytes",
    ),
    "huge max_output_tokens": (req(max_output_tokens=4_294_967_295), "INVALID_ARGUMENT", "max_output_tokens"),
    "json_schema not JSON": (req(json_schema="{nope"), "INVALID_ARGUMENT", "json_schema"),
    "json_schema not a schema": (req(json_schema='{"type": "nonsense"}'), "INVALID_ARGUMENT", "JSON Schema"),
    "unknown sensitivity": (req(sensitivity=9), "INVALID_ARGUMENT", "sensitivity: unknown value 9"),
    "temperature out of range": (req(temperature=7.5), "INVALID_ARGUMENT", "temperature"),
    "negative max_cost_usd": (req(max_cost_usd=-1.0), "INVALID_ARGUMENT", "max_cost_usd"),
    # tools, tool calls and images
    "tool schema not JSON": (
        req(tools=[pb.Tool(name="lookup", parameters="{nope")]),
        "INVALID_ARGUMENT",
        "tools[0].parameters (lookup): not valid JSON",
    ),
    "tool schema not a schema": (
        req(
            tools=[pb.Tool(name="lookup", parameters='{"type": "object", "properties": {"q": {"type": 5}}}')]
        ),
        "INVALID_ARGUMENT",
        "tools[0].parameters (lookup)",
    ),
    "tool name with spaces": (req(tools=[pb.Tool(name="look up")]), "INVALID_ARGUMENT", "tools[0].name"),
    "tool result without its call": (
        req(messages=[*HELLO, pb.Message(role="tool", content="42", tool_call_id="call_9")]),
        "INVALID_ARGUMENT",
        "'call_9' answers no tool call",
    ),
    "tool call arguments not JSON": (
        req(
            messages=[
                *HELLO,
                pb.Message(role="assistant", tool_calls=[pb.ToolCall(id="c", name="f", arguments="{x")]),
            ]
        ),
        "INVALID_ARGUMENT",
        "tool_calls[0].arguments: not valid JSON",
    ),
    "forced tool not offered": (
        req(tools=[pb.Tool(name="a")], tool_choice=pb.ToolChoice(mode="tool", name="b")),
        "INVALID_ARGUMENT",
        "tool_choice: 'b'",
    ),
    "image URL with a bad scheme": (
        req(
            messages=[
                pb.Message(role="user", parts=[pb.ContentPart(image=pb.Image(url="file:///etc/passwd"))])
            ]
        ),
        "INVALID_ARGUMENT",
        "image URL scheme 'file'",
    ),
    "oversize inline image": (
        req(
            messages=[
                pb.Message(
                    role="user",
                    parts=[pb.ContentPart(image=pb.Image(data=b"x" * (LIMIT + 1), mime_type="image/png"))],
                )
            ]
        ),
        "INVALID_ARGUMENT",
        f"inline image of {LIMIT + 1} bytes",
    ),
    "top_p out of range": (req(top_p=1.5), "INVALID_ARGUMENT", "top_p"),
    "unknown tool mode": (
        req(tool_choice=pb.ToolChoice(mode="sometimes")),
        "INVALID_ARGUMENT",
        "tool_choice.mode",
    ),
}


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("method", ["Complete", "StreamComplete", "Explain"])
@pytest.mark.parametrize("case", sorted(GRPC_CASES))
def test_bad_grpc_requests(sidecar: SidecarProcess, method: str, case: str) -> None:
    request, code, message = GRPC_CASES[case]
    call: Callable[..., Any] = getattr(sidecar.stub, method)
    with pytest.raises(grpc.RpcError) as info:
        result = call(request, timeout=10)
        if method == "StreamComplete":
            list(result)
    assert info.value.code().name == code
    assert message in (info.value.details() or "")


@pytest.mark.usefixtures("untouched")
def test_a_message_far_over_the_limit_is_refused_by_the_transport(sidecar: SidecarProcess) -> None:
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.Complete(req(messages=[pb.Message(role="user", content="x" * 1_000_000)]), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.CountTokensRequest(text="x", encoding="r50k_base"), "r50k_base"),
        (pb.CountTokensRequest(text="x", model="nope"), "unknown model 'nope'"),
    ],
)
def test_bad_count_tokens_requests(
    sidecar: SidecarProcess, request_: pb.CountTokensRequest, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.CountTokens(request_, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")


GARBAGE = {
    "random bytes": bytes(range(256)) * 8,
    "an HTTP/1.1 request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "a cut-off HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r",
    "a preface then a bogus frame": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + b"\x00\x00\x05\x09\xff\x00\x00\x00\x07hello",
}


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_garbage_bytes_on_the_grpc_port(sidecar: SidecarProcess, garbage: str) -> None:
    host, port = sidecar.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        try:
            conn.sendall(GARBAGE[garbage])
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):  # the server answers (a GOAWAY, say) and closes, or just closes
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass  # it closed with our bytes unread, which the kernel reports as a reset: closed all the same
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise  # (ENOTCONN: it closed before we had finished writing)


# -- the HTTP facade -----------------------------------------------------------------------------------------


def post(sidecar: SidecarProcess, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(sidecar.http_address, timeout=10)
    try:
        conn.request(
            "POST", "/v1/chat/completions", body, {"Content-Type": "application/json", **(headers or {})}
        )
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode(errors="replace")
    finally:
        conn.close()


def chat(**fields: Any) -> bytes:
    return json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


HTTP_CASES = {
    "not JSON": (b'{"model": "chat", "messages": [', 400, "not valid JSON"),
    "not an object": (b'["chat"]', 400, "must be a JSON object"),
    "messages a string": (b'{"model": "chat", "messages": "hi"}', 400, "messages: wrong type (str)"),
    "message not an object": (
        b'{"model": "chat", "messages": ["hi"]}',
        400,
        "messages[0]: must be an object",
    ),
    "empty messages": (b'{"model": "chat", "messages": []}', 400, "must not be empty"),
    "missing model": (b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "model: required"),
    "model a number": (chat(model=5), 400, "model: wrong type (int)"),
    "max_tokens a string": (chat(max_tokens="lots"), 400, "max_tokens: wrong type (str)"),
    "max_tokens true": (chat(max_tokens=True), 400, "max_tokens: wrong type (bool)"),
    "huge max_tokens": (chat(max_tokens=10**12), 400, "max_output_tokens"),
    "temperature a string": (chat(temperature="hot"), 400, "temperature: wrong type"),
    "stream a string": (chat(stream="yes"), 400, "stream: wrong type"),
    "bad response_format": (chat(response_format={"type": "xml"}), 400, "response_format"),
    "schema not a schema": (
        chat(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}}),
        400,
        "JSON Schema",
    ),
    "unknown sensitivity": (chat(sensitivity="secret"), 400, "sensitivity"),
    "unknown model": (chat(model="nope"), 404, "nope"),
    "oversized content": (
        chat(messages=[{"role": "user", "content": "x" * (LIMIT + 1)}]),
        400,
        "max_request",
    ),
    "bad timeout header": (chat(), 400, "x-tiergate-timeout-ms"),
    # tools, tool calls and images
    "tool schema not a schema": (
        chat(
            tools=[
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "required": 3}},
                }
            ]
        ),
        400,
        "tools[0].parameters (f)",
    ),
    "tool without a function": (chat(tools=[{"type": "function"}]), 400, "tools[0]"),
    "tool result without its call": (
        chat(
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_9", "content": "42"},
            ]
        ),
        400,
        "'call_9' answers no tool call",
    ),
    "tool call arguments not JSON": (
        chat(
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}
                    ],
                },
            ]
        ),
        400,
        "tool_calls[0].arguments: not valid JSON",
    ),
    "image URL with a bad scheme": (
        chat(
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}
            ]
        ),
        400,
        "image URL scheme 'ftp'",
    ),
    "oversize inline image": (
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 8000}}
                    ],
                }
            ]
        ),
        400,
        "inline image of 6000 bytes",
    ),
    "data URL not base64": (
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}],
                }
            ]
        ),
        400,
        "not valid base64",
    ),
    "n over 1": (chat(n=3), 400, "n=3 is not supported"),
    "logprobs": (chat(logprobs=True), 400, "logprobs"),
    "deprecated functions": (chat(functions=[{"name": "f"}]), 400, "functions: not supported"),
    "bad tool_choice": (chat(tool_choice="always"), 400, "tool_choice"),
}


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("case", sorted(HTTP_CASES))
def test_bad_http_requests(sidecar: SidecarProcess, case: str) -> None:
    body, status, message = HTTP_CASES[case]
    headers = {"x-tiergate-timeout-ms": "soon"} if case == "bad timeout header" else None
    code, error = post(sidecar, body, headers)
    assert code == status, error
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert message in error["error"]["message"]


@pytest.mark.usefixtures("untouched")
def test_a_body_over_the_limit_is_refused_before_it_is_read(sidecar: SidecarProcess) -> None:
    code, error = post(sidecar, b"x" * (LIMIT + 70_000))
    assert code == 413 and "limits.max_request_bytes" in error


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /\r\n\r\n",
    ],
)
def test_garbage_bytes_on_the_http_port(sidecar: SidecarProcess, garbage: bytes) -> None:
    host, port = sidecar.http_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(garbage)
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    assert answer == b"" or re.match(rb"HTTP/\d\.\d 400 ", answer), answer


# -- RFC 9112 probes on the facade's port (the HTTP/1.1 parsing is aiohttp's) ------------------------------


def raw_exchange(sidecar: SidecarProcess, data: bytes, *, then: bytes = b"") -> bytes:
    """Sends `data` (then, once the server has answered something, `then`) and reads until the server
    closes the connection: every request here ends with `Connection: close` or is refused."""
    host, port = sidecar.http_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(data)
        answer = b""
        if then:
            while b"\r\n\r\n" not in answer:
                answer += conn.recv(4096)
            conn.sendall(then)
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def chat_request(body: bytes, *extra: bytes, close: bool = True) -> bytes:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"".join(line + b"\r\n" for line in extra)
    return head + (b"Connection: close\r\n" if close else b"")


def test_a_chunked_request_body_is_read(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    body = chat(model="chat")
    pieces = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in (body[:10], body[10:]))
    answer = raw_exchange(
        sidecar, chat_request(body, b"Transfer-Encoding: chunked") + b"\r\n" + pieces + b"0\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert fake.reply_text.encode() in answer


def test_two_pipelined_requests_get_two_answers(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    body = chat(model="chat")
    length = b"Content-Length: %d" % len(body)
    first = chat_request(body, length, close=False) + b"\r\n" + body
    second = chat_request(body, length) + b"\r\n" + body
    answer = raw_exchange(sidecar, first + second)
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer[:400]
    assert answer.count(fake.reply_text.encode()) == 2


def test_expect_100_continue_is_answered(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    body = chat(model="chat")
    head = chat_request(body, b"Content-Length: %d" % len(body), b"Expect: 100-continue") + b"\r\n"
    answer = raw_exchange(sidecar, head, then=body)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "), answer[:200]


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"Content-Length : 20", id="whitespace before the colon"),
        pytest.param(b"Transfer-Encoding: chunked\r\nContent-Length: 20", id="both framings"),
        pytest.param(b"Transfer-Encoding: gzip, chunked, identity", id="chunked not last"),
        pytest.param(b"Content-Length: 20\r\nContent-Length: 21", id="two lengths"),
    ],
)
def test_request_smuggling_probes_are_refused(sidecar: SidecarProcess, header: bytes) -> None:
    body = chat(model="chat")
    answer = raw_exchange(sidecar, chat_request(body, header) + b"\r\n" + body)
    assert re.match(rb"HTTP/1\.[01] 400 ", answer), answer[:200]  # aiohttp's parser answers in HTTP/1.0


# -- the config ----------------------------------------------------------------------------------------------


def with_change(fake: FakeProvider, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = config(fake)
    change(data)
    return data


CONFIG_CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "bad type": (lambda c: c["limits"].update(max_request_bytes="lots"), "limits.max_request_bytes"),
    "unknown key": (
        lambda c: c["routes"]["chat"].update(fallback=["x"]),
        "routes.chat.fallback: unknown key",
    ),
    "invalid regex": (
        lambda c: c.update(rules=[{"id": "broken", "regex": "(unclosed", "sensitivity": "restricted"}]),
        "broken",
    ),
    "unknown model in a route": (
        lambda c: c["routes"]["chat"].update(chain=["hosted", "ghost"]),
        "routes.chat.chain[1]: unknown model 'ghost'",
    ),
    "empty chain": (lambda c: c["routes"]["chat"].update(chain=[]), "routes.chat.chain"),
    "a model twice in a chain": (
        lambda c: c["routes"]["chat"].update(chain=["hosted", "hosted"]),
        "routes.chat.chain[1]: model 'hosted' appears twice",
    ),
    "no models": (lambda c: c.update(models={}), "models"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_configs_fail_at_start_naming_the_key(fake: FakeProvider, tmp_path: Path, case: str) -> None:
    change, message = CONFIG_CASES[case]
    path = tmp_path / "tiergate.yaml"
    path.write_text(yaml.safe_dump(with_change(fake, change)))
    for command in (["check-config", str(path)], ["serve", "--config", str(path), "--grpc", "127.0.0.1:0"]):
        result = subprocess.run(
            [sys.executable, "-m", "tiergate.cli", *command], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
