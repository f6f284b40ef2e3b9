"""Semantic response cache matching with the real on-device embedding model (all-MiniLM-L6-v2 in its worker
process) and the loopback fake provider: a paraphrase is served from the cache, an unrelated question, another
tenant, other sampling parameters or an opted-out request are not; a stream replays a semantic hit; restricted
answers never reach Redis and never answer an unrestricted request; entries expire; an embedding worker that
is stopped or cannot load makes the lookup a miss and the request is still served."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
import pytest_asyncio
import redis
import yaml

import tiergate
from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tests.readme_blocks import block
from tiergate.cache.response_cache import ResponseCache
from tiergate.cache.store import REDIS_PREFIX, CachedAnswer
from tiergate.config import CacheConfig, ConfigError, ModelConfig, SemanticCacheConfig, parse, resolve
from tiergate.embeddings import model_files
from tiergate.providers.onnx_embedding import OnnxEmbeddingProvider
from tiergate.request import Message, Request, Sensitivity
from tiergate.sidecar import Sidecar

EMBED = {"provider": "onnx", "path": "embedded", "threads": 1}


def semantic_config(fake: FakeProvider, embed: dict[str, Any], timeout_ms: float) -> dict[str, Any]:
    return {
        "models": {
            "hosted": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "m",
                "api_key": "k",
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            },
            "local-embed": embed,
        },
        "routes": {"default": {"chain": ["hosted"], "retries": 0}},
        "cache": {"ttl_s": 3600, "semantic": {"model": "local-embed", "timeout_ms": timeout_ms}},
    }


# -- through the OpenAI SDK against `tiergate serve` ------------------------------------------------------


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    # A generous embedding budget: on a busy machine a lookup must not time out by accident (the stopped
    # worker test waits it out once).
    config = semantic_config(fake, EMBED, timeout_ms=2_000)
    with run_sidecar(config, tmp_path_factory.mktemp("semantic")) as proc:
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


def records_of(sidecar: SidecarProcess, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The decision records that `match`, once there is one (records reach stdout after the answer)."""
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in map(json.loads, list(sidecar.records)) if match(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def metrics(sidecar: SidecarProcess) -> str:
    with urllib.request.urlopen(f"http://{sidecar.http_address}/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_a_paraphrase_is_served_from_the_cache(
    client: openai.OpenAI, fake: FakeProvider, sidecar: SidecarProcess
) -> None:
    _, first = ask(client, "How do I reset my password?")
    text, second = ask(client, "How can I reset my password?")
    assert text == fake.reply_text
    assert (first["cache"], second["cache"], second["cache_match"]) == ("miss", "hit", "semantic")
    assert 0.95 <= second["cache_similarity"] < 1.0
    assert second["cost_usd"] == 0.0 and second["cost_saved_usd"] == pytest.approx(first["cost_usd"])
    assert "semantic response cache hit (similarity 0.9" in second["reason"]
    assert calls(fake, "How can I reset my password?") == 0
    _, exact = ask(client, "How do I reset my password?")
    assert (exact["cache"], exact["cache_match"]) == ("hit", "exact")
    semantic = records_of(sidecar, lambda r: r.get("cache_match") == "semantic")
    assert len(semantic) == 1 and semantic[0]["cache_similarity"] == pytest.approx(second["cache_similarity"])
    assert not [line for line in sidecar.records if "reset my password" in line]  # never the prompt text


def test_an_unrelated_question_misses(client: openai.OpenAI, fake: FakeProvider) -> None:
    ask(client, "What is the capital of France?")
    _, other = ask(client, "What is the capital of Germany?")  # similar words, another question (0.66)
    assert other["cache"] == "miss" and "cache_match" not in other
    assert calls(fake, "What is the capital of Germany?") == 1


def test_another_tenant_never_hits(client: openai.OpenAI, fake: FakeProvider) -> None:
    ask(client, "How do I cancel my subscription?", user="alice")
    assert ask(client, "How can I cancel my subscription?", user="bob")[1]["cache"] == "miss"
    assert ask(client, "How can I cancel my subscription?", user="alice")[1]["cache_match"] == "semantic"
    assert calls(fake, "How can I cancel my subscription?") == 1  # bob's, never alice's answer


def test_other_sampling_parameters_never_hit(client: openai.OpenAI, fake: FakeProvider) -> None:
    ask(client, "How do I change my email address?")
    _, warmer = ask(client, "How can I change my email address?", extra_body={"temperature": 0.7})
    _, capped = ask(client, "How can I change my email address?", max_tokens=5)
    assert (warmer["cache"], capped["cache"]) == ("miss", "miss")
    assert ask(client, "How can I change my email address?")[1]["cache_match"] == "semantic"


def test_an_opted_out_request_neither_reads_nor_writes(client: openai.OpenAI, fake: FakeProvider) -> None:
    ask(client, "How do I delete my account?")
    _, opted_out = ask(client, "How can I delete my account?", metadata={"cache": "no"})
    assert opted_out["cache"] == ""
    ask(client, "How do I remove my account?", metadata={"cache": "no"})  # not kept either
    assert ask(client, "How do I remove my account?")[1]["cache"] == "miss"
    assert calls(fake, "How can I delete my account?") == 1


def test_a_stream_replays_a_semantic_hit(client: openai.OpenAI, fake: FakeProvider) -> None:
    ask(client, "How do I export my data to CSV?")
    chunks = list(
        client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "How can I export my data to CSV?"}],
            temperature=0,
            stream=True,
        )
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == fake.reply_text and len(pieces) > 1
    decision = chunks[-1].model_extra["tiergate_decision"]  # type: ignore[index]
    assert (decision["cache"], decision["cache_match"]) == ("hit", "semantic")
    assert calls(fake, "How can I export my data to CSV?") == 0


