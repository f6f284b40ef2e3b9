"""routing.py: candidate filters and ordering, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from tiergate.analysis import Analysis
from tiergate.config import parse, resolve
from tiergate.content import ImagePart, TextPart, Tool
from tiergate.errors import InvalidRequest, SensitiveDataBlocked, UnknownTask
from tiergate.model_stats import ModelStats
from tiergate.request import Message, Request, Sensitivity
from tiergate.routing import Planner

MODELS: dict[str, Any] = {
    "local": {"provider": "llama_cpp", "path": "embedded", "context_window": 2048},
    "cheap": {
        "provider": "openai",
        "model": "c",
        "api_key": "k",
        "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.4},
    },
    "pricey": {
        "provider": "anthropic",
        "model": "p",
        "api_key": "k",
        "price": {"input_per_mtok": 3, "output_per_mtok": 15},
    },
    "mid": {
        "provider": "openai",
        "model": "m",
        "api_key": "k",
        "price": {"input_per_mtok": 1, "output_per_mtok": 4},
    },
}


def router(
    routes: dict[str, Any], stats: dict[str, ModelStats] | None = None, queue: dict[str, int] | None = None
) -> Planner:
    config = resolve(parse({"models": MODELS, "routes": routes}), {})
    depth = queue or {}
    return Planner(config, stats or {}, lambda name: depth.get(name, 0))


def analysis(
    tokens: int = 10, sensitivity: Sensitivity = Sensitivity.PUBLIC, complexity: str = ""
) -> Analysis:
    return Analysis(tokens, [], sensitivity, complexity, "")


def req(task: str = "", max_output_tokens: int = 0, max_cost_usd: float = 0.0) -> Request:
    return Request(
        task, [Message("user", "hi")], max_output_tokens=max_output_tokens, max_cost_usd=max_cost_usd
    )


CHAIN = ["pricey", "local", "cheap", "mid"]


@pytest.mark.parametrize(
    ("route", "request_", "analysis_", "expected", "skipped"),
    [
        ({"chain": CHAIN}, req(), analysis(), ["pricey", "local", "cheap", "mid"], []),
        ({"chain": CHAIN, "objective": "cost"}, req(), analysis(), ["local", "cheap", "mid", "pricey"], []),
        # Restricted data: only on-device models, the rest are skipped with a reason.
        (
            {"chain": CHAIN},
            req(),
            analysis(sensitivity=Sensitivity.RESTRICTED),
            ["local"],
            ["pricey", "cheap", "mid"],
        ),
        # The prompt does not fit the local model's 2048-token window.
        ({"chain": CHAIN}, req(), analysis(tokens=3000), ["pricey", "cheap", "mid"], ["local"]),
        # Output tokens count against the window too.
        (
            {"chain": ["local", "cheap"]},
            req(max_output_tokens=1000),
            analysis(tokens=1500),
            ["cheap"],
            ["local"],
        ),
        # max_cost_usd: 10k input tokens cost $0.03 on pricey (plus output), $0.001 on cheap.
        (
            {"chain": ["pricey", "cheap"]},
            req(max_cost_usd=0.01, max_output_tokens=100),
            analysis(tokens=10_000),
            ["cheap"],
            ["pricey"],
        ),
        # Trivial requests go on-device first, when the route lists an on-device model.
        ({"chain": CHAIN}, req(), analysis(complexity="trivial"), ["local", "pricey", "cheap", "mid"], []),
        ({"chain": ["cheap", "mid"]}, req(), analysis(complexity="trivial"), ["cheap", "mid"], []),
        # A short-prompt threshold on the route also counts as trivial.
        (
            {"chain": ["cheap", "local"], "trivial_max_tokens": 20},
            req(),
            analysis(tokens=12),
            ["local", "cheap"],
            [],
        ),
        (
            {"chain": ["cheap", "local"], "trivial_max_tokens": 20},
            req(),
            analysis(tokens=21),
            ["cheap", "local"],
            [],
        ),
    ],
)
def test_plan_filters_and_orders(
    route: dict[str, Any], request_: Request, analysis_: Analysis, expected: list[str], skipped: list[str]
) -> None:
    plan = router({"default": route}).plan(request_, analysis_)
    assert [c.name for c in plan.candidates] == expected
    assert [s.model for s in plan.skipped] == skipped
    assert all(s.reason for s in plan.skipped)


def test_latency_objective_uses_live_stats_and_queue_depth() -> None:
    stats = {
        "local": ModelStats(ttft_ms=20, tokens_per_s=200, samples=5),  # 270 ms for 50 tokens
        "cheap": ModelStats(ttft_ms=400, tokens_per_s=100, samples=5),
        "mid": ModelStats(ttft_ms=200, tokens_per_s=150, samples=5),
    }
    route = {"default": {"chain": ["cheap", "mid", "local"], "objective": "latency"}}
    idle = router(route, stats).plan(req(max_output_tokens=50), analysis())
    assert [c.name for c in idle.candidates] == ["local", "mid", "cheap"]
    # Three jobs queued ahead of us on the local model make it the slowest choice.
    busy = router(route, stats, {"local": 3}).plan(req(max_output_tokens=50), analysis())
    assert [c.name for c in busy.candidates] == ["mid", "cheap", "local"]


def test_restricted_without_on_device_model_fails_closed() -> None:
    r = router({"default": {"chain": ["cheap", "pricey"]}})
    with pytest.raises(SensitiveDataBlocked, match="not forwarded"):
        r.plan(req(), analysis(sensitivity=Sensitivity.RESTRICTED))


def test_unknown_task_without_default_route() -> None:
    r = router({"classify": {"chain": ["cheap"]}})
    assert r.plan(req("classify"), analysis()).route_name == "classify"
    with pytest.raises(UnknownTask, match="classify"):
        r.plan(req("summarise"), analysis())


def test_only_an_empty_task_uses_the_default_route() -> None:
    r = router({"default": {"chain": ["cheap"]}, "classify": {"chain": ["mid"]}})
    assert r.plan(req(""), analysis()).route_name == "default"
    with pytest.raises(UnknownTask, match="'summarise' names no route"):
        r.plan(req("summarise"), analysis())


@pytest.mark.parametrize(
    ("price", "tokens", "expected"),
    [
        # (input, output, cached) tokens; cached ones are part of the input.
        ({"input_per_mtok": 1.0, "output_per_mtok": 2.0}, (1000, 100, 0), 0.0012),
        # Without a cached price, cached tokens cost like any other input token.
        ({"input_per_mtok": 1.0, "output_per_mtok": 2.0}, (1000, 100, 800), 0.0012),
        (
            {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cached_input_per_mtok": 0.1},
            (1000, 100, 800),
            0.00048,
        ),
        # A provider reporting more cached than input tokens cannot make input cheaper than all-cached.
        (
            {"input_per_mtok": 1.0, "output_per_mtok": 0.0, "cached_input_per_mtok": 0.5},
            (100, 0, 500),
            0.00005,
        ),
    ],
)
def test_estimate_cost_prices_cached_input(
    price: dict[str, float], tokens: tuple[int, int, int], expected: float
) -> None:
    from tiergate.config import ModelConfig
    from tiergate.routing import estimate_cost

    model = ModelConfig.model_validate({"provider": "openai", "model": "m", "api_key": "k", "price": price})
    assert estimate_cost(model, *tokens) == pytest.approx(expected)


def test_a_request_no_model_can_take_is_invalid_not_unavailable() -> None:
    # Every model priced out by the request's own max_cost_usd: retrying could never succeed.
    planner = router({"default": {"chain": ["pricey", "mid"]}})
    with pytest.raises(InvalidRequest, match=r"no model of route .default. can take this request \(pricey"):
        planner.plan(req(max_cost_usd=1e-9, max_output_tokens=100), analysis())


# -- capabilities -------------------------------------------------------------------------------------------

TOOL = Tool("lookup", parameters='{"type": "object"}')
IMAGE = Message("user", "look", parts=[TextPart("look"), ImagePart(url="https://x.test/a.png")])


def chat(**kwargs: Any) -> Request:
    messages = kwargs.pop("messages", [Message("user", "hi")])
    return Request("", messages, **kwargs)


@pytest.mark.parametrize(
    ("request_", "kept", "skipped"),
    [
        (chat(tools=[TOOL]), CHAIN, {}),  # the on-device model takes tools through a grammar
        (chat(messages=[IMAGE]), ["pricey", "cheap", "mid"], {"local": "cannot take images"}),
        (chat(json_schema='{"type": "object"}'), CHAIN, {}),
        (chat(json_object=True), ["pricey", "cheap", "mid"], {"local": "cannot take a json_object answer"}),
        (
            chat(presence_penalty=0.5),
            ["cheap", "mid"],
            {
                "pricey": "cannot take presence/frequency penalties",
                "local": "cannot take presence/frequency penalties",
            },
        ),
        (
            chat(tools=[TOOL], messages=[IMAGE]),
            ["pricey", "cheap", "mid"],
            {"local": "cannot take images"},
        ),
    ],
)
def test_capability_filter(request_: Request, kept: list[str], skipped: dict[str, str]) -> None:
    plan = router({"default": {"chain": CHAIN}}).plan(request_, analysis())
    assert [c.name for c in plan.candidates] == kept
    assert {s.model: s.reason for s in plan.skipped} == skipped


def test_a_model_declares_what_it_cannot_take() -> None:
    models = {**MODELS, "textonly": {"provider": "openai", "model": "t", "api_key": "k", "vision": False}}
    config = resolve(parse({"models": models, "routes": {"default": {"chain": ["textonly", "local"]}}}), {})
    with pytest.raises(InvalidRequest, match="textonly: cannot take images; local: cannot take images"):
        Planner(config, {}, lambda name: 0).plan(chat(messages=[IMAGE]), analysis())


def test_a_restricted_tool_request_stays_on_the_device() -> None:
    plan = router({"default": {"chain": CHAIN}}).plan(
        chat(tools=[TOOL]), analysis(sensitivity=Sensitivity.RESTRICTED)
    )
    assert [c.name for c in plan.candidates] == ["local"]


def test_restricted_tool_request_without_an_on_device_model_that_takes_tools_is_blocked() -> None:
    models = {**MODELS, "local": {**MODELS["local"], "tools": False}}
    config = resolve(parse({"models": models, "routes": {"default": {"chain": CHAIN}}}), {})
    with pytest.raises(SensitiveDataBlocked, match="local: cannot take tools"):
        Planner(config, {}, lambda name: 0).plan(
            chat(tools=[TOOL]), analysis(sensitivity=Sensitivity.RESTRICTED)
        )


def test_images_count_by_each_providers_rule() -> None:
    plan = router({"default": {"chain": ["cheap", "pricey"]}}).plan(
        chat(messages=[IMAGE]), analysis(tokens=10)
    )
    cheap, pricey = plan.candidates
    assert cheap.est_cost_usd == pytest.approx((10 + 765) * 0.1e-6 + 256 * 0.4e-6)
    assert pricey.est_cost_usd == pytest.approx((10 + 1600) * 3e-6 + 256 * 15e-6)
