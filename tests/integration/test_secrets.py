"""An API key never leaks: traffic through a real `tiergate serve` with recognisable fake keys, including
upstreams that echo the key back in their error messages (as OpenAI's "Incorrect API key provided: ..."
does), and the keys appear in no log line, decision record, metric, Decision or error message."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

# One key in a familiar shape, one in none at all: both must be masked.
OPENAI_KEY = "sk-proj-CANARYa1b2c3d4e5f6g7h8i9j0"
OTHER_KEY = "tgcanary-7Q2x9LmP4vR8sK1nZ0"
KEYS = (OPENAI_KEY, OTHER_KEY)
FRAGMENTS = ("CANARYa1b2c3d4", "7Q2x9LmP4vR8")  # what must not show even in part


class EchoingUpstream(BaseHTTPRequestHandler):
    """A provider that rejects every request, quoting the key it was sent (OpenAI and Anthropic shapes)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        key = self.headers.get("x-api-key") or self.headers.get("authorization", "").removeprefix("Bearer ")
        if self.path.endswith("/messages"):  # Anthropic
            status = 400
            body = {"type": "error", "error": {"type": "invalid_request_error", "message": f"bad key {key}"}}
        else:
            status = 401
            message = f"Incorrect API key provided: {key}. You can find your API key at ..."
            body = {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echoing() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def config(fake: FakeProvider, echoing: str) -> dict[str, Any]:
    return {
        "models": {
            "good": {"provider": "openai", "base_url": fake.url_openai, "model": "m", "api_key": "env:KEY_A"},
            "leaky_openai": {
                "provider": "openai",
                "base_url": f"{echoing}/v1",
                "model": "m",
                "api_key": "env:KEY_A",
            },
            "leaky_anthropic": {
                "provider": "anthropic",
                "base_url": echoing,
                "model": "c",
                "api_key": "env:KEY_B",
            },
            "refused": {
                "provider": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "model": "m",
                "api_key": OTHER_KEY,
            },
        },
        "routes": {
            "default": {"chain": ["leaky_openai", "good"], "retries": 0},
            "failing": {"chain": ["leaky_anthropic", "leaky_openai", "refused"], "retries": 0},
        },
        "budgets": {"acme": {"requests_per_minute": 1000}},
    }


@pytest.fixture(scope="module")
def sidecar(
    fake: FakeProvider, echoing: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarProcess]:
    env = {"KEY_A": OPENAI_KEY, "KEY_B": OTHER_KEY}
    with run_sidecar(config(fake, echoing), tmp_path_factory.mktemp("secrets"), env=env) as proc:
        yield proc


def assert_clean(where: str, text: str) -> None:
    for secret in (*KEYS, *FRAGMENTS):
        assert secret not in text, f"{where} carries (part of) an API key: {text[:2000]}"


def test_no_key_in_anything_the_sidecar_says(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    said: list[str] = []
    ask = pb.Message(role="user", content="Say hello")
    for task in ("default", "failing"):
        request = pb.CompleteRequest(task=task, messages=[ask], tenant="acme")
        for call in (
            lambda r=request: sidecar.stub.Complete(r, timeout=20),
            lambda r=request: list(sidecar.stub.StreamComplete(r, timeout=20)),
            lambda r=request: sidecar.stub.Explain(r, timeout=20),
        ):
            try:
                said.append(str(call()))
            except grpc.RpcError as exc:
                assert isinstance(exc, grpc.Call)
                said.append(f"{exc.code()} {exc.details()} {exc.trailing_metadata()}")
        for stream in (False, True):
            response = httpx.post(
                f"http://{sidecar.http_address}/v1/chat/completions",
                json={"model": task, "messages": [{"role": "user", "content": "hi"}], "stream": stream},
                timeout=20,
            )
            said.append(f"{response.status_code} {response.headers} {response.text}")
    said.append(httpx.get(f"http://{sidecar.http_address}/metrics", timeout=10).text)
    said.append(str(sidecar.stub.Status(pb.StatusRequest(), timeout=10)))

    # The traffic did what it should: keys went upstream, upstreams echoed them, answers and errors came back.
    everything = "\n".join(said)
    assert fake.reply_text in everything  # `default` fell back to the good model
    assert "AuthenticationError" in everything or "authentication" in everything.lower()
    assert "UNAVAILABLE" in everything and "502" in everything  # `failing` failed, on both doors
    assert "Incorrect API key provided" in everything  # the echo reached the error text, masked
    assert_clean("a response, error, Decision or metric", everything)
    deadline = time.monotonic() + 10
    while len(sidecar.records) < 8 and time.monotonic() < deadline:  # one per Complete and stream, 2 x 4
        time.sleep(0.02)
    assert len(sidecar.records) >= 8
    assert_clean("a log line", "".join(sidecar.log))
    assert_clean("a decision record", "".join(sidecar.records))


def test_no_key_in_config_errors(fake: FakeProvider, echoing: str, tmp_path: Path) -> None:
    data = config(fake, echoing)
    data["models"]["good"]["api_key"] = OPENAI_KEY  # a literal key in the file...
    data["routes"]["default"]["chain"] = ["good", "ghost"]  # ...and a mistake elsewhere
    path = tmp_path / "tiergate.yaml"
    path.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [sys.executable, "-m", "tiergate.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KEY_A": OPENAI_KEY, "KEY_B": OTHER_KEY, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2 and "unknown model 'ghost'" in result.stderr
    assert_clean("a config error", result.stdout + result.stderr)
