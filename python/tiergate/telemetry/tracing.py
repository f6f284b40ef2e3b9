"""OpenTelemetry traces over OTLP/HTTP, when `telemetry.otlp_endpoint` is set (`pip install tiergate[otel]`).

One span per request, `tiergate.request`, created after the answer from the request's own timings (start,
duration), with the decision as attributes (route, task, tenant, sensitivity, served model, tokens, cost,
overhead, outcome) and one span event per attempt (model, outcome, TTFT, latency, error). A failed request's
span has status ERROR. Spans leave in batches from the SDK's background thread, never on the request path.
Prompt and answer text are never put in spans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tiergate.telemetry import Report

INSTALL_HINT = "telemetry.otlp_endpoint needs the OpenTelemetry extra: pip install 'tiergate[otel]'"


class Tracing:
    """Exports request spans to an OTLP/HTTP collector (`endpoint` is its base URL, e.g. http://host:4318)."""

    def __init__(self, endpoint: str, service_name: str = "tiergate") -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind, Status, StatusCode
        except ImportError:
            raise ValueError(INSTALL_HINT) from None
        self.endpoint = endpoint
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("tiergate")
        self._kind = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR)
        self._status = Status

    def record(self, report: Report) -> None:
        start_ns = int(report.started_at * 1e9)
        span = self._tracer.start_span("tiergate.request", kind=self._kind, start_time=start_ns)
        request = report.request
        decision = report.decision
        attributes: dict[str, Any] = {
            "tiergate.task": request.task,
            "tiergate.tenant": request.tenant,
            "tiergate.stream": request.stream,
            "tiergate.outcome": report.error_kind,
        }
        if decision is not None:
            attributes.update(
                {
                    "tiergate.route": decision.route,
                    "tiergate.sensitivity": decision.sensitivity.name,
                    "tiergate.matched_rules": decision.matched_rules,
                    "tiergate.served_by": decision.served_by,
                    "tiergate.reason": decision.reason,
                    "tiergate.overhead_ms": decision.overhead_ms,
                    "tiergate.cost_usd": decision.cost_usd,
                }
            )
            for attempt in decision.attempts:
                span.add_event(
                    "tiergate.attempt",
                    {
                        "model": attempt.model,
                        "outcome": attempt.outcome.value,
                        "ttft_ms": attempt.ttft_ms,
                        "latency_ms": attempt.latency_ms,
                        "hedged": attempt.hedged,
                        "error": attempt.error,
                    },
                    timestamp=start_ns + int(report.duration_s * 1e9),
                )
        usage = report.usage
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        span.set_attributes(attributes)
        if report.error is not None:
            span.set_status(self._status(self._error.status_code, str(report.error)[:500]))
        span.end(end_time=start_ns + int(report.duration_s * 1e9))

    def flush(self, timeout_ms: int = 5_000) -> bool:
        return bool(self._provider.force_flush(timeout_ms))

    def shutdown(self) -> None:
        """Exports what is queued, then stops (blocks: call it off the event loop)."""
        self._provider.shutdown()
