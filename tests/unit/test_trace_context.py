"""telemetry/trace_context.py: W3C trace context read from headers and metadata, and sent by the Client."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed (make setup installs it)")
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import get_current_span

from tiergate.telemetry.trace_context import Propagation, inject_current

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("carrier", "trace_id", "sampled"),
    [
        ({"traceparent": f"00-{TRACE}-{SPAN}-01"}, TRACE, True),
        ({"traceparent": f"00-{TRACE}-{SPAN}-00", "tracestate": "a=1"}, TRACE, False),
        ({"traceparent": "00-not-a-trace-01"}, None, None),  # malformed: no parent
        ({"baggage": "user=x"}, None, None),  # baggage alone: context, but no span to join
        ({"content-type": "application/json"}, None, None),
    ],
)
def test_extract(carrier: dict[str, str], trace_id: str | None, sampled: bool | None) -> None:
    parent = Propagation().extract(carrier)
    if not any(k in carrier for k in ("traceparent", "tracestate", "baggage")):
        assert parent is None
        return
    assert parent is not None
    span = get_current_span(parent).get_span_context()
    if trace_id is None:
        assert not span.is_valid
    else:
        assert f"{span.trace_id:032x}" == trace_id and span.is_remote and span.trace_flags.sampled is sampled


def test_grpc_metadata_pairs_skip_binary_values_and_other_keys() -> None:
    pairs = [("authorization", "Bearer x"), ("traceparent", f"00-{TRACE}-{SPAN}-01"), ("bin-bin", b"\x00")]
    parent = Propagation().extract_pairs(pairs)
    assert parent is not None
    assert f"{get_current_span(parent).get_span_context().span_id:016x}" == SPAN
    assert Propagation().extract_pairs([("authorization", "Bearer x")]) is None


def test_the_client_sends_the_current_span_and_baggage() -> None:
    assert inject_current() == ()  # no active span, no baggage
    tracer = TracerProvider().get_tracer("app")
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with tracer.start_as_current_span("outer") as outer:
            sent = dict(inject_current())
    finally:
        context.detach(token)
    ctx = outer.get_span_context()
    assert sent["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    assert sent["baggage"] == "tenant=acme"
