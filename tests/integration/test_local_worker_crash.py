"""A real `tiergate serve` whose on-device worker process dies: the sidecar serves on.

The config has the embedded model (`local`, in its worker process) and a hosted model (the loopback fake,
OpenAI wire). The worker is killed with SIGSEGV or SIGKILL while it generates; meanwhile hosted requests run.
Checked: the sidecar stays SERVING, every hosted request succeeds, the in-flight local request falls over to
the hosted model (or, restricted, fails closed with the crash and the restart in its error, and its text
never reaches the fake), Status, /readyz and /metrics show the crash and the restart, and the local model
serves again. Then: a worker whose model cannot load (the sidecar up, a clear error), and no worker
outliving its sidecar (SIGTERM, SIGKILL).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

pytestmark = pytest.mark.local_model

LONG = "Write a Python program that prints a multiplication table, with comments."
SECRET_MAIL = "crash.canary.7d1f@example.com"


def crash_config(fake: FakeProvider, model_path: str = "embedded") -> dict[str, Any]:
    return {
        "models": {
            "local": {"provider": "llama_cpp", "path": model_path, "context_window": 1024, "queue_size": 4},
            "hosted": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "hosted-m",
                "api_key": "k",
            },
        },
        "rules": [{"id": "email", "regex": r"[\w.+-]+@[\w-]+\.[\w.-]+", "sensitivity": "restricted"}],
        "routes": {
            "default": {"chain": ["local", "hosted"], "retries": 0},
            "hosted": {"chain": ["hosted"], "retries": 0},
        },
    }


def ask(text: str, task: str = "", max_output_tokens: int = 16) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        task=task, messages=[pb.Message(role="user", content=text)], max_output_tokens=max_output_tokens
    )


def worker_pids(sidecar_pid: int) -> list[int]:
    """The sidecar's worker processes, from /proc: children running `tiergate.local.worker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == sidecar_pid and b"tiergate.local.worker" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def eventually(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Polls until `condition()` is truthy (a bounded wait for a state, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def local_status(sidecar: SidecarProcess) -> pb.ModelStatus:
    models = sidecar.stub.Status(pb.StatusRequest(), timeout=10).models
    return next(m for m in models if m.name == "local")


def one_worker(sidecar: SidecarProcess) -> int:
    pids = eventually(lambda: worker_pids(sidecar.proc.pid), "a worker process runs")
    assert len(pids) == 1
    return int(pids[0])


