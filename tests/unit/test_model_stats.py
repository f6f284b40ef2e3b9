"""ModelStats: the live latency figures the latency objective predicts from, fed by streamed and whole
answers alike without inventing a generation speed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tiergate.config import parse, resolve
from tiergate.model_stats import PRIOR_TOKENS_PER_S, ModelStats
from tiergate.request import Completion, Message, Request, Usage
from tiergate.sidecar import Sidecar


def test_a_streamed_answer_measures_the_speed_after_its_first_token() -> None:
    stats = ModelStats()
    stats.observe(ttft_ms=200, output_tokens=101, generation_ms=1000)
    assert (stats.ttft_ms, stats.tokens_per_s, stats.samples) == (200, 100, 1)


def test_a_whole_answer_keeps_a_speed_it_allows_and_counts_the_rest_as_time_to_first_token() -> None:
    stats = ModelStats(ttft_ms=100, tokens_per_s=50, samples=3)
    stats.observe_whole(total_ms=1000, output_tokens=26)  # 25 tokens at 50/s: 500 ms; 500 ms before them
    assert stats.tokens_per_s == 50 and stats.samples == 4
    assert stats.ttft_ms == pytest.approx(100 + 0.2 * (500 - 100))


def test_a_whole_answer_faster_than_the_speed_allows_raises_the_speed() -> None:
    first = ModelStats()  # the prior: 50 tokens/s
    first.observe_whole(total_ms=20, output_tokens=40)  # 39 tokens in 20 ms: at least 1,950 tokens/s
    assert first.tokens_per_s == pytest.approx(1950) and first.ttft_ms == 0
    assert first.predict_ms(39) == pytest.approx(20)
    later = ModelStats(ttft_ms=300, tokens_per_s=50, samples=5)
    later.observe_whole(total_ms=500, output_tokens=101)  # at least 200 tokens/s: a step toward it
    assert later.tokens_per_s == pytest.approx(50 + 0.2 * 150)
    assert later.ttft_ms == pytest.approx(300 + 0.2 * (0 - 300))  # 100 tokens at 80/s exceed 500 ms: 0


class _Whole:
    """Answers at once (a non-streamed upstream), 40 output tokens."""

    on_device = False

    def __init__(self, name: str) -> None:
        self.name = name

    async def complete(self, request: Request) -> Completion:
        await asyncio.sleep(0.02)
        return Completion("answer", Usage(5, 40), "stop")

    async def stream(self, request: Request) -> Any:
        raise NotImplementedError
        yield  # pragma: no cover

    async def aclose(self) -> None:
        return None


async def test_unary_requests_do_not_feed_an_absurd_speed() -> None:
    config = resolve(parse({
        "listen": {"grpc": "127.0.0.1:0", "http": None},
        "models": {"m": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x",
                         "model": "m"}},
        "routes": {"default": {"chain": ["m"]}},
    }))  # fmt: skip
    sidecar = Sidecar(config, {"m": _Whole("m")})  # type: ignore[dict-item]
    for _ in range(3):
        await sidecar.complete(Request(task="default", messages=[Message("user", "hi")]))
    stats = sidecar.stats["m"]
    assert stats.samples == 3
    # Was (40 - 1) tokens over the few µs since the answer arrived: millions per second. Now at least 39
    # tokens in the 20 ms or more the answer took, and never a prediction faster than the answers were.
    assert PRIOR_TOKENS_PER_S < stats.tokens_per_s <= 39 / 0.02
    assert stats.predict_ms(39) >= 20 - 1e-6
