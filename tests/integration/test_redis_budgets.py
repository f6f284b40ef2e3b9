"""Fleet-wide budgets and rate limits in a real redis-server: atomic under concurrency, shared by sidecars,
and the `state_failure` choice when Redis is unreachable."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from tests.fakes.provider_server import FakeProvider
from tests.integration.inprocess import serve
from tests.integration.redis_server import run_redis
from tiergate.analysis import Analysis
from tiergate.config import parse, resolve
from tiergate.errors import LimitExceeded, StateUnavailable
from tiergate.governance import NANOS
from tiergate.governance_redis import RedisGovernor
from tiergate.request import Decision, Message, Request, Sensitivity
from tiergate.routing import Plan, Planner
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry
from tiergate.v1 import tiergate_pb2 as pb

KEY = "sk-redis-test-0123456789"
MODELS: dict[str, Any] = {
    "cheap": {
        "provider": "openai",
        "model": "c",
        "api_key": "k",
        "price": {"input_per_mtok": 0.0, "output_per_mtok": 250.0},  # 4 output tokens: $0.001
    },
}


def planner() -> tuple[Planner, Any]:
    config = resolve(parse({"models": MODELS, "routes": {"default": {"chain": ["cheap"]}}}), {})
    return Planner(config, {}, lambda _: 0), config


def request(tenant: str = "acme") -> Request:
    return Request("", [Message("user", "hi")], tenant=tenant, max_output_tokens=4)


def plan_for(router: Planner, req: Request) -> Plan:
    return router.plan(req, Analysis(10, [], Sensitivity.PUBLIC, "", ""))


def budgets(**limits: float) -> Any:
    return resolve(
        parse(
            {"models": MODELS, "routes": {"default": {"chain": ["cheap"]}}, "budgets": {"default": limits}}
        ),
        {},
    ).budgets


async def spent_nanos(url: str, tenant: str = "acme") -> tuple[int, int]:
    """(spent, reserved) of today's budget, straight from Redis."""
    client = aioredis.Redis.from_url(url)
    try:
        (key,) = [k async for k in client.scan_iter(f"tiergate:{{{tenant}}}:usd:day:*")]
        spent, reserved = await client.hmget(key, ["spent", "reserved"])
    finally:
        await client.aclose()
    return int(spent or 0), int(reserved or 0)


async def test_two_sidecars_2000_concurrent_debits_sum_exactly(redis_url: str) -> None:
    router, _ = planner()
    # A generous per-operation timeout: this test is about atomicity, on a machine that may be busy.
    fleet = [RedisGovernor(redis_url, budgets(usd_per_day=1_000.0), timeout_s=2.0) for _ in range(2)]
    rng = random.Random(5)
    costs = [rng.randrange(1, 5_000_000) for _ in range(2_000)]  # nano-dollars, up to $0.005 each

    async def debit(i: int) -> None:
        governor = fleet[i % 2]
        req = request()
        plan = plan_for(router, req)
        ticket = await governor.admit(req, plan, Decision("default", ""), 10)
        assert ticket is not None
        governor.settle(ticket, costs[i] / NANOS, 4)

    try:
        await asyncio.gather(*(debit(i) for i in range(len(costs))))
        for governor in fleet:
            await governor.drain()
        assert await spent_nanos(redis_url) == (sum(costs), 0)
        assert await fleet[0].spent_usd("acme", "day") == sum(costs) / NANOS
    finally:
        for governor in fleet:
            await governor.aclose()


async def test_a_rate_limit_holds_across_sidecars(redis_url: str) -> None:
    router, _ = planner()
    fleet = [RedisGovernor(redis_url, budgets(requests_per_minute=60), timeout_s=2.0) for _ in range(2)]
    started = time.monotonic()

    async def attempt(i: int) -> bool:
        req = request()
        try:
            await fleet[i % 2].admit(req, plan_for(router, req), Decision("default", ""), 10)
        except LimitExceeded as exc:
            assert exc.limit == "requests_per_minute"
            return False
        return True

    try:
        admitted = sum(await asyncio.gather(*(attempt(i) for i in range(400))))
    finally:
        for governor in fleet:
            await governor.aclose()
    refilled = int(time.monotonic() - started) + 1  # the bucket refills at one request per second
    assert 60 <= admitted <= 60 + refilled


