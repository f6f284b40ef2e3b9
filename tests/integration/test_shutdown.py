"""Graceful shutdown of a real `tiergate serve` on SIGTERM, and the cap on concurrent requests.

SIGTERM: health turns NOT_SERVING (and keeps answering), new requests are refused with UNAVAILABLE / 503,
requests in progress (gRPC and HTTP) finish within `listen.shutdown_grace_ms`, the rest are cancelled with
their upstream connections closed, and the process exits 0. A second signal cuts the grace short.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

DRIP = "fault:drip:150;tokens=8"  # about 1.2 s per answer
STALL = "fault:stall_mid_stream"  # one token, then nothing, ever


def config(fake: FakeProvider, grace_ms: float, **limits: Any) -> dict[str, Any]:
    def model(upstream: str) -> dict[str, Any]:
        return {"provider": "openai", "base_url": fake.url_openai, "model": upstream, "api_key": "k"}

    return {
        "listen": {"shutdown_grace_ms": grace_ms},
        "limits": limits,
        "models": {"drip": model(DRIP), "stall": model(STALL), "quick": model("m")},
        "routes": {
            "default": {"chain": ["quick"]},
            "slow": {"chain": ["drip"], "retries": 0},
            "stuck": {"chain": ["stall"], "retries": 0},
        },
    }


def request(task: str = "") -> pb.CompleteRequest:
    return pb.CompleteRequest(task=task, messages=[pb.Message(role="user", content="Say hello")])


class Call(threading.Thread):
    """Runs a call in the background and keeps its result or error."""

    def __init__(self, target: Any) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - kept for the test to look at
            self.error = exc


def upstream_started(fake: FakeProvider, model: str, count: int) -> None:
    fake.wait(lambda reqs: sum(r.model == model for r in reqs) >= count, timeout=10)


def stream_text(proc: SidecarProcess, task: str) -> str:
    return "".join(chunk.text for chunk in proc.stub.StreamComplete(request(task), timeout=30))


def test_sigterm_lets_requests_in_progress_finish(fake: FakeProvider, tmp_path: Path) -> None:
    with run_sidecar(config(fake, grace_ms=10_000), tmp_path) as proc:
        before = sum(r.model == DRIP for r in fake.requests)
        grpc_stream = Call(lambda: stream_text(proc, "slow"))
        unary = Call(lambda: proc.stub.Complete(request("slow"), timeout=30).text)
        http = Call(
            lambda: httpx.post(
                f"http://{proc.http_address}/v1/chat/completions",
                json={"model": "slow", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
        )
        upstream_started(fake, DRIP, before + 3)
        proc.proc.send_signal(signal.SIGTERM)
        proc.wait_for_log("stopping: 3 requests in flight")

        # Draining: health answers NOT_SERVING, new work is refused, readiness is down.
        assert proc.health() == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            proc.stub.Complete(request(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (refused.value.details() or "")

        assert proc.proc.wait(timeout=20) == 0
        for call in (grpc_stream, unary, http):
            call.join(timeout=5)
            assert call.error is None, call.error
        whole = "".join(fake.reply_text for _ in range(2))  # the drip fault's 8 tokens: the reply twice
        assert grpc_stream.result == whole
        assert unary.result == whole
        assert http.result.status_code == 200, http.result.text
        assert http.result.json()["choices"][0]["message"]["content"] == whole
    assert any("stopped" in line for line in proc.log)


def test_requests_over_the_grace_are_cancelled_and_their_upstream_closed(
    fake: FakeProvider, tmp_path: Path
) -> None:
    with run_sidecar(config(fake, grace_ms=500), tmp_path) as proc:
        before = sum(r.model == STALL for r in fake.requests)
        stuck = Call(lambda: stream_text(proc, "stuck"))
        upstream_started(fake, STALL, before + 1)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=20) == 0
        stuck.join(timeout=5)
        assert isinstance(stuck.error, grpc.RpcError)
        assert stuck.error.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        stalled = [r for r in fake.requests if r.model == STALL][before:]
        fake.wait(lambda _: all(r.client_closed_at is not None for r in stalled), timeout=5)
    assert any("cancelling the 1 requests still in flight" in line for line in proc.log), proc.log


def test_a_second_signal_cuts_the_grace_short(fake: FakeProvider, tmp_path: Path) -> None:
    with run_sidecar(config(fake, grace_ms=600_000), tmp_path) as proc:
        before = sum(r.model == STALL for r in fake.requests)
        stuck = Call(lambda: stream_text(proc, "stuck"))
        upstream_started(fake, STALL, before + 1)
        proc.proc.send_signal(signal.SIGTERM)
        proc.wait_for_log("stopping: 1 requests in flight")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=20) == 0  # not the ten minutes of grace
        stuck.join(timeout=5)
        assert isinstance(stuck.error, grpc.RpcError)


# -- back-pressure -------------------------------------------------------------------------------------------


def test_requests_over_the_concurrency_cap_are_rejected_at_once(fake: FakeProvider, tmp_path: Path) -> None:
    with run_sidecar(config(fake, grace_ms=1000, max_concurrent_requests=2), tmp_path) as proc:
        before = len(fake.requests)
        running = [Call(lambda: stream_text(proc, "slow")) for _ in range(2)]
        upstream_started(fake, DRIP, sum(r.model == DRIP for r in fake.requests[:before]) + 2)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            proc.stub.Complete(request(), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limits.max_concurrent_requests" in (info.value.details() or "")
        assert time.monotonic() - started < 5  # rejected, not queued behind the slow ones
        response = httpx.post(
            f"http://{proc.http_address}/v1/chat/completions",
            json={"model": "default", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert response.status_code == 429 and response.json()["error"]["type"] == "rate_limit_error"
        assert len(fake.requests) == before + 2  # the rejected ones never reached a provider
        for call in running:
            call.join(timeout=10)
            assert call.error is None
        assert proc.stub.Complete(request(), timeout=10).text == fake.reply_text  # capacity is back


def test_the_cap_counts_requests_still_running_on_a_replaced_config(
    fake: FakeProvider, tmp_path: Path
) -> None:
    data = config(fake, grace_ms=1000, max_concurrent_requests=2)
    with run_sidecar(data, tmp_path) as proc:
        before = sum(r.model == DRIP for r in fake.requests)
        running = [Call(lambda: stream_text(proc, "slow")) for _ in range(2)]
        upstream_started(fake, DRIP, before + 2)
        assert proc.config_path is not None
        data["routes"]["default"]["retries"] = 2  # any change: a new config takes over
        proc.config_path.write_text(yaml.safe_dump(data))
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for_log("config reloaded")
        assert proc.stub.Status(pb.StatusRequest(), timeout=10).in_flight == 2
        with pytest.raises(grpc.RpcError) as info:
            proc.stub.Complete(request(), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for call in running:
            call.join(timeout=10)
            assert call.error is None
        assert proc.stub.Complete(request(), timeout=10).text == fake.reply_text
