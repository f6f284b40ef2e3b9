"""The on-device provider: a GGUF model served by its own worker process (`tiergate.local`).

The sidecar never loads llama.cpp itself: a native crash in the model kills only its worker, which the
supervisor (`local/supervisor.py`) restarts, while the sidecar keeps serving. Requests become `job` frames;
the worker renders the prompt (the model's own chat template, or a plain instruction format for base models),
generates, and streams the answer back. JSON-schema requests are grammar-constrained in the worker, and so
are requests with tools (`tool_prompt.py`: the tools become the answer's schema, the answer a tool call).

Checked here, at start-up, so that a config mistake fails `serve` at once: the model file exists and is a
GGUF file. A file that is GGUF but that llama.cpp cannot load (truncated, corrupt, unsupported) does not
stop the sidecar: the model is down, its requests fail with `LocalWorkerDown` naming why, and the worker is
tried again with back-off.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

from tiergate import embedded_model
from tiergate.config import EMBEDDED, ModelConfig
from tiergate.content import AnswerBuilder, ToolMode, call_deltas
from tiergate.errors import StartupError
from tiergate.local.protocol import Frame
from tiergate.local.supervisor import LocalState, WorkerProcess
from tiergate.providers.base import ChunkStream, MalformedResponse
from tiergate.providers.tool_prompt import answer_schema, parse_answer, prompt_messages
from tiergate.request import Chunk, Completion, Message, Request, Usage

__all__ = ["LlamaCppProvider", "LocalModelError", "LocalState"]

GGUF_MAGIC = b"GGUF"


class LocalModelError(StartupError):
    """The local model's file is missing, unreadable, or not a GGUF file. Raised at start-up."""


class LlamaCppProvider:
    """A local GGUF model behind the `Provider` interface. Create with `await LlamaCppProvider.start(...)`.

    Args:
        name: the model's name in the config.
        config: its `ModelConfig` (`provider: llama_cpp`).
        worker: its started worker process.
    """

    def __init__(self, name: str, config: ModelConfig, worker: WorkerProcess) -> None:
        self.name = name
        self.on_device = config.is_on_device
        self._config = config
        self._price_in = config.price.input_per_mtok / 1e6
        self._price_out = config.price.output_per_mtok / 1e6
        self._worker = worker

    @classmethod
    async def start(cls, name: str, config: ModelConfig) -> LlamaCppProvider:
        """Checks the model file and starts its worker; returns once the worker serves or failed to load.

        Raises:
            LocalModelError: the model file is missing, unreadable, or not a GGUF file.
        """
        path = await asyncio.to_thread(_model_path, config.path)
        await asyncio.to_thread(_check_gguf, path)
        worker = WorkerProcess(
            name,
            path,
            n_ctx=config.window,
            threads=config.threads or os.cpu_count() or 1,
            queue_size=config.queue_size,
        )
        await worker.start()
        return cls(name, config, worker)

    @property
    def prompt_format(self) -> str:
        """Which prompt format this model uses: "chat_template" or "instruction" ("" before it loaded)."""
        return self._worker.prompt_format

    async def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's own vocabulary (no BOS, no prompt formatting)."""
        return await self._worker.count_tokens(text)

    def live_state(self) -> LocalState:
        """The worker's state, queue depth, in-flight jobs, and moving averages of TTFT and decode speed."""
        return self._worker.state()

    async def complete(self, request: Request) -> Completion:
        answer = AnswerBuilder()
        async with aclosing(self.stream(request)) as chunks:
            async for chunk in chunks:
                answer.add(chunk.text, chunk.refusal, chunk.tool_calls)
                if chunk.usage is not None:
                    return Completion(
                        answer.text, chunk.usage, chunk.finish_reason or "stop", answer.tool_calls
                    )
        raise MalformedResponse("the local stream ended without its final chunk")

    async def stream(self, request: Request) -> ChunkStream:
        """Yields the answer as it is generated; the last chunk carries usage and finish_reason.

        With tools (and a tool choice other than `none`) the answer is generated under the grammar of
        `tool_prompt.answer_schema` and yielded once whole: its text, or its tool call.

        Raises LocalQueueFull at once when the queue is full, LocalWorkerDown when the worker is not
        serving, LocalWorkerCrashed when it dies meanwhile, BadRequest for an unusable json_schema or
        messages the chat template rejects, RequestTooLarge when the prompt does not fit the context.
        Closing the generator or cancelling its consumer stops the generation at the next token.
        """
        if request.tools and request.tool_choice.mode is not ToolMode.NONE:
            async for chunk in self._tool_turn(request):
                yield chunk
            return
        job = self._job(request, request.messages, request.json_schema)
        async with aclosing(self._worker.generate(job)) as frames:
            async for frame in frames:
                if frame["op"] == "text":
                    yield Chunk(text=frame["text"])
                else:
                    yield Chunk(usage=self._usage(frame), finish_reason=str(frame["finish"]))
                    return

    async def _tool_turn(self, request: Request) -> AsyncGenerator[Chunk, None]:
        """One turn of a conversation with tools: a JSON answer under the tools' grammar, read back."""
        messages = prompt_messages(request.messages, request.tools, request.tool_choice)
        schema = json.dumps(answer_schema(request.tools, request.tool_choice))
        parts: list[str] = []
        async with aclosing(self._worker.generate(self._job(request, messages, schema))) as frames:
            async for frame in frames:
                if frame["op"] == "text":
                    parts.append(frame["text"])
                    continue
                text, calls = parse_answer("".join(parts), f"call_{secrets.token_hex(12)}")
                if text:
                    yield Chunk(text=text)
                if calls:
                    yield Chunk(tool_calls=call_deltas(calls))
                finish = "tool_calls" if calls else str(frame["finish"])
                yield Chunk(usage=self._usage(frame), finish_reason=finish)
                return

    def _job(self, request: Request, messages: list[Message], json_schema: str) -> Frame:
        return {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": request.max_output_tokens or self._config.max_output_tokens,
            "temperature": request.temperature,
            "json_schema": json_schema or None,
            "stop": request.stop,
            "top_p": request.top_p,
            "seed": request.seed,
        }

    def _usage(self, done: Frame) -> Usage:
        input_tokens, output_tokens = int(done["input_tokens"]), int(done["output_tokens"])
        cost = input_tokens * self._price_in + output_tokens * self._price_out
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost)

    async def aclose(self) -> None:
        """Stops the worker; queued and running requests fail."""
        await self._worker.aclose()


def _model_path(configured: str | None) -> Path:
    if configured is None:
        raise LocalModelError("a llama_cpp model needs `path` (a GGUF file, or `embedded`)")
    if configured == EMBEDDED:
        try:
            return embedded_model.ensure()
        except embedded_model.EmbeddedModelError as exc:
            raise LocalModelError(str(exc)) from exc
    return Path(configured).expanduser()


def _check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except FileNotFoundError:
        raise LocalModelError(f"model file not found: {path}") from None
    except OSError as exc:
        raise LocalModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    if magic != GGUF_MAGIC:
        raise LocalModelError(f"{path} is not a GGUF model file")
