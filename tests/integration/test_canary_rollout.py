"""Canary rollouts end to end: a real sidecar (in-process gRPC server) over the loopback fake provider.

Rollback on injected faults (the candidate's upstream answers 503) and on bad feedback (Feedback RPC), and not
before the minimum sample; the same conversation keeps its arm across requests and a config reload; a
percentage set over gRPC or with `tiergate canary` holds across a reload of the same config.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc
import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.inprocess import serve
from tiergate.config import parse, resolve
from tiergate.request import Message, Request
from tiergate.sidecar import Sidecar
from tiergate.v1 import tiergate_pb2 as pb

MIN_SAMPLES = 10


def config(
    fake: FakeProvider, *, candidate: str = "cand", percent: float = 50, **canary: Any
) -> dict[str, Any]:
    def hosted(model: str) -> dict[str, Any]:
        return {"provider": "openai", "base_url": fake.url_openai, "model": model, "api_key": "k"}

    return {
        "models": {"base": hosted("base"), "cand": hosted(candidate)},
        "routes": {
            "chat": {
                "chain": ["base"],
                "retries": 0,
                "canary": {"model": "cand", "percent": percent, "min_samples": MIN_SAMPLES, **canary},
            }
        },
        "breaker": {"failure_rate": 100, "window": 1000, "min_calls": 1000},  # the canary judges, not it
    }


def request(key: str, sticky: str = "tenant") -> pb.CompleteRequest:
    return pb.CompleteRequest(
        task="chat",
        messages=[pb.Message(role="user", content="hello")],
        tenant=key if sticky == "tenant" else "acme",
        metadata={"conversation": key},
        max_output_tokens=8,
    )


async def test_rollback_on_injected_faults(fake_provider: FakeProvider) -> None:
    async with serve(config(fake_provider, candidate="fault:status:503")) as side:
        arms: list[str] = []
        i = 0
        while side.sidecar.canaries.state("chat").percent > 0:
            decision = (await side.stub.Complete(request(f"tenant-{i}"), timeout=10)).decision
            assert decision.served_by == "base"  # the candidate failed; the chain answered
            arms.append(decision.arm)
            i += 1
            assert i < 500
        state = await side.stub.Canary(pb.CanaryRequest(route="chat"))
        canary_requests = arms.count("canary")
        assert canary_requests == MIN_SAMPLES  # not before the minimum sample, and right at it
        assert state.percent == 0 and state.rolled_back.startswith("error rate 100.0% vs baseline 0.0%")
        seen = len(fake_provider.requests)
        for j in range(50):
            decision = (await side.stub.Complete(request(f"after-{j}"), timeout=10)).decision
            assert decision.arm == "baseline" and [a.model for a in decision.attempts] == ["base"]
        assert all(r.model == "base" for r in fake_provider.requests[seen:])
        print(f"\nrolled back after {canary_requests} canary requests ({i} in all)")


async def test_rollback_on_bad_feedback_not_on_a_small_sample(fake_provider: FakeProvider) -> None:
    async with serve(config(fake_provider)) as side:
        scored = {"canary": 0, "baseline": 0}
        i = 0
        while min(scored.values()) < MIN_SAMPLES:
            decision = (await side.stub.Complete(request(f"t{i}"), timeout=10)).decision
            i += 1
            if scored[decision.arm] >= MIN_SAMPLES:
                continue
            # Below the minimum sample nothing is judged, however bad the canary's scores.
            assert side.sidecar.canaries.state("chat").rolled_back == ""
            score = 0.1 if decision.arm == "canary" else 0.9
            reply = await side.stub.Feedback(pb.FeedbackRequest(request_id=decision.request_id, score=score))
            assert reply.arm == decision.arm and reply.model == (
                "cand" if decision.arm == "canary" else "base"
            )
            scored[decision.arm] += 1
        state = await side.stub.Canary(pb.CanaryRequest(route="chat"))
        assert state.rolled_back == "mean feedback score 0.10 vs baseline 0.90" and state.percent == 0
        arms = {a.arm: a for a in state.arms}
        assert arms["canary"].scored == MIN_SAMPLES and arms["canary"].failures == 0


def domain_request(key: str) -> Request:
    return Request("chat", [Message("user", "hello")], tenant="acme", metadata={"conversation": key})


async def test_the_same_conversation_keeps_its_arm_across_requests_and_reloads(
    fake_provider: FakeProvider,
) -> None:
    data = config(fake_provider, percent=30, sticky="metadata:conversation")
    first = await Sidecar.start(resolve(parse(data), {}))
    keys = [f"conversation-{i}" for i in range(40)]
    try:
        arms = {k: (await first.complete(domain_request(k))).decision.arm for k in keys}
        assert set(arms.values()) == {"canary", "baseline"}
        for k in keys:
            assert (await first.complete(domain_request(k))).decision.arm == arms[k]
        await first.canary("chat", 30.0)  # an operator sets the same value: nothing moves
        reloaded = await Sidecar.start(resolve(parse(data), {}), telemetry=first.telemetry, previous=first)
    finally:
        await first.retire(reloaded) if "reloaded" in locals() else await first.aclose()
    try:
        assert reloaded.canaries is first.canaries
        for k in keys:
            assert (await reloaded.complete(domain_request(k))).decision.arm == arms[k]
    finally:
        await reloaded.aclose()


async def test_the_cli_sets_the_percentage_and_a_reload_keeps_it(fake_provider: FakeProvider) -> None:
    data = config(fake_provider, percent=50)
    async with serve(data) as side:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tiergate.cli", "canary", "chat", "--percent", "5",
            "--address", side.address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert out.decode().startswith("route chat: cand at 5% (configured 50%)")
        reloaded = await Sidecar.start(
            resolve(parse(data), {}), telemetry=side.sidecar.telemetry, previous=side.sidecar
        )
        try:
            assert (await reloaded.canary("chat")).percent == 5  # the same config: the operator's value stays
        finally:
            await reloaded.aclose(keep=side.sidecar.providers.values())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await side.stub.Canary(pb.CanaryRequest(route="nope"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await side.stub.Canary(pb.CanaryRequest(route="chat", percent=120))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