def test_the_metrics_count_hits_by_kind(sidecar: SidecarProcess, client: openai.OpenAI) -> None:
    ask(client, "How do I update my billing address?")
    ask(client, "How can I update my billing address?")
    ask(client, "How do I update my billing address?")
    text = metrics(sidecar)
    assert 'tiergate_cache_hits_total{match="semantic",route="default"}' in text
    assert 'tiergate_cache_hits_total{match="exact",route="default"}' in text
    assert 'tiergate_cache_semantic_lookups_total{result="hit",route="default"}' in text
    assert 'tiergate_cache_semantic_lookups_total{result="miss",route="default"}' in text


def test_a_stopped_embedding_worker_is_a_miss_and_the_request_is_served(
    sidecar: SidecarProcess, client: openai.OpenAI, fake: FakeProvider
) -> None:
    ask(client, "How do I turn on two-factor authentication?")
    (worker,) = embedding_workers(sidecar.proc.pid)
    os.kill(worker, signal.SIGSTOP)  # alive, but answers nothing: the lookup waits out `timeout_ms`
    try:
        text, decision = ask(client, "How can I turn on two-factor authentication?")
    finally:
        os.kill(worker, signal.SIGCONT)
    assert text == fake.reply_text and decision["cache"] == "miss"
    assert calls(fake, "How can I turn on two-factor authentication?") == 1
    assert 'tiergate_cache_semantic_lookups_total{result="timeout",route="default"} 1.0' in metrics(sidecar)


