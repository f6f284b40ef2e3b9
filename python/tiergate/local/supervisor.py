"""The sidecar's side of an on-device model: its worker process, started, watched and restarted.

llama.cpp is native code, and native code can crash the process that loads it (on Intel CPUs with AMX, a
native build of it crashed in the first decode of a Q4_K model). So the model never runs in the sidecar:
each on-device model has a worker process (`tiergate.local.worker`) that `WorkerProcess` starts and talks
to over a socket pair (`tiergate.local.protocol`). When the worker dies — a segfault, SIGKILL, the OOM
killer, an exception — the sidecar goes on serving:

* every job it was running or queueing fails at once with `LocalWorkerCrashed`, a retryable provider error,
  so dispatch records it on the model's breaker and moves on to the next model of the chain (a restricted
  request has no other model: it fails closed, with the crash and the restart in its error);
* new jobs fail with `LocalWorkerDown` until the worker is back;
* the worker is started again after a back-off: 0.1 s, doubling per start that did not serve a single job,
  up to 30 s (a model that crashes on every load, or a file that cannot load, is retried but not hammered).

The worker exits when the sidecar closes its socket (shutdown) or dies (end of file, and the kernel's
parent-death signal), so no worker outlives its sidecar. The model file is memory-mapped: a restarted worker
maps the same pages from the page cache instead of reading the file again.

The job queue is bounded here, before a job is sent: `queue_size` jobs waiting (besides the one running)
make the next `LocalQueueFull` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tiergate.local import protocol
from tiergate.local.protocol import Frame
from tiergate.providers.base import (
    LocalQueueFull,
    LocalWorkerCrashed,
    LocalWorkerDown,
    ProviderError,
    error_of_kind,
)

logger = logging.getLogger(__name__)

EWMA_ALPHA = 0.2  # weight of the newest job in the moving averages
FIRST_RESTART_S = 0.1
MAX_RESTART_S = 30.0
LOAD_TIMEOUT_S = 300.0  # a worker that neither loads nor fails in this long is killed and started again
STOP_TIMEOUT_S = 5.0  # after closing its socket, how long a worker has to exit before SIGKILL
_STDERR_LINES = 20  # the worker's last lines of stderr, quoted when it dies
_DIED = "the worker process died"


class WorkerStatus(enum.StrEnum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"  # died or failed to load; a restart is scheduled
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LocalState:
    """A snapshot of one local model's worker, load and speed, for the router, status and metrics."""

    queue_depth: int  # jobs waiting for the worker
    in_flight: int  # jobs being generated (0 or 1)
    tokens_per_s: float  # EWMA decode speed after the first token; 0.0 until measured
    ttft_ms: float  # EWMA time from a job's start (not its queueing) to its first token; 0.0 until measured
    samples: int  # jobs the averages are built from
    jobs_started: int
    jobs_cancelled: int  # stopped mid-generation
    jobs_dropped: int  # cancelled while queued, never run
    tokens_generated: int
    worker: WorkerStatus
    worker_pid: int  # 0 when no worker runs
    restarts: int  # worker starts after the first
    crashes: int  # worker deaths the sidecar did not ask for
    last_error: str  # why the worker last died or failed to load; "" if it never did

    @property
    def jobs_ahead(self) -> int:
        """How many jobs a request submitted now would wait behind."""
        return self.queue_depth + self.in_flight

    @property
    def worker_up(self) -> bool:
        return self.worker is WorkerStatus.UP


class _Job:
    __slots__ = ("events", "started")

    def __init__(self) -> None:
        self.events: asyncio.Queue[Frame | ProviderError] = asyncio.Queue()
        self.started = False


