"""Canary state shared by a fleet through a real redis-server: two sidecars (same config, same Redis) judge
on their combined measures, see each other's rollback and percentage, and a sidecar started later (or
reloaded with the same config) finds the state as the fleet left it; an unreachable Redis degrades to
per-process state."""

from __future__ import annotations

import socket
from typing import Any

from tests.fakes.provider_server import FakeProvider
from tiergate.config import parse, resolve
from tiergate.request import Message, Request
from tiergate.sidecar import Sidecar

MIN_SAMPLES = 10


def config(fake: FakeProvider, state: str, *, percent: float = 50, candidate: str = "cand") -> Any:
    def hosted(model: str) -> dict[str, Any]:
        return {"provider": "openai", "base_url": fake.url_openai, "model": model, "api_key": "k"}

    data = {
        "models": {"base": hosted("base"), "cand": hosted(candidate)},
        "routes": {
            "chat": {
                "chain": ["base"],
                "retries": 0,
                "canary": {"model": "cand", "percent": percent, "min_samples": MIN_SAMPLES},
            }
        },
        "breaker": {"failure_rate": 100, "window": 1000, "min_calls": 1000},
        "state": state,
    }
    return resolve(parse(data), {})


def request(tenant: str) -> Request:
    return Request("chat", [Message("user", "hello")], tenant=tenant, max_output_tokens=8)


async def ask(sidecar: Sidecar, tenant: str) -> str:
    decision = (await sidecar.complete(request(tenant))).decision
    await sidecar.canaries.drain()  # the observation has reached Redis
    return decision.arm


async def test_two_sidecars_roll_back_on_their_combined_measures(
    fake_provider: FakeProvider, redis_url: str
) -> None:
    cfg = config(fake_provider, redis_url, candidate="fault:status:503")
    a, b = await Sidecar.start(cfg), await Sidecar.start(cfg)
    try:
        canary_by = {"a": 0, "b": 0}
        i = 0
        while a.canaries.state("chat").percent > 0 and b.canaries.state("chat").percent > 0:
            name, sidecar = ("a", a) if i % 2 == 0 else ("b", b)
            if await ask(sidecar, f"tenant-{i}") == "canary":
                canary_by[name] += 1
            i += 1
            assert i < 500
        # Neither saw the minimum sample alone; together they did.
        assert sum(canary_by.values()) == MIN_SAMPLES and max(canary_by.values()) < MIN_SAMPLES
        for sidecar in (a, b):
            state = await sidecar.canary("chat")
            assert state.percent == 0 and state.rolled_back.startswith("error rate 100.0%")
            assert state.arms["canary"].requests == MIN_SAMPLES
            assert {await ask(sidecar, f"after-{j}") for j in range(20)} == {"baseline"}
        # A sidecar started later finds the rollback.
        c = await Sidecar.start(cfg)
        await c.canaries.drain()
        assert c.canaries.state("chat").rolled_back.startswith("error rate 100.0%")
        # A reload with a new configured percentage re-arms the canary for the fleet.
        rearmed = config(fake_provider, redis_url, percent=20, candidate="fault:status:503")
        c2 = await Sidecar.start(rearmed, telemetry=c.telemetry, previous=c)
        await c2.canaries.drain()
        await c.retire(c2)
        assert (c2.canaries.state("chat").percent, c2.canaries.state("chat").rolled_back) == (20, "")
        await c2.aclose()
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_percentage_set_on_one_sidecar_reaches_the_other(
    fake_provider: FakeProvider, redis_url: str
) -> None:
    cfg = config(fake_provider, redis_url, percent=0)
    a, b = await Sidecar.start(cfg), await Sidecar.start(cfg)
    try:
        assert {await ask(b, f"t{i}") for i in range(20)} == {"baseline"}
        await a.canary("chat", 100)
        assert (await b.canary("chat")).percent == 100
        assert {await ask(b, f"t{i}") for i in range(20)} == {"canary"}
    finally:
        await a.aclose()
        await b.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_redis_leaves_each_sidecar_its_own_state(fake_provider: FakeProvider) -> None:
    cfg = config(fake_provider, f"redis://127.0.0.1:{closed_port()}/0", candidate="fault:status:503")
    sidecar = await Sidecar.start(cfg)
    try:
        arms = [await ask(sidecar, f"t{i}") for i in range(60)]
        assert "canary" in arms
        state = sidecar.canaries.state("chat")
        assert state.rolled_back.startswith("error rate 100.0%")
        failures = sidecar.telemetry.metrics.state_failures.values
        assert failures[("canary", "allowed")] >= MIN_SAMPLES
    finally:
        await sidecar.aclose()