def metric(sidecar: SidecarProcess, name: str) -> float:
    text = httpx.get(f"http://{sidecar.http_address}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'{name}{{model="local"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


class HostedTraffic:
    """Hosted requests on a thread, one after another, until stopped: every one must succeed."""

    def __init__(self, sidecar: SidecarProcess) -> None:
        self._sidecar = sidecar
        self._stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HostedTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self._sidecar.stub.Complete(ask("Summarise the news.", task="hosted"), timeout=20)
                assert response.decision.served_by == "hosted"
                self.answered += 1
            except (grpc.RpcError, AssertionError) as exc:
                self.failures.append(repr(exc))


@pytest.fixture
def served(fake: FakeProvider, tmp_path: Path) -> Iterator[SidecarProcess]:
    with run_sidecar(crash_config(fake), tmp_path, timeout_s=120) as sidecar:
        yield sidecar


def start_long_local(sidecar: SidecarProcess, text: str) -> tuple[threading.Thread, dict[str, Any]]:
    """A unary request that generates at length on the local model, on a thread; waits until it runs."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["response"] = sidecar.stub.Complete(ask(text, max_output_tokens=400), timeout=120)
        except grpc.RpcError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    eventually(lambda: local_status(sidecar).queue >= 1, "the local model is generating")
    return thread, outcome


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
def test_a_worker_crash_mid_generation_falls_over_and_the_sidecar_serves_on(
    served: SidecarProcess, fake: FakeProvider, sig: signal.Signals
) -> None:
    sidecar = served
    pid = one_worker(sidecar)
    with HostedTraffic(sidecar) as hosted:
        eventually(lambda: hosted.answered >= 3, "hosted traffic flows")
        thread, outcome = start_long_local(sidecar, LONG)
        os.kill(pid, sig)
        thread.join(timeout=120)
        answered_at_crash = hosted.answered
        eventually(lambda: hosted.answered >= answered_at_crash + 3, "hosted traffic flows after the crash")

    assert hosted.failures == []
    # The local attempt failed with the crash; the request moved on to the next model of its chain.
    response = outcome["response"]
    attempts = [(a.model, a.outcome, a.error.split(":")[0]) for a in response.decision.attempts]
    assert attempts == [("local", "error", "local_worker_crashed"), ("hosted", "ok", "")]
    assert "died during this request" in response.decision.attempts[0].error
    assert sidecar.health() == health_pb2.HealthCheckResponse.SERVING
    assert sidecar.proc.poll() is None

    # The worker comes back, and every view of the sidecar says what happened.
    new_pid = eventually(lambda: [p for p in worker_pids(sidecar.proc.pid) if p != pid], "a new worker")[0]
    status = eventually(lambda: (s := local_status(sidecar)).worker == "up" and s, "the worker is up")
    assert status.worker_restarts == 1
    assert status.worker_error == f"the worker process died ({sig.name})"
    assert metric(sidecar, "tiergate_local_restarts_total") == 1.0
    assert metric(sidecar, "tiergate_local_crashes_total") == 1.0
    assert metric(sidecar, "tiergate_local_worker_up") == 1.0
    assert not alive(pid) and alive(new_pid)
    served_again = sidecar.stub.Complete(ask("What is the capital of France?"), timeout=60)
    assert served_again.decision.served_by == "local" and "Paris" in served_again.text


def test_a_restricted_request_fails_closed_when_the_worker_dies(
    served: SidecarProcess, fake: FakeProvider
) -> None:
    sidecar = served
    pid = one_worker(sidecar)
    before = len(fake.requests)
    thread, outcome = start_long_local(sidecar, f"Write a long letter to {SECRET_MAIL} about taxes.")
    os.kill(pid, signal.SIGSEGV)
    thread.join(timeout=120)

    error = outcome["error"]
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "died during this request" in error.details() and "restarted" in error.details()
    assert all(SECRET_MAIL not in str(r.body) for r in fake.requests)  # never forwarded
    assert len(fake.requests) == before
    # While down, or after the restart: still on the device only.
    eventually(lambda: local_status(sidecar).worker == "up", "the worker is up")
    response = sidecar.stub.Complete(ask(f"Say hello to {SECRET_MAIL}."), timeout=60)
    assert response.decision.served_by == "local"
    assert all(SECRET_MAIL not in str(r.body) for r in fake.requests)
    assert SECRET_MAIL not in "".join(sidecar.log)


def test_readyz_says_what_is_degraded_while_the_worker_is_down(fake: FakeProvider, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4092))  # GGUF magic, then garbage: llama.cpp cannot load it
    with run_sidecar(crash_config(fake, str(broken)), tmp_path, timeout_s=120) as sidecar:
        assert sidecar.health() == health_pb2.HealthCheckResponse.SERVING  # up, without its local model
        status = local_status(sidecar)
        assert status.worker in ("down", "starting") and "corrupt or unsupported" in status.worker_error
        ready = httpx.get(f"http://{sidecar.http_address}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.text.startswith("ready\n") and "degraded: local model local: worker" in ready.text
        assert metric(sidecar, "tiergate_local_worker_up") == 0.0

        # Not restricted: served by the hosted model; restricted: refused, never forwarded. A worker that is
        # down is no observation of the model: however many requests it turns away, the breaker stays closed
        # (it would otherwise hold the model off long after the worker is back).
        for _ in range(8):
            response = sidecar.stub.Complete(ask("What is the capital of France?"), timeout=30)
            assert response.decision.served_by == "hosted"
            assert response.decision.attempts[0].error.startswith("local_worker_down: ")
            assert "corrupt or unsupported" in response.decision.attempts[0].error
        assert local_status(sidecar).breaker == "closed"
        with pytest.raises(grpc.RpcError) as info:
            sidecar.stub.Complete(ask(f"Mail {SECRET_MAIL}"), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "corrupt or unsupported" in info.value.details()
        assert all(SECRET_MAIL not in str(r.body) for r in fake.requests)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_worker_outlives_its_sidecar(fake: FakeProvider, tmp_path: Path, sig: signal.Signals) -> None:
    with run_sidecar(crash_config(fake), tmp_path, timeout_s=120) as sidecar:
        pid = one_worker(sidecar)
        sidecar.proc.send_signal(sig)
        sidecar.proc.wait(timeout=30)
        eventually(lambda: not alive(pid), f"the worker exits after the sidecar's {sig.name}", timeout=30)
