"""The on-device model inside the request path: a full queue, trivial requests, restricted data."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.inprocess import serve
from tiergate.v1 import tiergate_pb2 as pb

pytestmark = pytest.mark.local_model


def config(fake: FakeProvider, chain: list[str], **route: Any) -> dict[str, Any]:
    return {
        "models": {
            "local": {"provider": "llama_cpp", "path": "embedded", "queue_size": 1, "context_window": 1024},
            "hosted": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "hosted-model",
                "api_key": "k",
            },
        },
        "rules": [
            {"id": "email", "regex": r"[\w.+-]+@[\w-]+\.[\w.-]+", "sensitivity": "restricted"},
            {"id": "greeting", "keywords": ["hello", "thanks"], "complexity": "trivial"},
        ],
        "routes": {"default": {"chain": chain, "retries": 0, **route}},
    }


def ask(text: str, max_output_tokens: int = 8) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        messages=[pb.Message(role="user", content=text)], max_output_tokens=max_output_tokens
    )


async def test_full_local_queue_is_resource_exhausted_for_restricted_data() -> None:
    with FakeProvider() as fake:
        async with serve(config(fake, ["local", "hosted"])) as side:
            local = side.sidecar.providers["local"]
            busy = side.stub.StreamComplete(ask("Write about ann@example.com at length.", 200), timeout=60)
            await busy.read()  # generating: the worker is taken
            queued = side.stub.StreamComplete(ask("And bob@example.com?", 200), timeout=60)
            for _ in range(500):
                if local.live_state().queue_depth == 1:  # type: ignore[attr-defined]
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await side.stub.Complete(ask("Mail carol@example.com"), timeout=30)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Not restricted: the full queue is a reason to move on to the hosted model instead.
            response = await side.stub.Complete(ask("What is the capital of France?"), timeout=30)
            assert response.decision.served_by == "hosted"
            assert [(a.model, a.outcome) for a in response.decision.attempts] == [
                ("local", "error"),
                ("hosted", "ok"),
            ]
            busy.cancel()
            queued.cancel()
        assert all("example.com" not in str(r.body) for r in fake.requests)


async def test_trivial_request_goes_on_device_first() -> None:
    with FakeProvider() as fake:
        async with serve(config(fake, ["hosted", "local"])) as side:
            trivial = await side.stub.Complete(ask("hello there"), timeout=60)
            other = await side.stub.Complete(ask("Summarise the causes of the First World War"), timeout=60)
    assert trivial.decision.served_by == "local" and trivial.decision.complexity == "trivial"
    assert "trivial" in trivial.decision.reason
    assert other.decision.served_by == "hosted"


async def test_restricted_data_is_served_on_device_never_forwarded() -> None:
    with FakeProvider() as fake:
        async with serve(config(fake, ["hosted", "local"])) as side:
            response = await side.stub.Complete(ask("Reply to jane.doe@example.com politely."), timeout=60)
        assert not fake.requests
    d = response.decision
    assert d.served_by == "local" and d.sensitivity == pb.RESTRICTED and list(d.matched_rules) == ["email"]
    assert [s.model for s in d.skipped] == ["hosted"]


async def test_the_local_model_classifies_what_no_rule_decided() -> None:
    with FakeProvider() as fake:
        async with serve(config(fake, ["hosted", "local"], classify_with="local", classify_ms=20000)) as side:
            by_rule = await side.stub.Complete(ask("thanks a lot"), timeout=60)
            by_model = await side.stub.Complete(ask("What is 2 + 2?"), timeout=60)
    assert (by_rule.decision.complexity, by_rule.decision.complexity_by) == ("trivial", "rules")
    assert by_model.decision.complexity_by == "model:local"
    assert by_model.decision.complexity in ("trivial", "moderate", "complex")
    # Whatever it decided, the route followed it: trivial goes on-device first, the rest keeps chain order.
    expected = "local" if by_model.decision.complexity == "trivial" else "hosted"
    assert by_model.decision.served_by == expected


async def test_classification_out_of_time_goes_on_unclassified() -> None:
    with FakeProvider() as fake:
        async with serve(config(fake, ["hosted", "local"], classify_with="local", classify_ms=1)) as side:
            response = await side.stub.Complete(ask("What is 2 + 2?"), timeout=60)
    d = response.decision
    assert (d.complexity, d.complexity_by) == ("", "model:local (no answer in time)")
    assert d.served_by == "hosted"
