"""The one thread that owns a local model, and the bounded queue of jobs waiting for it.

A llama.cpp context is not safe for concurrent use, so every evaluation and every sampling step runs on
this thread. Jobs come from the event loop (`submit`); the worker streams each job's events back to the
job's own event loop with `loop.call_soon_threadsafe` into an `asyncio.Queue`, so the consumer awaits and
never polls.

Cancellation (`cancel`) is cooperative and cheap. A queued job is taken out of the queue and never runs. A
running job has its flag set, which the worker reads after every token; it then stops, frees the model, and
starts the next job at once.

Every job that starts ends with exactly one terminal event: `JobDone`, or a `ProviderError` (a consumer that
cancelled simply never reads it).

The only model calls made off this thread are tokenizations (`count_tokens`). They read the vocabulary and
never touch the context, as llama.cpp's own server does from its HTTP threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import llama_cpp
import numpy as np

from tiergate.providers.base import (
    BadRequest,
    LocalQueueFull,
    ProviderConnectionError,
    ProviderError,
    RequestTooLarge,
    ServerError,
)
from tiergate.providers.local_prompt import AnswerText, Prompt
from tiergate.providers.local_sampling import Sampling, TokenSampler

logger = logging.getLogger(__name__)

EWMA_ALPHA = 0.2  # weight of the newest job in the moving averages


@dataclass(frozen=True, slots=True)
class LocalState:
    """A snapshot of one local model's load and speed, for the router."""

    queue_depth: int  # jobs waiting for the worker
    in_flight: int  # jobs being generated (0 or 1)
    tokens_per_s: float  # EWMA decode speed after the first token; 0.0 until measured
    ttft_ms: float  # EWMA time from a job's start (not its queueing) to its first token; 0.0 until measured
    samples: int  # jobs the averages are built from
    jobs_started: int
    jobs_cancelled: int  # stopped mid-generation
    jobs_dropped: int  # cancelled while queued, never run
    tokens_generated: int

    @property
    def jobs_ahead(self) -> int:
        """How many jobs a request submitted now would wait behind."""
        return self.queue_depth + self.in_flight


@dataclass(frozen=True, slots=True)
class JobDone:
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" or "length"


JobEvent = str | JobDone | ProviderError


class Job:
    """One generation request. Created and consumed on an event loop; run on the worker thread."""

    __slots__ = ("cancelled", "events", "loop", "max_tokens", "prompt", "sampling")

    def __init__(self, prompt: Prompt, sampling: Sampling, max_tokens: int) -> None:
        self.prompt = prompt
        self.sampling = sampling
        self.max_tokens = max_tokens
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[JobEvent] = asyncio.Queue()
        self.cancelled = False  # written by the event loop, read by the worker between tokens


