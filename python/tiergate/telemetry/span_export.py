"""The OpenTelemetry SDK end of `tracing`: finished spans into a batch processor, and an exporter wrapper that
reports an unreachable collector once. Imported only when tracing is configured (the SDK is the `otel` extra).

The spans are built after the answer from timings already recorded, so they are made directly as the SDK's
finished-span type (`ReadableSpan`) rather than started and ended through a Tracer: a live span validates
every attribute as it is set and asks a sampler and an id generator, which here would cost more than the rest
of the request's telemetry together (benches/results/bench_tracing.md). `tracing` builds attributes of the
types OTLP accepts (str, bool, int, float, tuples of str) and chose the ids and the sampling decision when the
request arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

logger = logging.getLogger("tiergate.telemetry.tracing")
# The SDK logs every failed batch, every retry and every span dropped from a full queue; `Reporting` says
# once that the collector is unreachable (and once that it is back) instead.
_QUIETED = {
    "opentelemetry.exporter.otlp.proto.http.trace_exporter": ("Failed to export", "Transient error"),
    "opentelemetry.sdk._shared_internal": ("Queue full",),
}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)


class SpanSink:
    """Finished spans -> a BatchSpanProcessor (its own thread) -> `exporter`."""

    def __init__(self, exporter: SpanExporter, endpoint: str, service_name: str) -> None:
        self._resource = Resource.create({"service.name": service_name})
        self._scope = InstrumentationScope("tiergate")
        self.reporting = Reporting(exporter, endpoint)
        self._processor = BatchSpanProcessor(self.reporting)

    @staticmethod
    def context(trace_id: int, span_id: int, trace_state: TraceState | None = None) -> SpanContext:
        return SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED, trace_state=trace_state)

    def emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        *,
        server: bool,
        attributes: Mapping[str, Any],
        start_ns: int,
        end_ns: int,
        error: str | None,
    ) -> None:
        """`error`: the span's status is ERROR with this description (an error kind, never a message)."""
        span = ReadableSpan(
            name,
            context,
            parent,
            self._resource,
            attributes,
            kind=SpanKind.SERVER if server else SpanKind.CLIENT,
            status=_UNSET if error is None else Status(StatusCode.ERROR, error),
            start_time=start_ns,
            end_time=end_ns,
            instrumentation_scope=self._scope,
        )
        self._processor.on_end(span)

    def flush(self, timeout_ms: int) -> bool:
        return bool(self._processor.force_flush(timeout_ms))

    def shutdown(self) -> None:
        self._processor.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated


class Reporting(SpanExporter):
    """Wraps the exporter: a failed export is logged once per outage, not per batch (nor per request)."""

    def __init__(self, inner: SpanExporter, endpoint: str) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self.failing = False  # written by the export thread, read by the event loop: a plain flag
        self._quiet = _Quiet()
        for name in _QUIETED:
            logging.getLogger(name).addFilter(self._quiet)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        if result is SpanExportResult.FAILURE and not self.failing:
            self.failing = True
            logger.warning(
                "traces cannot reach the OTLP collector at %s; spans are dropped until it answers",
                self._endpoint,
            )
        elif result is SpanExportResult.SUCCESS and self.failing:
            self.failing = False
            logger.info("the OTLP collector at %s answers again", self._endpoint)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()
        for name in _QUIETED:
            logging.getLogger(name).removeFilter(self._quiet)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


class _Quiet(logging.Filter):
    """Drops the SDK's per-batch, per-retry and per-span records of an outage (`Reporting` logs it once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        prefixes = _QUIETED.get(record.name, ())
        return not str(record.msg).startswith(prefixes)
