"""The request path, assembled: analyse -> plan -> dispatch -> report, over one loaded config.

`Sidecar` is what the gRPC server, the HTTP facade and the in-process `tiergate.Router` call. It owns the
providers (one long-lived HTTP client each), the circuit breakers, the live per-model stats and the tenant
limits (`governance`). Every request, answered or failed, is handed to `Telemetry` once it is over.

A config reload builds a new Sidecar from the running one (`Sidecar.start(config, previous=old)`): models
whose config did not change keep their provider (and its connection pool), circuit breaker and stats.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tiergate._native import CircuitBreaker, count_tokens
from tiergate.analysis import Analysis, Analyzer
from tiergate.cache.response_cache import (
    Lookup,
    ResponseCache,
    cache_setup,
    replay_pieces,
    served_from_cache,
)
from tiergate.cache.store import CachedAnswer
from tiergate.classify import classify
from tiergate.config import Config
from tiergate.dispatch import Dispatcher, Run
from tiergate.embeddings import dispatch as embedding_dispatch
from tiergate.embeddings.checks import check_embed_request
from tiergate.embeddings.nearest import NearestExamples, classify_by_examples, route_classifiers
from tiergate.embeddings.types import EmbedAnswer, EmbeddingProvider, EmbedRequest
from tiergate.errors import LimitExceeded, ShuttingDown, TiergateError
from tiergate.feedback import FeedbackHook, FeedbackStore, Served
from tiergate.governance import Governor, Ticket, build_governor
from tiergate.live_status import jobs_ahead, live_status
from tiergate.model_stats import ModelStats
from tiergate.policy.canary import CanaryController, CanaryState
from tiergate.policy.canary_redis import canary_store_for, canary_store_url
from tiergate.policy.pools import PoolSelector
from tiergate.policy.residency import policy_for
from tiergate.providers.base import Provider
from tiergate.providers.factory import build_provider
from tiergate.relay import RelaySink
from tiergate.request import (
    Attempt,
    Chunk,
    Completion,
    Decision,
    Outcome,
    Request,
    SidecarStatus,
)
from tiergate.request_checks import check_request
from tiergate.routing import Plan, Planner
from tiergate.telemetry import Report, Telemetry
from tiergate.token_count import count_text_tokens

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from opentelemetry.context import Context


@dataclass(slots=True)
class Answer:
    completion: Completion
    decision: Decision


class Sidecar:
    """Everything one config needs to serve requests. Create with `await Sidecar.start(config)`."""

    def __init__(
        self,
        config: Config,
        providers: dict[str, Provider],
        *,
        telemetry: Telemetry | None = None,
        previous: Sidecar | None = None,
        classifiers: dict[str, NearestExamples] | None = None,
    ) -> None:
        self.config = config
        self.classifiers = classifiers or {}  # route -> its embedded labelled examples
        self.providers = providers
        b = config.breaker
        kept = _unchanged_models(previous, config)
        same_breakers = kept if previous is not None and previous.config.breaker == b else set()
        self.breakers: dict[str, CircuitBreaker] = {
            name: previous.breakers[name]
            if name in same_breakers and previous is not None
            else CircuitBreaker(
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
        self.stats: dict[str, ModelStats] = {
            name: previous.stats[name] if name in kept and previous is not None else ModelStats()
            for name in config.models
        }
        self.analyzer = Analyzer(config.rules)
        self.telemetry = telemetry if telemetry is not None else Telemetry(config)
        # Pools' slow-start state outlives a reload, like the breakers it watches.
        self.pools: PoolSelector = PoolSelector(
            config.pools, self.breakers, self.stats, previous=previous.pools if previous is not None else None
        )
        # Canary rollouts: their percentages, rollbacks and measures outlive a reload.
        if previous is not None:
            self.canaries: CanaryController = previous.canaries
            self.canaries.reconfigure(config.routes)
            if canary_store_url(config) != getattr(self.canaries.store, "url", None):
                self.canaries.set_store(canary_store_for(config, self.telemetry.metrics.state_failure))
        else:
            self.canaries = CanaryController(
                config.routes,
                on_rollback=_log_rollback,
                store=canary_store_for(config, self.telemetry.metrics.state_failure),
            )
        self.planner = Planner(config, self.stats, self.jobs_ahead, self.pools, self.canaries)
        self.dispatcher = Dispatcher(providers, self.breakers, self.stats)
        self.governor: Governor = build_governor(
            config, previous.governor if previous is not None else None, self.telemetry.metrics.state_failure
        )
        self._in_flight = 0  # this config's requests (a reload waits for them before closing what it drops)
        self._idle = asyncio.Event()
        self._idle.set()
        # Every config's requests, for limits.max_concurrent_requests and shutdown: shared across reloads.
        self._everyone: _InFlight = previous._everyone if previous is not None else _InFlight()
        # Since the first config started: a reload keeps it.
        self._started: float = previous._started if previous is not None else time.monotonic()
        self._refusing = False
        # Served requests awaiting feedback, and the ratings: a reload keeps them.
        if previous is not None:
            self.feedback: FeedbackStore = previous.feedback
            self.feedback.reconfigure(config.feedback)
        else:
            self.feedback = FeedbackStore(
                config.feedback, on_feedback=_feedback_hook(self.telemetry, self.canaries)
            )
        # The response cache: a reload with the same `cache:`, `state` and semantic embedding model keeps
        # the entries (another embedding model's vectors would not compare).
        self.cache: ResponseCache | None = None
        if config.cache is not None:
            same = previous is not None and cache_setup(previous.config) == cache_setup(config)
            if same and previous is not None and previous.cache is not None:
                self.cache, previous.cache = previous.cache, None
            else:
                self.cache = ResponseCache(
                    config.cache,
                    config.state,
                    config.state_timeout_ms / 1000,
                    on_semantic=self.telemetry.metrics.cache_semantic_lookup,
                )
        semantic = config.cache.semantic if config.cache is not None else None
        embedder = providers.get(semantic.model) if semantic is not None else None
        self._cache_embedder = embedder if isinstance(embedder, EmbeddingProvider) else None

    @classmethod
    async def start(
        cls, config: Config, *, telemetry: Telemetry | None = None, previous: Sidecar | None = None
    ) -> Sidecar:
        """Builds every provider (loading local models now, so a bad model file fails at start).

        With `previous` (a reload), models whose config is unchanged keep their provider, breaker and stats.
        """
        providers: dict[str, Provider] = {}
        built: list[Provider] = []
        kept = _unchanged_models(previous, config)
        try:
            for name, model in config.models.items():
                if name in kept and previous is not None:
                    providers[name] = previous.providers[name]
                else:
                    providers[name] = await build_provider(name, model)
                    built.append(providers[name])
            # Load the tokenizers now: the first count per encoding builds its rank table (~0.1 s), which
            # would otherwise land on the first request.
            for encoding in {"o200k_base", *(m.encoding for m in config.models.values())}:
                await asyncio.to_thread(count_tokens, "warm up", encoding)
            classifiers = await route_classifiers(config, providers)
            # Compiles the rules, which may fail too (a pattern the regex engine rejects).
            sidecar = cls(config, providers, telemetry=telemetry, previous=previous, classifiers=classifiers)
            await sidecar.canaries.drain()  # with a fleet store: its canary state, before the first request
            return sidecar
        except BaseException:
            for provider in built:
                await provider.aclose()
            raise

    async def aclose(self, keep: Iterable[Provider] = (), successor: Sidecar | None = None) -> None:
        """Closes the providers (except those in `keep`, which a successor took over), the limits and the
        canary state (unless `successor` took it over)."""
        kept = {id(p) for p in keep}
        for provider in self.providers.values():
            if id(provider) not in kept:
                await provider.aclose()
        await self.governor.aclose()
        if successor is None or successor.canaries is not self.canaries:
            await self.canaries.aclose()
        if self.cache is not None:
            await self.cache.aclose()

    def refuse_new(self) -> None:
        """From now on new requests fail with ShuttingDown; those in progress go on (a graceful stop)."""
        self._refusing = True

    async def wait_idle(self) -> None:
        """Returns once no request is in progress, on this config or on one it replaced."""
        await self._everyone.idle.wait()

    async def retire(self, successor: Sidecar) -> None:
        """After a reload: waits for the requests still running on this config, then closes what the
        successor does not use."""
        await self._idle.wait()
        await self.aclose(keep=successor.providers.values(), successor=successor)

    # -- the request path ---------------------------------------------------------------------------------

    def prepare(self, request: Request, deadline: float | None) -> tuple[Run, Analysis]:
        """Checks, analyses (rules only) and plans a request; returns the Run that will dispatch it."""
        check_request(request, self.config.limits)
        found = self.config.route(request.task)
        analysis = self.analyzer.analyze(request, found[1].image_sensitivity if found else "internal")
        return self._plan(request, analysis, deadline), analysis

    async def _classify(
        self, request: Request, deadline: float | None, run: Run, analysis: Analysis
    ) -> tuple[Run, Analysis]:
        """A prepared request on a route that classifies: where no rule decided, the examples' or the model's
        classification, and the request planned again with it."""
        by_examples = run.plan.route.classify_examples
        if by_examples is not None and not analysis.complexity:
            nearest = self.classifiers.get(run.plan.route_name)
            if nearest is None:
                run.decision.complexity_by = "embeddings (the examples could not be embedded at start)"
            else:
                provider = self.providers[by_examples.model]
                assert isinstance(provider, EmbeddingProvider)
                complexity, by = await classify_by_examples(
                    provider,
                    nearest,
                    request,
                    min_confidence=by_examples.min_confidence,
                    budget_ms=by_examples.ms,
                )
                if complexity:
                    analysis = dataclasses.replace(analysis, complexity=complexity, complexity_by=by)
                    return self._plan(request, analysis, deadline), analysis
                run.decision.complexity_by = by
        classifier = run.plan.route.classify_with
        if classifier is None or analysis.complexity:
            return run, analysis
        # The classifier reads the request's text: it must be a model the residency policy allows.
        refusal = policy_for(self.config, request).refusal(classifier, self.config.models[classifier])
        if refusal is not None:
            run.decision.complexity_by = f"model:{classifier} not asked ({refusal})"
            return run, analysis
        complexity = await classify(self.providers[classifier], request, run.plan.route.classify_ms)
        if complexity:
            analysis = dataclasses.replace(
                analysis, complexity=complexity, complexity_by=f"model:{classifier}"
            )
            run = self._plan(request, analysis, deadline)
        else:
            run.decision.complexity_by = f"model:{classifier} (no answer in time)"
        return run, analysis

    def _plan(self, request: Request, analysis: Analysis, deadline: float | None) -> Run:
        decision = Decision(
            route="",
            task=request.task,
            sensitivity=analysis.sensitivity,
            complexity=analysis.complexity,
            complexity_by=analysis.complexity_by,
            matched_rules=analysis.matched_rules,
            request_id=os.urandom(12).hex(),  # what secrets.token_hex(12) returns, without its two calls
        )
        try:
            plan = self.planner.plan(request, analysis)
        except TiergateError as exc:
            exc.decision = decision
            raise
        decision.route = plan.route_name
        decision.skipped.extend(plan.skipped)
        decision.reason = plan.reason
        decision.arm = plan.arm
        return self.dispatcher.run(plan, request, decision, deadline, analysis.input_tokens)

    async def complete(
        self, request: Request, deadline: float | None = None, *, parent: Context | None = None
    ) -> Answer:
        """`parent`: the caller's trace context (`Telemetry.parent_from`...); None starts a new trace."""
        started = time.monotonic()
        report = self._opened(request, started, parent)
        ticket: Ticket | None = None
        try:
            run, ticket = await self._ready(request, deadline, report)
            lookup = await self._cache_lookup(run) if self.cache is not None else None
            if lookup is not None and lookup.answer is not None:
                completion = served_from_cache(run.decision, lookup, started)
                report.usage = completion.usage
                return Answer(completion, run.decision)
            try:
                completion = await run.complete()
            finally:
                run.record_overhead(started)
            if lookup is not None:
                await self._cache_keep(lookup, completion, run.decision)
            report.usage = completion.usage
            report.finish_reason = completion.finish_reason
            if self.telemetry.log_content:
                report.answer = completion.text
            return Answer(completion, run.decision)
        except BaseException as exc:
            report.error = exc
            raise
        finally:
            self._closed(report, started, ticket)

    async def stream(
        self,
        request: Request,
        deadline: float | None = None,
        *,
        parent: Context | None = None,
        sink: RelaySink | None = None,
    ) -> AsyncGenerator[tuple[Chunk, Decision | None], None]:
        """Yields (chunk, None) as text arrives and (last chunk, decision) at the end. `sink`: the server's
        relay sink (`relay.py`), unused when answers are logged (text relayed before a failure would be
        missing from the log)."""
        started = time.monotonic()
        report = self._opened(request, started, parent)
        ticket: Ticket | None = None
        finished = False
        parts: list[str] | None = [] if self.telemetry.log_content else None
        try:
            run, ticket = await self._ready(request, deadline, report)
            lookup = await self._cache_lookup(run)
            if lookup is not None and lookup.answer is not None:
                cached = served_from_cache(run.decision, lookup, started)
                for piece in replay_pieces(cached.text):
                    yield Chunk(text=piece), None
                finished = True
                report.usage = cached.usage
                if parts is not None:
                    parts.append(cached.text)
                yield Chunk(usage=cached.usage, finish_reason=cached.finish_reason), run.decision
                return
            text: list[str] | None = [] if lookup is not None else None
            try:
                async for chunk in run.stream(sink if parts is None else None):
                    if parts is not None:
                        parts.append(chunk.text)
                    if text is not None:
                        text.append(chunk.text)
                    if chunk.usage is not None:
                        run.record_overhead(started)
                        finished = True
                        report.usage = chunk.usage
                        report.finish_reason = chunk.finish_reason or "stop"
                        if lookup is not None and text is not None:
                            whole = Completion("".join(text), chunk.usage, chunk.finish_reason or "stop")
                            await self._cache_keep(lookup, whole, run.decision)
                        yield chunk, run.decision
                        return
                    yield chunk, None
            finally:
                if not finished:
                    run.record_overhead(started)
        except BaseException as exc:
            # A consumer that stops reading after the last chunk has had the whole answer.
            if not (finished and isinstance(exc, GeneratorExit)):
                report.error = exc
            raise
        finally:
            if parts is not None:
                report.answer = "".join(parts)
            self._closed(report, started, ticket)

    async def embed(self, request: EmbedRequest, deadline: float | None = None) -> EmbedAnswer:
        """Embeds texts over an embedding route (`embeddings/dispatch.py`), under the same limits, budgets,
        restricted-data rule and reports as a chat request."""
        started = time.monotonic()
        as_chat = request.as_request()
        report = self._opened(as_chat, started, None)  # embeddings join no caller trace yet
        ticket: Ticket | None = None
        try:
            self._take_new()
            check_embed_request(request, self.config.limits)
            analysis = self.analyzer.analyze(as_chat)
            decision = Decision(
                route="",
                task=request.task,
                sensitivity=analysis.sensitivity,
                matched_rules=analysis.matched_rules,
            )
            report.decision = decision
            plan = embedding_dispatch.plan(self.config, request, analysis, decision)
            if self.governor.active:
                ticket = await self.governor.admit(as_chat, plan, decision, analysis.input_tokens)
            run = embedding_dispatch.EmbedRun(plan, request, decision, self.providers, self.breakers)
            try:
                embeddings = await run.execute(deadline)
            finally:
                decision.overhead_ms = max(time.monotonic() - started - run.busy_s, 0.0) * 1000
            report.usage = embeddings.usage
            return EmbedAnswer(embeddings, decision)
        except BaseException as exc:
            report.error = exc
            raise
        finally:
            self._closed(report, started, ticket)

    # -- the response cache --------------------------------------------------------------------------------

    async def _cache_lookup(self, run: Run) -> Lookup | None:
        """The cache's answer for a planned request (None: no cache, or the request opted out)."""
        if self.cache is None:
            return None
        lookup = await self.cache.lookup(
            run.plan.route_name, run.request, run.decision.sensitivity, self._cache_embedder
        )
        if not lookup.key:
            return None
        run.decision.cache = "hit" if lookup.answer is not None else "miss"
        run.decision.cache_match, run.decision.cache_similarity = lookup.match, lookup.similarity
        return lookup

    async def _cache_keep(self, lookup: Lookup, completion: Completion, decision: Decision) -> None:
        if self.cache is None:  # a reload handed the cache to the next config meanwhile
            return
        await self.cache.keep(lookup, CachedAnswer.of(completion, decision))

    # -- around each request: limits, in-flight count, the report ------------------------------------------

    def _opened(self, request: Request, started: float, parent: Context | None) -> Report:
        self._in_flight += 1
        self._everyone.opened()
        self._idle.clear()
        report = Report(request, time.time(), started_mono=started)
        report.trace = self.telemetry.start_trace(parent)
        return report

    def _take_new(self) -> None:
        """Refuses a new request (already counted in flight) while shutting down or over the concurrency cap:
        before any work, so that overload stays cheap."""
        if self._refusing:
            raise ShuttingDown("the sidecar is shutting down and takes no new requests: retry elsewhere")
        cap = self.config.limits.max_concurrent_requests
        if self._everyone.count > cap:
            raise LimitExceeded(
                f"over {cap} requests in flight (limits.max_concurrent_requests): retry shortly",
                limit="max_concurrent_requests",
            )

    async def _ready(
        self, request: Request, deadline: float | None, report: Report
    ) -> tuple[Run, Ticket | None]:
        """Prepares the request and, where limits apply, takes them: the Run to dispatch and its ticket."""
        self._take_new()
        run, analysis = self.prepare(request, deadline)
        route = run.plan.route
        if route.classify_examples is not None or route.classify_with is not None:
            run, analysis = await self._classify(request, deadline, run, analysis)
        report.decision = run.decision
        if report.trace is not None:
            report.trace.stamp(run.decision)
        if not self.governor.active:
            return run, None
        return await self._admit(run, analysis, deadline)

    async def _admit(self, run: Run, analysis: Analysis, deadline: float | None) -> tuple[Run, Ticket | None]:
        """Takes the tenant's limits; candidates over the budget left leave the plan (and a new Run)."""
        candidates = len(run.plan.candidates)
        ticket = await self.governor.admit(run.request, run.plan, run.decision, analysis.input_tokens)
        if len(run.plan.candidates) != candidates:
            run = self.dispatcher.run(run.plan, run.request, run.decision, deadline, analysis.input_tokens)
        return run, ticket

    def _closed(self, report: Report, started: float, ticket: Ticket | None) -> None:
        error = report.error
        if report.decision is None and isinstance(error, TiergateError):
            report.decision = error.decision
            if report.trace is not None and report.decision is not None:
                report.trace.stamp(report.decision)
        if ticket is not None:
            # The Decision's cost is every answer paid for, a cascade's rejected ones included.
            cost = report.decision.cost_usd if report.decision is not None else 0.0
            output_tokens = report.usage.output_tokens if report.usage is not None else 0
            self.governor.settle(ticket, cost, output_tokens)
        if report.decision is not None:
            self.canaries.observe(report.decision)
            if error is None:
                self.feedback.served(report.decision)
        report.duration_s = time.monotonic() - started
        self._in_flight -= 1
        self._everyone.closed()
        if not self._in_flight:
            self._idle.set()
        self.telemetry.report(report)

    async def canary(self, route: str, percent: float | None = None) -> CanaryState:
        """A route's canary rollout; with `percent`, sets it first (see `CanaryController.set_percent`)."""
        if percent is not None:
            return await self.canaries.set_percent(route, percent)
        return await self.canaries.refresh(route)

    def rate(self, request_id: str, score: float | None, label: str) -> Served:
        """Feedback on a served request (see `feedback.FeedbackStore.rate`)."""
        return self.feedback.rate(request_id, score, label)

    def jobs_ahead(self, model: str) -> int:
        """Requests queued or generating on a model: only on-device models have a queue to wait in."""
        return jobs_ahead(self.providers.get(model))

    @property
    def in_flight(self) -> int:
        """Requests in progress, on this config and on any it replaced that still finishes some."""
        return self._everyone.count

    def status(self) -> SidecarStatus:
        """Every model's live state (breaker, measured TTFT and speed, on-device queue and worker), the
        requests in flight, the time since the first config started (`live_status.py`)."""
        return live_status(
            self.config, self.providers, self.breakers, self.stats, self.in_flight, self._started
        )

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

    async def count_tokens(self, text: str, encoding: str = "", model: str = "") -> tuple[int, str]:
        """Tokens in `text`: by an encoding, a hosted model's encoding, or an on-device model's own count."""
        return await count_text_tokens(self.config, self.providers, text, encoding, model)


def _feedback_hook(telemetry: Telemetry, canaries: CanaryController) -> FeedbackHook:
    def hook(served: Served, score: float | None, label: str) -> None:
        telemetry.metrics.feedback(served, score, label)
        canaries.feedback(served.route, served.model, served.arm, score)

    return hook


def _log_rollback(state: CanaryState) -> None:
    logger.warning(
        "canary of route %r rolled back: %s is now at 0%% (%s)", state.route, state.model, state.rolled_back
    )


class _InFlight:
    """A count of requests in progress that configs hand on to the next at a reload."""

    __slots__ = ("count", "idle")

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def opened(self) -> None:
        self.count += 1
        self.idle.clear()

    def closed(self) -> None:
        self.count -= 1
        if not self.count:
            self.idle.set()


def _unchanged_models(previous: Sidecar | None, config: Config) -> set[str]:
    """The models a reload carries over (provider, stats; breaker too if the breaker config is the same)."""
    if previous is None:
        return set()
    return {name for name, model in config.models.items() if previous.config.models.get(name) == model}
