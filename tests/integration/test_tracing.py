"""telemetry/tracing.py: request and attempt spans in the caller's trace, read back from the SDK's in-memory
exporter (tests/integration/test_tracing_jaeger.py sends the same to a real Jaeger), and over OTLP/HTTP to a
receiver on loopback."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fakes.provider_server import FakeProvider
from tiergate.config import Config, TelemetryConfig, parse, resolve
from tiergate.errors import AllAttemptsFailed, SensitiveDataBlocked
from tiergate.request import Message, Request, Sensitivity
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry

trace_service_pb2 = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="the otel extra is not installed (make setup installs it)",
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

KEY = "sk-tracing-test-0123456789"
PROMPT = "trace this prompt text, which must not be exported"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def config(fake: FakeProvider, endpoint: str = "http://127.0.0.1:9", **telemetry: Any) -> Config:
    hosted = {"api_key": "env:KEY", "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    data = {
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
            "slow": {"chain": ["stalled"]},
        },
        "telemetry": {"otlp_endpoint": endpoint, "service_name": "tiergate-test", **telemetry},
    }
    return resolve(parse(data), {"KEY": KEY})


@asynccontextmanager
async def traced(cfg: Config) -> AsyncIterator[tuple[Sidecar, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(cfg, span_exporter=exporter)
    sidecar = await Sidecar.start(cfg, telemetry=telemetry)
    try:
        yield sidecar, exporter
    finally:
        await sidecar.aclose()
        await telemetry.aclose()  # flushes the batch processor into the exporter


def caller(parent: str = TRACEPARENT) -> Any:
    assert parent
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": parent, "tracestate": "vendor=1"})


def by_kind(spans: tuple[ReadableSpan, ...]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    (request,) = [s for s in spans if s.kind == SpanKind.SERVER]
    attempts = sorted((s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    return request, attempts


def assert_nothing_sensitive(spans: tuple[ReadableSpan, ...]) -> None:
    for span in spans:
        text = repr(dict(span.attributes or {})) + span.name + repr(span.status.description)
        assert PROMPT not in text and KEY not in text and "trace this prompt" not in text


async def test_a_request_joins_the_callers_trace_with_one_span_per_attempt(
    fake_provider: FakeProvider,
) -> None:
    async with traced(config(fake_provider)) as (sidecar, exporter):
        fake_provider.script("status:503", model="gpt-test")  # primary fails: the backup serves
        answer = await sidecar.complete(
            Request("", [Message("user", PROMPT)], tenant="acme", max_output_tokens=50), parent=caller()
        )
        await asyncio.sleep(0)  # the spans are made in the turn after the answer
    spans = exporter.get_finished_spans()
    request, attempts = by_kind(spans)
    ctx = request.context
    assert ctx is not None and request.parent is not None
    assert f"{ctx.trace_id:032x}" == CALLER_TRACE and f"{request.parent.span_id:016x}" == CALLER_SPAN
    assert answer.decision.trace_id == CALLER_TRACE and answer.decision.span_id == f"{ctx.span_id:016x}"
    assert ctx.trace_state.get("vendor") == "1"
    assert request.name == "chat default"
    a = dict(request.attributes or {})
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "default"
    assert a["gen_ai.provider.name"] == "anthropic" and a["gen_ai.response.model"] == "claude-test"
    assert a["gen_ai.usage.output_tokens"] == answer.completion.usage.output_tokens
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["tiergate.route"] == "default" and a["tiergate.served_by"] == "backup"
    assert a["tiergate.tenant"] == "acme" and a["tiergate.outcome"] == "ok"
    assert a["tiergate.cost_usd"] == pytest.approx(answer.decision.cost_usd)
    assert a["tiergate.overhead_ms"] >= 0 and "tiergate.matched_rules" not in a  # no rule matched
    assert [s.name for s in attempts] == ["chat gpt-test", "chat claude-test"]
    for attempt in attempts:
        assert attempt.parent is not None and attempt.parent.span_id == ctx.span_id
        assert attempt.context is not None and attempt.context.trace_id == ctx.trace_id
        assert request.start_time is not None and request.end_time is not None
        assert attempt.start_time is not None and attempt.end_time is not None
        assert request.start_time <= attempt.start_time <= attempt.end_time <= request.end_time
    failed, served = (dict(s.attributes or {}) for s in attempts)
    assert failed["gen_ai.provider.name"] == "openai" and failed["tiergate.attempt.outcome"] == "error"
    assert failed["error.type"] == "server_error"  # the provider error's kind, never its message
    assert failed["server.address"] == "127.0.0.1" and failed["server.port"] == fake_provider.port
    assert failed["gen_ai.request.max_tokens"] == 50
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert "gen_ai.usage.output_tokens" not in failed
    assert served["tiergate.attempt.outcome"] == "ok" and served["gen_ai.response.model"] == "claude-test"
    assert served["gen_ai.usage.input_tokens"] > 0 and "error.type" not in served
    assert_nothing_sensitive(spans)


async def test_a_hedge_shows_the_loser_cancelled(fake_provider: FakeProvider) -> None:
    async with traced(config(fake_provider)) as (sidecar, exporter):
        answer = await sidecar.complete(Request("hedged", [Message("user", PROMPT)]))
        await asyncio.sleep(0)
    request, attempts = by_kind(exporter.get_finished_spans())
    assert answer.decision.served_by == "backup"
    outcomes = {
        (dict(s.attributes or {})["tiergate.model"], dict(s.attributes or {})["tiergate.attempt.outcome"])
        for s in attempts
    }
    assert outcomes == {("stalled", "hedge_lost"), ("backup", "ok")}
    loser = next(s for s in attempts if dict(s.attributes or {})["tiergate.model"] == "stalled")
    winner = next(s for s in attempts if s is not loser)
    assert loser.status.status_code != StatusCode.ERROR  # losing a hedge is no failure
    assert dict(winner.attributes or {})["tiergate.attempt.hedged"] is True
    assert request.context is not None
    assert all(s.parent is not None and s.parent.span_id == request.context.span_id for s in attempts)


async def test_without_a_callers_context_a_request_starts_its_own_trace(fake_provider: FakeProvider) -> None:
    async with traced(config(fake_provider)) as (sidecar, exporter):
        answer = await sidecar.complete(Request("", [Message("user", PROMPT)]))
        await asyncio.sleep(0)
    request, attempts = by_kind(exporter.get_finished_spans())
    assert request.parent is None and len(attempts) == 1
    assert request.context is not None
    assert answer.decision.trace_id == f"{request.context.trace_id:032x}" != CALLER_TRACE


async def test_a_refused_restricted_request_says_so_without_its_content(fake_provider: FakeProvider) -> None:
    secret = "my card is 4111 1111 1111 1111"
    async with traced(config(fake_provider)) as (sidecar, exporter):
        with pytest.raises(SensitiveDataBlocked) as caught:
            await sidecar.complete(Request("", [Message("user", secret)]), parent=caller())
        await asyncio.sleep(0)
    spans = exporter.get_finished_spans()
    request, attempts = by_kind(spans)
    a = dict(request.attributes or {})
    assert a["tiergate.sensitivity"] == "RESTRICTED" and a["tiergate.restricted"] is True
    assert a["tiergate.matched_rules"]  # the ids of the rules that matched, never what they matched
    assert a["error.type"] == "sensitive_data_blocked"
    assert request.status.status_code == StatusCode.ERROR and attempts == []
    assert caught.value.decision is not None and caught.value.decision.trace_id == CALLER_TRACE
    for span in spans:
        assert "4111" not in repr(dict(span.attributes or {})) + repr(span.status.description)


async def test_sampling_follows_the_callers_flag_and_the_ratio(fake_provider: FakeProvider) -> None:
    async with traced(config(fake_provider, trace_sample_ratio=0.0)) as (sidecar, exporter):
        sampled = await sidecar.complete(Request("", [Message("user", "hi")]), parent=caller())
        unsampled = await sidecar.complete(
            Request("", [Message("user", "hi")]), parent=caller(f"00-{CALLER_TRACE}-{CALLER_SPAN}-00")
        )
        own = await sidecar.complete(Request("", [Message("user", "hi")]))
        await asyncio.sleep(0)
    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans if s.context} == {int(CALLER_TRACE, 16)}
    assert len([s for s in spans if s.kind == SpanKind.SERVER]) == 1  # only the caller's sampled one
    assert sampled.decision.span_id and not unsampled.decision.span_id and not own.decision.span_id
    assert unsampled.decision.trace_id == CALLER_TRACE and len(own.decision.trace_id) == 32


async def test_the_in_process_router_takes_the_current_context(fake_provider: FakeProvider) -> None:
    from tiergate.sdk.inprocess import AsyncRouter

    exporter = InMemorySpanExporter()
    cfg = config(fake_provider)
    telemetry = Telemetry(cfg, span_exporter=exporter)
    sidecar = await Sidecar.start(cfg, telemetry=telemetry)
    app = TracerProvider()
    app_spans = InMemorySpanExporter()
    app.add_span_processor(SimpleSpanProcessor(app_spans))
    try:
        router = AsyncRouter.from_sidecar(sidecar)
        with app.get_tracer("app").start_as_current_span("handle order") as outer:
            response = await router.complete("Say hello")
        await asyncio.sleep(0)
    finally:
        await sidecar.aclose()
        await telemetry.aclose()
    request, _ = by_kind(exporter.get_finished_spans())
    outer_ctx = outer.get_span_context()
    assert request.parent is not None and request.parent.span_id == outer_ctx.span_id
    assert response.decision.trace_id == f"{outer_ctx.trace_id:032x}"


async def test_an_unreachable_collector_leaves_requests_alone_and_is_logged_once(
    fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")  # each failed export gives up sooner
    cfg = config(fake_provider, endpoint="http://127.0.0.1:9")  # discard port: nothing listens
    telemetry = Telemetry(cfg)
    sidecar = await Sidecar.start(cfg, telemetry=telemetry)
    answers = []
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(2):  # two batches, two failed exports
                answers += [await sidecar.complete(Request("", [Message("user", "hi")])) for _ in range(10)]
                await asyncio.sleep(0)
                assert telemetry.tracing is not None
                await asyncio.to_thread(telemetry.tracing.flush, 5_000)
    finally:
        await sidecar.aclose()
        await telemetry.aclose()
    assert all(a.decision.served_by == "primary" and a.decision.span_id for a in answers)
    unreachable = [r for r in caplog.records if "cannot reach the OTLP collector" in r.getMessage()]
    assert len(unreachable) == 1
    assert not [r for r in caplog.records if r.getMessage().startswith("Failed to export")]


class Receiver:
    """A minimal OTLP/HTTP trace receiver: decodes every export into spans."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[Any] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                export = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                for resource_spans in export.resource_spans:
                    received.resources.append(resource_spans.resource)
                    for scope in resource_spans.scope_spans:
                        received.spans.extend(scope.spans)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def test_spans_leave_over_otlp_http(receiver: Receiver, fake_provider: FakeProvider) -> None:
    cfg = config(fake_provider, endpoint=receiver.url)
    telemetry = Telemetry(cfg)
    sidecar = await Sidecar.start(cfg, telemetry=telemetry)
    try:
        await sidecar.complete(Request("", [Message("user", PROMPT)], sensitivity=Sensitivity.PUBLIC))
        await asyncio.sleep(0)
    finally:
        await sidecar.aclose()
        await telemetry.aclose()
    assert sorted(s.name for s in receiver.spans) == ["chat default", "chat gpt-test"]
    resource = {kv.key: kv.value.string_value for kv in receiver.resources[0].attributes}
    assert resource["service.name"] == "tiergate-test"
    exported = b"".join(s.SerializeToString() for s in receiver.spans)
    assert PROMPT.encode() not in exported and KEY.encode() not in exported


