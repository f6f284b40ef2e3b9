"""`tiergate serve` with no config and no keys: the embedded default serves from the on-device model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from grpc_health.v1 import health_pb2

from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

pytestmark = pytest.mark.local_model

KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    # No keys (an empty variable counts as unset): the embedded default is then the local model alone.
    env = dict.fromkeys(KEY_VARS, "")
    with run_sidecar(None, tmp_path_factory.mktemp("embedded"), env, timeout_s=120) as proc:
        yield proc


def test_serving_and_answering_from_the_local_model(sidecar: SidecarProcess) -> None:
    assert sidecar.health() == health_pb2.HealthCheckResponse.SERVING
    request = pb.CompleteRequest(
        messages=[pb.Message(role="user", content="What is the capital of France?")], max_output_tokens=16
    )
    response = sidecar.stub.Complete(request, timeout=60)
    assert response.text.strip()
    assert response.decision.served_by == "local"
    assert [(a.model, a.outcome) for a in response.decision.attempts] == [("local", "ok")]
    assert response.usage.output_tokens > 0 and response.usage.cost_usd == 0


def test_streaming_from_the_local_model(sidecar: SidecarProcess) -> None:
    request = pb.CompleteRequest(
        messages=[pb.Message(role="user", content="Count: one, two,")], max_output_tokens=12
    )
    chunks = list(sidecar.stub.StreamComplete(request, timeout=60))
    assert len(chunks) >= 2
    assert chunks[-1].decision.served_by == "local"
    assert "".join(c.text for c in chunks).strip()


def test_no_hosted_model_without_keys(sidecar: SidecarProcess) -> None:
    decision = sidecar.stub.Explain(
        pb.CompleteRequest(messages=[pb.Message(role="user", content="hi")]), timeout=5
    )
    assert [a.model for a in decision.attempts] == ["local"]


def test_log_names_only_the_local_model(sidecar: SidecarProcess) -> None:
    assert any("models: local)" in line for line in sidecar.log)
