"""Hot reload: invalid configs are rejected while the old one serves, requests in flight finish on their
config, unchanged models keep provider (connection pool) and breaker state; SIGHUP and file changes."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.config import load
from tiergate.reload import ConfigReloader, LiveSidecar
from tiergate.server.grpc import TiergateServicer
from tiergate.server.grpc_server import GrpcServer
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

KEY = "sk-reload-test-0123456789"


def model(fake: FakeProvider, upstream: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "base_url": fake.url_openai,
        "api_key": "env:TIERGATE_TEST_KEY",
        "model": upstream,
        **extra,
    }


def base_config(fake: FakeProvider) -> dict[str, Any]:
    return {
        "models": {"one": model(fake, "gpt-one"), "two": model(fake, "gpt-two")},
        "routes": {"default": {"chain": ["one"], "retries": 0}},
        "breaker": {"min_calls": 2, "window": 2, "open_ms": 600_000},
    }


@dataclass
class Running:
    live: LiveSidecar
    reloader: ConfigReloader
    telemetry: Telemetry
    stub: pb_grpc.TiergateStub
    path: Path

    def write(self, config: dict[str, Any] | str) -> None:
        self.path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))

    def reloads(self, result: str) -> float:
        value = self.telemetry.metrics.registry.get_sample_value(
            "tiergate_config_reloads_total", {"result": result}
        )
        return value or 0.0


@asynccontextmanager
async def running(config: dict[str, Any], tmp_path: Path, monkeypatch: Any) -> AsyncIterator[Running]:
    """The servicer over a LiveSidecar with a ConfigReloader on a file, as `tiergate serve` wires them."""
    monkeypatch.setenv("TIERGATE_TEST_KEY", KEY)
    path = tmp_path / "tiergate.yaml"
    path.write_text(yaml.safe_dump(config))
    telemetry = Telemetry()
    live = LiveSidecar(await Sidecar.start(load(path), telemetry=telemetry))
    reloader = ConfigReloader(live, path, telemetry, interval_s=0.05)
    server = GrpcServer(TiergateServicer(live))
    port = await server.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Running(live, reloader, telemetry, pb_grpc.TiergateStub(channel), path)
    finally:
        await channel.close()
        await server.stop()
        await reloader.aclose()
        await live.current.aclose()


def ask() -> pb.CompleteRequest:
    return pb.CompleteRequest(messages=[pb.Message(role="user", content="hello there")])


async def test_an_invalid_config_is_rejected_and_the_old_one_keeps_serving(
    fake_provider: FakeProvider, tmp_path: Path, monkeypatch: Any
) -> None:
    async with running(base_config(fake_provider), tmp_path, monkeypatch) as r:
        before = r.live.current
        bad_rule = {**base_config(fake_provider), "rules": [{"id": "broken", "regex": "(unclosed"}]}
        for invalid in ("models: [", {**base_config(fake_provider), "bogus": 1}, bad_rule):
            r.write(invalid)
            assert await r.reloader.reload() is False
            assert r.live.current is before
            assert (await r.stub.Complete(ask(), timeout=5)).decision.served_by == "one"
        assert r.reloads("rejected") == 3
        assert r.reloads("ok") == 0
        # The providers of the rejected configs were closed, the running ones were not: still served.
        assert (await r.stub.Complete(ask(), timeout=5)).decision.served_by == "one"


async def test_in_flight_requests_finish_on_their_config_and_unused_providers_close_after(
    fake_provider: FakeProvider, tmp_path: Path, monkeypatch: Any
) -> None:
    config = base_config(fake_provider)
    async with running(config, tmp_path, monkeypatch) as r:
        old = r.live.current
        await r.stub.Complete(pb.CompleteRequest(messages=ask().messages), timeout=5)  # warm "one"
        fake_provider.script("latency:700", model="gpt-one")
        slow = asyncio.ensure_future(r.stub.Complete(ask(), timeout=10))
        await fake_provider.until(lambda reqs: sum(q.model == "gpt-one" for q in reqs) == 2)

        # "one" goes away, "two" is unchanged, "three" is new; the route now uses "two".
        new_config = {
            **config,
            "models": {"two": config["models"]["two"], "three": model(fake_provider, "gpt-three")},
            "routes": {"default": {"chain": ["two", "three"]}},
        }
        r.write(new_config)
        assert await r.reloader.reload() is True
        new = r.live.current
        assert new is not old
        assert new.providers["two"] is old.providers["two"]
        assert new.breakers["two"] is old.breakers["two"]
        assert (await r.stub.Complete(ask(), timeout=5)).decision.served_by == "two"

        # The request that started before the reload finishes there, on "one"; its connection stays open
        # until then.
        assert all(q.client_closed_at is None for q in fake_provider.requests if q.model == "gpt-one")
        answer = await slow
        assert answer.decision.served_by == "one"
        # Then the old Sidecar closes "one" (the client closes its connection), never "two".
        await fake_provider.until(
            lambda reqs: [q for q in reqs if q.model == "gpt-one"][-1].client_closed_at is not None, timeout=5
        )
        two_before = {q.connection for q in fake_provider.requests if q.model == "gpt-two"}
        assert (await r.stub.Complete(ask(), timeout=5)).decision.served_by == "two"
        two_after = {q.connection for q in fake_provider.requests if q.model == "gpt-two"}
        assert two_after == two_before  # the same pooled connection: the pool survived the reload
        assert r.reloads("ok") == 1


async def test_breaker_state_survives_for_unchanged_models_only(
    fake_provider: FakeProvider, tmp_path: Path, monkeypatch: Any
) -> None:
    config = base_config(fake_provider)
    config["routes"]["default"]["chain"] = ["one", "two"]
    async with running(config, tmp_path, monkeypatch) as r:
        for _ in range(2):
            fake_provider.script("status:500", model="gpt-one")
            await r.stub.Complete(ask(), timeout=5)  # "one" fails, "two" serves
        assert r.live.current.breakers["one"].state == "open"

        # An unrelated change (a new rule): "one" stays open and is skipped without a call.
        config["rules"] = [{"id": "greeting", "keywords": ["hello"], "complexity": "trivial"}]
        r.write(config)
        assert await r.reloader.reload() is True
        answer = await r.stub.Complete(ask(), timeout=5)
        assert answer.decision.served_by == "two"
        assert answer.decision.matched_rules == ["greeting"]  # the new rule set is in use
        assert [s.reason for s in answer.decision.skipped] == ["circuit breaker open"]

        # A change to "one" itself gives it a fresh breaker (and provider).
        config["models"]["one"]["request_timeout_ms"] = 60_000
        r.write(config)
        assert await r.reloader.reload() is True
        assert r.live.current.breakers["one"].state == "closed"
        assert (await r.stub.Complete(ask(), timeout=5)).decision.served_by == "one"


async def test_a_changed_file_is_noticed_by_polling(
    fake_provider: FakeProvider, tmp_path: Path, monkeypatch: Any
) -> None:
    config = base_config(fake_provider)
    async with running(config, tmp_path, monkeypatch) as r:
        watcher = asyncio.create_task(r.reloader.watch())
        try:
            config["routes"]["default"]["chain"] = ["two"]
            r.write(config)
            for _ in range(100):
                if r.reloads("ok"):
                    break
                await asyncio.sleep(0.05)
            assert (await r.stub.Complete(ask(), timeout=5)).decision.served_by == "two"
        finally:
            watcher.cancel()


# -- the real process: SIGHUP and the 2-second poll ---------------------------------------------------------


def reload_count(sidecar: SidecarProcess, result: str) -> float:
    text = httpx.get(f"http://{sidecar.http_address}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f'tiergate_config_reloads_total{{result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0


def wait_for(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sighup_and_file_changes_reload_a_running_sidecar(
    fake_provider: FakeProvider, tmp_path: Path
) -> None:
    config = base_config(fake_provider)
    with run_sidecar(config, tmp_path, env={"TIERGATE_TEST_KEY": KEY}) as sidecar:
        assert sidecar.config_path is not None
        assert sidecar.stub.Complete(ask(), timeout=5).decision.served_by == "one"
        config["routes"]["default"]["chain"] = ["two"]
        sidecar.config_path.write_text(yaml.safe_dump(config))
        sidecar.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: reload_count(sidecar, "ok") >= 1, 10)
        assert sidecar.stub.Complete(ask(), timeout=5).decision.served_by == "two"

        # No signal this time: the poll notices the change, rejects it, and the old config serves on.
        sidecar.config_path.write_text("routes: {default: {chain: [nowhere]}}\n")
        wait_for(lambda: reload_count(sidecar, "rejected") >= 1, 10)
        assert sidecar.stub.Complete(ask(), timeout=5).decision.served_by == "two"
        assert any("config reload rejected" in line for line in sidecar.log)
        assert sidecar.proc.poll() is None