async def test_all_attempts_failing_is_an_error_span(fake_provider: FakeProvider) -> None:
    async with traced(config(fake_provider)) as (sidecar, exporter):
        fake_provider.script("status:503", model="gpt-test")
        fake_provider.script("status:503", model="claude-test")
        with pytest.raises(AllAttemptsFailed):
            await sidecar.complete(Request("", [Message("user", PROMPT)]))
        await asyncio.sleep(0)
    request, attempts = by_kind(exporter.get_finished_spans())
    assert request.status.status_code == StatusCode.ERROR
    assert dict(request.attributes or {})["error.type"] == "all_attempts_failed"
    assert request.status.description == "all_attempts_failed"  # the kind, never the upstream message
    assert [dict(s.attributes or {})["tiergate.attempt.outcome"] for s in attempts] == ["error", "error"]


def test_an_endpoint_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from tiergate.telemetry.tracing import INSTALL_HINT, Tracing

    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ValueError, match="pip install 'tiergate\\[otel\\]'") as caught:
        Tracing("http://127.0.0.1:4318", TelemetryConfig())
    assert str(caught.value) == INSTALL_HINT


async def test_latency_histograms_carry_exemplars_in_openmetrics(fake_provider: FakeProvider) -> None:
    from tiergate.server.http import observability_routes

    exporter = InMemorySpanExporter()
    cfg = config(fake_provider)
    telemetry = Telemetry(cfg, span_exporter=exporter)
    sidecar = await Sidecar.start(cfg, telemetry=telemetry)
    try:
        answer = await sidecar.complete(Request("", [Message("user", "hi")]), parent=caller())
        await asyncio.sleep(0)
    finally:
        await sidecar.aclose()
        await telemetry.aclose()
    scrape = observability_routes(telemetry)["/metrics"]
    exemplar = f'# {{span_id="{answer.decision.span_id}",trace_id="{CALLER_TRACE}"}}'
    openmetrics = scrape({"accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.content_type.startswith("application/openmetrics-text")
    lines = [line for line in openmetrics.body.decode().splitlines() if exemplar in line]
    assert {line.split("_bucket", 1)[0] for line in lines} == {
        "tiergate_request_duration_seconds",
        "tiergate_overhead_seconds",
    }
    classic = scrape({})
    assert classic.content_type.startswith("text/plain") and CALLER_TRACE not in classic.body.decode()


async def test_the_grpc_server_and_the_http_facade_read_the_callers_context(
    fake_provider: FakeProvider,
) -> None:
    import grpc
    import orjson

    from tiergate.server.grpc import TiergateServicer
    from tiergate.server.grpc_server import GrpcServer
    from tiergate.server.http import HttpRequest, Response
    from tiergate.server.openai_facade import DECISION_HEADER, OpenAIFacade
    from tiergate.v1 import tiergate_pb2 as pb
    from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

    async with traced(config(fake_provider)) as (sidecar, exporter):
        server = GrpcServer(TiergateServicer(sidecar))
        port = await server.start("127.0.0.1:0")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.TiergateStub(channel)
                message = pb.CompleteRequest(messages=[pb.Message(role="user", content=PROMPT)])
                unary = await stub.Complete(message, timeout=10, metadata=(("traceparent", TRACEPARENT),))
                chunks = [
                    c
                    async for c in stub.StreamComplete(
                        message, timeout=10, metadata=(("traceparent", TRACEPARENT),)
                    )
                ]
        finally:
            await server.stop()
        body = orjson.dumps({"model": "default", "messages": [{"role": "user", "content": PROMPT}]})
        reply = await OpenAIFacade(sidecar)(
            HttpRequest("POST", "/v1/chat/completions", {"traceparent": TRACEPARENT}, body)
        )
        await asyncio.sleep(0)
    assert unary.decision.trace_id == CALLER_TRACE and chunks[-1].decision.trace_id == CALLER_TRACE
    assert isinstance(reply, Response) and reply.status == 200
    decision = orjson.loads(dict(reply.headers)[DECISION_HEADER])
    assert decision["trace_id"] == CALLER_TRACE and decision["span_id"]
    requests = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(requests) == 3
    assert all(s.parent is not None and f"{s.parent.span_id:016x}" == CALLER_SPAN for s in requests)
    streamed = next(s for s in requests if dict(s.attributes or {})["tiergate.stream"])
    assert dict(streamed.attributes or {})["gen_ai.response.finish_reasons"] == ("stop",)


async def test_a_request_the_caller_cancels_shows_its_attempt_cancelled(fake_provider: FakeProvider) -> None:
    async with traced(config(fake_provider)) as (sidecar, exporter):
        task = asyncio.create_task(
            sidecar.complete(Request("slow", [Message("user", PROMPT)]), parent=caller())
        )
        await fake_provider.until(lambda requests: len(requests) == 1, timeout=10)  # the attempt is running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
    request, (attempt,) = by_kind(exporter.get_finished_spans())
    assert dict(request.attributes or {})["error.type"] == "cancelled"
    assert dict(attempt.attributes or {})["tiergate.attempt.outcome"] == "cancelled"
    assert attempt.parent is not None and request.context is not None
    assert attempt.parent.span_id == request.context.span_id
