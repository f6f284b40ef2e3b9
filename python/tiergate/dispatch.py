"""Executes a Plan: attempts under their time limits, the TTFT guardrail, hedging, retries, cancellation.

One `Run` per request. It starts attempts from the plan's candidates in order and races them:

- an attempt with no first token within the route's `ttft_ms` is cancelled (its HTTP stream closed, its local
  generation stopped) and the next candidate starts;
- with `hedge_after_ms`, the next candidate starts in parallel when the running one has produced nothing by
  then; the first to produce a token wins and the other is cancelled;
- a retryable error retries the same model after a jittered backoff that honours `retry-after`, but only while
  the deadline allows; a non-retryable error moves straight to the next model;
- every outcome is recorded in the model's circuit breaker; a breaker that refuses permission skips its model.

Unary requests may fall back even after the first token (the client has seen nothing yet). A stream that fails
after text reached the client ends with `StreamInterrupted`: it is never silently restarted on another model.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from tiergate._native import CircuitBreaker, count_tokens
from tiergate.content import AnswerBuilder, call_deltas
from tiergate.errors import (
    AllAttemptsFailed,
    DeadlineExceeded,
    LimitExceeded,
    StreamInterrupted,
    TiergateError,
)
from tiergate.model_stats import ModelStats
from tiergate.providers.base import (
    AuthenticationError,
    ChunkStream,
    LocalQueueFull,
    LocalWorkerDown,
    PermissionDenied,
    Provider,
    ProviderConnectionError,
    ProviderError,
    RateLimited,
    RetryableError,
)
from tiergate.relay import RelaySink
from tiergate.request import Attempt, Chunk, Completion, Decision, Outcome, Request, Skip, Usage
from tiergate.routing import Candidate, Plan, estimate_cost
from tiergate.stream_deadline import StreamDeadline
from tiergate.validation import AnswerValidator, answer_validator

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0
# Without a deadline, a retry-after longer than this moves on to the next model instead of waiting.
MAX_RETRY_AFTER_S = 10.0
# What counts as a breaker failure: retryable errors, and the non-retryable ones that say the model (its
# config) is broken rather than the request. Other non-retryable errors (bad request, content policy) are the
# request's fault and tell nothing about the model's health.
_BREAKER_FAILURES = (RetryableError, AuthenticationError, PermissionDenied)
# ...except a local model whose worker process is restarting: the request never reached the model, and the
# crash that took the worker down was recorded once already (LocalWorkerCrashed). Counting every request
# refused meanwhile would hold the breaker open long after the worker is back.
_NOT_OBSERVED = (LocalWorkerDown,)


@dataclass(slots=True)
class _Queued:
    candidate: Candidate
    tries: int = 0  # attempts already made on this model
    not_before: float = 0.0


@dataclass(slots=True)
class _Live:
    """A running attempt."""

    queued: _Queued
    started: float
    hedged: bool
    stream: ChunkStream | None = None
    first: Chunk | None = None
    first_at: float = 0.0
    whole: bool = False  # a non-streamed answer: it arrived at once (first_at is its end)


@dataclass(slots=True)
class _Busy:
    """Time during which tiergate was waiting on upstreams (or backing off): not its own overhead."""

    count: int = 0
    since: float = 0.0
    total_s: float = 0.0

    def enter(self, now: float) -> None:
        if self.count == 0:
            self.since = now
        self.count += 1

    def leave(self, now: float) -> None:
        self.count -= 1
        if self.count == 0:
            self.total_s += now - self.since


@dataclass(slots=True)
class Dispatcher:
    """Shared by every request of one config: the providers, their breakers and live stats."""

    providers: Mapping[str, Provider]
    breakers: Mapping[str, CircuitBreaker]
    stats: Mapping[str, ModelStats]
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random

    def run(
        self, plan: Plan, request: Request, decision: Decision, deadline: float | None, input_tokens: int = 0
    ) -> Run:
        return Run(self, plan, request, decision, deadline, input_tokens)


@dataclass
class Run:
    """One request's dispatch. `deadline` is on the dispatcher's clock (None: unbounded)."""

    dispatcher: Dispatcher
    plan: Plan
    request: Request
    decision: Decision
    deadline: float | None
    input_tokens: int = 0  # the analysis' count: the estimate when a stream ends without usage
    busy: _Busy = field(default_factory=_Busy)
    validator: AnswerValidator | None = field(init=False, default=None)
    _queue_full: int = field(init=False, default=0)  # attempts refused by a full on-device queue
    _queue: deque[_Queued] = field(init=False)
    _active: dict[asyncio.Task[Chunk], _Live] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._queue = deque(_Queued(c) for c in self.plan.candidates)
        if self.plan.route.validate_ == "json_schema":
            self.validator = answer_validator(self.request.json_schema)
        route = self.plan.route
        total_s = route.total_ms / 1000 if route.total_ms else None
        if total_s is not None:
            own = self.dispatcher.clock() + total_s
            self.deadline = own if self.deadline is None else min(self.deadline, own)

    # -- the public entry points -------------------------------------------------------------------

    async def complete(self) -> Completion:
        """The whole answer. Falls back to the next candidate even after a first token."""
        if self.plan.route.ttft_ms is None and self.plan.route.hedge_after_ms is None:
            return await self._sequential()
        while True:
            winner = await self._race()
            built = AnswerBuilder()
            try:
                async for chunk in self._rest(winner):
                    built.add(chunk.text, chunk.refusal, chunk.tool_calls)
                    if chunk.usage is not None or chunk.finish_reason is not None:
                        answer = _completion(built, chunk)
                        accepted = self._accept(winner, answer)
                        if accepted is None:
                            break  # rejected by validation: escalate to the next candidate
                        return accepted
                else:
                    # A stream that ends without its final event is a dropped stream.
                    raise _stream_ended()
            except ProviderError as exc:
                self._failed(winner, exc)
            except asyncio.CancelledError:
                self._end(winner, Outcome.CANCELLED, None)
                raise
            except DeadlineExceeded:
                self._end(winner, Outcome.DEADLINE, None)
                raise

    async def stream(self, sink: RelaySink | None = None) -> AsyncIterator[Chunk]:
        """Chunks as they arrive; the last one carries usage and finish_reason.

        `sink`: where the winning attempt may relay its plain text deltas after the first chunk (`relay.py`);
        their text still comes through here, in chunks marked `relayed`.

        On a route that validates answers nothing can be forwarded before the whole answer passed validation:
        the answer then arrives as one chunk (and nothing is relayed).
        """
        if self.validator is not None:
            answer = await self.complete()
            yield Chunk(
                answer.text,
                answer.usage,
                answer.finish_reason,
                tool_calls=call_deltas(answer.tool_calls),
                refusal=answer.refusal,
            )
            return
        live = await self._race()
        built = AnswerBuilder()
        try:
            async for chunk in self._rest(live, sink):
                built.add(chunk.text, chunk.refusal, chunk.tool_calls)
                if chunk.usage is not None or chunk.finish_reason is not None:
                    done = _completion(built, chunk)
                    self._price(live, done)
                    self._succeed(live, done)
                    yield Chunk(
                        chunk.text,
                        done.usage,
                        done.finish_reason,
                        tool_calls=chunk.tool_calls,
                        refusal=chunk.refusal,
                    )
                    return
                yield chunk
            raise _stream_ended()
        except ProviderError as exc:
            self._end(live, Outcome.PARTIAL, exc)
            raise StreamInterrupted(
                f"model {live.queued.candidate.name!r} failed after the answer had started "
                f"({exc.kind}: {exc}); "
                "the stream is incomplete and was not restarted",
                self.decision,
            ) from None
        except asyncio.CancelledError:
            self._end(live, Outcome.CANCELLED, None)
            raise
        except DeadlineExceeded:
            self._end(live, Outcome.DEADLINE, None)
            raise

    async def _sequential(self) -> Completion:
        """No TTFT guardrail and no hedge: one whole-answer attempt at a time, awaited in this task.

        The common case, so it pays for no extra task and no asyncio.wait per attempt.
        """
        clock = self.dispatcher.clock
        while True:
            now = clock()
            if self.deadline is not None and now >= self.deadline:
                raise DeadlineExceeded(self._deadline_message(), self.decision)
            if not self._queue:
                raise self._exhausted()
            if self._queue[0].not_before > now:
                await self._backoff(self._queue[0].not_before)
                continue
            live = self._begin(self._queue.popleft(), hedged=False)
            if live is None:
                continue
            provider = self.dispatcher.providers[live.queued.candidate.name]
            try:
                if self.deadline is None:
                    completion = await provider.complete(self.request)
                else:
                    async with asyncio.timeout_at(self._loop_deadline()):
                        completion = await provider.complete(self.request)
            except ProviderError as exc:
                self._failed(live, exc)
                continue
            except TimeoutError:
                self._end(live, Outcome.DEADLINE, None)
                raise DeadlineExceeded(self._deadline_message(), self.decision) from None
            except asyncio.CancelledError:
                self._end(live, Outcome.CANCELLED, None)
                raise
            live.first_at = clock()
            live.whole = True
            accepted = self._accept(live, completion)
            if accepted is not None:
                return accepted

    # -- racing attempts until one produces a first token ------------------------------------------------

    async def _race(self) -> _Live:
        route = self.plan.route
        clock = self.dispatcher.clock
        try:
            while True:
                now = clock()
                if self.deadline is not None and now >= self.deadline:
                    self._cancel_all(Outcome.DEADLINE)
                    raise DeadlineExceeded(self._deadline_message(), self.decision)
                if not self._active:
                    if not self._queue:
                        raise self._exhausted()
                    head = self._queue[0]
                    if head.not_before > now:
                        await self._backoff(head.not_before)
                        continue
                    self._start(self._queue.popleft(), hedged=False)
                    continue
                wake = self._next_wake(now)
                timeout = None if wake is None else max(wake - now, 0.0)
                done, _ = await asyncio.wait(
                    self._active, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    winner = self._settle(task)
                    if winner is not None:
                        self._cancel_all(Outcome.HEDGE_LOST)
                        return winner
                now = clock()
                if route.ttft_ms is not None:
                    for task, live in list(self._active.items()):
                        if now - live.started >= route.ttft_ms / 1000:
                            self._cancel(task, Outcome.TTFT_TIMEOUT)
                if route.hedge_after_ms is not None and len(self._active) == 1 and self._queue:
                    (live,) = self._active.values()
                    if now - live.started >= route.hedge_after_ms / 1000 and self._queue[0].not_before <= now:
                        self._start(self._queue.popleft(), hedged=True)
        except asyncio.CancelledError:
            self._cancel_all(Outcome.CANCELLED)
            raise

    def _next_wake(self, now: float) -> float | None:
        route = self.plan.route
        wakes = [] if self.deadline is None else [self.deadline]
        for live in self._active.values():
            if route.ttft_ms is not None:
                wakes.append(live.started + route.ttft_ms / 1000)
        if route.hedge_after_ms is not None and len(self._active) == 1 and self._queue:
            (live,) = self._active.values()
            wakes.append(max(live.started + route.hedge_after_ms / 1000, self._queue[0].not_before))
        return min(wakes) if wakes else None

    def _begin(self, queued: _Queued, *, hedged: bool) -> _Live | None:
        """Asks the model's breaker for permission; an attempt that may start is counted as busy time."""
        name = queued.candidate.name
        if not self.dispatcher.breakers[name].try_acquire():
            self.decision.skipped.append(Skip(name, "circuit breaker open"))
            return None
        now = self.dispatcher.clock()
        self.busy.enter(now)
        return _Live(queued, now, hedged)

    def _start(self, queued: _Queued, *, hedged: bool) -> None:
        live = self._begin(queued, hedged=hedged)
        if live is None:
            return
        try:
            live.stream = self.dispatcher.providers[queued.candidate.name].stream(self.request)
        except ProviderError as exc:  # a provider may refuse the request before opening anything
            self._failed(live, exc)
            return
        self._active[asyncio.create_task(_first_chunk(live.stream))] = live

    def _settle(self, task: asyncio.Task[Chunk]) -> _Live | None:
        """The winner if this attempt produced its first token; None (recorded) if it failed."""
        live = self._active.pop(task)
        exc = task.exception()
        if exc is None:
            live.first_at = self.dispatcher.clock()
            live.first = task.result()
            return live
        if isinstance(exc, ProviderError):
            self._failed(live, exc)
            return None
        # Anything else is a bug in tiergate or a provider: end the attempt, then let it propagate.
        self._end(live, Outcome.ERROR, None, note=f"internal: {type(exc).__name__}")
        raise exc

    def _failed(self, live: _Live, exc: ProviderError) -> None:
        """Records a failed attempt and queues a retry of the same model when that makes sense."""
        if isinstance(exc, LocalQueueFull):
            self._queue_full += 1
        self._end(live, Outcome.ERROR, exc)
        queued = live.queued
        if not isinstance(exc, RetryableError) or queued.tries >= self.plan.route.retries:
            return
        delay = BACKOFF_BASE_S * (2**queued.tries) * self.dispatcher.jitter()
        delay = min(delay, BACKOFF_CAP_S)
        if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)
            if self.deadline is None and exc.retry_after_s > MAX_RETRY_AFTER_S:
                return
        not_before = self.dispatcher.clock() + delay
        if self.deadline is not None and not_before >= self.deadline:
            return  # no time to wait for it: move on to the next model
        queued.tries += 1
        queued.not_before = not_before
        self._queue.appendleft(queued)

    def _cancel(self, task: asyncio.Task[Chunk], outcome: Outcome) -> None:
        live = self._active.pop(task)
        # The CancelledError is thrown into the provider's generator at its pending await on the task's next
        # step, which unwinds it: the upstream HTTP stream is closed (a local generation stopped) at once.
        task.cancel()
        self._end(live, outcome, None)

    def _cancel_all(self, outcome: Outcome) -> None:
        for task in list(self._active):
            self._cancel(task, outcome)

    async def _backoff(self, until: float) -> None:
        now = self.dispatcher.clock()
        self.busy.enter(now)
        try:
            await asyncio.sleep(until - now)
        finally:
            self.busy.leave(self.dispatcher.clock())

    # -- after the first token -----------------------------------------------------------------------

    async def _rest(self, live: _Live, sink: RelaySink | None = None) -> AsyncIterator[Chunk]:
        """The winner's chunks: the first one, then the rest under the request's deadline; each read sends
        `sink` into the provider's stream."""
        assert live.first is not None and live.stream is not None
        stream = live.stream
        try:
            yield live.first
            if live.first.usage is not None or live.first.finish_reason is not None:
                return
            if self.deadline is None:
                while True:
                    try:
                        chunk = await stream.asend(sink)
                    except StopAsyncIteration:
                        return
                    yield chunk
            deadline = StreamDeadline(self._loop_deadline())  # one timer for the stream, not one per chunk
            try:
                while True:
                    try:
                        chunk = await deadline.next(stream, sink)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        raise DeadlineExceeded(self._deadline_message(), self.decision) from None
                    yield chunk
            finally:
                deadline.cancel()
        finally:
            await stream.aclose()

    def record_overhead(self, started: float) -> None:
        """Fills the decision's overhead: the wall time since `started` (time.monotonic) minus the time spent
        waiting on upstreams or backing off."""
        total_s = time.monotonic() - started
        self.decision.overhead_ms = max(total_s - self.busy.total_s, 0.0) * 1000

    def _loop_deadline(self) -> float:
        assert self.deadline is not None
        # The dispatcher's clock may differ from the event loop's: translate the remaining time.
        return asyncio.get_running_loop().time() + (self.deadline - self.dispatcher.clock())

    # -- bookkeeping --------------------------------------------------------------------------------------

    def _accept(self, live: _Live, completion: Completion) -> Completion | None:
        """The answer, once it passed the route's validation; None (attempt recorded as rejected) if not."""
        self._price(live, completion)
        if self.validator is not None and not completion.tool_calls:  # a tool call is no final answer
            reason = self.validator.check(completion.text)
            if reason is not None:
                self._end(live, Outcome.REJECTED, None, note=reason)
                return None
        return self._succeed(live, completion)

    def _price(self, live: _Live, completion: Completion) -> None:
        """Prices an answer. Every answer is paid for, a rejected one too: all add to the request's cost."""
        model = live.queued.candidate.config
        usage = completion.usage
        if usage.input_tokens == 0 and usage.output_tokens == 0:
            # The stream ended without usage: estimate it so cost and budgets still see the request.
            usage.input_tokens = self.input_tokens
            usage.output_tokens = count_tokens(
                completion.text + "".join(c.name + c.arguments for c in completion.tool_calls), model.encoding
            )
        usage.cost_usd = estimate_cost(
            model, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens
        )
        self.decision.cost_usd += usage.cost_usd

    def _succeed(self, live: _Live, completion: Completion) -> Completion:
        now = self.dispatcher.clock()
        name = live.queued.candidate.name
        usage = completion.usage
        first_at = live.first_at or now
        self._end(live, Outcome.OK, None, end=now)
        stats = self.dispatcher.stats[name]
        if live.whole:
            stats.observe_whole((now - live.started) * 1000, usage.output_tokens)
        else:
            stats.observe((first_at - live.started) * 1000, usage.output_tokens, (now - first_at) * 1000)
        self.decision.served_by = name
        return completion

    def _end(
        self,
        live: _Live,
        outcome: Outcome,
        exc: ProviderError | None,
        *,
        note: str = "",
        end: float | None = None,
    ) -> None:
        now = self.dispatcher.clock() if end is None else end
        self.busy.leave(now)
        name = live.queued.candidate.name
        latency_ms = (now - live.started) * 1000
        ttft_ms = (live.first_at - live.started) * 1000 if live.first_at else 0.0
        breaker = self.dispatcher.breakers[name]
        if outcome in (Outcome.OK, Outcome.REJECTED):
            # A rejected answer is still a healthy call: the model answered, just not well enough.
            breaker.record(True, latency_ms)
        elif outcome in (Outcome.TTFT_TIMEOUT, Outcome.PARTIAL) or (
            isinstance(exc, _BREAKER_FAILURES) and not isinstance(exc, _NOT_OBSERVED)
        ):
            breaker.record(False, latency_ms)
        else:
            # Cancelled, lost a hedge, ran out of the request's time, or the request itself was at fault:
            # nothing was learnt about the model's health.
            breaker.release()
        error = note or (f"{exc.kind}: {exc}" if exc is not None else "")
        if outcome == Outcome.TTFT_TIMEOUT:
            error = f"no first token within {self.plan.route.ttft_ms:g} ms"
        self.decision.attempts.append(
            Attempt(name, outcome, ttft_ms, latency_ms, error[:300], live.hedged, live.started)
        )

    def _exhausted(self) -> TiergateError:
        """The error when no candidate is left: every one failed, or every one was a full local queue."""
        if self._queue_full and self._queue_full == len(self.decision.attempts):
            return LimitExceeded(
                "the on-device model's queue is full and no other model may serve this request", self.decision
            )
        return AllAttemptsFailed(self._failure_message(), self.decision)

    def _failure_message(self) -> str:
        tried = [
            f"{a.model}: {a.outcome.value}" + (f" ({a.error})" if a.error else "")
            for a in self.decision.attempts
        ]
        tried += [f"{s.model}: skipped ({s.reason})" for s in self.decision.skipped]
        return f"every candidate of route {self.plan.route_name!r} failed: " + (
            "; ".join(tried) or "no candidates"
        )

    def _deadline_message(self) -> str:
        tried = (
            ", ".join(f"{a.model}: {a.outcome.value}" for a in self.decision.attempts) or "nothing answered"
        )
        return f"the request's time budget ran out ({tried})"


async def _first_chunk(stream: AsyncIterator[Chunk]) -> Chunk:
    """Waits for the first chunk that carries text, a tool call, or ends the answer (the attempt's first
    token)."""
    async for chunk in stream:
        if chunk.carries_answer():
            return chunk
    raise _stream_ended()


def _completion(built: AnswerBuilder, last: Chunk) -> Completion:
    return Completion(
        built.text,
        last.usage or Usage(),
        last.finish_reason or "stop",
        tool_calls=built.tool_calls,
        refusal=built.refusal,
    )


def _stream_ended() -> ProviderError:
    return ProviderConnectionError("the stream ended before its final event")
