"""The on-device provider: a GGUF model run in-process through llama-cpp-python.

One worker thread owns the model (`local_worker`); requests wait for it in a bounded queue and a full queue
fails at once with `LocalQueueFull`, so the router can go elsewhere. Prompts use the model's own chat
template, or a plain instruction format for base models (`local_prompt`). JSON-schema requests are
grammar-constrained (`local_sampling`).

The model is loaded, and a missing or unreadable file reported as `LocalModelError`, when the provider is
constructed, never at the first request.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import llama_cpp

from tiergate import embedded_model
from tiergate.config import EMBEDDED, ModelConfig
from tiergate.errors import StartupError
from tiergate.providers.base import MalformedResponse
from tiergate.providers.local_prompt import PromptFormat, format_for
from tiergate.providers.local_sampling import Sampling, json_schema_grammar
from tiergate.providers.local_worker import Job, JobDone, LocalState, LocalWorker
from tiergate.request import Chunk, Completion, Request, Usage

__all__ = ["LlamaCppProvider", "LocalModelError", "LocalState"]

GGUF_MAGIC = b"GGUF"
_GRAMMAR_CACHE_SIZE = 64


class LocalModelError(StartupError):
    """The local model cannot be loaded (missing, not GGUF, or rejected by llama.cpp). Raised at start-up."""


class LlamaCppProvider:
    """A local GGUF model behind the `Provider` interface.

    Args:
        name: the model's name in the config.
        config: its `ModelConfig` (`provider: llama_cpp`).

    Raises:
        LocalModelError: the model file is missing, is not a GGUF file, or llama.cpp cannot load it.
    """

    def __init__(self, name: str, config: ModelConfig) -> None:
        self.name = name
        self.on_device = config.is_on_device
        self._config = config
        self._price_in = config.price.input_per_mtok / 1e6
        self._price_out = config.price.output_per_mtok / 1e6
        path = _model_path(config.path)
        llm = _load(path, n_ctx=config.window, threads=config.threads or os.cpu_count() or 1)
        bos, eos = llm.token_bos(), llm.token_eos()
        try:
            self._format: PromptFormat = format_for(
                llm.metadata,
                bos_token=llm.detokenize([bos], special=True).decode("utf-8", errors="replace"),
                eos_token=llm.detokenize([eos], special=True).decode("utf-8", errors="replace"),
            )
        except ValueError as exc:
            llm.close()
            raise LocalModelError(f"{path}: {exc}") from exc
        self._grammars: dict[str, str] = {}
        self._seeds = random.Random()
        self._worker = LocalWorker(llm, queue_size=config.queue_size, name=name)

    @property
    def prompt_format(self) -> str:
        """Which prompt format this model uses: "chat_template" or "instruction"."""
        return self._format.name

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's own vocabulary (no BOS, no prompt formatting)."""
        return self._worker.count_tokens(text)

    def live_state(self) -> LocalState:
        """Queue depth, in-flight jobs, and moving averages of TTFT and decode speed."""
        return self._worker.state()

    async def complete(self, request: Request) -> Completion:
        parts: list[str] = []
        async with aclosing(self.stream(request)) as chunks:
            async for chunk in chunks:
                parts.append(chunk.text)
                if chunk.usage is not None:
                    return Completion("".join(parts), chunk.usage, chunk.finish_reason or "stop")
        raise MalformedResponse("the local stream ended without its final chunk")

    async def stream(self, request: Request) -> AsyncGenerator[Chunk, None]:
        """Yields the answer as it is generated; the last chunk carries usage and finish_reason.

        Raises LocalQueueFull at once when the queue is full, BadRequest for an unusable json_schema or
        messages the chat template rejects, RequestTooLarge when the prompt does not fit the context.
        Closing the generator or cancelling its consumer stops the generation at the next token.
        """
        job = self._job(request)
        self._worker.submit(job)
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, str):
                    yield Chunk(text=event)
                elif isinstance(event, JobDone):
                    yield Chunk(usage=self._usage(event), finish_reason=event.finish_reason)
                    return
                else:
                    raise event
        finally:
            self._worker.cancel(job)  # a no-op once the job has finished

    async def aclose(self) -> None:
        """Stops the worker and frees the model; queued requests fail, a running one stops at once."""
        await asyncio.to_thread(self._worker.close)

    def _job(self, request: Request) -> Job:
        prompt = self._format.render(request.messages)
        grammar = self._grammar(request.json_schema) if request.json_schema else None
        if request.temperature is not None:
            temperature = request.temperature
        else:
            temperature = 0.0 if grammar is not None else self._format.default_temperature
        sampling = Sampling(
            temperature=temperature,
            repeat_penalty=self._format.repeat_penalty,
            seed=self._seeds.getrandbits(32),
            grammar=grammar,
        )
        max_tokens = request.max_output_tokens or self._config.max_output_tokens
        return Job(prompt, sampling, max_tokens)

    def _grammar(self, schema: str) -> str:
        grammar = self._grammars.get(schema)
        if grammar is None:
            grammar = json_schema_grammar(schema)
            if len(self._grammars) >= _GRAMMAR_CACHE_SIZE:
                del self._grammars[next(iter(self._grammars))]
            self._grammars[schema] = grammar
        return grammar

    def _usage(self, done: JobDone) -> Usage:
        cost = done.input_tokens * self._price_in + done.output_tokens * self._price_out
        return Usage(input_tokens=done.input_tokens, output_tokens=done.output_tokens, cost_usd=cost)


def _model_path(configured: str | None) -> Path:
    if configured is None:
        raise LocalModelError("a llama_cpp model needs `path` (a GGUF file, or `embedded`)")
    if configured == EMBEDDED:
        try:
            return embedded_model.ensure()
        except embedded_model.EmbeddedModelError as exc:
            raise LocalModelError(str(exc)) from exc
    return Path(configured).expanduser()


def _load(path: Path, *, n_ctx: int, threads: int) -> llama_cpp.Llama:
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except FileNotFoundError:
        raise LocalModelError(f"model file not found: {path}") from None
    except OSError as exc:
        raise LocalModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    if magic != GGUF_MAGIC:
        raise LocalModelError(f"{path} is not a GGUF model file")
    try:
        # verbose=False keeps llama.cpp's load log off stdout.
        # swa_full=False: sliding-window layers (Gemma 3 has them) keep only their window in the KV cache
        # instead of the whole context: ~100 MB less RSS for the embedded model at 8192 tokens.
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            swa_full=False,
            verbose=False,
        )
    except ValueError as exc:  # llama-cpp-python's report of any load failure (truncated, unsupported, ...)
        raise LocalModelError(f"llama.cpp cannot load {path}, corrupt or unsupported: {exc}") from exc
