"""What tiergate reports about each request, once it has answered: decision records and Prometheus metrics.

`Sidecar` hands every finished request to `Telemetry.report` as a `Report`; the work (metrics, the JSON
record, the trace span) runs in a later turn of the event loop, after the response is on its way, so it never
delays an answer. `records` writes the decision log, `metrics` keeps the Prometheus families, `tracing`
exports OTLP spans when an endpoint is configured (an optional extra), in the caller's trace when the request
carries one (`trace_context`); `recent` keeps the last decisions and cost per tenant for the control panel.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from prometheus_client import CollectorRegistry

from tiergate.config import Config
from tiergate.errors import TiergateError
from tiergate.request import Decision, Request, Usage
from tiergate.telemetry.metrics import LiveView, Metrics
from tiergate.telemetry.recent import RecentActivity
from tiergate.telemetry.records import LOGGER_NAME, REDACTED, DecisionLog, LineWriter, secrets_of
from tiergate.telemetry.trace_context import Propagation
from tiergate.telemetry.tracing import TraceStart, Tracing

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)

__all__ = ["LineWriter", "LiveView", "Metrics", "Report", "Telemetry", "configure_logging"]


@dataclass(slots=True)
class Report:
    """One finished request: what was asked, decided and answered, or how it failed."""

    request: Request
    started_at: float  # wall clock (time.time()) when it arrived
    duration_s: float = 0.0
    decision: Decision | None = None  # None when it failed before it was planned
    usage: Usage | None = None
    answer: str | None = None  # kept only when the config opts in to logging content
    error: BaseException | None = None
    started_mono: float = 0.0  # time.monotonic() when it arrived: places the attempts (their started_at)
    finish_reason: str = ""
    trace: TraceStart | None = None  # its trace and span ids, when tracing is on

    @property
    def error_kind(self) -> str:
        error = self.error
        if error is None:
            return "ok"
        if isinstance(error, TiergateError):
            return error.kind
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            return "cancelled"
        return "internal"


class Telemetry:
    """The metrics registry and the decision log of one process; outlives config reloads."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        registry: CollectorRegistry | None = None,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        """`span_exporter` replaces the OTLP exporter when tracing is configured (tests: in memory)."""
        self._span_exporter = span_exporter
        self.metrics = Metrics(registry)
        self.decisions = DecisionLog()
        self.recent = RecentActivity()
        self._secrets: list[str] = []
        self.ready = False  # /readyz: the gRPC server is up and not draining
        self.tracing: Tracing | None = None
        self._propagation: Propagation | None = None
        if config is not None:
            self.configure(config)

    def configure(self, config: Config) -> None:
        """Applies a (re)loaded config's telemetry settings.

        Raises:
            ValueError: an OTLP endpoint is configured but the `otel` extra is not installed.
        """
        self._secrets = secrets_of(config)
        self.decisions.configure(
            log_content=config.telemetry.log_content,
            secrets=self._secrets,
            enabled=config.telemetry.decision_log,
        )
        endpoint = config.telemetry.otlp_endpoint
        if self.tracing is None and endpoint is not None:
            self.tracing = Tracing(endpoint, config.telemetry, exporter=self._span_exporter)
            self._propagation = Propagation()
        elif (self.tracing.endpoint if self.tracing else None) != endpoint:
            logger.warning("telemetry.otlp_endpoint changes need a restart; traces still go to the old one")
        elif self.tracing is not None and self.tracing.settings != config.telemetry:
            logger.warning("telemetry trace settings change at a restart; tracing goes on as it started")
        if self.tracing is not None:
            self.tracing.configure(config)

    # -- the caller's trace (all None when tracing is off: nothing is read) --------------------------------

    def parent_from(self, headers: Mapping[str, str]) -> Context | None:
        """The caller's trace context in HTTP headers (names lower-cased)."""
        return self._propagation.extract(headers) if self._propagation is not None else None

    def parent_from_metadata(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Context | None:
        """The caller's trace context in gRPC invocation metadata."""
        if self._propagation is None or metadata is None:
            return None
        return self._propagation.extract_pairs(metadata)

    def current_parent(self) -> Context | None:
        """OpenTelemetry's current context in this task (the in-process Router's caller)."""
        return self._propagation.current() if self._propagation is not None else None

    def start_trace(self, parent: Context | None) -> TraceStart | None:
        """A new request's trace and span ids (None when tracing is off)."""
        return self.tracing.start(parent) if self.tracing is not None else None

    @property
    def log_content(self) -> bool:
        return self.decisions.log_content

    def watch(self, view: Callable[[], LiveView | None]) -> None:
        self.metrics.watch(view)

    def report(self, report: Report) -> None:
        """Schedules the report's metrics and record for the next turn of the loop (after the answer)."""
        asyncio.get_running_loop().call_soon(self.emit, report)

    def emit(self, report: Report) -> None:
        self.metrics.observe(report)
        self.decisions.emit(report)
        self.recent.observe(report)
        if self.tracing is not None:
            self.tracing.record(report)

    def config_reloaded(self, result: str, detail: str = "") -> None:
        """Counts a reload (`ok` or `rejected`) and keeps it, with why, for the control panel."""
        self.metrics.reload(result)
        for secret in self._secrets:
            detail = detail.replace(secret, REDACTED)
        self.recent.reloaded(result, detail[:500])

    async def aclose(self) -> None:
        """Exports the spans still queued (the SDK blocks while it does: off the event loop)."""
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)


def configure_logging(records: TextIO | None = None, diagnostics: TextIO | None = None) -> Callable[[], None]:
    """Decision records to `records` (stdout), one JSON line each; other tiergate logs to `diagnostics`.

    Returns a function that writes what is still queued and stops the writer thread.
    """
    writer = LineWriter(records or sys.stdout)
    decisions = logging.getLogger(LOGGER_NAME)
    decisions.handlers = [writer]
    decisions.setLevel(logging.INFO)
    decisions.propagate = False
    err = logging.StreamHandler(diagnostics or sys.stderr)
    err.setFormatter(logging.Formatter("tiergate: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("tiergate")
    root.handlers = [err]
    root.setLevel(logging.INFO)
    root.propagate = False

    def stop() -> None:
        writer.close()
        decisions.handlers = []
        root.handlers = []

    return stop
