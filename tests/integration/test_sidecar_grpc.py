"""The sidecar as a real subprocess, called over gRPC from the generated client, with a loopback upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate import count_tokens
from tiergate.server.grpc import DECISION_TRAILER
from tiergate.v1 import tiergate_pb2 as pb

SECRET = "sk-test-0123456789-never-print-me"


def hosted_config(fake: FakeProvider) -> dict[str, Any]:
    return {
        "models": {
            "primary": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "api_key": "env:TIERGATE_TEST_KEY",
                "model": "gpt-test",
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            },
            "backup": {
                "provider": "anthropic",
                "base_url": fake.url_anthropic,
                "api_key": "env:TIERGATE_TEST_KEY",
                "model": "claude-test",
            },
        },
        "rules": [{"id": "email", "regex": r"[\w.+-]+@[\w-]+\.[\w.-]+", "sensitivity": "restricted"}],
        "routes": {
            "default": {"chain": ["primary", "backup"]},
            "only_primary": {"chain": ["primary"], "retries": 0},
        },
    }


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with run_sidecar(
        hosted_config(fake), tmp_path_factory.mktemp("sidecar"), {"TIERGATE_TEST_KEY": SECRET}
    ) as proc:
        yield proc


def ask(text: str, task: str = "") -> pb.CompleteRequest:
    return pb.CompleteRequest(task=task, messages=[pb.Message(role="user", content=text)])


def test_health_serving_for_server_and_service(sidecar: SidecarProcess) -> None:
    assert sidecar.health() == health_pb2.HealthCheckResponse.SERVING
    assert sidecar.health("tiergate.v1.Tiergate") == health_pb2.HealthCheckResponse.SERVING


def test_complete_goes_to_the_first_model_of_the_route(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    before = len(fake.requests)
    response = sidecar.stub.Complete(ask("Say hello"), timeout=10)
    assert response.text == fake.reply_text
    assert response.finish_reason == "stop"
    assert response.usage.output_tokens > 0 and response.usage.input_tokens > 0
    expected_cost = (response.usage.input_tokens * 1.0 + response.usage.output_tokens * 2.0) / 1e6
    assert response.usage.cost_usd == pytest.approx(expected_cost)
    d = response.decision
    assert (d.route, d.served_by) == ("default", "primary")
    assert [(a.model, a.outcome) for a in d.attempts] == [("primary", "ok")]
    assert d.overhead_ms > 0
    sent = fake.requests[before:]
    assert len(sent) == 1 and sent[0].body["model"] == "gpt-test"
    assert sent[0].body["messages"] == [{"role": "user", "content": "Say hello"}]


def test_fallback_to_the_next_model_is_recorded(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    fake.script("status:401", model="gpt-test")
    response = sidecar.stub.Complete(ask("Say hello"), timeout=10)
    d = response.decision
    assert d.served_by == "backup"
    assert [(a.model, a.outcome) for a in d.attempts] == [("primary", "error"), ("backup", "ok")]
    assert "authentication_error" in d.attempts[0].error
    assert SECRET not in str(d)


def test_every_candidate_failing_is_unavailable_and_lists_attempts(
    sidecar: SidecarProcess, fake: FakeProvider
) -> None:
    fake.script("status:400", model="gpt-test")
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.Complete(ask("hi", task="only_primary"), timeout=10)
    err = info.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "primary: error (bad_request" in err.details()
    trailers = dict(err.trailing_metadata() or ())
    decision = pb.Decision.FromString(trailers[DECISION_TRAILER])
    assert decision.route == "only_primary" and decision.attempts[0].outcome == "error"


def test_restricted_data_without_on_device_model_fails_closed(
    sidecar: SidecarProcess, fake: FakeProvider
) -> None:
    before = len(fake.requests)
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.Complete(ask("mail me at jane.doe@example.com"), timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "jane.doe" not in info.value.details()
    assert len(fake.requests) == before  # nothing left the box


@pytest.mark.parametrize(
    ("text", "encoding"),
    [("hello world", "o200k_base"), ("héllo wörld 你好 🤖", "cl100k_base"), ("", "o200k_base")],
)
def test_count_tokens(sidecar: SidecarProcess, text: str, encoding: str) -> None:
    response = sidecar.stub.CountTokens(pb.CountTokensRequest(text=text, encoding=encoding), timeout=5)
    assert (response.tokens, response.encoding) == (count_tokens(text, encoding), encoding)


def test_count_tokens_defaults_and_errors(sidecar: SidecarProcess) -> None:
    assert sidecar.stub.CountTokens(pb.CountTokensRequest(text="a b c"), timeout=5).encoding == "o200k_base"
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.CountTokens(pb.CountTokensRequest(text="x", encoding="p50k_base"), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "o200k_base" in info.value.details()


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.CompleteRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.CompleteRequest(messages=[pb.Message(role="wizard", content="x")]),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.CompleteRequest(messages=[pb.Message(role="user", content="x")], json_schema="{nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.CompleteRequest(messages=[pb.Message(role="user", content="x")], sensitivity=9),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
def test_bad_requests_are_invalid_argument(
    sidecar: SidecarProcess, request_: pb.CompleteRequest, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.Complete(request_, timeout=5)
    assert info.value.code() == code
    assert sidecar.health() == health_pb2.HealthCheckResponse.SERVING


def test_explain_plans_without_calling_any_model(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    before = len(fake.requests)
    decision = sidecar.stub.Explain(ask("Say hello"), timeout=5)
    assert decision.route == "default"
    assert [(a.model, a.outcome) for a in decision.attempts] == [
        ("primary", "planned"),
        ("backup", "planned"),
    ]
    assert len(fake.requests) == before


def test_secret_never_in_the_sidecar_log(sidecar: SidecarProcess) -> None:
    assert SECRET not in "".join(sidecar.log)


def test_bad_config_fails_at_start_naming_the_key(tmp_path: Path, fake: FakeProvider) -> None:
    config = hosted_config(fake)
    config["routes"]["default"]["ttft"] = 100
    with (
        pytest.raises(RuntimeError) as info,
        run_sidecar(config, tmp_path, {"TIERGATE_TEST_KEY": SECRET}, timeout_s=30),
    ):
        pass
    assert "routes.default.ttft: unknown key" in str(info.value)


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_requests_are_read(sidecar: SidecarProcess, compression: grpc.Compression) -> None:
    answer = sidecar.stub.Complete(ask("hello " * 200), timeout=10, compression=compression)
    assert answer.text and answer.decision.served_by == "primary"
    chunks = list(sidecar.stub.StreamComplete(ask("hello " * 200), timeout=10, compression=compression))
    assert chunks[-1].decision.served_by == "primary"