def embedding_workers(sidecar_pid: int) -> list[int]:
    """The sidecar's worker processes (here only the embedding model's), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == sidecar_pid and b"tiergate.local.worker" in cmdline:
            found.append(int(entry.name))
    return found


# -- the cache itself, with the real embedding worker ------------------------------------------------------

QUESTION = Request(task="", messages=[Message("user", "How do I reset my password?")], temperature=0.0)
PARAPHRASE = dataclasses.replace(QUESTION, messages=[Message("user", "How can I reset my password?")])
ANSWER = CachedAnswer("Use the reset link.", "stop", 7, 4, 0.001, "hosted")


@pytest_asyncio.fixture
async def embedder() -> AsyncIterator[OnnxEmbeddingProvider]:
    started = await OnnxEmbeddingProvider.start("local-embed", ModelConfig(provider="onnx", path="embedded"))
    try:
        yield started
    finally:
        await started.aclose()


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_restricted_answers_stay_in_memory_and_answer_only_restricted_requests(
    embedder: OnnxEmbeddingProvider, redis_url: str, store: Literal["memory", "redis"]
) -> None:
    semantic = SemanticCacheConfig(model="local-embed", timeout_ms=30_000)
    cache = ResponseCache(CacheConfig(store=store, semantic=semantic), redis_url, 1.0)
    client = redis.Redis.from_url(redis_url)

    def in_redis() -> list[bytes]:
        return list(client.scan_iter(f"{REDIS_PREFIX}*"))

    client.flushdb()
    try:
        first = await cache.lookup("r", QUESTION, Sensitivity.RESTRICTED, embedder)
        assert first.answer is None and await cache.keep(first, ANSWER)
        assert not in_redis()
        hit = await cache.lookup("r", PARAPHRASE, Sensitivity.RESTRICTED, embedder)
        assert (hit.answer, hit.match) == (ANSWER, "semantic")
        public = await cache.lookup("r", PARAPHRASE, Sensitivity.PUBLIC, embedder)
        assert public.answer is None  # a restricted answer never answers an unrestricted request
        unrestricted = dataclasses.replace(ANSWER, text="Open Settings, then Reset password.")
        assert await cache.keep(public, unrestricted)  # kept (in Redis, for the fleet, with `store: redis`)
        assert len(in_redis()) == (1 if store == "redis" else 0)
        could = dataclasses.replace(QUESTION, messages=[Message("user", "How could I reset my password?")])
        again = await cache.lookup("r", could, Sensitivity.PUBLIC, embedder)
        assert (again.answer, again.match) == (unrestricted, "semantic")
    finally:
        client.close()
        await cache.aclose()


async def test_semantic_entries_expire_with_the_ttl(embedder: OnnxEmbeddingProvider) -> None:
    now = [0.0]
    config = CacheConfig(ttl_s=60, semantic=SemanticCacheConfig(model="local-embed", timeout_ms=30_000))
    cache = ResponseCache(config, None, 1.0, clock=lambda: now[0])
    first = await cache.lookup("r", QUESTION, Sensitivity.PUBLIC, embedder)
    assert await cache.keep(first, ANSWER)
    now[0] = 59.0
    assert (await cache.lookup("r", PARAPHRASE, Sensitivity.PUBLIC, embedder)).match == "semantic"
    now[0] = 60.0
    assert (await cache.lookup("r", PARAPHRASE, Sensitivity.PUBLIC, embedder)).answer is None
    assert dict(cache.semantic_results) == {"miss": 2, "hit": 1}  # the first lookup found nothing either


async def test_an_embedding_worker_that_cannot_load_is_a_miss_and_the_request_is_served(
    fake_provider: FakeProvider, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    (broken / "tokenizer.json").write_bytes(model_files.embedded().tokenizer.read_bytes())
    embed = {"provider": "onnx", "path": str(broken), "threads": 1}
    config = resolve(parse(semantic_config(fake_provider, embed, timeout_ms=30_000)), {})
    sidecar = await Sidecar.start(config)
    async with tiergate.AsyncRouter.from_sidecar(sidecar) as router:
        first = await router.complete("How do I reset my password?")
        second = await router.complete("How can I reset my password?")
        assert sidecar.cache is not None
        assert sidecar.cache.semantic_results["unavailable"] == 2
    await sidecar.aclose()
    assert first.text == second.text == fake_provider.reply_text
    assert (first.decision.cache, second.decision.cache) == ("miss", "miss")
    assert second.decision.served_by == "hosted"


def test_the_readme_semantic_config_loads() -> None:
    config = yaml.safe_load(block("semantic-cache-config"))
    hosted = {"provider": "openai", "model": "m", "api_key": "k"}
    full = {
        **config,
        "models": {**config["models"], "hosted": hosted},
        "routes": {"default": {"chain": ["hosted"]}},
    }
    loaded = resolve(parse(full), {})
    assert loaded.cache is not None and loaded.cache.semantic is not None
    assert (loaded.cache.semantic.model, loaded.cache.semantic.threshold) == ("local-embed", 0.95)
    full["cache"]["semantic"]["model"] = "hosted"
    with pytest.raises(ConfigError, match="is not an on-device embedding model"):
        resolve(parse(full), {})


async def test_a_reload_keeps_the_entries_unless_the_embedding_model_changes(
    fake_provider: FakeProvider,
) -> None:
    config = resolve(parse(semantic_config(fake_provider, EMBED, timeout_ms=30_000)), {})
    other_model = resolve(
        parse(semantic_config(fake_provider, {**EMBED, "threads": 2}, timeout_ms=30_000)), {}
    )
    first = await Sidecar.start(config)
    await tiergate.AsyncRouter.from_sidecar(first).complete("How do I reset my password?")
    second = await Sidecar.start(config, previous=first)
    await first.retire(second)
    kept = await tiergate.AsyncRouter.from_sidecar(second).complete("How can I reset my password?")
    third = await Sidecar.start(other_model, previous=second)
    await second.retire(third)
    dropped = await tiergate.AsyncRouter.from_sidecar(third).complete("How can I reset my password?")
    await third.aclose()
    assert kept.decision.cache_match == "semantic"
    assert dropped.decision.cache == "miss"  # another model's vectors would not compare
