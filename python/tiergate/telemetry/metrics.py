"""Prometheus metrics of one sidecar process, in a registry of its own (no global registry).

Families (prefix `tiergate_`):

    requests_total{route,model,outcome}        every request: `ok` or the error kind; model is the one served
    request_duration_seconds{route}            end to end, histogram
    ttft_seconds{model}                        time to first token of each attempt that produced one
    overhead_seconds{route}                    tiergate's own time (wall time minus upstream time)
    attempts_total{model,outcome}              every attempt and what became of it
    fallbacks_total{route,model,reason}        attempts that failed (error, ttft_timeout) and were followed by
                                               another one (a retry or the next model); model: the failed one
    hedges_total{route,result}                 hedged attempts: won, lost or failed
    tokens_total{model,type}                   input, output, cached_input tokens
    cost_usd_total{model}                      cost from the price table
    route_cost_usd_total{route}                the same cost by route (for cost drift alerts per route)
    limit_rejections_total{limit}              requests refused by a budget or rate limit
    state_failures_total{operation,action}     Redis failed: admit allowed / refused, or settle lost
    config_reloads_total{result}               ok, rejected
    feedback_total{route,model,arm,label}      ratings of served requests (label "" when only scored)
    feedback_score{route,model,arm}            their scores (0..1), histogram
    breaker_state{model,state}                 1 for the model's current state, 0 for the others (at scrape)
    local_queue_depth{model}, local_in_flight{model}   on-device models' queues (at scrape)
    local_worker_up{model}                     1 while an on-device model's worker process serves (at scrape)
    local_restarts_total{model}                worker process starts after the first (at scrape)
    local_crashes_total{model}                 worker processes that died on their own (at scrape)
    budget_spent_usd{tenant,period}, budget_limit_usd{tenant,period}   in-process budgets (at scrape;
                                               `telemetry/budgets.py`)
    cache_lookups_total{route,result}          response cache lookups: hit or miss
    cache_hits_total{route,match}              response cache hits by kind: exact or semantic
    cache_semantic_lookups_total{route,result} semantic lookups after an exact miss: hit, miss, timeout or
                                               unavailable (the embedding model did not answer in time, or
                                               failed: a miss), not_applicable (the last message is not text)
    cache_saved_usd_total{route}               what the answers served from the cache had cost
    asyncio_tasks                              tasks alive on the event loop (at scrape): leaks show as growth

Every update happens on the event loop's thread, so the series are plain dicts updated without locks
(prometheus-client's own metric objects take a lock per increment: twice the cost per request); a collector
turns them into metric families when /metrics is scraped, which happens on that same thread.

With tracing on, `request_duration_seconds` and `overhead_seconds` carry exemplars: each bucket keeps the
trace and span ids of the last sampled request that fell in it. Exemplars exist only in the OpenMetrics
format, which /metrics serves to a scraper that asks for it (`Accept: application/openmetrics-text`, as
Prometheus does with exemplar storage on); the classic text format leaves them out.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from tiergate.errors import LimitExceeded
from tiergate.request import Outcome
from tiergate.telemetry.budgets import BudgetCollector

if TYPE_CHECKING:
    from tiergate._native import CircuitBreaker
    from tiergate.feedback import Served
    from tiergate.telemetry import Report

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BREAKER_STATES = ("closed", "half_open", "open")
_FALLBACK_OUTCOMES = frozenset({Outcome.ERROR, Outcome.TTFT_TIMEOUT})
_HEDGE_RESULTS = {Outcome.OK: "won", Outcome.HEDGE_LOST: "lost"}


class LiveView(Protocol):
    """What the scrape-time gauges read: the serving Sidecar's breakers and providers."""

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]: ...
    @property
    def providers(self) -> Mapping[str, object]: ...


class _LiveCollector(Collector):
    def __init__(self) -> None:
        self.view: Callable[[], LiveView | None] = lambda: None

    def collect(self) -> Iterator[Metric]:
        live = self.view()
        breaker = GaugeMetricFamily(
            "tiergate_breaker_state",
            "Circuit breaker state per model (1: current)",
            labels=["model", "state"],
        )
        depth = GaugeMetricFamily(
            "tiergate_local_queue_depth", "Requests waiting for an on-device model", labels=["model"]
        )
        in_flight = GaugeMetricFamily(
            "tiergate_local_in_flight", "Requests an on-device model is generating", labels=["model"]
        )
        worker_up = GaugeMetricFamily(
            "tiergate_local_worker_up",
            "1 while the on-device model's worker process serves, 0 while it starts, restarts or cannot load",
            labels=["model"],
        )
        restarts = CounterMetricFamily(
            "tiergate_local_restarts",
            "Worker process starts after the first, per on-device model (crashes, failed loads)",
            labels=["model"],
        )
        crashes = CounterMetricFamily(
            "tiergate_local_crashes",
            "Worker processes of an on-device model that died on their own (a signal, an exit)",
            labels=["model"],
        )
        if live is not None:
            for model, b in live.breakers.items():
                current = b.state
                for state in BREAKER_STATES:
                    breaker.add_metric([model, state], 1.0 if state == current else 0.0)
            for model, provider in live.providers.items():
                live_state = getattr(provider, "live_state", None)
                if callable(live_state):
                    snapshot = live_state()
                    depth.add_metric([model], float(snapshot.queue_depth))
                    in_flight.add_metric([model], float(snapshot.in_flight))
                    worker_up.add_metric([model], 1.0 if snapshot.worker_up else 0.0)
                    restarts.add_metric([model], float(snapshot.restarts))
                    crashes.add_metric([model], float(snapshot.crashes))
        yield from (breaker, depth, in_flight, worker_up, restarts, crashes)
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # collected outside an event loop (a registry read directly): nothing to count
            return
        yield GaugeMetricFamily("tiergate_asyncio_tasks", "Tasks alive on the sidecar's event loop", tasks)


