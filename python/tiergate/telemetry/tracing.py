"""OpenTelemetry traces over OTLP/HTTP, when `telemetry.otlp_endpoint` is set (`pip install tiergate[otel]`).

Each request is one SERVER span in the caller's trace (see `trace_context`), or in a new trace when the caller
sent none, with one CLIENT span per attempt under it: hedged, cancelled and failed attempts included, each
with its outcome. Names and attributes follow the OpenTelemetry GenAI semantic conventions in their latest
experimental form (the one with `gen_ai.provider.name`, which replaced `gen_ai.system` after semconv v1.36):

- request span `chat {route}`: `gen_ai.operation.name`, `gen_ai.request.model` (the route the caller asked
  for, as the OpenAI facade's `model` names it), `gen_ai.provider.name` and `gen_ai.response.model` of the
  model that served, `gen_ai.usage.*`, `gen_ai.response.finish_reasons`, `error.type`; and tiergate's own
  `tiergate.*` (route, task, tenant, sensitivity, matched rule ids, served_by, reason, cost, overhead);
- attempt span `chat {model}`: the attempt's provider, upstream model, `server.address`/`server.port`, the
  request's `max_tokens`/`temperature`, usage and finish reason on the attempt that served, `error.type`
  when it failed; `tiergate.model`, `tiergate.attempt.outcome`, `tiergate.attempt.hedged`, TTFT.

Prompt and answer text, baggage, keys and upstream error messages never go into a span (error messages can
echo the prompt or a key); a restricted request says so (`tiergate.sensitivity`) and nothing more.

The ids are chosen when the request arrives (`start`), so that the Decision returned to the caller names its
trace and span; the spans themselves are built after the answer from the request's own timings, like the
decision record, and leave in batches from the SDK's background thread. An unreachable collector is logged
once (and once more when it answers again), never raised into a request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tiergate.config import DEFAULT_BASE_URLS, Config, TelemetryConfig
from tiergate.request import Decision, Outcome, Sensitivity

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter

    from tiergate.telemetry import Report

INSTALL_HINT = "telemetry.otlp_endpoint needs the OpenTelemetry extra: pip install 'tiergate[otel]'"
OPERATION = "chat"
# Outcomes that are the attempt's failure (error.type, status ERROR); a lost hedge or a caller's cancellation
# is not, though the span still says what became of it.
_FAILED = {
    Outcome.ERROR,
    Outcome.TTFT_TIMEOUT,
    Outcome.DEADLINE,
    Outcome.PARTIAL,
    Outcome.REJECTED,
}
_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "llama_cpp": "llama_cpp"}


@dataclass(frozen=True, slots=True)
class TraceStart:
    """A request's place in a trace, chosen when it arrives: what the Decision and the spans will carry."""

    parent: Context | None  # the caller's context (None: a new trace)
    trace_id: int
    span_id: int
    sampled: bool

    def stamp(self, decision: Decision) -> None:
        """Names the trace (always) and the request span (only when sampled: unsampled spans do not exist)."""
        decision.trace_id = f"{self.trace_id:032x}"
        decision.span_id = f"{self.span_id:016x}" if self.sampled else ""


@dataclass(frozen=True, slots=True)
class _Model:
    """What the attempt spans say about one configured model."""

    provider: str
    model: str  # the upstream model id (a local model: its tiergate name)
    address: str | None
    port: int | None


