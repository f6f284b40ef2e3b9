"""The embedding kind of worker: one ONNX sentence-embedding model (`embedder.py`), serving `job`, `cancel`,
`count` over the same frames as a chat worker.

A job carries `inputs` (a list of texts); the worker answers `start`, then one `done` whose `vectors` are the
float32 little-endian bytes of every vector, base64-encoded (`dimensions` wide, in input order), or an
`error`. Jobs run one at a time on one thread, in arrival order; `cancel` drops a queued job (a running one
finishes its current batch of texts, then stops).

Imported only by a worker whose `load` frame has `kind: embedding`: this process never loads llama.cpp.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict
from pathlib import Path

import onnxruntime as ort

from tiergate.local import protocol
from tiergate.local.protocol import Frame
from tiergate.local.worker.connection import Connection
from tiergate.local.worker.embedder import Embedder, LoadFailed
from tiergate.providers.base import BadRequest, ProviderError


class Runner:
    """Runs embedding jobs one at a time on its own thread; the socket reader only queues and cancels."""

    def __init__(self, embedder: Embedder, connection: Connection) -> None:
        self._embedder = embedder
        self._connection = connection
        self._cond = threading.Condition()
        self._queue: OrderedDict[int, list[str]] = OrderedDict()
        self._thread = threading.Thread(target=self._serve, name="tiergate-embedding", daemon=True)
        self._thread.start()

    def handle(self, frame: Frame) -> None:
        op = frame["op"]
        if op == "job":
            inputs = frame.get("inputs")
            if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
                self._error(int(frame["id"]), BadRequest("an embedding job needs `inputs`, a list of texts"))
                return
            with self._cond:
                self._queue[int(frame["id"])] = inputs
                self._cond.notify()
        elif op == "cancel":
            with self._cond:
                self._queue.pop(int(frame["id"]), None)
        elif op == "count":
            tokens = self._embedder.count_tokens(str(frame["text"]))
            self._connection.write({"op": "counted", "id": frame["id"], "tokens": tokens})
        else:
            raise protocol.ProtocolError(f"unknown op {op!r}")

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                job_id, inputs = self._queue.popitem(last=False)
            self._connection.write({"op": "start", "id": job_id})
            started = time.monotonic()
            try:
                result = self._embedder.embed(inputs)
            except ProviderError as exc:
                self._error(job_id, exc)
                continue
            vectors = result.vectors.astype("<f4", copy=False)
            self._connection.write(
                {
                    "op": "done",
                    "id": job_id,
                    "vectors": base64.b64encode(vectors.tobytes()).decode("ascii"),
                    "dimensions": int(vectors.shape[1]),
                    "input_tokens": result.tokens,
                    "output_tokens": 0,
                    "finish": "stop",
                    "ttft_ms": 0.0,  # no tokens are generated: the chat speed averages stay untouched
                    "tokens_per_s": 0.0,
                    "elapsed_ms": (time.monotonic() - started) * 1000,
                }
            )

    def _error(self, job_id: int, exc: ProviderError) -> None:
        self._connection.write({"op": "error", "id": job_id, "kind": exc.kind, "message": str(exc)})


def serve(first: Frame, connection: Connection) -> int:
    """Loads the model `first` (the `load` frame) names, then serves frames until end of file."""
    try:
        embedder = Embedder.load(
            Path(str(first["path"])),
            Path(str(first["tokenizer"])),
            threads=int(first["threads"]),
            max_tokens=int(first["n_ctx"]),
            sha256=str(first.get("sha256") or ""),
        )
    except LoadFailed as exc:
        connection.write({"op": "load_failed", "message": str(exc)})
        return 1
    runner = Runner(embedder, connection)
    connection.write(
        {
            "op": "ready",
            "format": "embedding",
            "n_ctx": embedder.max_tokens,
            "dimensions": embedder.dimensions,
            "system_info": f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})",
        }
    )
    while (frame := connection.read()) is not None:
        runner.handle(frame)
    return 0
