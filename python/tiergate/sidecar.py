"""The request path, assembled: analyse -> plan -> dispatch -> report, over one loaded config.

`Sidecar` is what the gRPC server (and later the HTTP facade and the in-process Router) call. It owns the
providers (one long-lived HTTP client each), the circuit breakers and the live per-model stats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tiergate._native import CircuitBreaker, count_tokens
from tiergate.analysis import Analysis, Analyzer
from tiergate.config import Config
from tiergate.dispatch import Dispatcher, Run
from tiergate.errors import InvalidRequest, TiergateError
from tiergate.model_stats import ModelStats
from tiergate.providers.base import Provider
from tiergate.providers.factory import build_provider
from tiergate.request import Attempt, Chunk, Completion, Decision, Outcome, Request
from tiergate.request_checks import check_request
from tiergate.routing import Plan, Router


@dataclass(slots=True)
class Answer:
    completion: Completion
    decision: Decision


class Sidecar:
    """Everything one config needs to serve requests. Create with `await Sidecar.start(config)`."""

    def __init__(self, config: Config, providers: dict[str, Provider]) -> None:
        self.config = config
        self.providers = providers
        b = config.breaker
        self.breakers = {
            name: CircuitBreaker(
                failure_rate=b.failure_rate,
                slow_call_rate=b.slow_call_rate,
                slow_call_ms=b.slow_call_ms,
                window=b.window,
                min_calls=b.min_calls,
                open_ms=b.open_ms,
                half_open_calls=b.half_open_calls,
            )
            for name in config.models
        }
        self.stats = {name: ModelStats() for name in config.models}
        self.queue_depth: dict[str, int] = {}
        self.analyzer = Analyzer(config.rules)
        self.router = Router(config, self.stats, self.queue_depth)
        self.dispatcher = Dispatcher(providers, self.breakers, self.stats)

    @classmethod
    async def start(cls, config: Config) -> Sidecar:
        """Builds every provider (loading local models now, so a bad model file fails at start)."""
        providers: dict[str, Provider] = {}
        try:
            for name, model in config.models.items():
                providers[name] = await build_provider(name, model)
        except BaseException:
            for provider in providers.values():
                await provider.aclose()
            raise
        # Load the tokenizers now: the first count per encoding builds its rank table (~0.1 s), which would
        # otherwise land on the first request.
        for encoding in {"o200k_base", *(m.encoding for m in config.models.values())}:
            await asyncio.to_thread(count_tokens, "warm up", encoding)
        return cls(config, providers)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()

    # -- the request path ---------------------------------------------------------------------------------

    def prepare(self, request: Request, deadline: float | None) -> tuple[Run, Analysis]:
        """Checks, analyses and plans a request; returns the Run that will dispatch it."""
        check_request(request, self.config.limits)
        analysis = self.analyzer.analyze(request)
        decision = Decision(
            route="",
            task=request.task,
            sensitivity=analysis.sensitivity,
            complexity=analysis.complexity,
            matched_rules=analysis.matched_rules,
        )
        try:
            plan = self.router.plan(request, analysis)
        except TiergateError as exc:
            exc.decision = decision
            raise
        decision.route = plan.route_name
        decision.skipped.extend(plan.skipped)
        decision.reason = plan.reason
        return self.dispatcher.run(plan, request, decision, deadline, analysis.input_tokens), analysis

    async def complete(self, request: Request, deadline: float | None = None) -> Answer:
        started = time.monotonic()
        run, _ = self.prepare(request, deadline)
        try:
            completion = await run.complete()
        finally:
            _finish(run, started)
        return Answer(completion, run.decision)

    async def stream(
        self, request: Request, deadline: float | None = None
    ) -> AsyncIterator[tuple[Chunk, Decision | None]]:
        """Yields (chunk, None) as text arrives and (last chunk, decision) at the end."""
        started = time.monotonic()
        run, _ = self.prepare(request, deadline)
        finished = False
        try:
            async for chunk in run.stream():
                if chunk.usage is not None:
                    _finish(run, started)
                    finished = True
                    yield chunk, run.decision
                    return
                yield chunk, None
        finally:
            if not finished:
                _finish(run, started)

    def explain(self, request: Request) -> Decision:
        """The plan as a Decision, without calling any model."""
        started = time.monotonic()
        run, _ = self.prepare(request, None)
        plan: Plan = run.plan
        for candidate in plan.candidates:
            breaker = self.breakers[candidate.name].state
            note = f"est ${candidate.est_cost_usd:.6f}, ~{candidate.predicted_ms:.0f} ms"
            if breaker != "closed":
                note += f", breaker {breaker}"
            run.decision.attempts.append(Attempt(candidate.name, Outcome.PLANNED, error=note))
        run.decision.served_by = plan.candidates[0].name if plan.candidates else ""
        run.decision.overhead_ms = (time.monotonic() - started) * 1000
        return run.decision

    def count_tokens(self, text: str, encoding: str = "", model: str = "") -> tuple[int, str]:
        if model:
            config = self.config.models.get(model)
            if config is None:
                raise InvalidRequest(
                    f"unknown model {model!r} (models: {', '.join(sorted(self.config.models))})"
                )
            provider = self.providers[model]
            own = getattr(provider, "count_tokens", None)
            if config.provider == "llama_cpp" and callable(own):
                return int(own(text)), f"model:{model}"
            encoding = encoding or config.encoding
        encoding = encoding or "o200k_base"
        try:
            return count_tokens(text, encoding), encoding
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None


def _finish(run: Run, started: float) -> None:
    """Fills the overhead: wall time minus the time spent waiting on upstreams or backing off."""
    total_s = time.monotonic() - started
    run.decision.overhead_ms = max(total_s - run.busy.total_s, 0.0) * 1000
