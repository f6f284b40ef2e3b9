"""The response cache through the OpenAI SDK against a sidecar subprocess (the fake provider upstream): a
repeat is served without calling the model, streams replay a cached answer as a stream, tenants and opted-out
requests miss, the Decision and the metrics show hits and the cost saved."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import yaml

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tests.readme_blocks import block
from tiergate.config import ConfigError, parse, resolve

MODEL = {"provider": "openai", "model": "m", "api_key": "k"}


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    config: dict[str, Any] = {
        "models": {
            "hosted": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "m",
                "api_key": "k",
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            }
        },
        "routes": {"default": {"chain": ["hosted"]}},
        "cache": {"ttl_s": 3600},
    }
    with run_sidecar(config, tmp_path_factory.mktemp("cache")) as proc:
        yield proc


@pytest.fixture
def client(sidecar: SidecarProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"http://{sidecar.http_address}/v1", api_key="unused", max_retries=0) as c:
        yield c


def ask(client: openai.OpenAI, text: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": text}], temperature=0, **extra
    )
    return raw.parse().choices[0].message.content or "", json.loads(raw.headers["x-tiergate-decision"])


def calls(fake: FakeProvider, text: str) -> int:
    return sum(text in json.dumps(r.body) for r in fake.requests if r.path.endswith("/chat/completions"))


def test_a_repeat_is_served_from_the_cache(client: openai.OpenAI, fake: FakeProvider) -> None:
    text, first = ask(client, "cache me once")
    again, second = ask(client, "cache me once")
    assert again == text == fake.reply_text
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert second["served_by"] == "hosted" and second["cost_usd"] == 0.0
    assert second["cost_saved_usd"] == pytest.approx(first["cost_usd"]) and first["cost_usd"] > 0
    assert "response cache hit" in second["reason"]
    assert calls(fake, "cache me once") == 1


def test_a_stream_replays_a_cached_answer_as_a_stream(client: openai.OpenAI, fake: FakeProvider) -> None:
    ask(client, "stream me later")
    chunks = list(
        client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "stream me later"}],
            temperature=0,
            stream=True,
        )
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == fake.reply_text and len(pieces) > 1
    decision = chunks[-1].model_extra["tiergate_decision"]  # type: ignore[index]
    assert decision["cache"] == "hit"
    assert calls(fake, "stream me later") == 1


def test_a_streamed_answer_is_cached_for_the_next_request(client: openai.OpenAI, fake: FakeProvider) -> None:
    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "streamed first"}], temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == fake.reply_text
    assert ask(client, "streamed first")[1]["cache"] == "hit"
    assert calls(fake, "streamed first") == 1


def test_another_tenant_and_an_opt_out_miss(client: openai.OpenAI, fake: FakeProvider) -> None:
    assert ask(client, "per tenant", user="alice")[1]["cache"] == "miss"
    assert ask(client, "per tenant", user="alice")[1]["cache"] == "hit"
    assert ask(client, "per tenant", user="bob")[1]["cache"] == "miss"  # never alice's answer
    _, opted_out = ask(client, "per tenant", user="alice", metadata={"cache": "no"})
    assert opted_out["cache"] == ""
    assert calls(fake, "per tenant") == 3


def test_changed_sampling_is_another_entry(client: openai.OpenAI, fake: FakeProvider) -> None:
    ask(client, "sampling matters")
    _, warmer = ask(client, "sampling matters", extra_body={"temperature": 0.7})
    assert warmer["cache"] == "miss"
    assert calls(fake, "sampling matters") == 2


def test_the_metrics_count_hits_and_the_cost_saved(sidecar: SidecarProcess, client: openai.OpenAI) -> None:
    ask(client, "metric me")
    ask(client, "metric me")
    with urllib.request.urlopen(f"http://{sidecar.http_address}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'tiergate_cache_lookups_total{result="hit",route="default"}' in text
    assert "tiergate_cache_saved_usd_total" in text


def test_the_readme_cache_config_loads() -> None:
    config = yaml.safe_load(block("cache-config"))
    loaded = resolve(parse({**config, "models": {"m": MODEL}, "routes": {"default": {"chain": ["m"]}}}), {})
    assert loaded.cache is not None and loaded.cache.store == "memory"
    with pytest.raises(ConfigError, match=r"cache\.store: redis needs `state`"):
        parse({"cache": {"store": "redis"}, "models": {"m": MODEL}, "routes": {"default": {"chain": ["m"]}}})
