"""The one thread that owns a local model inside its worker process, and the queue of jobs waiting for it.

A llama.cpp context is not safe for concurrent use, so every evaluation and every sampling step runs on
one thread: the worker's main thread, which calls `serve`. Jobs arrive from the worker's socket reader
(`submit`); the engine reports each job's progress through `emit`, which writes protocol frames
(`tiergate.local.protocol`): `start` when the job leaves the queue, `text` per piece of answer, then exactly
one `done` or `error`.

The queue itself is not bounded here: the sidecar bounds it (`queue_size`) before it sends a job.

Cancellation (`cancel`) is cooperative and cheap. A queued job is taken out of the queue and never runs. A
running job has its flag set, which the engine reads after every token; it then stops and starts the next
job at once.

The only model calls made off this thread are tokenizations (`count_tokens`). They read the vocabulary and
never touch the context, as llama.cpp's own server does from its HTTP threads.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

import llama_cpp
import numpy as np

from tiergate.local.protocol import Frame
from tiergate.local.worker.prompt import AnswerText, Prompt
from tiergate.local.worker.sampling import Sampling, TokenSampler
from tiergate.providers.base import BadRequest, ProviderError, RequestTooLarge, ServerError

logger = logging.getLogger(__name__)

Emit = Callable[[Frame], None]


class Cancelled(Exception):
    """The job was cancelled while it ran, after `produced` tokens."""

    def __init__(self, produced: int) -> None:
        super().__init__("cancelled")
        self.produced = produced


class Job:
    """One generation request, run on the engine thread."""

    __slots__ = ("cancelled", "id", "max_tokens", "prompt", "sampling")

    def __init__(self, job_id: int, prompt: Prompt, sampling: Sampling, max_tokens: int) -> None:
        self.id = job_id
        self.prompt = prompt
        self.sampling = sampling
        self.max_tokens = max_tokens
        self.cancelled = False  # written by the socket reader, read by the engine between tokens


class Engine:
    """Runs jobs one at a time on the thread that calls `serve` (the worker's main thread). Owns `llm`.

    Why the main thread: llama.cpp's OpenMP compute team belongs to the thread that calls into it, and on
    the Intel machine this was measured on, decoding from a second thread took 33 ms per token against
    20 ms from the thread that loaded the model (Gemma 3 270M, 2 threads, the same process and run).
    """

    def __init__(self, llm: llama_cpp.Llama, emit: Emit) -> None:
        self._llm = llm
        self._emit = emit
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._n_ctx = llm.n_ctx()
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._jobs: dict[int, Job] = {}  # queued or running, by id
        self._closing = False

    # -- the socket reader's side ------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._cond:
            self._pending.append(job)
            self._jobs[job.id] = job
            self._cond.notify()

    def cancel(self, job_id: int) -> None:
        """Drops a queued job, or stops a running one at its next token. No-op for a finished job."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.cancelled = True
            try:
                self._pending.remove(job)
            except ValueError:
                return  # running: it stops at its next token
            del self._jobs[job_id]

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` (no BOS). Callable from any thread: it reads only the vocabulary."""
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        """Stops the running job; `serve` returns after it. The model is freed with the process."""
        with self._cond:
            self._closing = True
            for job in self._jobs.values():
                job.cancelled = True
            self._cond.notify_all()

    # -- the engine's thread ---------------------------------------------------------------------------

    def serve(self) -> None:
        """Runs jobs as they come, until `close`."""
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                job = self._pending.popleft()
            self._emit({"op": "start", "id": job.id})
            try:
                done = self._run(job)
            except Cancelled as exc:
                done = {
                    "op": "error",
                    "id": job.id,
                    "kind": "cancelled",
                    "message": "cancelled",
                    "output_tokens": exc.produced,
                }
            except ProviderError as exc:
                done = {"op": "error", "id": job.id, "kind": exc.kind, "message": str(exc)}
            except Exception as exc:
                # Anything else is a bug or an engine failure: the sidecar must hear of it, not hang.
                logger.exception("local generation failed")
                failure = ServerError(f"local generation failed: {type(exc).__name__}: {exc}")
                done = {"op": "error", "id": job.id, "kind": failure.kind, "message": str(failure)}
            with self._cond:
                self._jobs.pop(job.id, None)
            self._emit(done)

    def _run(self, job: Job) -> Frame:
        llm = self._llm
        started = time.perf_counter()
        prompt = job.prompt
        tokens = llm.tokenize(prompt.text.encode("utf-8"), add_bos=prompt.add_bos, special=prompt.special)
        if not tokens:
            raise BadRequest("the prompt is empty")
        room = self._n_ctx - len(tokens)
        if room < 1:
            raise RequestTooLarge(f"the prompt is {len(tokens)} tokens; the context window is {self._n_ctx}")
        limit = min(job.max_tokens, room)
        sampler = TokenSampler(llm.model, llm.ctx, job.sampling)
        text = AnswerText(prompt.stops, strip_leading=not prompt.continues)
        produced = 0
        sent_any = False
        first_at = last_at = 0.0
        finish = "length"
        try:
            if not self._evaluate_prompt(tokens, job):
                raise Cancelled(0)
            while True:
                token = sampler.sample()
                last_at = time.perf_counter()
                if produced == 0:
                    first_at = last_at
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                produced += 1
                piece = text.feed(llm.detokenize([token]))
                if piece:
                    self._emit({"op": "text", "id": job.id, "text": piece})
                    if not sent_any:
                        sent_any = True
                        _let_the_sidecar_run()
                if text.stopped:
                    finish = "stop"
                    break
                if job.cancelled:
                    raise Cancelled(produced)
                if produced >= limit:
                    break
                llm.eval([token])
        except BaseException:
            llm.n_tokens = 0  # the KV cache may not match input_ids any more: the next job starts clean
            raise
        finally:
            sampler.close()
        tail = text.finish()
        if tail:
            self._emit({"op": "text", "id": job.id, "text": tail})
        return {
            "op": "done",
            "id": job.id,
            "input_tokens": len(tokens),
            "output_tokens": produced,
            "finish": finish,
            "ttft_ms": (first_at - started) * 1000.0 if first_at else 0.0,
            "tokens_per_s": (produced - 1) / (last_at - first_at)
            if produced > 1 and last_at > first_at
            else 0.0,
        }

    def _evaluate_prompt(self, tokens: list[int], job: Job) -> bool:
        """Evaluates the prompt, reusing the KV cache for the prefix it shares with the previous job.

        Goes batch by batch (as `eval` would) so that a cancelled job stops between batches; false then.
        """
        llm = self._llm
        previous = llm.input_ids[: llm.n_tokens]
        shared = min(len(previous), len(tokens) - 1)  # at least one token is evaluated, for fresh logits
        if shared > 0:
            differs = np.flatnonzero(previous[:shared] != np.asarray(tokens[:shared], dtype=previous.dtype))
            shared = int(differs[0]) if differs.size else shared
        memory = llama_cpp.llama_get_memory(llm.ctx)
        if shared > 0 and llama_cpp.llama_memory_seq_rm(memory, -1, shared, -1):
            llm.n_tokens = shared
        else:
            shared = 0
            llm.n_tokens = 0  # eval() clears the KV cache from n_tokens on
        for start in range(shared, len(tokens), llm.n_batch):
            if job.cancelled:
                return False
            llm.eval(tokens[start : start + llm.n_batch])
        return True


def _let_the_sidecar_run() -> None:
    """Gives up the CPU once, right after the first text was sent.

    The next decode would start at once and keep llama.cpp's threads spinning on every core, so the
    sidecar's event loop had to wait for a time slice to take the first token: 2.8 ms median (p75 7-10 ms)
    on the 2-core machine under load, against 0.2-0.6 ms (p75 1-5 ms) with this yield (measured when the
    model ran in the sidecar's process; the sidecar still shares the cores with this one). Later tokens do
    not need it: their delay costs no throughput, while the first one is what TTFT deadlines and hedging
    wait for.
    """
    if sys.platform != "win32":
        os.sched_yield()