class LocalWorker:
    """Runs jobs one at a time on a dedicated thread. Owns `llm` from construction on, and closes it."""

    def __init__(self, llm: llama_cpp.Llama, *, queue_size: int, name: str) -> None:
        self._llm = llm
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._n_ctx = llm.n_ctx()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._running: Job | None = None
        self._closing = False
        self._closed = False  # the model is freed; guarded by _model_lock
        self._model_lock = threading.Lock()  # tokenizations off the worker vs freeing the model
        # statistics, guarded by _cond
        self._tokens_per_s = 0.0
        self._ttft_ms = 0.0
        self._samples = 0
        self._started = 0
        self._cancelled = 0
        self._dropped = 0
        self._tokens = 0
        self._thread = threading.Thread(target=self._serve, name=f"tiergate-local-{name}", daemon=True)
        self._thread.start()

    # -- event loop side -------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queues a job. Raises LocalQueueFull at once when `queue_size` jobs are already waiting."""
        with self._cond:
            if self._closing:
                raise ProviderConnectionError("the local model is shut down")
            if len(self._pending) >= self._queue_size:
                raise LocalQueueFull(f"local queue is full ({self._queue_size} waiting)")
            self._pending.append(job)
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        """Drops a queued job, or stops a running one at its next token. No-op for a finished job."""
        with self._cond:
            try:
                self._pending.remove(job)
            except ValueError:
                job.cancelled = True
            else:
                self._dropped += 1

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` (no BOS). Callable from any thread: it reads only the vocabulary."""
        with self._model_lock:
            if self._closed:
                raise ProviderConnectionError("the local model is shut down")
            return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def state(self) -> LocalState:
        with self._cond:
            return LocalState(
                queue_depth=len(self._pending),
                in_flight=0 if self._running is None else 1,
                tokens_per_s=self._tokens_per_s,
                ttft_ms=self._ttft_ms,
                samples=self._samples,
                jobs_started=self._started,
                jobs_cancelled=self._cancelled,
                jobs_dropped=self._dropped,
                tokens_generated=self._tokens,
            )

    def close(self) -> None:
        """Fails queued jobs, stops the running one, joins the thread, frees the model. Blocks; idempotent."""
        with self._cond:
            already = self._closing
            self._closing = True
            abandoned = list(self._pending)
            self._pending.clear()
            if self._running is not None:
                self._running.cancelled = True
            self._cond.notify_all()
        for job in abandoned:
            _send(job, ProviderConnectionError("the local model shut down before this request started"))
        if already:
            return
        self._thread.join()
        with self._model_lock:
            self._closed = True
            self._llm.close()

    # -- worker thread ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                job = self._pending.popleft()
                self._running = job
                self._started += 1
            result: JobDone | ProviderError
            try:
                result = self._run(job)
            except ProviderError as exc:
                result = exc
            except Exception as exc:
                # Anything else is a bug or an engine failure: the consumer must hear of it, not hang.
                logger.exception("local generation failed")
                result = ServerError(f"local generation failed: {type(exc).__name__}: {exc}")
                result.__cause__ = exc
            with self._cond:
                self._running = None  # before the terminal event: whoever reads it sees the worker free
            _send(job, result)

    def _run(self, job: Job) -> JobDone | ProviderError:
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
                return self._stopped(job)
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
                    _send(job, piece)
                    if not sent_any:
                        sent_any = True
                        _let_the_event_loop_run()
                if text.stopped:
                    finish = "stop"
                    break
                if job.cancelled:
                    return self._stopped(job)
                if produced >= limit:
                    break
                llm.eval([token])
        except BaseException:
            llm.n_tokens = 0  # the KV cache may not match input_ids any more: the next job starts clean
            raise
        finally:
            sampler.close()
            self._observe(started, first_at, last_at, produced)
        tail = text.finish()
        if tail:
            _send(job, tail)
        return JobDone(input_tokens=len(tokens), output_tokens=produced, finish_reason=finish)

    def _stopped(self, job: Job) -> ProviderError:
        with self._cond:
            self._cancelled += 1
        return ProviderConnectionError("local generation was cancelled")

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

    def _observe(self, started: float, first_at: float, last_at: float, produced: int) -> None:
        if not first_at:
            return
        ttft_ms = (first_at - started) * 1000.0
        with self._cond:
            self._tokens += produced
            first = self._samples == 0
            self._ttft_ms = ttft_ms if first else self._ttft_ms + EWMA_ALPHA * (ttft_ms - self._ttft_ms)
            if produced > 1 and last_at > first_at:
                rate = (produced - 1) / (last_at - first_at)
                if self._tokens_per_s == 0.0:
                    self._tokens_per_s = rate
                else:
                    self._tokens_per_s += EWMA_ALPHA * (rate - self._tokens_per_s)
            self._samples += 1


def _let_the_event_loop_run() -> None:
    """Gives up the CPU once, right after the first text was sent.

    The next decode would start at once and keep llama.cpp's threads spinning on every core, so the event
    loop had to wait for a time slice to take the first token: 2.8 ms median (p75 7-10 ms) on the 2-core
    machine under load, against 0.2-0.6 ms (p75 1-5 ms) with this yield. Later tokens do not need it:
    their delay costs no throughput, while the first one is what TTFT deadlines and hedging wait for.
    """
    if sys.platform != "win32":
        os.sched_yield()


def _send(job: Job, event: JobEvent) -> None:
    try:
        job.loop.call_soon_threadsafe(job.events.put_nowait, event)
    except RuntimeError:
        # The consumer's event loop is closed: nobody can read this job's output any more.
        job.cancelled = True
