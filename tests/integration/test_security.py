"""Security defaults, against a real `tiergate serve`: bearer-token auth on gRPC and HTTP, a Unix domain
socket for gRPC, TLS on both listeners, and a warning for a listener others can reach without a token."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

TOKEN = "tg-test-token-Secret-0123456789"
REQUEST = pb.CompleteRequest(messages=[pb.Message(role="user", content="Say hello")])


def hosted_config(fake: FakeProvider, **listen: Any) -> dict[str, Any]:
    return {
        "listen": listen,
        "models": {
            "hosted": {"provider": "openai", "base_url": fake.url_openai, "model": "m", "api_key": "k"}
        },
        "routes": {"default": {"chain": ["hosted"]}},
    }


# -- bearer token --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    config = hosted_config(fake, auth_token="env:TIERGATE_TEST_TOKEN")
    with run_sidecar(config, tmp_path_factory.mktemp("auth"), env={"TIERGATE_TEST_TOKEN": TOKEN}) as proc:
        yield proc


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


CALLS = {
    "Complete": lambda stub, md: stub.Complete(REQUEST, metadata=md, timeout=10),
    "StreamComplete": lambda stub, md: list(stub.StreamComplete(REQUEST, metadata=md, timeout=10)),
    "Explain": lambda stub, md: stub.Explain(REQUEST, metadata=md, timeout=10),
    "CountTokens": lambda stub, md: stub.CountTokens(pb.CountTokensRequest(text="x"), metadata=md, timeout=9),
    "Status": lambda stub, md: stub.Status(pb.StatusRequest(), metadata=md, timeout=10),
}


@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize(
    "metadata", [(), bearer("wrong"), bearer(TOKEN.lower()), (("authorization", TOKEN),)]
)
def test_grpc_calls_without_the_token_are_unauthenticated(
    guarded: SidecarProcess, fake: FakeProvider, method: str, metadata: tuple[tuple[str, str], ...]
) -> None:
    before = len(fake.requests)
    with pytest.raises(grpc.RpcError) as info:
        CALLS[method](guarded.stub, metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "bearer token" in (info.value.details() or "")
    assert len(fake.requests) == before  # rejected before any work


@pytest.mark.parametrize("method", sorted(CALLS))
def test_grpc_calls_with_the_token_are_served(guarded: SidecarProcess, method: str) -> None:
    CALLS[method](guarded.stub, bearer(TOKEN))
    CALLS[method](guarded.stub, (("authorization", f"bearer  {TOKEN} "),))  # the scheme's case is free


def test_grpc_health_stays_open_for_probes(guarded: SidecarProcess) -> None:
    assert guarded.health() == health_pb2.HealthCheckResponse.SERVING


def test_grpc_reflection_needs_the_token(guarded: SidecarProcess) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(guarded.channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.RpcError) as info:
        list(stub.ServerReflectionInfo(iter([ask]), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    answers = list(stub.ServerReflectionInfo(iter([ask]), metadata=bearer(TOKEN), timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert "tiergate.v1.Tiergate" in names


def test_http_facade_and_metrics_need_the_token(guarded: SidecarProcess) -> None:
    base = f"http://{guarded.http_address}"
    bad = openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "invalid_api_key"
    good = openai.OpenAI(base_url=f"{base}/v1", api_key=TOKEN, max_retries=0)
    answer = good.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    with httpx.Client(base_url=base) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics").headers["www-authenticate"].startswith("Bearer")
        assert http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200


def test_the_token_appears_in_no_log_line(guarded: SidecarProcess) -> None:
    with pytest.raises(grpc.RpcError):
        guarded.stub.Complete(REQUEST, metadata=bearer("wrong"), timeout=10)
    guarded.stub.Complete(REQUEST, metadata=bearer(TOKEN), timeout=10)
    everything = "".join(guarded.log) + "".join(guarded.records)
    assert "bearer token required" in everything
    assert TOKEN not in everything and TOKEN.lower() not in everything


# -- Unix domain socket --------------------------------------------------------------------------------------


def test_grpc_on_a_unix_domain_socket(fake: FakeProvider, tmp_path: Path) -> None:
    socket = tmp_path / "tiergate.sock"
    address = f"unix:{socket}"
    with run_sidecar(hosted_config(fake), tmp_path, grpc_address=address) as proc:
        assert proc.address == address
        assert socket.is_socket()
        assert proc.stub.Complete(REQUEST, timeout=10).text == fake.reply_text
        assert not any("warning" in line for line in proc.log)


# -- TLS -----------------------------------------------------------------------------------------------------


def test_tls_on_both_listeners(fake: FakeProvider, tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    config = hosted_config(fake, tls_cert=str(cert), tls_key=str(key))
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with run_sidecar(config, tmp_path, credentials=credentials) as proc:
        assert proc.stub.Complete(REQUEST, timeout=10).text == fake.reply_text
        with grpc.insecure_channel(proc.address) as plain:
            with pytest.raises(grpc.RpcError) as info:
                health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=f"https://{proc.http_address}", verify=trusted) as https:
            assert https.get("/healthz").status_code == 200
        with pytest.raises(httpx.HTTPError), httpx.Client(base_url=f"http://{proc.http_address}") as http:
            http.get("/healthz")
        assert any("serving HTTPS on" in line for line in proc.log)


# -- exposure ------------------------------------------------------------------------------------------------


def test_listening_beyond_loopback_without_a_token_warns(fake: FakeProvider, tmp_path: Path) -> None:
    with run_sidecar(hosted_config(fake), tmp_path, grpc_address="0.0.0.0:0") as proc:
        warnings = [line for line in proc.log if "warning" in line]
    assert any("listen.grpc 0.0.0.0:0 is reachable from other hosts" in line for line in warnings), proc.log


def test_loopback_by_default() -> None:
    from tiergate.config import default_config

    listen = default_config({}).listen
    assert listen.grpc.startswith("127.0.0.1:")
    assert listen.http is not None and listen.http.startswith("127.0.0.1:")
