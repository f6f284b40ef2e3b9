"""Traces in a real Jaeger: gRPC, HTTP and in-process requests join the application's trace.

The application's own span is exported to the same Jaeger, so each trace read back from Jaeger's query API is
what a person would see: the application's span, tiergate's request span under it, one attempt span per
attempt under that. Jaeger is built once from the Go module proxy (tools/jaeger.sh); without Go the tests
skip and say so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.jaeger_server import Jaeger, Trace, jaeger_binary, run_jaeger
from tests.integration.sidecar_process import SidecarProcess, run_sidecar

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed (make setup installs it)")
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Tracer

# The first test may build Jaeger (`make test` builds it before pytest: `make jaeger`).
pytestmark = pytest.mark.timeout(1800)

KEY = "sk-jaeger-test-0123456789"
PROMPT = "a prompt that must never reach a trace"


@pytest.fixture(scope="module")
def jaeger() -> Iterator[Jaeger]:
    binary, why = jaeger_binary()
    if binary is None:
        pytest.skip(why)
    with run_jaeger(binary) as running:
        yield running


@pytest.fixture(scope="module")
def app(jaeger: Jaeger) -> Iterator[Tracer]:
    """The application's tracer, exporting its spans to the same Jaeger."""
    provider = TracerProvider(resource=Resource.create({"service.name": "the-app"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{jaeger.otlp_url}/v1/traces"))
    )
    yield provider.get_tracer("the-app")
    provider.shutdown()


def config(fake: FakeProvider, jaeger: Jaeger) -> dict[str, Any]:
    hosted = {"api_key": "env:TIERGATE_TEST_KEY", "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    return {
        "models": {
            "primary": {"provider": "openai", "base_url": fake.url_openai, "model": "gpt-test", **hosted},
            "backup": {
                "provider": "anthropic",
                "base_url": fake.url_anthropic,
                "model": "claude-test",
                **hosted,
            },
            "stalled": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "fault:stall_first_byte:3000",
                **hosted,
            },
        },
        "routes": {
            "default": {"chain": ["primary", "backup"], "retries": 0},
            "hedged": {"chain": ["stalled", "backup"], "hedge_after_ms": 50},
        },
        "telemetry": {"otlp_endpoint": jaeger.otlp_url, "service_name": "tiergate"},
    }


@pytest.fixture
def sidecar(fake_provider: FakeProvider, jaeger: Jaeger, tmp_path: Path) -> Iterator[SidecarProcess]:
    # Batches leave every 100 ms instead of 5 s, so the test's polling ends sooner.
    env = {"TIERGATE_TEST_KEY": KEY, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with run_sidecar(config(fake_provider, jaeger), tmp_path, env=env) as running:
        yield running


def assert_joined(
    trace: Trace, app_span_id: str, attempts: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """tiergate's request span is a child of the application's span; its attempts are children of it."""
    (request,) = [s for s in trace.spans if trace.tags(s).get("span.kind") == "server"]
    assert Trace.parent(request) == app_span_id
    spans = [s for s in trace.spans if Trace.parent(s) == request["spanID"]]
    assert len(spans) == attempts, spans
    assert all(trace.tags(s)["span.kind"] == "client" for s in spans)
    processes = {p["serviceName"] for p in trace.data["processes"].values()}
    assert processes == {"the-app", "tiergate"}
    text = json.dumps(trace.data)
    assert PROMPT not in text and KEY not in text
    return request, sorted(spans, key=lambda s: s["startTime"])


def test_a_grpc_fallback_shows_two_attempts_under_the_callers_span(
    sidecar: SidecarProcess, fake_provider: FakeProvider, jaeger: Jaeger, app: Tracer
) -> None:
    import tiergate

    fake_provider.script("status:503", model="gpt-test")
    with tiergate.Client(sidecar.address) as client, app.start_as_current_span("checkout") as outer:
        response = client.complete(PROMPT, tenant="acme")
    ctx = outer.get_span_context()
    trace_id, app_span = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
    assert response.decision.trace_id == trace_id and response.decision.span_id
    trace = jaeger.trace(trace_id, lambda spans: len(spans) >= 4)
    request, (failed, served) = assert_joined(trace, app_span, attempts=2)
    assert request["spanID"] == response.decision.span_id
    assert request["operationName"] == "chat default"
    r = Trace.tags(request)
    assert r["gen_ai.operation.name"] == "chat" and r["tiergate.served_by"] == "backup"
    assert r["gen_ai.provider.name"] == "anthropic" and r["gen_ai.response.model"] == "claude-test"
    assert r["tiergate.tenant"] == "acme"
    f, s = Trace.tags(failed), Trace.tags(served)
    assert failed["operationName"] == "chat gpt-test" and f["tiergate.attempt.outcome"] == "error"
    assert f["gen_ai.provider.name"] == "openai" and f["error"] is True
    assert f["server.address"] == "127.0.0.1" and f["server.port"] == fake_provider.port
    assert served["operationName"] == "chat claude-test" and s["tiergate.attempt.outcome"] == "ok"
    assert s["gen_ai.usage.output_tokens"] == response.usage.output_tokens
    # The decision record names the same trace and span.
    records = [json.loads(line) for line in sidecar.records if trace_id in line]
    assert records and records[-1]["span_id"] == response.decision.span_id


def test_an_http_hedge_shows_the_loser_cancelled(
    sidecar: SidecarProcess, jaeger: Jaeger, app: Tracer
) -> None:
    with app.start_as_current_span("handle request") as outer:
        ctx = outer.get_span_context()
        traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
        reply = httpx.post(
            f"http://{sidecar.http_address}/v1/chat/completions",
            json={"model": "hedged", "messages": [{"role": "user", "content": PROMPT}]},
            headers={"traceparent": traceparent, "tracestate": "app=1", "baggage": "user=someone"},
            timeout=30,
        )
    assert reply.status_code == 200, reply.text
    decision = json.loads(reply.headers["x-tiergate-decision"])
    trace_id = f"{ctx.trace_id:032x}"
    assert decision["trace_id"] == trace_id
    trace = jaeger.trace(trace_id, lambda spans: len(spans) >= 4)
    _, attempts = assert_joined(trace, f"{ctx.span_id:016x}", attempts=2)
    outcomes = {
        (Trace.tags(s)["tiergate.model"], Trace.tags(s)["tiergate.attempt.outcome"]) for s in attempts
    }
    assert outcomes == {("stalled", "hedge_lost"), ("backup", "ok")}
    assert "someone" not in json.dumps(trace.data)  # baggage is carried, never recorded


async def test_an_in_process_router_request_joins_the_current_span(
    fake_provider: FakeProvider, jaeger: Jaeger, app: Tracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiergate.config import parse, resolve
    from tiergate.sdk.inprocess import AsyncRouter

    cfg = resolve(parse(config(fake_provider, jaeger)), {"TIERGATE_TEST_KEY": KEY})
    async with AsyncRouter(cfg) as router:
        with app.start_as_current_span("notebook cell") as outer:
            response = await router.complete(PROMPT)
    ctx = outer.get_span_context()
    trace_id = f"{ctx.trace_id:032x}"
    assert response.decision.trace_id == trace_id
    trace = jaeger.trace(trace_id, lambda spans: len(spans) >= 3)  # closing the router flushed its spans
    _, (attempt,) = assert_joined(trace, f"{ctx.span_id:016x}", attempts=1)
    assert Trace.tags(attempt)["gen_ai.request.model"] == "gpt-test"