class WorkerProcess:
    """One on-device model's worker process. Create, then `await start()`; `aclose()` when done.

    Args:
        name: the model's name in the config (for logs and errors).
        path: the GGUF file.
        n_ctx: the context window to load it with.
        threads: llama.cpp's threads.
        queue_size: jobs that may wait besides the running one.
        kind: what the worker serves: "chat" (llama.cpp) or "embedding" (onnxruntime; `worker/embedding.py`).
        load: more fields of the `load` frame the kind needs (an embedding model's tokenizer, its sha256).
    """

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        n_ctx: int,
        threads: int,
        queue_size: int,
        kind: str = "chat",
        load: Mapping[str, str | int] | None = None,
    ) -> None:
        self.name = name
        self._load: Frame = {
            **(load or {}),
            "op": "load",
            "kind": kind,
            "path": str(path),
            "n_ctx": n_ctx,
            "threads": threads,
        }
        self._queue_size = queue_size
        self._status = WorkerStatus.STARTING
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._jobs: dict[int, _Job] = {}
        self._counts: dict[int, asyncio.Future[int]] = {}
        self._ids = itertools.count(1)
        # The job the worker said it started, until it says the job ended (a cancelled job runs on to its
        # next token or prompt batch: the worker is busy until then).
        self._running: int | None = None
        self._first_outcome = asyncio.Event()
        self._closing = asyncio.Event()
        self._life: asyncio.Task[None] | None = None
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._served_since_start = False
        self._next_start_at = 0.0
        self.prompt_format = ""  # what the worker reported: "chat_template" or "instruction"
        self.system_info = ""
        self.dimensions = 0  # an embedding worker's vector size, as it reported it
        # statistics
        self._tokens_per_s = 0.0
        self._ttft_ms = 0.0
        self._samples = 0
        self._started_jobs = 0
        self._cancelled = 0
        self._dropped = 0
        self._tokens = 0
        self._restarts = 0
        self._crashes = 0
        self._last_error = ""

    async def start(self) -> None:
        """Starts the worker and waits until it serves or fails to load (the sidecar serves either way)."""
        self._life = asyncio.create_task(self._supervise(), name=f"tiergate-local-{self.name}")
        await self._first_outcome.wait()

    def state(self) -> LocalState:
        return LocalState(
            queue_depth=self._queued(),
            in_flight=int(self._running is not None),
            tokens_per_s=self._tokens_per_s,
            ttft_ms=self._ttft_ms,
            samples=self._samples,
            jobs_started=self._started_jobs,
            jobs_cancelled=self._cancelled,
            jobs_dropped=self._dropped,
            tokens_generated=self._tokens,
            worker=self._status,
            worker_pid=self._process.pid
            if self._process is not None and self._status is WorkerStatus.UP
            else 0,
            restarts=self._restarts,
            crashes=self._crashes,
            last_error=self._last_error,
        )

    # -- jobs --------------------------------------------------------------------------------------------

    async def generate(self, job: Frame) -> AsyncGenerator[Frame, None]:
        """Runs one job: yields its `text` frames, then its `done` frame.

        Raises LocalWorkerDown when no worker serves, LocalQueueFull when `queue_size` jobs wait already,
        the job's own ProviderError (BadRequest, RequestTooLarge, ...), or LocalWorkerCrashed when the worker
        dies meanwhile. Closing the generator cancels the job: dropped if queued, stopped at its next token
        if running.
        """
        writer = self._serving()
        if self._queued() >= self._queue_size:
            raise LocalQueueFull(f"local queue is full ({self._queue_size} waiting)")
        job_id = next(self._ids)
        pending = self._jobs[job_id] = _Job()
        writer.write(protocol.encode({**job, "op": "job", "id": job_id}))
        finished = False
        try:
            while True:
                event = await pending.events.get()
                finished = isinstance(event, ProviderError) or event["op"] == "done"
                if isinstance(event, ProviderError):
                    raise event
                yield event
                if finished:
                    return
        finally:
            if self._jobs.pop(job_id, None) is not None and not finished:
                if pending.started:
                    self._cancelled += 1
                else:
                    self._dropped += 1
                if self._writer is writer and not writer.is_closing():
                    writer.write(protocol.encode({"op": "cancel", "id": job_id}))

    def _queued(self) -> int:
        """Jobs sent and not yet started by the worker (at most queue_size + 1: a short scan)."""
        return sum(not job.started for job in self._jobs.values())

    async def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in the model's own vocabulary (no BOS, no prompt formatting)."""
        writer = self._serving()
        count_id = next(self._ids)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._counts[count_id] = future
        writer.write(protocol.encode({"op": "count", "id": count_id, "text": text}))
        try:
            return await future
        finally:
            self._counts.pop(count_id, None)

    def _serving(self) -> asyncio.StreamWriter:
        if self._status is WorkerStatus.UP and self._writer is not None and not self._writer.is_closing():
            return self._writer
        raise LocalWorkerDown(self._why_not_serving())

    def _why_not_serving(self) -> str:
        if self._status is WorkerStatus.CLOSED:
            return f"local model {self.name!r} is shut down"
        if self._status is WorkerStatus.STARTING and not self._last_error:
            return f"the worker process of local model {self.name!r} is starting"
        why = f"the worker process of local model {self.name!r} is not serving ({self._last_error})"
        if self._status is WorkerStatus.STARTING:
            return f"{why}; restart {self._restarts} is loading the model"
        wait = max(self._next_start_at - time.monotonic(), 0.0)
        return f"{why}; restart {self._restarts + 1} in {wait:.1f} s"

    # -- the worker's life ---------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = FIRST_RESTART_S / 2
        try:
            while True:
                self._status = WorkerStatus.STARTING
                self._served_since_start = False
                reason = await self._run_once()
                if self._status is WorkerStatus.CLOSED:
                    return
                self._status = WorkerStatus.DOWN
                self._last_error = reason
                self._first_outcome.set()
                # A worker that served at least one job restarts at once; one that did not backs off.
                delay = FIRST_RESTART_S if self._served_since_start else min(delay * 2, MAX_RESTART_S)
                self._next_start_at = time.monotonic() + delay
                logger.error("local model %r: %s; starting it again in %.1f s", self.name, reason, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)  # the back-off, cut short by aclose
                if self._status is WorkerStatus.CLOSED:
                    return
                self._restarts += 1
        finally:
            self._first_outcome.set()

    async def _run_once(self) -> str:
        """Starts one worker and serves through it until it dies: why it died (or failed to load)."""
        parent_end, child_end = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tiergate.local.worker",
                "--fd",
                str(child_end.fileno()),
                "--parent",
                str(os.getpid()),
                pass_fds=(child_end.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            parent_end.close()
            return f"the worker process could not be started: {exc.strerror}"
        finally:
            child_end.close()
        self._process = process
        stderr = asyncio.create_task(self._forward_stderr(process))
        reader, writer = await asyncio.open_unix_connection(sock=parent_end)
        self._writer = writer
        try:
            writer.write(protocol.encode(self._load))
            reason = await self._handshake(reader)
            if reason is None:
                self._status = WorkerStatus.UP
                self._first_outcome.set()
                reason = await self._serve(reader)
                if self._status is WorkerStatus.UP:
                    # At once: no new job is sent to a dead worker. How it died is known once it is reaped.
                    self._status, self._last_error = WorkerStatus.DOWN, reason
            return await self._ended(process, reason)
        finally:
            self._writer = None
            writer.close()  # a worker still running reads end of file and exits
            self._fail_all(process)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:  # it does not: busy in native code, or hung
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            await stderr

    async def _handshake(self, reader: asyncio.StreamReader) -> str | None:
        """None when the worker loaded its model; else why it did not."""
        try:
            frame = await asyncio.wait_for(_read(reader), LOAD_TIMEOUT_S)
        except TimeoutError:
            return f"the worker did not load the model within {LOAD_TIMEOUT_S:.0f} s"
        if frame is None:
            return f"{_DIED} while loading the model"
        if frame["op"] == "load_failed":
            return str(frame["message"])
        if frame["op"] != "ready":
            return f"the worker answered {frame['op']!r} instead of ready"
        self.prompt_format = str(frame["format"])
        self.system_info = str(frame["system_info"])
        self.dimensions = int(frame.get("dimensions", 0))
        if "AMX" in self.system_info and "AMX_INT8 = 1" in self.system_info:
            logger.warning(
                "local model %r: this llama.cpp build uses Intel AMX, which has crashed on Q4_K models; "
                "tools/llama-cpp-wheel.sh builds it without (a crash is contained and restarted)",
                self.name,
            )
        return None

    async def _serve(self, reader: asyncio.StreamReader) -> str:
        """Routes the worker's frames to their jobs until its socket closes: why it closed."""
        try:
            while (frame := await _read(reader)) is not None:
                self._route(frame)
        except (protocol.ProtocolError, KeyError, TypeError, ValueError) as exc:
            return f"the worker broke the protocol: {exc}"
        except OSError as exc:
            return f"the connection to the worker failed: {exc.strerror or exc}"
        return _DIED

    async def _ended(self, process: asyncio.subprocess.Process, reason: str) -> str:
        """The reason, completed with how the process ended when it died on its own (a signal, a status)."""
        if self._status is WorkerStatus.CLOSED or not reason.startswith(_DIED):
            return reason  # shut down, or it said why (load_failed) or broke the protocol
        self._crashes += 1
        try:
            code = await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:  # it closed its socket but lives on: the caller kills it
            return reason
        if code < 0:
            try:
                return f"{reason} ({signal.Signals(-code).name})"
            except ValueError:
                return f"{reason} (signal {-code})"
        last = self._stderr[-1] if self._stderr else ""
        return f"{reason} (exit status {code}{': ' + last if last else ''})"

    def _route(self, frame: Frame) -> None:
        op = frame["op"]
        if op == "counted":
            future = self._counts.get(frame["id"])
            if future is not None and not future.done():
                future.set_result(int(frame["tokens"]))
            return
        job = self._jobs.get(frame["id"])
        if op == "start":
            self._running = frame["id"]
            self._started_jobs += 1
            if job is not None:
                job.started = True
            return
        if op in ("done", "error") and self._running == frame["id"]:
            self._running = None
        if op == "done":
            self._served_since_start = True
            self._observe(frame)
        elif op == "error":
            self._tokens += int(frame.get("output_tokens", 0))  # a cancelled job's tokens
        if job is None:
            return  # cancelled: nobody reads it
        if op == "error":
            job.events.put_nowait(error_of_kind(str(frame["kind"]), str(frame["message"])))
        elif op in ("text", "done"):
            job.events.put_nowait(frame)
        else:
            raise protocol.ProtocolError(f"unknown op {op!r}")

    def _fail_all(self, process: asyncio.subprocess.Process) -> None:
        """Fails every job and count in flight on a worker that is gone."""
        self._running = None
        jobs, self._jobs = self._jobs, {}
        counts, self._counts = self._counts, {}
        if self._status is WorkerStatus.CLOSED:
            error: ProviderError = LocalWorkerDown(f"local model {self.name!r} shut down")
        else:
            error = LocalWorkerCrashed(
                f"the worker process of local model {self.name!r} (pid {process.pid}) died during this "
                "request; it is being restarted"
            )
        for job in jobs.values():
            job.events.put_nowait(error)
        for future in counts.values():
            if not future.done():
                future.set_exception(error)

    async def _forward_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            text = line.decode("utf-8", errors="replace").rstrip()
            if text:
                self._stderr.append(text)
                logger.warning("local model %r worker: %s", self.name, text)

    def _observe(self, done: Frame) -> None:
        produced = int(done["output_tokens"])
        self._tokens += produced
        ttft_ms = float(done["ttft_ms"])
        if not ttft_ms:
            return
        first = self._samples == 0
        self._ttft_ms = ttft_ms if first else self._ttft_ms + EWMA_ALPHA * (ttft_ms - self._ttft_ms)
        rate = float(done["tokens_per_s"])
        if rate > 0:
            self._tokens_per_s = (
                rate
                if self._tokens_per_s == 0.0
                else self._tokens_per_s + EWMA_ALPHA * (rate - self._tokens_per_s)
            )
        self._samples += 1

    async def aclose(self) -> None:
        """Stops the worker (it exits on its socket's end of file; SIGKILL if it lingers) and fails what is
        in flight. Idempotent."""
        if self._status is WorkerStatus.CLOSED:
            return
        self._status = WorkerStatus.CLOSED
        self._closing.set()
        if self._writer is not None:
            self._writer.close()
        life = self._life
        if life is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(life), STOP_TIMEOUT_S + 5)
        except TimeoutError:
            life.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await life


async def _read(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, or None at end of file."""
    try:
        header = await reader.readexactly(protocol.HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    try:
        body = await reader.readexactly(protocol.body_length(header))
    except asyncio.IncompleteReadError:
        return None
    return protocol.decode(body)
