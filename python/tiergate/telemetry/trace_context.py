"""W3C trace context in and out: the caller's `traceparent`, `tracestate` and `baggage`.

tiergate joins the trace its caller already runs. The gRPC server reads the three from the call's metadata,
the HTTP facade from the request's headers, the in-process `Router` takes OpenTelemetry's current context,
and `tiergate.Client` puts the current context into its calls' metadata. Parsing and formatting are
OpenTelemetry's own propagators (`opentelemetry-api`, part of the `otel` extra); without it nothing is read
or sent, and every request starts a trace of its own, as it would with no caller's context.

Baggage is carried in the parent context, never recorded: it may hold anything the application put there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.context import Context

# The carrier keys the W3C propagators read; anything else in the metadata or headers is left alone.
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


class Propagation:
    """W3C TraceContext and Baggage, as OpenTelemetry's propagators read and write them."""

    def __init__(self) -> None:
        try:
            from opentelemetry import context
            from opentelemetry.baggage.propagation import W3CBaggagePropagator
            from opentelemetry.propagators.composite import CompositePropagator
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise ValueError(
                "trace context needs the OpenTelemetry extra: pip install 'tiergate[otel]'"
            ) from None
        self._propagator = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
        self._current = context.get_current

    def extract(self, carrier: Mapping[str, str]) -> Context | None:
        """The caller's context in lower-cased headers (or metadata); None when they carry none."""
        if not any(key in carrier for key in TRACE_HEADERS):
            return None
        return self._propagator.extract(carrier)

    def extract_pairs(self, pairs: Iterable[tuple[str, str | bytes]]) -> Context | None:
        """As `extract`, from gRPC metadata (key, value) pairs; binary values are not trace context."""
        carrier = {k: v for k, v in pairs if k in TRACE_HEADERS and isinstance(v, str)}
        return self.extract(carrier) if carrier else None

    def current(self) -> Context:
        """OpenTelemetry's current context (the application's active span, if any)."""
        return self._current()


def inject_current() -> tuple[tuple[str, str], ...]:
    """The current OpenTelemetry context as W3C headers, for a call's metadata; () without OpenTelemetry or
    without an active span or baggage. Uses the application's configured global propagator."""
    if _inject is None:
        return ()
    carrier: dict[str, str] = {}
    _inject(carrier)
    return tuple(carrier.items())


def _injector() -> Callable[[dict[str, str]], None] | None:
    try:
        from opentelemetry.propagate import inject
    except ImportError:  # the otel extra is optional: an application without it has no context to send
        return None
    return inject


_inject = _injector()
