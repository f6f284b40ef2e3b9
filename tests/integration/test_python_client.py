"""`tiergate.Client` and `tiergate.AsyncClient` against a real sidecar subprocess with a loopback upstream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import tiergate
from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tests.readme_blocks import block
from tiergate.request import Outcome

TOKEN = "tok-0123456789-never-print-me"


def client_config(fake: FakeProvider) -> dict[str, Any]:
    hosted = {"provider": "openai", "base_url": fake.url_openai, "api_key": "k"}
    return {
        "listen": {"http": None},
        "models": {
            "hosted": {
                **hosted,
                "model": "gpt-test",
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            },
            "stalls": {**hosted, "model": "fault:stall_first_byte"},
            "refuses": {**hosted, "model": "fault:status:400"},
            "drops": {**hosted, "model": "fault:drop_mid_stream;after=2"},
        },
        "routes": {
            "default": {"chain": ["hosted"]},
            "slow": {"chain": ["stalls"], "retries": 0},
            "broken": {"chain": ["refuses"], "retries": 0},
            "drops": {"chain": ["drops", "hosted"], "retries": 0},
        },
        "budgets": {"capped": {"requests_per_minute": 1}},
    }


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with run_sidecar(client_config(fake), tmp_path_factory.mktemp("client")) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(sidecar: SidecarProcess) -> Iterator[tiergate.Client]:
    with tiergate.Client(sidecar.address, timeout=10) as c:
        yield c


@pytest.fixture
async def aclient(sidecar: SidecarProcess) -> AsyncIterator[tiergate.AsyncClient]:
    async with tiergate.AsyncClient(sidecar.address, timeout=10) as c:
        yield c


# -- the blocking Client -------------------------------------------------------------------------------------


def test_complete_returns_the_answer_usage_and_decision(client: tiergate.Client, fake: FakeProvider) -> None:
    response = client.complete("Say hello")
    assert isinstance(response, tiergate.Response)
    assert (response.text, response.finish_reason) == (fake.reply_text, "stop")
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    expected_cost = (response.usage.input_tokens * 1.0 + response.usage.output_tokens * 2.0) / 1e6
    assert response.usage.cost_usd == pytest.approx(expected_cost)
    d = response.decision
    assert isinstance(d, tiergate.Decision)
    assert (d.route, d.served_by, d.sensitivity) == ("default", "hosted", tiergate.Sensitivity.PUBLIC)
    assert [(a.model, a.outcome) for a in d.attempts] == [("hosted", Outcome.OK)]


def test_messages_as_a_list_and_every_request_field_reach_the_sidecar(
    client: tiergate.Client, fake: FakeProvider
) -> None:
    before = len(fake.requests)
    messages = [tiergate.Message("system", "Be brief."), {"role": "user", "content": "Say hello"}]
    response = client.complete(
        messages, task="default", max_output_tokens=7, temperature=0.25, tenant="t1", metadata={"k": "v"}
    )
    assert response.decision.task == "default"
    body = fake.requests[before].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert body["temperature"] == 0.25
    assert 7 in (body.get("max_tokens"), body.get("max_completion_tokens"))


WEATHER = tiergate.Tool(
    "get_weather", "Current weather", '{"type": "object", "properties": {"city": {"type": "string"}}}'
)


def test_a_tool_loop_with_every_option(client: tiergate.Client, fake: FakeProvider) -> None:
    options = tiergate.ChatOptions(
        tools=[WEATHER], stop=["END"], top_p=0.5, seed=3, parallel_tool_calls=False
    )
    first = client.complete("Weather in Paris?", options=options)
    assert first.finish_reason == "tool_calls" and first.text == ""
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("get_weather", '{"city":"Paris"}')]
    sent = fake.requests[-1].body
    assert (sent["stop"], sent["top_p"], sent["seed"], sent["parallel_tool_calls"]) == (
        ["END"],
        0.5,
        3,
        False,
    )
    loop = [
        {"role": "user", "content": "Weather in Paris?"},
        tiergate.Message("assistant", tool_calls=first.tool_calls),
        {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "18C"},
    ]
    final = client.complete(loop, options=options)
    assert (final.text, final.tool_calls) == ("Tool result: 18C", [])
    # Streamed: the call arrives as deltas under one index; the forced tool by name.
    chunks = list(
        client.stream("Weather?", options=tiergate.ChatOptions(tools=[WEATHER], tool_choice="get_weather"))
    )
    deltas = [d for c in chunks for d in c.tool_calls]
    assert {d.index for d in deltas} == {0} and deltas[0].name == "get_weather"
    assert "".join(d.arguments for d in deltas) == '{"city":"Paris"}'
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].decision is not None


def test_stream_yields_text_then_usage_and_decision_last(client: tiergate.Client, fake: FakeProvider) -> None:
    chunks = list(client.stream("Say hello"))
    assert "".join(c.text for c in chunks) == fake.reply_text
    assert all(c.decision is None and c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.decision is not None and last.decision.served_by == "hosted"
    assert last.usage is not None and last.usage.output_tokens > 0
    assert last.finish_reason == "stop"


def test_stopping_a_stream_early_leaves_the_client_usable(
    client: tiergate.Client, fake: FakeProvider
) -> None:
    for chunk in client.stream("Say hello"):
        assert chunk.text
        break
    assert client.complete("Say hello").text == fake.reply_text


def test_explain_plans_without_calling_any_model(client: tiergate.Client, fake: FakeProvider) -> None:
    before = len(fake.requests)
    decision = client.explain("Say hello")
    assert [(a.model, a.outcome) for a in decision.attempts] == [("hosted", Outcome.PLANNED)]
    assert len(fake.requests) == before


def test_count_tokens(client: tiergate.Client) -> None:
    assert client.count_tokens("héllo wörld", "cl100k_base") == (
        tiergate.count_tokens("héllo wörld", "cl100k_base"),
        "cl100k_base",
    )
    count = client.count_tokens("hello world")
    assert (count.tokens, count.encoding) == (
        tiergate.count_tokens("hello world", "o200k_base"),
        "o200k_base",
    )
    with pytest.raises(tiergate.InvalidRequest, match="o200k_base"):
        client.count_tokens("x", "p50k_base")


def test_status_lists_every_model_with_its_live_state(client: tiergate.Client) -> None:
    client.complete("Say hello")
    status = client.status()
    assert isinstance(status, tiergate.SidecarStatus)
    by_name = {m.name: m for m in status.models}
    assert set(by_name) == {"hosted", "stalls", "refuses", "drops"}
    hosted = by_name["hosted"]
    assert isinstance(hosted, tiergate.ModelState)
    assert (hosted.provider, hosted.on_device, hosted.breaker, hosted.queue) == ("openai", False, "closed", 0)
    assert hosted.samples >= 1 and hosted.ttft_ms > 0 and hosted.tokens_per_s > 0
    assert status.uptime_s > 0 and status.version and status.in_flight == 0


def test_health(client: tiergate.Client) -> None:
    assert client.health() == "SERVING"


# -- typed errors --------------------------------------------------------------------------------------------


def test_restricted_data_without_an_on_device_model_is_blocked_with_the_decision(
    client: tiergate.Client, fake: FakeProvider
) -> None:
    before = len(fake.requests)
    with pytest.raises(tiergate.SensitiveDataBlocked) as info:
        client.complete("mail me at jane.doe@example.com")
    assert "jane.doe" not in str(info.value)
    decision = info.value.decision
    assert decision is not None
    assert decision.sensitivity == tiergate.Sensitivity.RESTRICTED and "email" in decision.matched_rules
    assert len(fake.requests) == before


def test_every_candidate_failing_is_all_attempts_failed_with_each_attempt(client: tiergate.Client) -> None:
    with pytest.raises(tiergate.AllAttemptsFailed) as info:
        client.complete("hi", task="broken")
    decision = info.value.decision
    assert decision is not None and [(a.model, a.outcome) for a in decision.attempts] == [
        ("refuses", Outcome.ERROR)
    ]


def test_a_stream_broken_after_text_is_stream_interrupted_not_a_connect_error(
    client: tiergate.Client,
) -> None:
    # Same status (UNAVAILABLE) as AllAttemptsFailed and a lost connection: the kind trailer tells them apart.
    received = []
    with pytest.raises(tiergate.StreamInterrupted) as info:
        for chunk in client.stream("Say hello", task="drops"):
            received.append(chunk.text)
    assert "".join(received) and info.value.decision is not None
    assert [(a.model, a.outcome) for a in info.value.decision.attempts] == [("drops", Outcome.PARTIAL)]


def test_a_limit_names_itself(client: tiergate.Client) -> None:
    client.complete("hi", tenant="capped")
    with pytest.raises(tiergate.LimitExceeded) as info:
        client.complete("hi", tenant="capped")
    assert info.value.limit == "requests_per_minute"


def test_the_deadline_is_the_whole_latency_budget(client: tiergate.Client) -> None:
    started = time.monotonic()
    with pytest.raises(tiergate.DeadlineExceeded) as info:
        client.complete("hi", task="slow", timeout=0.5)
    assert time.monotonic() - started < 2
    decision = info.value.decision
    assert decision is not None and [a.model for a in decision.attempts] == ["stalls"]


@pytest.mark.parametrize(
    ("messages", "sensitivity"),
    [([], None), ([{"role": "user"}], None), ("hi", "secret"), ([tiergate.Message("wizard", "x")], None)],
)
def test_bad_requests_are_invalid_request(client: tiergate.Client, messages: Any, sensitivity: Any) -> None:
    with pytest.raises(tiergate.InvalidRequest):
        client.complete(messages, sensitivity=sensitivity)


def test_an_unreachable_sidecar_is_a_connect_error() -> None:
    with (
        tiergate.Client("127.0.0.1:1", timeout=2) as unreachable,
        pytest.raises(tiergate.ConnectError) as info,
    ):
        unreachable.complete("hi")
    assert info.value.code == "UNAVAILABLE"


def test_defaults_come_from_the_environment(sidecar: SidecarProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERGATE_ADDRESS", sidecar.address)
    monkeypatch.setenv("TIERGATE_TOKEN", TOKEN)
    with tiergate.Client() as client:
        assert client.address == sidecar.address
        assert client.complete("Say hello").decision.served_by == "hosted"
        assert TOKEN not in repr(client)


def test_a_missing_ca_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        tiergate.Client("127.0.0.1:1", root_certificates=tmp_path / "missing.pem")


def test_the_token_goes_with_every_call_and_nowhere_else(
    fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIERGATE_TOKEN", raising=False)
    config = {**client_config(fake), "listen": {"http": None, "auth_token": TOKEN}}
    with run_sidecar(config, tmp_path) as proc:
        with tiergate.Client(proc.address, token=TOKEN, timeout=10) as client:
            assert client.complete("Say hello").decision.served_by == "hosted"
            assert "hosted" in [m.name for m in client.status().models]
            assert TOKEN not in repr(client)
        with tiergate.Client(proc.address, token="wrong-token", timeout=10) as client:
            with pytest.raises(tiergate.AuthenticationError) as info:
                client.complete("Say hello")
            assert info.value.code == "UNAUTHENTICATED"
            assert "wrong-token" not in str(info.value) and TOKEN not in str(info.value)
        with tiergate.Client(proc.address, timeout=10) as client, pytest.raises(tiergate.AuthenticationError):
            client.explain("Say hello")


def test_tls_and_a_unix_socket(
    fake: FakeProvider, tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    listen = {"http": None, "tls_cert": str(cert), "tls_key": str(key)}
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with run_sidecar({**client_config(fake), "listen": listen}, tmp_path, credentials=credentials) as proc:
        with tiergate.Client(proc.address, root_certificates=cert, timeout=10) as client:
            assert client.complete("Say hello").text == fake.reply_text
            assert "tls=True" in repr(client)
        monkeypatch.setenv("TIERGATE_TLS_CA", str(cert))
        with tiergate.Client(proc.address, timeout=10) as client:
            assert client.health() == "SERVING"
        monkeypatch.delenv("TIERGATE_TLS_CA")
        with tiergate.Client(proc.address, timeout=3) as plain, pytest.raises(tiergate.ConnectError):
            plain.complete("Say hello")
    socket = tmp_path / "tiergate.sock"
    with run_sidecar(client_config(fake), tmp_path, grpc_address=f"unix:{socket}") as proc:
        with tiergate.Client(f"unix:{socket}", timeout=10) as client:
            assert client.complete("Say hello").decision.served_by == "hosted"


def test_the_readme_example(sidecar: SidecarProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERGATE_ADDRESS", sidecar.address)
    exec(block("python-client"), {})


def test_the_readme_tool_example(
    sidecar: SidecarProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIERGATE_ADDRESS", sidecar.address)
    exec(block("python-tools"), {})
    assert capsys.readouterr().out == "Tool result: 18C\n"


# -- the AsyncClient: the same methods and results, awaited --------------------------------------------------


async def test_async_complete_stream_explain_count_status(
    aclient: tiergate.AsyncClient, fake: FakeProvider
) -> None:
    response = await aclient.complete("Say hello")
    assert isinstance(response, tiergate.Response) and response.text == fake.reply_text
    assert response.decision.served_by == "hosted"

    chunks = [chunk async for chunk in aclient.stream("Say hello")]
    assert "".join(c.text for c in chunks) == fake.reply_text
    assert chunks[-1].decision is not None and chunks[-1].usage is not None

    decision = await aclient.explain("Say hello")
    assert [a.outcome for a in decision.attempts] == [Outcome.PLANNED]
    assert await aclient.count_tokens("hello world") == (tiergate.count_tokens("hello world"), "o200k_base")
    assert "hosted" in [m.name for m in (await aclient.status()).models]
    assert await aclient.health() == "SERVING"


async def test_async_typed_errors_carry_the_decision(aclient: tiergate.AsyncClient) -> None:
    with pytest.raises(tiergate.SensitiveDataBlocked) as info:
        await aclient.complete("mail me at jane.doe@example.com")
    assert info.value.decision is not None and "email" in info.value.decision.matched_rules

    with pytest.raises(tiergate.DeadlineExceeded):
        async for _ in aclient.stream("hi", task="slow", timeout=0.5):
            pass


def test_async_readme_example(sidecar: SidecarProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERGATE_ADDRESS", sidecar.address)
    exec(block("python-async-client"), {})  # its own asyncio.run(), as a script runs it
