"""The fake provider itself: fault specs, fault selection, recording, and the standalone process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.provider_faults import Fault
from tests.fakes.provider_server import FakeProvider

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ok", Fault()),
        ("status:503", Fault(kind="status", status=503)),
        ("status:429;retry_after=2", Fault(kind="status", status=429, retry_after="2")),
        ("status:429;retry_after_ms=150", Fault(kind="status", status=429, retry_after_ms="150")),
        ("stall_first_byte", Fault(kind="stall_first_byte", ms=None)),
        ("stall_first_byte:250", Fault(kind="stall_first_byte", ms=250.0)),
        ("stall_mid_stream;after=0", Fault(kind="stall_mid_stream", after=0)),
        ("drop_mid_stream;after=3", Fault(kind="drop_mid_stream", after=3)),
        ("drip:20;tokens=10", Fault(kind="drip", ms=20.0, tokens=10)),
        ("error_event:api_error", Fault(kind="error_event", error_type="api_error")),
        ("ok;latency=30;cached=2", Fault(latency_ms=30.0, cached=2)),
    ],
)
def test_fault_specs(spec: str, expected: Fault) -> None:
    assert Fault.parse(spec) == expected


@pytest.mark.parametrize(
    "spec", ["nope", "status", "status:200", "status:abc", "drip", "latency", "ok;colour=red", "ok;after=x"]
)
def test_bad_fault_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        Fault.parse(spec)


def post(fake: FakeProvider, model: str, path: str = "/v1/chat/completions", **body: Any) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(f"{fake.url}{path}", json=payload, timeout=5)


def test_fault_selection_order(fake_provider: FakeProvider) -> None:
    fake_provider.script("status:500")  # any model
    fake_provider.script("status:404", "status:403", model="gpt-x")
    assert post(fake_provider, "gpt-x").status_code == 404  # the model's own queue first
    assert post(fake_provider, "fault:status:401").status_code == 401  # the model id beats every queue
    assert post(fake_provider, "other").status_code == 500  # then the shared queue
    assert post(fake_provider, "gpt-x").status_code == 403
    assert post(fake_provider, "gpt-x").status_code == 200  # queues empty: the default
    assert [r.fault.status for r in fake_provider.requests] == [404, 401, 500, 403, 200]


def test_unknown_path_is_404(fake_provider: FakeProvider) -> None:
    assert post(fake_provider, "m", path="/v2/nothing").status_code == 404


def test_default_fault_applies_to_every_request() -> None:
    with FakeProvider(default="status:503") as fake:
        assert post(fake, "m").status_code == 503
        assert post(fake, "m").status_code == 503


def test_records_requests_and_idle_closes(fake_provider: FakeProvider) -> None:
    with httpx.Client(timeout=5) as client:
        for _ in range(2):
            response = client.post(
                f"{fake_provider.url_anthropic}/v1/messages",
                json={"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "a b c"}]},
                headers={"x-api-key": "sk-ant-secret-value-123"},
            )
            assert response.json()["usage"]["input_tokens"] == 3
        assert all(r.client_closed_at is None for r in fake_provider.requests)
    fake_provider.wait(lambda rs: rs[-1].client_closed_at is not None, timeout=2)
    first, second = fake_provider.requests
    assert first.connection == second.connection
    assert first.headers["x-api-key"] == "[redacted]"
    assert first.body["max_tokens"] == 5 and first.model == "claude" and not first.stream
    assert first.finished_at is not None and first.responded_at is not None
    assert first.received_at <= first.responded_at <= first.finished_at


def test_wait_times_out(fake_provider: FakeProvider) -> None:
    with pytest.raises(TimeoutError):
        fake_provider.wait(lambda rs: bool(rs), timeout=0.05)


def test_standalone_process_serves_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.provider_server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake provider listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            timeout=5,
        )
        assert response.status_code == 200
        assert response.text.endswith("data: [DONE]\n\n")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_bad_fault_in_a_model_id_is_answered_400_with_the_reason(fake_provider: FakeProvider) -> None:
    response = post(fake_provider, "fault:stall_forever")
    assert response.status_code == 400
    assert "unknown fault 'stall_forever'" in response.json()["error"]["message"]


def test_garbage_instead_of_http_is_answered_400(fake_provider: FakeProvider) -> None:
    with socket.create_connection(("127.0.0.1", fake_provider.port), timeout=5) as sock:
        sock.sendall(b"HELLO\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 400 ")
