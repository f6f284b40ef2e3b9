"""`tiergate.embeddings.model_build`: the integer embedding model built from the shipped fp32 weights keeps
its weights int8, carries the upstream licence, is built once, and is built again when its file is corrupt;
weights that are not all-MiniLM-L6-v2's are refused."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tokenizers import Tokenizer

from tiergate.embeddings import model_build, model_files


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_build.ensure(tmp_path_factory.mktemp("embedding-build"))


def test_the_build_keeps_every_large_weight_int8(built: Path) -> None:
    arrays = [numpy_helper.to_array(t) for t in onnx.load(built).graph.initializer]
    int8 = sum(a.nbytes for a in arrays if a.dtype == np.int8)
    float32 = [a.nbytes for a in arrays if a.dtype == np.float32]
    # 22.6 M parameters, ~90 MB as float32. What stays float32 is scales, biases, layer norms, smoothing
    # factors and, the largest, the 512 position embeddings.
    assert int8 > 22_000_000
    assert sum(float32) < 1_500_000 and max(float32) == 512 * 384 * 4


def test_the_build_carries_the_upstream_licence_and_a_marker_of_its_sha256(built: Path) -> None:
    upstream = model_files.upstream().weights.parent
    for name in ("LICENSE", "NOTICE"):
        assert (built.parent / name).read_bytes() == (upstream / name).read_bytes()
    marker = built.parent / model_files.MARKER_FILE
    assert marker.read_text().strip() == model_files.sha256(built)


def test_an_intact_build_is_not_built_again_and_a_corrupt_one_is(built: Path) -> None:
    before = built.stat().st_mtime_ns
    assert model_build.ensure(built.parent) == built and built.stat().st_mtime_ns == before
    good = built.read_bytes()
    built.write_bytes(good[: len(good) // 2])  # a truncated copy, as a full disk leaves it
    assert model_build.ensure(built.parent) == built
    assert built.read_bytes() == good  # the build is deterministic
    assert (built.parent / model_files.MARKER_FILE).read_text().strip() == model_files.sha256(built)


def test_the_built_model_agrees_with_the_float32_graph_on_texts_it_was_not_calibrated_with(
    built: Path,
) -> None:
    source = model_files.upstream()
    weights = model_build.load_safetensors(source.weights)
    tok = Tokenizer.from_file(str(source.tokenizer))
    texts = ["Where is my parcel?", 'fn main() { println!("hi"); }', "Le chat dort sur le canapé."]
    reference = model_build.minilm_graph.graph(weights).SerializeToString()
    cosines = model_build.agreement(built.read_bytes(), reference, [tok.encode(t).ids for t in texts])
    assert min(cosines) >= model_build.MIN_COSINE


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, object] = {}
    blobs, offset = [], 0
    for name, array in tensors.items():
        raw = array.astype("<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"bert.embeddings.word_embeddings.weight": np.zeros((10, 384))}, "encoder.layer.0.intermediate"),
        (
            {"bert.embeddings.word_embeddings.weight": np.zeros((10, 768))},
            r"word_embeddings.weight is \(10, 768\)",
        ),
    ],
    ids=["layers missing", "another width"],
)
def test_weights_that_are_not_minilm_are_refused(
    tmp_path: Path, tensors: dict[str, np.ndarray], message: str
) -> None:
    weights = tmp_path / "model.safetensors"
    write_safetensors(weights, tensors)
    with pytest.raises(model_build.BuildFailed, match=message):
        model_build.build(weights, model_files.upstream().tokenizer)


def test_an_unreadable_weights_file_is_a_build_failure(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x10\x00")
    with pytest.raises(model_build.BuildFailed, match="cannot read the weights"):
        model_build.build(weights, model_files.upstream().tokenizer)


def test_the_builder_without_onnx_says_what_to_install() -> None:
    hide_onnx = (
        "import runpy, sys; sys.modules['onnx'] = None; "
        "runpy.run_module('tiergate.embeddings.model_build', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", hide_onnx], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "needs the onnx package: pip install 'tiergate[embedding-build]'" in done.stderr
    assert "Traceback" not in done.stderr
