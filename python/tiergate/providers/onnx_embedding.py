"""The on-device embedding provider: an ONNX sentence-embedding model served by its own worker process.

Like `llama_cpp.py` for chat models: the sidecar never loads onnxruntime itself; the model runs in a worker
process (`tiergate.local.worker`, kind `embedding`) that `local/supervisor.py` starts, watches and restarts,
so a native crash fails only the requests it was serving (`LocalWorkerCrashed`, retryable). Requests become
`job` frames; the worker answers with the vectors as float32 bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from contextlib import aclosing

from tiergate.config import EMBEDDED, ModelConfig
from tiergate.embeddings import model_files
from tiergate.embeddings.types import Embeddings, NotAChatModel
from tiergate.local.supervisor import LocalState, WorkerProcess
from tiergate.providers.base import BadRequest, MalformedResponse
from tiergate.request import Usage


class OnnxEmbeddingProvider(NotAChatModel):
    """An on-device embedding model. Create with `await OnnxEmbeddingProvider.start(name, config)`."""

    on_device = True

    def __init__(self, name: str, config: ModelConfig, worker: WorkerProcess) -> None:
        self.name = name
        self.on_device = config.is_on_device
        self._price_in = config.price.input_per_mtok / 1e6
        self._worker = worker

    @classmethod
    async def start(cls, name: str, config: ModelConfig) -> OnnxEmbeddingProvider:
        """Finds the model's files and starts its worker; returns once it serves or failed to load.

        Raises:
            EmbeddingModelError: the model's files are missing.
        """
        path = config.path or EMBEDDED
        files = await asyncio.to_thread(
            model_files.embedded if path == EMBEDDED else lambda: model_files.in_directory(path)
        )
        worker = WorkerProcess(
            name,
            files.model,
            n_ctx=config.window,
            threads=config.threads or os.cpu_count() or 1,
            queue_size=config.queue_size,
            kind="embedding",
            load={"tokenizer": str(files.tokenizer), "sha256": files.sha256},
        )
        await worker.start()
        return cls(name, config, worker)

    @property
    def dimensions(self) -> int:
        """The vector size the worker reported (0 before it loaded)."""
        return self._worker.dimensions

    def live_state(self) -> LocalState:
        return self._worker.state()

    async def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's own vocabulary (special tokens included)."""
        return await self._worker.count_tokens(text)

    async def embed(self, inputs: list[str], dimensions: int) -> Embeddings:
        """Raises LocalQueueFull, LocalWorkerDown, LocalWorkerCrashed, or RequestTooLarge for an input over
        the model's window, like the chat provider; BadRequest for a `dimensions` the model cannot give."""
        if dimensions and self.dimensions and dimensions != self.dimensions:
            raise BadRequest(f"{self.name!r} gives {self.dimensions}-dimension vectors only")
        async with aclosing(self._worker.generate({"inputs": inputs})) as frames:
            async for frame in frames:
                if frame["op"] == "done":
                    return _vectors(frame, len(inputs), self.name, self._price_in)
        raise MalformedResponse("the embedding worker ended the job without its vectors")

    async def aclose(self) -> None:
        await self._worker.aclose()


def _vectors(done: dict[str, object], count: int, name: str, price_in: float) -> Embeddings:
    dims = int(str(done["dimensions"]))
    try:
        raw = base64.b64decode(str(done["vectors"]), validate=True)
    except binascii.Error:
        raise MalformedResponse("the embedding worker sent vectors that are not base64") from None
    width = dims * 4
    if len(raw) != count * width:
        raise MalformedResponse(f"the embedding worker sent {len(raw)} bytes for {count} vectors of {dims}")
    tokens = int(str(done["input_tokens"]))
    usage = Usage(input_tokens=tokens, cost_usd=tokens * price_in)
    return Embeddings([raw[i * width : (i + 1) * width] for i in range(count)], dims, usage, name)
