"""The OpenTelemetry SDK parts that `tracing` plugs in: preset span ids, and an exporter that reports an
unreachable collector once. Imported only when tracing is configured (the SDK is the optional `otel` extra).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

logger = logging.getLogger("tiergate.telemetry.tracing")
# The OTLP exporter logs every failed batch itself; `Reporting` says it once per outage instead.
_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


class PresetIds(IdGenerator):
    """The SDK's id generator, except for the ids of the span being started inside `preset`."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._trace_id = 0
        self._span_id = 0
        self._lock = threading.Lock()  # spans are built on the event loop; the lock keeps that an assumption

    def preset(self, trace_id: int, span_id: int) -> _Preset:
        return _Preset(self, trace_id, span_id)

    def generate_span_id(self) -> int:
        span_id, self._span_id = self._span_id, 0
        return span_id or self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        trace_id, self._trace_id = self._trace_id, 0
        return trace_id or self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True


class _Preset:
    __slots__ = ("_ids", "_span_id", "_trace_id")

    def __init__(self, ids: PresetIds, trace_id: int, span_id: int) -> None:
        self._ids, self._trace_id, self._span_id = ids, trace_id, span_id

    def __enter__(self) -> None:
        self._ids._lock.acquire()
        self._ids._trace_id, self._ids._span_id = self._trace_id, self._span_id

    def __exit__(self, *exc: object) -> None:
        self._ids._trace_id = self._ids._span_id = 0
        self._ids._lock.release()


class Reporting(SpanExporter):
    """Wraps the exporter: a failed export is logged once per outage, not per batch (nor per request)."""

    def __init__(self, inner: SpanExporter, endpoint: str) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._failing = False
        self._quiet = _BatchFailures()
        logging.getLogger(_EXPORTER_LOGGER).addFilter(self._quiet)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        if result is SpanExportResult.FAILURE and not self._failing:
            self._failing = True
            logger.warning(
                "traces cannot reach the OTLP collector at %s; spans are dropped until it answers",
                self._endpoint,
            )
        elif result is SpanExportResult.SUCCESS and self._failing:
            self._failing = False
            logger.info("the OTLP collector at %s answers again", self._endpoint)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()
        logging.getLogger(_EXPORTER_LOGGER).removeFilter(self._quiet)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


class _BatchFailures(logging.Filter):
    """Drops the exporter's own per-batch failure records (`Reporting` logs the outage once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to export")
