"""telemetry/tracing.py: request spans exported over OTLP/HTTP to a real receiver on loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fakes.provider_server import FakeProvider
from tiergate.config import parse, resolve
from tiergate.errors import AllAttemptsFailed
from tiergate.request import Message, Request
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry

trace_service_pb2 = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="the otel extra is not installed (make setup installs it)",
)

KEY = "sk-tracing-test-0123456789"
PROMPT = "trace this prompt text, which must not be exported"


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


def attributes(item: Any) -> dict[str, Any]:
    out = {}
    for kv in item.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = (
            [v.string_value for v in value.array_value.values]
            if kind == "array_value"
            else getattr(value, kind)
        )
    return out


async def test_each_request_becomes_a_span(receiver: Receiver, fake_provider: FakeProvider) -> None:
    data = {
        "models": {
            "mini": {
                "provider": "openai",
                "base_url": fake_provider.url_openai,
                "api_key": "env:KEY",
                "model": "gpt-test",
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            }
        },
        # A task names its route (only an empty task means `default`).
        "routes": {
            "default": {"chain": ["mini"], "retries": 0},
            "classify": {"chain": ["mini"], "retries": 0},
        },
        "telemetry": {"otlp_endpoint": receiver.url, "service_name": "tiergate-test"},
    }
    config = resolve(parse(data), {"KEY": KEY})
    telemetry = Telemetry(config)
    sidecar = await Sidecar.start(config, telemetry=telemetry)
    try:
        ok = await sidecar.complete(Request("classify", [Message("user", PROMPT)], tenant="acme"))
        fake_provider.script("status:503", model="gpt-test")
        with pytest.raises(AllAttemptsFailed):
            await sidecar.complete(Request("classify", [Message("user", PROMPT)], tenant="acme"))
        await asyncio.sleep(0)  # the spans are made in the turn after each answer
    finally:
        await sidecar.aclose()
        await telemetry.aclose()  # flushes the exporter
    assert len(receiver.spans) == 2
    good, bad = sorted(receiver.spans, key=lambda s: s.start_time_unix_nano)
    assert good.name == "tiergate.request"
    assert attributes(receiver.resources[0])["service.name"] == "tiergate-test"
    a = attributes(good)
    assert a["tiergate.route"] == "classify" and a["tiergate.task"] == "classify"
    assert a["tiergate.tenant"] == "acme" and a["tiergate.outcome"] == "ok"
    assert a["tiergate.served_by"] == "mini"
    assert a["gen_ai.usage.output_tokens"] == ok.completion.usage.output_tokens
    assert a["tiergate.cost_usd"] == pytest.approx(ok.completion.usage.cost_usd)
    assert good.end_time_unix_nano > good.start_time_unix_nano
    assert [attributes(e)["outcome"] for e in good.events] == ["ok"]
    assert good.status.code != 2  # not ERROR
    assert bad.status.code == 2  # STATUS_CODE_ERROR
    assert attributes(bad)["tiergate.outcome"] == "all_attempts_failed"
    assert [attributes(e)["outcome"] for e in bad.events] == ["error"]
    exported = b"".join(s.SerializeToString() for s in receiver.spans)
    assert PROMPT.encode() not in exported and KEY.encode() not in exported


def test_an_endpoint_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from tiergate.telemetry.tracing import INSTALL_HINT, Tracing

    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ValueError, match="pip install 'tiergate\\[otel\\]'") as caught:
        Tracing("http://127.0.0.1:4318")
    assert str(caught.value) == INSTALL_HINT
