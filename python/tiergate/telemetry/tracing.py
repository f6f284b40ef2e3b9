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

The ids and the sampling decision are made when the request arrives (`start`), so that the Decision returned
to the caller names its trace and span; the spans themselves are built after the answer from the request's
own timings, like the decision record (`span_export`), and leave in batches from the SDK's background thread.
An unreachable collector is logged once (and once more when it answers again), never raised into a request;
while it is down, only one request every PROBE_S seconds has its spans built, to find out when it is back.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tiergate.config import DEFAULT_BASE_URLS, Config, TelemetryConfig
from tiergate.request import Decision, Outcome, Sensitivity

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import SpanContext

    from tiergate.telemetry import Report

INSTALL_HINT = "telemetry.otlp_endpoint needs the OpenTelemetry extra: pip install 'tiergate[otel]'"
OPERATION = "chat"
PROBE_S = 5.0
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

    parent: SpanContext | None  # the caller's span (None: a new trace)
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
            from opentelemetry.sdk.trace.sampling import Decision as Sampling
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace import SpanKind, get_current_span

            from tiergate.telemetry.span_export import SpanSink
        except ImportError:
            raise ValueError(INSTALL_HINT) from None
        self.endpoint = endpoint
        self.settings = settings
        root = TraceIdRatioBased(settings.trace_sample_ratio)
        self._sampler = ParentBased(root) if settings.trace_parent_based else root
        self._sample = Sampling.RECORD_AND_SAMPLE
        if exporter is None:
            exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        self._sink = SpanSink(exporter, endpoint, settings.service_name)
        self._server = SpanKind.SERVER
        self._empty = Context
        self._span_of = get_current_span
        self._models: dict[str, _Model] = {}
        self._rng = random.Random()
        self._probed = 0.0  # while the collector is down: when a request's spans last went to test it

    def configure(self, config: Config) -> None:
        """The models' providers and addresses, for the attempt spans (a reload may change them)."""
        self._models = {
            name: _model(name, m.provider, m.model, m.base_url) for name, m in config.models.items()
        }

    def start(self, parent: Context | None) -> TraceStart:
        """The request's trace and span ids, and whether it is sampled (by the configured sampler, from the
        caller's sampled flag and the trace id)."""
        caller = self._span_of(parent).get_span_context() if parent is not None else None
        if caller is not None and caller.is_valid:
            trace_id = caller.trace_id
        else:
            trace_id, caller, parent = self._rng.getrandbits(128) or 1, None, None
        span_id = self._rng.getrandbits(64) or 1
        result = self._sampler.should_sample(parent or self._empty(), trace_id, OPERATION, self._server)
        return TraceStart(caller, trace_id, span_id, result.decision is self._sample)

    def record(self, report: Report) -> None:
        """The request's spans, from its report: called after the answer."""
        trace = report.trace
        if trace is None or not trace.sampled:
            return
        if self._sink.reporting.failing:
            # The collector is down: the spans would only be dropped from a full queue. One request every
            # PROBE_S seconds still sends its spans, to notice when the collector is back.
            now = time.monotonic()
            if now - self._probed < PROBE_S:
                return
            self._probed = now
        request, decision = report.request, report.decision
        start_ns = int(report.started_at * 1e9)
        end_ns = start_ns + int(report.duration_s * 1e9)
        route = decision.route if decision is not None else (request.task or "default")
        served = self._models.get(decision.served_by) if decision is not None and decision.served_by else None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.request.model": route,
            "tiergate.stream": request.stream,
            "tiergate.outcome": report.error_kind,
        }
        # Empty values are left out: every attribute costs its OTLP encoding, in the export thread.
        if request.task:
            attributes["tiergate.task"] = request.task
        if request.tenant:
            attributes["tiergate.tenant"] = request.tenant
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
                    "tiergate.served_by": decision.served_by,
                    "tiergate.reason": decision.reason,
                    "tiergate.overhead_ms": decision.overhead_ms,
                    "tiergate.cost_usd": decision.cost_usd,
                }
            )
            if decision.matched_rules:
                attributes["tiergate.matched_rules"] = tuple(decision.matched_rules)
            if decision.complexity:
                attributes["tiergate.complexity"] = decision.complexity
            if decision.skipped:
                attributes["tiergate.skipped"] = tuple(s.model for s in decision.skipped)
        error = report.error_kind if report.error is not None else None
        if error is not None:
            attributes["error.type"] = error
        caller = trace.parent
        context = self._sink.context(trace.trace_id, trace.span_id, caller.trace_state if caller else None)
        if decision is not None:
            self._attempts(report, decision, context, start_ns, end_ns)
        self._sink.emit(
            f"{OPERATION} {route}",
            context,
            caller,
            server=True,
            attributes=attributes,
            start_ns=start_ns,
            end_ns=end_ns,
            error=error,
        )

    def _attempts(
        self, report: Report, decision: Decision, parent: SpanContext, start_ns: int, end_ns: int
    ) -> None:
        sink = self._sink
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
            error = None
            if attempt.outcome in _FAILED:
                # The error's kind ("rate_limited", ...), never its message: upstream text may echo content.
                kind = attempt.error.split(":", 1)[0] if attempt.outcome == Outcome.ERROR else ""
                error = attributes["error.type"] = kind if kind and " " not in kind else attempt.outcome.value
            sink.emit(
                f"{OPERATION} {model.model}",
                sink.context(parent.trace_id, self._rng.getrandbits(64) or 1, parent.trace_state),
                parent,
                server=False,
                attributes=attributes,
                start_ns=begin,
                end_ns=min(begin + int(attempt.latency_ms * 1e6), max(end_ns, begin)),
                error=error,
            )

    def flush(self, timeout_ms: int = 5_000) -> bool:
        return self._sink.flush(timeout_ms)

    def shutdown(self) -> None:
        """Exports what is queued, then stops (blocks: call it off the event loop)."""
        self._sink.shutdown()


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
        attributes["gen_ai.response.finish_reasons"] = (report.finish_reason,)