class Tracing:
    """Builds request and attempt spans and exports them to an OTLP/HTTP collector (`endpoint` is its base
    URL, e.g. http://host:4318). `exporter` replaces the OTLP one (tests: an in-memory exporter)."""

    def __init__(
        self, endpoint: str, settings: TelemetryConfig, *, exporter: SpanExporter | None = None
    ) -> None:
        try:
            from opentelemetry.context import Context
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import Decision as Sampling
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace import (
                SpanKind,
                Status,
                StatusCode,
                get_current_span,
                set_span_in_context,
            )

            from tiergate.telemetry.span_export import PresetIds, Reporting
        except ImportError:
            raise ValueError(INSTALL_HINT) from None
        self.endpoint = endpoint
        self.settings = settings
        root = TraceIdRatioBased(settings.trace_sample_ratio)
        self._sampler = ParentBased(root) if settings.trace_parent_based else root
        self._sample = Sampling.RECORD_AND_SAMPLE
        self._ids = PresetIds()
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=self._sampler,
            id_generator=self._ids,
        )
        if exporter is None:
            exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        self._provider.add_span_processor(BatchSpanProcessor(Reporting(exporter, endpoint)))
        self._tracer = self._provider.get_tracer("tiergate")
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._error = Status(StatusCode.ERROR)
        self._status = Status
        self._empty = Context
        self._in_context = set_span_in_context
        self._span_of = get_current_span
        self._models: dict[str, _Model] = {}
        self._rng = random.Random()

    def configure(self, config: Config) -> None:
        """The models' providers and addresses, for the attempt spans (a reload may change them)."""
        self._models = {
            name: _model(name, m.provider, m.model, m.base_url) for name, m in config.models.items()
        }

    def start(self, parent: Context | None) -> TraceStart:
        """The request's trace and span ids, and whether it is sampled (the sampler's answer is a function of
        the parent and the trace id, so the span built later gets the same one)."""
        context = self._span_of(parent).get_span_context() if parent is not None else None
        if context is not None and context.is_valid:
            trace_id = context.trace_id
        else:
            trace_id, parent = self._rng.getrandbits(128) or 1, None
        span_id = self._rng.getrandbits(64) or 1
        result = self._sampler.should_sample(parent or self._empty(), trace_id, OPERATION, self._server)
        return TraceStart(parent, trace_id, span_id, result.decision is self._sample)

    def record(self, report: Report) -> None:
        """The request's spans, from its report: called after the answer."""
        trace = report.trace
        if trace is None or not trace.sampled:
            return
        request, decision = report.request, report.decision
        start_ns = int(report.started_at * 1e9)
        end_ns = start_ns + int(report.duration_s * 1e9)
        route = decision.route if decision is not None else (request.task or "default")
        served = self._models.get(decision.served_by) if decision is not None and decision.served_by else None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.request.model": route,
            "tiergate.task": request.task,
            "tiergate.tenant": request.tenant,
            "tiergate.stream": request.stream,
            "tiergate.outcome": report.error_kind,
        }
        _request_settings(attributes, report)
        if served is not None:
            attributes["gen_ai.provider.name"] = served.provider
            attributes["gen_ai.response.model"] = served.model
        _usage(attributes, report)
        if decision is not None:
            attributes.update(
                {
                    "tiergate.route": decision.route,
                    "tiergate.sensitivity": decision.sensitivity.name,
                    "tiergate.restricted": decision.sensitivity == Sensitivity.RESTRICTED,
                    "tiergate.matched_rules": decision.matched_rules,
                    "tiergate.complexity": decision.complexity,
                    "tiergate.served_by": decision.served_by,
                    "tiergate.reason": decision.reason,
                    "tiergate.overhead_ms": decision.overhead_ms,
                    "tiergate.cost_usd": decision.cost_usd,
                    "tiergate.attempts": len(decision.attempts),
                    "tiergate.skipped": [s.model for s in decision.skipped],
                }
            )
        if report.error is not None:
            attributes["error.type"] = report.error_kind
        # The SDK asks the id generator for the span's ids: hand it the ones the Decision already carries.
        with self._ids.preset(trace.trace_id if trace.parent is None else 0, trace.span_id):
            span = self._tracer.start_span(
                f"{OPERATION} {route}",
                context=trace.parent if trace.parent is not None else self._empty(),
                kind=self._server,
                attributes=attributes,
                start_time=start_ns,
            )
        if report.error is not None:
            span.set_status(self._status(self._error.status_code, report.error_kind))
        if decision is not None:
            self._attempts(report, decision, self._in_context(span), start_ns, end_ns)
        span.end(end_time=end_ns)

    def _attempts(
        self, report: Report, decision: Decision, parent: Context, start_ns: int, end_ns: int
    ) -> None:
        for attempt in decision.attempts:
            model = self._models.get(attempt.model) or _Model("", attempt.model, None, None)
            offset_ns = int((attempt.started_at - report.started_mono) * 1e9) if report.started_mono else 0
            begin = min(max(start_ns + offset_ns, start_ns), end_ns)
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": OPERATION,
                "gen_ai.request.model": model.model,
                "tiergate.model": attempt.model,
                "tiergate.attempt.outcome": attempt.outcome.value,
                "tiergate.attempt.hedged": attempt.hedged,
                "tiergate.attempt.ttft_ms": attempt.ttft_ms,
            }
            if model.provider:
                attributes["gen_ai.provider.name"] = model.provider
            if model.address is not None:
                attributes["server.address"] = model.address
            if model.port is not None:
                attributes["server.port"] = model.port
            _request_settings(attributes, report)
            if attempt.outcome == Outcome.OK and attempt.model == decision.served_by:
                attributes["gen_ai.response.model"] = model.model
                _usage(attributes, report)
            failed = attempt.outcome in _FAILED
            if failed:
                # The error's kind ("rate_limited", ...), never its message: upstream text may echo content.
                kind = attempt.error.split(":", 1)[0] if attempt.outcome == Outcome.ERROR else ""
                attributes["error.type"] = kind if kind and " " not in kind else attempt.outcome.value
            span = self._tracer.start_span(
                f"{OPERATION} {model.model}",
                context=parent,
                kind=self._client,
                attributes=attributes,
                start_time=begin,
            )
            if failed:
                span.set_status(self._status(self._error.status_code, attributes["error.type"]))
            span.end(end_time=min(begin + int(attempt.latency_ms * 1e6), max(end_ns, begin)))

    def flush(self, timeout_ms: int = 5_000) -> bool:
        return bool(self._provider.force_flush(timeout_ms))

    def shutdown(self) -> None:
        """Exports what is queued, then stops (blocks: call it off the event loop)."""
        self._provider.shutdown()


def _model(name: str, provider: str, model: str | None, base_url: str | None) -> _Model:
    if provider == "llama_cpp":
        return _Model(_PROVIDERS[provider], name, None, None)
    url = urlsplit(base_url or DEFAULT_BASE_URLS.get(provider, ""))
    port = url.port or (443 if url.scheme == "https" else 80 if url.scheme == "http" else None)
    return _Model(_PROVIDERS.get(provider, provider), model or name, url.hostname, port)


def _request_settings(attributes: dict[str, Any], report: Report) -> None:
    request = report.request
    if request.max_output_tokens:
        attributes["gen_ai.request.max_tokens"] = request.max_output_tokens
    if request.temperature is not None:
        attributes["gen_ai.request.temperature"] = request.temperature


def _usage(attributes: dict[str, Any], report: Report) -> None:
    usage = report.usage
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
    if report.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [report.finish_reason]