class Series:
    """A counter family: labels -> value."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in list(self.values.items()):
            family.add_metric(key, value)
        return family


class Histograms:
    """A histogram family: labels -> [count per bucket (not cumulative)..., count above the last, sum]."""

    __slots__ = ("bounds", "doc", "exemplars", "labels", "les", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...]) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.bounds = bounds
        self.les = [repr(float(b)) for b in bounds] + ["+Inf"]
        self.values: dict[tuple[str, ...], list[float]] = {}
        # Per series, per bucket: the last traced observation (built into an Exemplar only at scrape time).
        self.exemplars: dict[tuple[str, ...], list[tuple[str, str, float, float] | None]] = {}

    def observe(
        self, key: tuple[str, ...], value: float, trace: tuple[str, str, float] | None = None
    ) -> None:
        """`trace`: (trace id, span id, wall time) of a sampled request, kept as the bucket's exemplar."""
        series = self.values.get(key)
        if series is None:
            series = self.values[key] = [0.0] * (len(self.bounds) + 2)
        bucket = bisect_left(self.bounds, value)  # the first bucket whose bound is >= value
        series[bucket] += 1
        series[-1] += value
        if trace is not None:
            kept = self.exemplars.get(key)
            if kept is None:
                kept = self.exemplars[key] = [None] * (len(self.bounds) + 1)
            kept[bucket] = (trace[0], trace[1], value, trace[2])

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, series in list(self.values.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            kept = self.exemplars.get(key)
            for i, (le, count) in enumerate(zip(self.les, series[:-1], strict=True)):
                cumulative += count
                exemplar = kept[i] if kept is not None else None
                if exemplar is None:
                    buckets.append((le, cumulative))
                else:
                    trace_id, span_id, value, ts = exemplar
                    buckets.append(
                        (le, cumulative, Exemplar({"trace_id": trace_id, "span_id": span_id}, value, ts))
                    )
            family.add_metric(list(key), buckets, series[-1])
        return family


class _Families(Collector):
    def __init__(self, families: list[Series | Histograms]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.family()


class Metrics:
    """The metric families; `observe(report)` folds one finished request in."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Series(
            "tiergate_requests", "Requests by route, serving model and outcome", ("route", "model", "outcome")
        )
        self.duration = Histograms(
            "tiergate_request_duration_seconds", "End-to-end request latency", ("route",), DURATION_BUCKETS
        )
        self.ttft = Histograms(
            "tiergate_ttft_seconds", "Time to first token per attempt", ("model",), TTFT_BUCKETS
        )
        self.overhead = Histograms(
            "tiergate_overhead_seconds",
            "tiergate's own time per request (without upstream time)",
            ("route",),
            OVERHEAD_BUCKETS,
        )
        self.attempts = Series("tiergate_attempts", "Attempts by model and outcome", ("model", "outcome"))
        self.fallbacks = Series(
            "tiergate_fallbacks", "Failed attempts followed by another attempt", ("route", "model", "reason")
        )
        self.hedges = Series("tiergate_hedges", "Hedged attempts by result", ("route", "result"))
        self.tokens = Series("tiergate_tokens", "Tokens by model and type", ("model", "type"))
        self.cost = Series("tiergate_cost_usd", "Cost in USD from the price table", ("model",))
        self.route_cost = Series(
            "tiergate_route_cost_usd", "Cost in USD from the price table by route", ("route",)
        )
        self.limit_rejections = Series(
            "tiergate_limit_rejections", "Requests refused by a budget or rate limit", ("limit",)
        )
        self.state_failures = Series(
            "tiergate_state_failures",
            "Failures of the Redis state store, and what was done",
            ("operation", "action"),
        )
        self.reloads = Series("tiergate_config_reloads", "Config reloads by result", ("result",))
        self.feedback_ratings = Series(
            "tiergate_feedback", "Ratings of served requests", ("route", "model", "arm", "label")
        )
        self.feedback_scores = Histograms(
            "tiergate_feedback_score",
            "Scores of served requests (0..1)",
            ("route", "model", "arm"),
            SCORE_BUCKETS,
        )
        self.cache = Series(
            "tiergate_cache_lookups", "Response cache lookups by route and result", ("route", "result")
        )
        self.cache_saved = Series(
            "tiergate_cache_saved_usd", "What the answers served from the response cache had cost", ("route",)
        )
        self.cache_hits = Series(
            "tiergate_cache_hits",
            "Response cache hits by route and kind (exact, semantic)",
            ("route", "match"),
        )
        self.cache_semantic = Series(
            "tiergate_cache_semantic_lookups",
            "Semantic response cache lookups (after an exact miss) by route and result",
            ("route", "result"),
        )
        self.registry.register(
            _Families(
                [
                    self.requests,
                    self.duration,
                    self.ttft,
                    self.overhead,
                    self.attempts,
                    self.fallbacks,
                    self.hedges,
                    self.tokens,
                    self.cost,
                    self.route_cost,
                    self.limit_rejections,
                    self.state_failures,
                    self.reloads,
                    self.feedback_ratings,
                    self.feedback_scores,
                    self.cache,
                    self.cache_saved,
                    self.cache_hits,
                    self.cache_semantic,
                ]
            )
        )
        self._live = _LiveCollector()
        self.registry.register(self._live)
        self._budgets = BudgetCollector()
        self.registry.register(self._budgets)

    def watch(self, view: Callable[[], LiveView | None]) -> None:
        """Where the scrape-time gauges (breakers, local queues) read from."""
        self._live.view = view
        self._budgets.view = view

    def workers_down(self) -> list[str]:
        """On-device models whose worker process does not serve now, each as "name: why"."""
        live = self._live.view()
        if live is None:
            return []
        down = []
        for model, provider in live.providers.items():
            live_state = getattr(provider, "live_state", None)
            if callable(live_state):
                state = live_state()
                if not state.worker_up:
                    down.append(
                        f"{model}: worker {state.worker}"
                        + (f" ({state.last_error})" if state.last_error else "")
                    )
        return down

    def cache_semantic_lookup(self, route: str, result: str) -> None:
        """What became of a semantic response cache lookup (`cache/response_cache.py`)."""
        self.cache_semantic.inc((route, result))

    def observe(self, report: Report) -> None:
        decision = report.decision
        route = decision.route if decision is not None else ""
        model = decision.served_by if decision is not None else ""
        error = report.error
        self.requests.inc((route, model, "ok" if error is None else report.error_kind))
        trace = report.trace
        exemplar = (
            (f"{trace.trace_id:032x}", f"{trace.span_id:016x}", report.started_at + report.duration_s)
            if trace is not None and trace.sampled
            else None
        )
        self.duration.observe((route,), report.duration_s, exemplar)
        if isinstance(error, LimitExceeded) and error.limit:
            self.limit_rejections.inc((error.limit,))
        if decision is None:
            return
        self.overhead.observe((route,), decision.overhead_ms / 1000, exemplar)
        if decision.cache:
            self.cache.inc((route, decision.cache))
            if decision.cache_match:
                self.cache_hits.inc((route, decision.cache_match))
            if decision.cost_saved_usd:
                self.cache_saved.inc((route,), decision.cost_saved_usd)
        attempts = decision.attempts
        last = len(attempts) - 1
        for i, attempt in enumerate(attempts):
            outcome = attempt.outcome
            self.attempts.inc((attempt.model, outcome.value))
            if attempt.ttft_ms > 0:
                self.ttft.observe((attempt.model,), attempt.ttft_ms / 1000)
            if i < last and outcome in _FALLBACK_OUTCOMES:
                self.fallbacks.inc((route, attempt.model, outcome.value))
            if attempt.hedged:
                self.hedges.inc((route, _HEDGE_RESULTS.get(outcome, "failed")))
        usage = report.usage
        if usage is not None and model:
            tokens = self.tokens
            if usage.input_tokens:
                tokens.inc((model, "input"), usage.input_tokens)
            if usage.output_tokens:
                tokens.inc((model, "output"), usage.output_tokens)
            if usage.cached_input_tokens:
                tokens.inc((model, "cached_input"), usage.cached_input_tokens)
            if usage.cost_usd:
                self.cost.inc((model,), usage.cost_usd)
                self.route_cost.inc((route,), usage.cost_usd)

    def state_failure(self, operation: str, action: str) -> None:
        self.state_failures.inc((operation, action))

    def reload(self, result: str) -> None:
        self.reloads.inc((result,))

    def feedback(self, served: Served, score: float | None, label: str) -> None:
        key = (served.route, served.model, served.arm)
        self.feedback_ratings.inc((*key, label))
        if score is not None:
            self.feedback_scores.observe(key, score)
