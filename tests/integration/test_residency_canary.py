"""Canary: a tenant limited to `eu` never reaches a non-`eu` provider, under faults and fallbacks.

Held to the standard of restricted data (test_sensitive_canary.py). Two loopback fake servers stand for two
regions: every model tagged `region: us` points at the `us` server, every `region: eu` model at the `eu`
server. The route lists a `us` model FIRST, then a pool mixing an `eu` and a `us` member, then `eu` models.
The `eu` server answers with a repeating mix of faults (5xx, 429, resets, dropped and stalled streams,
malformed bodies), so the tenant's requests retry, fall back, hit TTFT guardrails and open breakers. The
`us` server must not see one request from that tenant: it records every request, and the tenant's requests
carry a marker in their text. A control tenant without constraints is served by the `us` model on the same
route, so the `us` path is shown to be live.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from tests.fakes.provider_faults import Fault
from tests.fakes.provider_server import FakeProvider
from tests.integration.inprocess import InProcess, serve
from tiergate.v1 import tiergate_pb2 as pb

FAULTS = [
    "status:503",
    "ok",
    "reset",
    "status:429",
    "drop_mid_stream",
    "malformed_json",
    "stall_first_byte:1000",
    "status:500",
    "ok",
    "error_event",
]
MARK = "eu-only-marker"


def cycling(specs: list[str]) -> Callable[[], Fault]:
    faults = itertools.cycle([Fault.parse(s) for s in specs])
    lock = threading.Lock()

    def next_fault() -> Fault:
        with lock:
            return next(faults)

    return next_fault


@pytest.fixture
def regions() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with FakeProvider(default=cycling(FAULTS)) as eu, FakeProvider() as us:
        yield eu, us


def config(eu: FakeProvider, us: FakeProvider) -> dict[str, Any]:
    def model(fake: FakeProvider, region: str, provider: str = "openai") -> dict[str, Any]:
        url = fake.url_openai if provider == "openai" else fake.url_anthropic
        return {
            "provider": provider,
            "base_url": url,
            "model": f"{region}-{provider}",
            "api_key": "k",
            "tags": {"region": region},
            "connect_timeout_ms": 500,
        }

    return {
        "models": {
            "us_first": model(us, "us"),
            "eu_a": model(eu, "eu"),
            "us_b": model(us, "us", "anthropic"),
            "eu_c": model(eu, "eu", "anthropic"),
            "eu_d": model(eu, "eu"),
        },
        "pools": {"mixed": {"members": {"eu_a": 50, "us_b": 50}}},
        "routes": {
            "default": {"chain": ["us_first", "mixed", "eu_c", "eu_d"], "retries": 1, "ttft_ms": 300},
            "hedged": {"chain": ["us_first", "mixed", "eu_c"], "retries": 0, "hedge_after_ms": 50},
        },
        "tenants": {"acme": {"regions": ["eu"]}},
        # Breakers that open only on failure after failure: the faults then mostly meet retries and fallbacks.
        "breaker": {"failure_rate": 100, "window": 6, "min_calls": 6, "open_ms": 200},
    }


def request(tenant: str, task: str = "", **metadata: str) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        task=task,
        messages=[pb.Message(role="user", content=f"{MARK} hello")],
        tenant=tenant,
        metadata=metadata,
        max_output_tokens=8,
    )


async def call(side: InProcess, req: pb.CompleteRequest, how: str) -> pb.Decision | grpc.StatusCode:
    try:
        if how == "stream":
            chunks = [c async for c in side.stub.StreamComplete(req, timeout=20)]
            return chunks[-1].decision
        if how == "explain":
            return await side.stub.Explain(req, timeout=20)
        return (await side.stub.Complete(req, timeout=20)).decision
    except grpc.aio.AioRpcError as exc:
        return exc.code()


async def test_an_eu_tenant_never_reaches_a_us_provider(regions: tuple[FakeProvider, FakeProvider]) -> None:
    eu, us = regions
    served: list[str] = []
    codes: list[grpc.StatusCode] = []
    async with serve(config(eu, us)) as side:
        for i, (task, how) in enumerate(
            itertools.product(["default", "hedged"], ["complete", "stream", "explain"] * 10)
        ):
            # Some requests ask to widen the tenant's regions: the tenant's constraint still applies.
            meta = {"tiergate.regions": "eu,us"} if i % 3 == 0 else {}
            result = await call(side, request("acme", task, **meta), how)
            if isinstance(result, grpc.StatusCode):
                codes.append(result)
                continue
            assert {s.model for s in result.skipped} >= {"us_first", "us_b"}
            assert all(a.model.startswith("eu_") for a in result.attempts)
            served.append(result.served_by)
        # A request that asks only for `us` leaves the tenant nothing: refused, never sent elsewhere.
        refused = await call(side, request("acme", **{"tiergate.regions": "us"}), "complete")
        assert refused == grpc.StatusCode.FAILED_PRECONDITION
        # The control: a tenant without constraints is served by the first model of the chain, in `us`.
        control = await call(side, request("other"), "complete")
        assert not isinstance(control, grpc.StatusCode) and control.served_by == "us_first"
    assert [r for r in us.requests if MARK in str(r.body) and r.model != "us-openai"] == []
    assert len(us.requests) == 1  # the control request, nothing else
    assert len(eu.requests) > 40  # the tenant's requests really ran (through the faults)
    assert len(served) > 30 and all(name.startswith("eu_") for name in served if name)
    assert set(codes) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


async def test_when_every_eu_model_fails_the_request_fails(
    regions: tuple[FakeProvider, FakeProvider],
) -> None:
    eu, us = regions
    cfg = config(eu, us)
    cfg["breaker"] = {"window": 4, "min_calls": 2, "open_ms": 60_000}
    async with serve(cfg) as side:
        for _ in range(6):  # enough to open the eu breakers: later requests find them open
            eu.script("status:503", "status:503", "status:503", "status:503", "status:503", "status:503")
            result = await call(side, request("acme"), "complete")
            assert result == grpc.StatusCode.UNAVAILABLE
        states = {name: side.sidecar.breakers[name].state for name in ("eu_a", "eu_c", "eu_d")}
        assert "open" in states.values()
    assert us.requests == []