async def test_budget_filtering_and_refusal_match_the_in_process_rules(redis_url: str) -> None:
    router, _ = planner()
    governor = RedisGovernor(redis_url, budgets(usd_per_day=0.0025))
    try:
        for _ in range(2):  # $0.001 each
            req = request()
            ticket = await governor.admit(req, plan_for(router, req), Decision("default", ""), 10)
            assert ticket is not None and ticket.reserved_nanos == 1_000_000
            governor.settle(ticket, 0.001, 4)
        await governor.drain()
        req = request()
        with pytest.raises(LimitExceeded) as caught:
            await governor.admit(req, plan_for(router, req), Decision("default", ""), 10)
        assert caught.value.limit == "usd_per_day"
        assert "$0.000500 is left of the usd_per_day budget of $0.0025" in str(caught.value)
        assert caught.value.decision is not None
        assert [s.model for s in caught.value.decision.skipped] == ["cheap"]
        assert await spent_nanos(redis_url) == (2_000_000, 0)
    finally:
        await governor.aclose()


def fleet_config(fake: FakeProvider, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "models": {
            "cheap": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "api_key": "env:KEY",
                "model": "gpt-test",
                "price": {"input_per_mtok": 0.0, "output_per_mtok": 250.0},
            }
        },
        "routes": {"default": {"chain": ["cheap"]}},
        "budgets": {"default": {"usd_per_day": 0.01}},
        "state": state,
        **extra,
    }


async def test_two_sidecars_over_grpc_share_one_budget(redis_url: str, fake_provider: FakeProvider) -> None:
    config = fleet_config(fake_provider, redis_url)
    message = pb.CompleteRequest(
        messages=[pb.Message(role="user", content="hi")], tenant="acme", max_output_tokens=4
    )
    async with serve(config, {"KEY": KEY}) as one, serve(config, {"KEY": KEY}) as two:

        async def call(i: int) -> str:
            stub = (one, two)[i % 2].stub
            try:
                await stub.Complete(message, timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                return exc.details() or ""
            return "ok"

        results = await asyncio.gather(*(call(i) for i in range(30)))
        for sidecar in (one.sidecar, two.sidecar):
            assert isinstance(sidecar.governor, RedisGovernor)
            await sidecar.governor.drain()
    # Each answer costs exactly its $0.001 estimate: $0.01 serves exactly ten, whichever sidecar took them.
    assert results.count("ok") == 10
    refusals = [r for r in results if r != "ok"]
    assert all("usd_per_day" in r for r in refusals)
    assert await spent_nanos(redis_url) == (10_000_000, 0)


def unreachable_url() -> str:
    # A port nothing listens on: connections are refused at once.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_unreachable_redis_follows_state_failure(fake_provider: FakeProvider, policy: str) -> None:
    config = resolve(
        parse(fleet_config(fake_provider, unreachable_url(), state_failure=policy)), {"KEY": KEY}
    )
    telemetry = Telemetry(config)
    sidecar = await Sidecar.start(config, telemetry=telemetry)
    try:
        for _ in range(5):
            if policy == "open":
                answer = await sidecar.complete(request())
                assert answer.decision.served_by == "cheap"
            else:
                with pytest.raises(StateUnavailable, match="state_failure is closed"):
                    await sidecar.complete(request())
        await asyncio.sleep(0)
    finally:
        await sidecar.aclose()
    action = "allowed" if policy == "open" else "refused"
    failures = telemetry.metrics.registry.get_sample_value(
        "tiergate_state_failures_total", {"operation": "admit", "action": action}
    )
    assert failures == 5
    outcome = "ok" if policy == "open" else "state_unavailable"
    model = "cheap" if policy == "open" else ""
    requests = telemetry.metrics.registry.get_sample_value(
        "tiergate_requests_total", {"route": "default", "model": model, "outcome": outcome}
    )
    assert requests == 5


async def test_redis_going_away_mid_run_fails_open_and_comes_back(fake_provider: FakeProvider) -> None:
    with run_redis() as server:
        config = resolve(parse(fleet_config(fake_provider, server.url)), {"KEY": KEY})
        telemetry = Telemetry(config)
        sidecar = await Sidecar.start(config, telemetry=telemetry)
        try:
            await sidecar.complete(request())
            assert isinstance(sidecar.governor, RedisGovernor)
            await sidecar.governor.drain()
            assert await sidecar.governor.spent_usd("acme", "day") == pytest.approx(0.001)
            server.stop()
            answer = await sidecar.complete(request())  # served without limits
            assert answer.decision.served_by == "cheap"
            assert telemetry.metrics.registry.get_sample_value(
                "tiergate_state_failures_total", {"operation": "admit", "action": "allowed"}
            )
        finally:
            await sidecar.aclose()
