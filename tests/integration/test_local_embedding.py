"""The on-device embedding model in its supervised worker process: vectors within cosine 0.99 of the fp32
reference (a numpy forward pass of the upstream weights), a worker that never loads llama.cpp, a crash that
fails only the request in flight and is restarted."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from tests.embedding_reference import ReferenceModel
from tiergate.config import ModelConfig
from tiergate.embedded_model import CACHE_ENV, cache_dir
from tiergate.embeddings import model_files
from tiergate.embeddings.model_files import EmbeddingModelError
from tiergate.local.supervisor import WorkerStatus
from tiergate.providers.base import LocalWorkerCrashed, RequestTooLarge
from tiergate.providers.onnx_embedding import OnnxEmbeddingProvider

TEXTS = [
    "Hello world",
    "What is the capital of France?",
    "Prove that there are infinitely many primes and explain every step for a first-year student.",
    "SELECT name, email FROM users WHERE created_at > now() - interval '7 days' ORDER BY name;",
    "Übersetze bitte diesen Satz ins Englische: Wo ist der Bahnhof?",
]


@pytest_asyncio.fixture
async def provider() -> AsyncIterator[OnnxEmbeddingProvider]:
    config = ModelConfig(provider="onnx", path="embedded", threads=1)
    started = await OnnxEmbeddingProvider.start("local-embed", config)
    try:
        yield started
    finally:
        await started.aclose()


def as_array(raw: bytes) -> np.ndarray:
    return np.array(struct.unpack(f"<{len(raw) // 4}f", raw), dtype=np.float32)


async def test_vectors_are_within_cosine_0_99_of_the_fp32_reference(provider: OnnxEmbeddingProvider) -> None:
    files = model_files.embedded()
    assert files.fp32 is not None
    reference = ReferenceModel(files.fp32, files.tokenizer)
    result = await provider.embed(TEXTS, 0)
    assert result.dimensions == 384 and len(result.vectors) == len(TEXTS)
    for text, raw in zip(TEXTS, result.vectors, strict=True):
        assert float(as_array(raw) @ reference.embed(text)) >= 0.99, text


async def test_batch_order_does_not_change_a_vector(provider: OnnxEmbeddingProvider) -> None:
    alone = (await provider.embed([TEXTS[2]], 0)).vectors[0]
    batched = (await provider.embed([*TEXTS, *TEXTS], 0)).vectors
    assert float(as_array(alone) @ as_array(batched[2])) > 0.9999
    assert float(as_array(batched[2]) @ as_array(batched[7])) > 0.9999


async def test_the_worker_never_loads_llama_cpp(provider: OnnxEmbeddingProvider) -> None:
    pid = provider.live_state().worker_pid
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "onnxruntime" in maps
    assert "llama" not in maps


async def test_the_worker_keeps_onnxruntime_telemetry_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime's Linux wheels send usage events to Microsoft unless ORT_DISABLE_TELEMETRY is set; the
    # sign is the device id and event cache they keep under the cache directory. The built model stays where
    # `make setup` left it, which moving HOME would otherwise move too.
    monkeypatch.setenv(CACHE_ENV, str(cache_dir()))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    config = ModelConfig(provider="onnx", path="embedded", threads=1)
    started = await OnnxEmbeddingProvider.start("local-embed", config)
    try:
        assert (await started.embed(["hello"], 0)).dimensions == 384
    finally:
        await started.aclose()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == []


async def test_an_input_over_the_window_is_refused(provider: OnnxEmbeddingProvider) -> None:
    with pytest.raises(RequestTooLarge, match=r"input\[1\] is 302 tokens; this model takes at most 256"):
        await provider.embed(["short", "word " * 300], 0)


async def test_a_worker_crash_fails_the_request_and_the_worker_comes_back(
    provider: OnnxEmbeddingProvider,
) -> None:
    pid = provider.live_state().worker_pid
    long_batch = ["a long text to keep the worker busy for a while " * 5] * 512
    job = asyncio.create_task(provider.embed(long_batch, 0))
    while provider.live_state().in_flight == 0:
        await asyncio.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(LocalWorkerCrashed):
        await job
    while provider.live_state().worker is not WorkerStatus.UP:
        await asyncio.sleep(0.05)
    state = provider.live_state()
    assert state.worker_pid != pid and state.restarts == 1 and state.crashes == 1
    assert "SIGKILL" in state.last_error
    assert (await provider.embed(["back again"], 0)).dimensions == 384


# -- the built model missing or corrupt: errors that say how to get it back --------------------------------


def test_a_missing_built_model_fails_the_start_naming_make_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    config = ModelConfig(provider="onnx", path="embedded", threads=1)
    with pytest.raises(EmbeddingModelError, match="make setup"):
        asyncio.run(OnnxEmbeddingProvider.start("local-embed", config))


async def test_a_corrupt_built_model_leaves_the_worker_down_naming_make_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = model_files.build_dir()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    copy = model_files.build_dir()
    shutil.copytree(built, copy)
    model = bytearray((copy / model_files.MODEL_FILE).read_bytes())
    model[len(model) // 2] ^= 0xFF  # one flipped bit of a weight: onnxruntime would load it and answer wrong
    (copy / model_files.MODEL_FILE).write_bytes(bytes(model))
    provider = await OnnxEmbeddingProvider.start("local-embed", ModelConfig(provider="onnx", path="embedded"))
    try:
        state = provider.live_state()
        assert state.worker is not WorkerStatus.UP
        assert "sha256 mismatch" in state.last_error and "`make setup`" in state.last_error
    finally:
        await provider.aclose()


def test_neither_the_sidecar_nor_the_worker_imports_onnx() -> None:
    # onnx writes the model at setup time only; the worker imports onnxruntime, the sidecar neither.
    code = (
        "import sys, tiergate.sidecar, tiergate.providers.onnx_embedding, tiergate.local.worker.embedding; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'onnx'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_the_worker_stays_small_through_the_largest_batch(provider: OnnxEmbeddingProvider) -> None:
    # The bench records the figure against the 150 MiB aimed for (134 on its machine); this bound leaves
    # room for allocator noise and still fails if the weights went back to float32 (+90 MiB) or a batch's
    # activations were unbounded again (16 texts of 256 tokens: +285 MiB).
    await provider.embed([" ".join(["word"] * 254)] * 16, 0)
    status = Path(f"/proc/{provider.live_state().worker_pid}/status").read_text()
    peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    assert peak_kib / 1024 <= 180
