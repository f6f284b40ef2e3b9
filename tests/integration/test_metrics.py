"""A running sidecar (subprocess) after real traffic: the Prometheus scrape, /healthz, /readyz, and the
decision records on its stdout (no key, no prompt text)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

SECRET = "sk-metrics-0123456789-never-print-me"
PROMPT = "Please summarise the quarterly numbers for me"


def config(fake: FakeProvider) -> dict[str, Any]:
    hosted = {"api_key": "env:TIERGATE_TEST_KEY"}
    price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cached_input_per_mtok": 0.1}
    return {
        "models": {
            "primary": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "gpt-test",
                "price": price,
                **hosted,
            },
            "backup": {
                "provider": "anthropic",
                "base_url": fake.url_anthropic,
                "model": "claude-test",
                **hosted,
            },
            "stalled": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "fault:stall_first_byte:2000",
                **hosted,
            },
        },
        "routes": {
            "default": {"chain": ["primary", "backup"], "retries": 0},
            "hedged": {"chain": ["stalled", "backup"], "hedge_after_ms": 50},
        },
        "budgets": {"limited": {"requests_per_minute": 1}},
    }


@pytest.fixture
def sidecar(fake_provider: FakeProvider, tmp_path: Path) -> Iterator[SidecarProcess]:
    with run_sidecar(config(fake_provider), tmp_path, env={"TIERGATE_TEST_KEY": SECRET}) as running:
        yield running


def message(task: str = "", tenant: str = "", content: str = PROMPT) -> pb.CompleteRequest:
    return pb.CompleteRequest(task=task, tenant=tenant, messages=[pb.Message(role="user", content=content)])


def scrape(sidecar: SidecarProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"http://{sidecar.http_address}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_health_and_readiness(sidecar: SidecarProcess) -> None:
    base = f"http://{sidecar.http_address}"
    assert httpx.get(f"{base}/healthz", timeout=5).text == "ok\n"
    ready = httpx.get(f"{base}/readyz", timeout=5)
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert httpx.get(f"{base}/nope", timeout=5).status_code == 404


def test_a_scrape_after_traffic_shows_every_family(
    sidecar: SidecarProcess, fake_provider: FakeProvider
) -> None:
    stub = sidecar.stub
    fake_provider.script("ok;cached=3", model="gpt-test")
    stub.Complete(message(), timeout=10)  # primary, with cached prompt tokens
    fake_provider.script("status:503", model="gpt-test")
    fallback = stub.Complete(message(), timeout=10)  # primary fails, backup serves
    assert fallback.decision.served_by == "backup"
    hedged = stub.Complete(message("hedged"), timeout=10)  # stalled gets a hedge, backup wins
    assert hedged.decision.served_by == "backup"
    chunks = list(stub.StreamComplete(message(), timeout=10))
    assert chunks[-1].decision.served_by == "primary"
    stub.Complete(message(tenant="limited"), timeout=10)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Complete(message(tenant="limited"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError):
        stub.Complete(pb.CompleteRequest(), timeout=10)  # no messages: INVALID_ARGUMENT
    time.sleep(0.2)  # records and metrics are written just after each answer

    s = scrape(sidecar)
    total = "tiergate_requests_total"
    assert value(s, total, route="default", model="primary", outcome="ok") == 3  # incl. stream + limited
    assert value(s, total, route="default", model="backup", outcome="ok") == 1
    assert value(s, total, route="hedged", model="backup", outcome="ok") == 1
    assert value(s, total, route="default", model="", outcome="limit_exceeded") == 1
    assert value(s, total, route="", model="", outcome="invalid_request") == 1
    assert value(s, "tiergate_request_duration_seconds_count", route="default") == 5
    assert value(s, "tiergate_overhead_seconds_count", route="hedged") == 1
    assert value(s, "tiergate_ttft_seconds_count", model="backup") == 2
    assert value(s, "tiergate_attempts_total", model="primary", outcome="error") == 1
    assert value(s, "tiergate_attempts_total", model="stalled", outcome="hedge_lost") == 1
    assert value(s, "tiergate_fallbacks_total", route="default", model="primary", reason="error") == 1
    assert value(s, "tiergate_hedges_total", route="hedged", result="won") == 1
    assert value(s, "tiergate_tokens_total", model="primary", type="cached_input") == 3
    assert value(s, "tiergate_tokens_total", model="primary", type="output") == 12  # 3 answers x 4
    assert value(s, "tiergate_tokens_total", model="backup", type="input") > 0
    assert value(s, "tiergate_cost_usd_total", model="primary") > 0
    assert value(s, "tiergate_limit_rejections_total", limit="requests_per_minute") == 1
    for model in ("primary", "backup", "stalled"):
        assert value(s, "tiergate_breaker_state", model=model, state="closed") == 1
        assert value(s, "tiergate_breaker_state", model=model, state="open") == 0

    # One record per request, on stdout, as JSON; no key and no prompt text anywhere.
    records = [orjson.loads(line) for line in sidecar.records]
    assert len(records) == 7
    by_outcome = [r["outcome"] for r in records]
    assert by_outcome.count("ok") == 5
    assert {"limit_exceeded", "invalid_request"} <= set(by_outcome)
    hedge = next(r for r in records if r["route"] == "hedged")
    assert [(a["model"], a["outcome"], a.get("hedged", False)) for a in hedge["attempts"]] == [
        ("stalled", "hedge_lost", False),
        ("backup", "ok", True),
    ]
    cached = records[0]
    assert cached["cached_input_tokens"] == 3
    # 3 of the input tokens at the cached price of $0.1/Mtok, the rest at $1, 4 output tokens at $2.
    expected = ((cached["input_tokens"] - 3) * 1.0 + 3 * 0.1 + 4 * 2.0) / 1e6
    assert cached["cost_usd"] == pytest.approx(expected)
    everything = (
        "".join(sidecar.records)
        + "".join(sidecar.log)
        + httpx.get(f"http://{sidecar.http_address}/metrics", timeout=5).text
    )
    assert SECRET not in everything
    assert PROMPT not in everything
