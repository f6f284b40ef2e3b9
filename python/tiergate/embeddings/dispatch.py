"""Plans and runs one embedding request over its embedding route.

Planning, in the chat planner's order where it applies: restricted text only to on-device models (none left
fails closed: nothing is forwarded), `dimensions` only to models that can give them, each input within the
model's window (counted with o200k; an on-device model also counts with its own tokenizer and refuses an
input over its window), the request's cost limit; every model left out is a `Skip` with its reason.

Running: the candidates in order, each attempt under the request's deadline and the route's `total_ms`, after
its circuit breaker allows it. A retryable error retries the same model (up to the route's `retries`, after a
jittered back-off); any other moves on to the next model. When every attempt failed because of the request
itself (an input too long for every model), the request is invalid, not the models unavailable.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tiergate._native import CircuitBreaker, count_tokens
from tiergate.analysis import Analysis
from tiergate.config import Config, embedding_route
from tiergate.embeddings.types import EmbeddingProvider, Embeddings, EmbedRequest
from tiergate.errors import (
    AllAttemptsFailed,
    DeadlineExceeded,
    InvalidRequest,
    SensitiveDataBlocked,
    UnknownTask,
)
from tiergate.providers.base import (
    AuthenticationError,
    BadRequest,
    PermissionDenied,
    Provider,
    ProviderError,
    RequestTooLarge,
    RetryableError,
)
from tiergate.request import Attempt, Decision, Outcome, Sensitivity, Skip
from tiergate.routing import Candidate, Plan, estimate_cost

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
_BREAKER_FAILURES = (RetryableError, AuthenticationError, PermissionDenied)
_REQUEST_AT_FAULT = (BadRequest, RequestTooLarge)


def plan(config: Config, request: EmbedRequest, analysis: Analysis, decision: Decision) -> Plan:
    """The candidates for an embedding request. Raises UnknownTask, SensitiveDataBlocked, InvalidRequest."""
    found = embedding_route(config, request.task)
    if found is None:
        routes = ", ".join(sorted(config.embedding_routes)) or "none configured"
        raise UnknownTask(
            f"unknown embedding task {request.task!r} and no `default` embedding route (embedding_routes: "
            f"{routes})",
            decision,
        )
    route_name, route = found
    decision.route = route_name
    restricted = analysis.sensitivity >= Sensitivity.RESTRICTED
    longest = max(count_tokens(text, "o200k_base") for text in request.inputs)
    kept: list[Candidate] = []
    skipped: list[Skip] = []
    for name in route.chain:
        model = config.models[name]
        reason = ""
        if restricted and not model.is_on_device:
            reason = "restricted data may not leave the device"
        elif (
            request.dimensions and not model.adjustable_dimensions and request.dimensions != model.dimensions
        ):
            reason = f"cannot give {request.dimensions}-dimension vectors"
        elif model.provider != "onnx" and longest > model.window:
            reason = f"an input of {longest} tokens exceeds its {model.window}-token window"
        else:
            cost = estimate_cost(model, analysis.input_tokens, 0)
            if request.max_cost_usd > 0 and cost > request.max_cost_usd:
                reason = f"estimated ${cost:.6f} exceeds max_cost_usd ${request.max_cost_usd:.6f}"
            else:
                kept.append(Candidate(name, model, cost, 0.0))
        if reason:
            skipped.append(Skip(name, reason))
    decision.skipped.extend(skipped)
    if restricted and not kept:
        raise SensitiveDataBlocked(
            "the request carries restricted data and no on-device model of embedding route "
            f"{route_name!r} can embed it; it was not forwarded",
            decision,
        )
    if not kept:
        why = "; ".join(f"{s.model}: {s.reason}" for s in skipped)
        raise InvalidRequest(
            f"no model of embedding route {route_name!r} can take this request ({why})", decision
        )
    decision.reason = "chain order" + ("; restricted data: on-device only" if restricted else "")
    return Plan(route_name, route, kept, skipped, decision.reason)


@dataclass
class EmbedRun:
    """One embedding request's attempts over `plan.candidates` (which budgets may have narrowed)."""

    plan: Plan
    request: EmbedRequest
    decision: Decision
    providers: Mapping[str, Provider]
    breakers: Mapping[str, CircuitBreaker]
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random
    busy_s: float = field(default=0.0, init=False)  # waiting on models or backing off: not overhead
    _failures: list[ProviderError] = field(default_factory=list, init=False)

    async def execute(self, deadline: float | None) -> Embeddings:
        """The vectors from the first model that gives them. Raises DeadlineExceeded, InvalidRequest (every
        model refused the request itself), AllAttemptsFailed."""
        route = self.plan.route
        if route.total_ms is not None:
            own = self.clock() + route.total_ms / 1000
            deadline = own if deadline is None else min(deadline, own)
        for candidate in self.plan.candidates:
            provider = self.providers[candidate.name]
            assert isinstance(provider, EmbeddingProvider)
            for tries in range(route.retries + 1):
                if tries:
                    await self._backoff(tries, deadline)
                result = await self._attempt(candidate, provider, deadline)
                if isinstance(result, Embeddings):
                    return result
                if result is None or not isinstance(result, RetryableError):
                    break  # breaker open, or the request's fault: the next model
        raise self._exhausted()

    async def _attempt(
        self, candidate: Candidate, provider: EmbeddingProvider, deadline: float | None
    ) -> Embeddings | ProviderError | None:
        name = candidate.name
        breaker = self.breakers[name]
        if deadline is not None and self.clock() >= deadline:
            raise DeadlineExceeded(self._deadline_message(), self.decision)
        if not breaker.try_acquire():
            self.decision.skipped.append(Skip(name, "circuit breaker open"))
            return None
        started = self.clock()
        try:
            if deadline is None:
                result = await provider.embed(self.request.inputs, self.request.dimensions)
            else:
                async with asyncio.timeout(max(deadline - started, 0.0)):
                    result = await provider.embed(self.request.inputs, self.request.dimensions)
        except ProviderError as exc:
            self._end(name, started, Outcome.ERROR, exc)
            self._failures.append(exc)
            return exc
        except TimeoutError:
            self._end(name, started, Outcome.DEADLINE, None)
            raise DeadlineExceeded(self._deadline_message(), self.decision) from None
        except asyncio.CancelledError:
            self._end(name, started, Outcome.CANCELLED, None)
            raise
        if not result.usage.cost_usd:
            result.usage.cost_usd = estimate_cost(candidate.config, result.usage.input_tokens, 0)
        self.decision.cost_usd += result.usage.cost_usd
        self.decision.served_by = name
        self._end(name, started, Outcome.OK, None)
        return result

    def _end(self, name: str, started: float, outcome: Outcome, exc: ProviderError | None) -> None:
        now = self.clock()
        self.busy_s += now - started
        latency_ms = (now - started) * 1000
        breaker = self.breakers[name]
        if outcome is Outcome.OK:
            breaker.record(True, latency_ms)
        elif isinstance(exc, _BREAKER_FAILURES):
            breaker.record(False, latency_ms)
        else:
            breaker.release()
        error = f"{exc.kind}: {exc}" if exc is not None else ""
        self.decision.attempts.append(Attempt(name, outcome, 0.0, latency_ms, error[:300]))

    async def _backoff(self, tries: int, deadline: float | None) -> None:
        delay = min(BACKOFF_BASE_S * (2 ** (tries - 1)) * self.jitter(), BACKOFF_CAP_S)
        if deadline is not None and self.clock() + delay >= deadline:
            raise DeadlineExceeded(self._deadline_message(), self.decision)
        started = self.clock()
        await asyncio.sleep(delay)
        self.busy_s += self.clock() - started

    def _exhausted(self) -> InvalidRequest | AllAttemptsFailed:
        attempts = self.decision.attempts
        tried = [f"{a.model}: {a.outcome.value}" + (f" ({a.error})" if a.error else "") for a in attempts]
        tried += [f"{s.model}: skipped ({s.reason})" for s in self.decision.skipped]
        message = f"every model of embedding route {self.plan.route_name!r} failed: " + (
            "; ".join(tried) or "no candidates"
        )
        if self._failures and all(isinstance(exc, _REQUEST_AT_FAULT) for exc in self._failures):
            return InvalidRequest(message, self.decision)
        return AllAttemptsFailed(message, self.decision)

    def _deadline_message(self) -> str:
        tried = (
            ", ".join(f"{a.model}: {a.outcome.value}" for a in self.decision.attempts) or "nothing answered"
        )
        return f"the request's time budget ran out ({tried})"
