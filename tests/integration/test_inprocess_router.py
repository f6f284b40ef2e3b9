"""`tiergate.Router` and `tiergate.AsyncRouter`: the sidecar's routing inside the test process, no server.

Hosted models are a loopback fake provider; one test routes to the real embedded model (the session's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import tiergate
from tests.fakes.provider_server import FakeProvider
from tests.integration.conftest import LOCAL_CONTEXT_WINDOW, LOCAL_MAX_OUTPUT_TOKENS, LOCAL_QUEUE_SIZE
from tests.readme_blocks import block
from tiergate.config import parse, resolve
from tiergate.request import Outcome
from tiergate.sidecar import Sidecar

if TYPE_CHECKING:
    from tiergate.providers.llama_cpp import LlamaCppProvider


def router_config(fake: FakeProvider) -> dict[str, Any]:
    hosted = {"provider": "openai", "base_url": fake.url_openai, "api_key": "k"}
    return {
        "models": {
            "hosted": {
                **hosted,
                "model": "gpt-test",
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            },
            "stalls": {**hosted, "model": "fault:stall_first_byte"},
            "refuses": {**hosted, "model": "fault:status:400"},
            "drips": {**hosted, "model": "fault:drip:50;tokens=100"},
        },
        "routes": {
            "default": {"chain": ["hosted"]},
            "slow": {"chain": ["stalls"], "retries": 0},
            "broken": {"chain": ["refuses"], "retries": 0},
            "drip": {"chain": ["drips"]},
        },
        "budgets": {"capped": {"requests_per_minute": 1}},
    }


@pytest.fixture(scope="module")
def config_file(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("router") / "tiergate.yaml"
    path.write_text(yaml.safe_dump(router_config(fake)))
    return path


@pytest.fixture(scope="module")
def router(config_file: Path) -> Iterator[tiergate.Router]:
    with tiergate.Router(config_file, timeout=10) as r:
        yield r


@pytest.fixture
async def arouter(fake: FakeProvider) -> AsyncIterator[tiergate.AsyncRouter]:
    config = resolve(parse(router_config(fake)), {})
    async with tiergate.AsyncRouter(config, timeout=10) as r:
        yield r


# -- the blocking Router -------------------------------------------------------------------------------------


def test_complete_returns_the_answer_usage_and_decision(router: tiergate.Router, fake: FakeProvider) -> None:
    before = len(fake.requests)
    response = router.complete([tiergate.Message("system", "Be brief."), {"role": "user", "content": "Hi"}])
    assert isinstance(response, tiergate.Response)
    assert (response.text, response.finish_reason) == (fake.reply_text, "stop")
    expected_cost = (response.usage.input_tokens * 1.0 + response.usage.output_tokens * 2.0) / 1e6
    assert response.usage.cost_usd == pytest.approx(expected_cost) and expected_cost > 0
    d = response.decision
    assert (d.route, d.served_by, d.sensitivity) == ("default", "hosted", tiergate.Sensitivity.PUBLIC)
    assert [(a.model, a.outcome) for a in d.attempts] == [("hosted", Outcome.OK)]
    assert fake.requests[before].body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_tool_calls_come_back_whole_and_streamed(router: tiergate.Router) -> None:
    tool = tiergate.Tool("lookup", parameters='{"type": "object", "properties": {"q": {"type": "string"}}}')
    options = tiergate.ChatOptions(tools=[tool])
    response = router.complete("Find x", options=options)
    assert [(c.name, c.arguments) for c in response.tool_calls] == [("lookup", '{"q":"Paris"}')]
    chunks = list(router.stream("Find x", options=options))
    assert "".join(d.arguments for c in chunks for d in c.tool_calls) == '{"q":"Paris"}'
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].decision is not None


def test_stream_yields_text_then_usage_and_decision_last(router: tiergate.Router, fake: FakeProvider) -> None:
    chunks = list(router.stream("Say hello"))
    assert "".join(c.text for c in chunks) == fake.reply_text
    assert all(c.decision is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.decision is not None and last.decision.served_by == "hosted"
    assert last.usage is not None and last.usage.output_tokens > 0 and last.finish_reason == "stop"


def test_stopping_a_stream_early_closes_the_upstream(router: tiergate.Router, fake: FakeProvider) -> None:
    before = len(fake.requests)
    for chunk in router.stream("Count to a hundred", task="drip"):
        assert chunk.text
        break
    # The sidecar's generator is closed at once, and with it the upstream HTTP stream (100 tokens at 50 ms
    # each would otherwise take 5 s).
    fake.wait(lambda requests: len(requests) > before and requests[before].client_closed_at is not None)
    assert router.status().in_flight == 0


def test_explain_count_tokens_and_status(router: tiergate.Router, fake: FakeProvider) -> None:
    before = len(fake.requests)
    decision = router.explain("Say hello")
    assert [(a.model, a.outcome) for a in decision.attempts] == [("hosted", Outcome.PLANNED)]
    assert len(fake.requests) == before

    assert router.count_tokens("hello world") == (tiergate.count_tokens("hello world"), "o200k_base")
    assert router.count_tokens("hello", "cl100k_base").encoding == "cl100k_base"

    router.complete("Say hello")
    status = router.status()
    assert isinstance(status, tiergate.SidecarStatus)
    hosted = next(m for m in status.models if m.name == "hosted")
    assert isinstance(hosted, tiergate.ModelState)
    assert (hosted.provider, hosted.on_device, hosted.breaker) == ("openai", False, "closed")
    assert hosted.samples >= 1 and status.version and status.uptime_s > 0


def test_typed_errors_carry_the_decision(router: tiergate.Router, fake: FakeProvider) -> None:
    before = len(fake.requests)
    with pytest.raises(tiergate.SensitiveDataBlocked) as blocked:
        router.complete("mail me at jane.doe@example.com")
    assert blocked.value.decision is not None and "email" in blocked.value.decision.matched_rules
    assert len(fake.requests) == before

    with pytest.raises(tiergate.AllAttemptsFailed) as failed:
        router.complete("hi", task="broken")
    assert failed.value.decision is not None
    assert [(a.model, a.outcome) for a in failed.value.decision.attempts] == [("refuses", Outcome.ERROR)]

    router.complete("hi", tenant="capped")
    with pytest.raises(tiergate.LimitExceeded) as limited:
        router.complete("hi", tenant="capped")
    assert limited.value.limit == "requests_per_minute"

    with pytest.raises(tiergate.InvalidRequest):
        router.complete([])
    with pytest.raises(tiergate.InvalidRequest):
        router.count_tokens("x", "p50k_base")


def test_the_timeout_is_the_whole_latency_budget(router: tiergate.Router) -> None:
    started = time.monotonic()
    with pytest.raises(tiergate.DeadlineExceeded) as info:
        router.complete("hi", task="slow", timeout=0.3)
    assert time.monotonic() - started < 2
    assert info.value.decision is not None and [a.model for a in info.value.decision.attempts] == ["stalls"]


async def test_the_blocking_router_works_where_a_loop_is_running(
    config_file: Path, fake: FakeProvider
) -> None:
    # A notebook cell: the caller's thread already runs an event loop, and the Router must not need it.
    with tiergate.Router(config_file) as router:
        assert router.complete("Say hello").text == fake.reply_text


def test_config_errors_surface_at_construction(tmp_path: Path) -> None:
    with pytest.raises(tiergate.ConfigError, match="cannot read"):
        tiergate.Router(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models: {m: {provider: openai, model: x, api_key: k}}\nroutes: {default: {chain: [nowhere]}}\n"
    )
    with pytest.raises(tiergate.ConfigError, match=r"routes\.default\.chain"):
        tiergate.Router(bad)


def test_a_closed_router_refuses_calls(config_file: Path) -> None:
    router = tiergate.Router(config_file)
    router.close()
    router.close()
    with pytest.raises(RuntimeError, match="closed"):
        router.complete("hi")


def test_the_readme_example(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(config_file.parent)  # it reads ./tiergate.yaml
    exec(block("python-router"), {})


# -- the AsyncRouter: the same methods and results, on the caller's loop -------------------------------------


async def test_async_complete_stream_explain_count_status(
    arouter: tiergate.AsyncRouter, fake: FakeProvider
) -> None:
    response = await arouter.complete("Say hello", sensitivity="internal")
    assert response.text == fake.reply_text
    assert response.decision.sensitivity == tiergate.Sensitivity.INTERNAL

    chunks = [chunk async for chunk in arouter.stream("Say hello")]
    assert "".join(c.text for c in chunks) == fake.reply_text
    assert chunks[-1].decision is not None and chunks[-1].decision.served_by == "hosted"

    assert [a.model for a in (await arouter.explain("Say hello")).attempts] == ["hosted"]
    assert await arouter.count_tokens("hello world") == (tiergate.count_tokens("hello world"), "o200k_base")
    assert {m.name for m in (await arouter.status()).models} == {"hosted", "stalls", "refuses", "drips"}


async def test_async_typed_errors(arouter: tiergate.AsyncRouter) -> None:
    with pytest.raises(tiergate.SensitiveDataBlocked) as info:
        await arouter.complete("mail me at jane.doe@example.com")
    assert info.value.decision is not None
    assert info.value.decision.sensitivity == tiergate.Sensitivity.RESTRICTED
    with pytest.raises(tiergate.DeadlineExceeded):
        async for _ in arouter.stream("hi", task="slow", timeout=0.3):
            pass


async def test_an_async_router_starts_on_first_use(fake: FakeProvider) -> None:
    router = tiergate.AsyncRouter(resolve(parse(router_config(fake)), {}))
    assert router.config is None
    try:
        responses = await asyncio.gather(*(router.complete("Say hello") for _ in range(3)))
        assert [r.decision.served_by for r in responses] == ["hosted"] * 3
        assert router.config is not None and "hosted" in router.config.models
    finally:
        await router.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await router.complete("hi")


# -- the embedded on-device model ----------------------------------------------------------------------------


@pytest.mark.local_model
@pytest.mark.asyncio(loop_scope="session")  # the session's model worker lives on the session's loop
async def test_routing_to_the_embedded_model(local_model: LlamaCppProvider) -> None:
    data = {
        "models": {
            "local": {
                "provider": "llama_cpp",
                "path": "embedded",
                "context_window": LOCAL_CONTEXT_WINDOW,
                "queue_size": LOCAL_QUEUE_SIZE,
                "max_output_tokens": LOCAL_MAX_OUTPUT_TOKENS,
            }
        },
        "routes": {"default": {"chain": ["local"]}},
    }
    # The session's model, loaded once per run, behind a Sidecar of this config.
    sidecar = Sidecar(resolve(parse(data), {}), {"local": local_model})
    router = tiergate.AsyncRouter.from_sidecar(sidecar, timeout=60)
    try:
        response = await router.complete("What is the capital of France?", max_output_tokens=8)
        assert response.text.strip() and response.decision.served_by == "local"
        assert response.usage.output_tokens > 0 and response.usage.cost_usd == 0

        # Restricted data may go on-device: it is served, not blocked.
        chunks = [c async for c in router.stream("Write to jane.doe@example.com:", max_output_tokens=8)]
        last = chunks[-1].decision
        assert last is not None and last.served_by == "local"
        assert last.sensitivity == tiergate.Sensitivity.RESTRICTED

        assert (await router.count_tokens("hello", model="local")).encoding == "model:local"
        local = (await router.status()).models[0]
        assert (local.name, local.provider, local.on_device, local.queue) == ("local", "llama_cpp", True, 0)
        assert (local.worker, local.worker_error) == ("up", "")
    finally:
        await router.aclose()
        await sidecar.governor.aclose()
