"""What the control panel shows, as one JSON document (`GET /ui/api/state`): read from `Sidecar.status()`,
the metrics and the recent activity that telemetry keeps. Nothing here is on the request path.

Every figure that `/metrics` also exports is read from the same series, so the page and a Prometheus scrape
agree: requests, fallbacks, hedges and cost are the counters' values, and p50/p99 latency is computed from
the `tiergate_request_duration_seconds` buckets the way PromQL's `histogram_quantile` does. Tenants' cost
comes from `telemetry.recent` (bounded), their budget use from the governor when it is in-process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from tiergate.governance import DEFAULT_TENANT, LocalGovernor, limits_for
from tiergate.sidecar import Sidecar
from tiergate.telemetry import Telemetry
from tiergate.telemetry.recent import NO_TENANT, OTHER_TENANTS

DECISIONS_SHOWN = 50
UNPLANNED_ROUTE = "(unplanned)"  # requests that failed before a route was chosen (invalid, unknown task)


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """PromQL's `histogram_quantile` over one series: `counts` per bucket (not cumulative), the last one
    above the last bound. Linear within the bucket; a rank in the +Inf bucket gives the last bound."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    below = 0.0
    for i, count in enumerate(counts):
        if below + count >= rank and count > 0:
            if i == len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - below) / count
        below += count
    return bounds[-1]


def _sum_by(values: dict[tuple[str, ...], float], index: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in values.items():
        out[key[index]] = out.get(key[index], 0.0) + value
    return out


def _route_label(route: str) -> str:
    return route or UNPLANNED_ROUTE


def cache_figures(
    route: str,
    lookups: dict[tuple[str, ...], float],
    hits: dict[tuple[str, ...], float],
) -> dict[str, Any]:
    """A route's response cache: its lookups, the share answered from the cache (None without lookups),
    and its hits by kind (exact, semantic), from the series `tiergate_cache_lookups_total{route,result}`
    and `tiergate_cache_hits_total{route,match}`."""
    looked = sum(count for (r, _), count in lookups.items() if r == route)
    hit = sum(count for (r, result), count in lookups.items() if r == route and result == "hit")
    return {
        "lookups": looked,
        "hit_rate": hit / looked if looked else None,
        "hits": {match: count for (r, match), count in hits.items() if r == route},
    }


def _routes(sidecar: Sidecar, telemetry: Telemetry) -> list[dict[str, Any]]:
    metrics = telemetry.metrics
    names = list(sidecar.config.routes)
    for route, *_ in metrics.requests.values:
        if route not in names:
            names.append(route)
    fallbacks = _sum_by(metrics.fallbacks.values, 0)
    hedges = _sum_by(metrics.hedges.values, 0)
    costs = _sum_by(metrics.route_cost.values, 0)
    out = []
    for route in names:
        by_model: dict[str, float] = {}
        by_outcome: dict[str, float] = {}
        for (r, model, outcome), count in metrics.requests.values.items():
            if r != route:
                continue
            if model:
                by_model[model] = by_model.get(model, 0.0) + count
            by_outcome[outcome] = by_outcome.get(outcome, 0.0) + count
        requests = sum(by_outcome.values())
        series = metrics.duration.values.get((route,))
        p50 = p99 = None
        if series is not None:
            counts = series[:-1]
            p50 = histogram_quantile(0.5, metrics.duration.bounds, counts)
            p99 = histogram_quantile(0.99, metrics.duration.bounds, counts)
        config = sidecar.config.routes.get(route)
        out.append(
            {
                "name": _route_label(route),
                "configured": config is not None,
                "objective": config.objective if config is not None else "",
                "chain": list(config.chain) if config is not None else [],
                "requests": requests,
                "errors": requests - by_outcome.get("ok", 0.0),
                "by_model": by_model,
                "by_outcome": by_outcome,
                "fallbacks": fallbacks.get(route, 0.0),
                "fallback_rate": fallbacks.get(route, 0.0) / requests if requests else 0.0,
                "hedges": hedges.get(route, 0.0),
                "hedge_rate": hedges.get(route, 0.0) / requests if requests else 0.0,
                "p50_ms": None if p50 is None else p50 * 1000,
                "p99_ms": None if p99 is None else p99 * 1000,
                "cost_usd": costs.get(route, 0.0),
                "cache": cache_figures(route, metrics.cache.values, metrics.cache_hits.values),
            }
        )
    return out


def _models(sidecar: Sidecar, telemetry: Telemetry) -> list[dict[str, Any]]:
    metrics = telemetry.metrics
    served: dict[str, float] = {}
    for (_, model, outcome), count in metrics.requests.values.items():
        if outcome == "ok":
            served[model] = served.get(model, 0.0) + count
    cost = _sum_by(metrics.cost.values, 0)
    out = []
    for state in sidecar.status().models:
        attempts = {
            outcome: n for (model, outcome), n in metrics.attempts.values.items() if model == state.name
        }
        out.append(
            {
                **asdict(state),
                "attempts": attempts,
                "served": served.get(state.name, 0.0),
                "cost_usd": cost.get(state.name, 0.0),
            }
        )
    return out


def _tenants(sidecar: Sidecar, telemetry: Telemetry) -> list[dict[str, Any]]:
    budgets = sidecar.config.budgets
    governor = sidecar.governor
    seen = dict(telemetry.recent.tenants)
    names: list[str] = list(seen)
    names += [t for t in budgets if t != DEFAULT_TENANT and t not in seen]
    out = []
    for name in names:
        totals = seen.get(name)
        key = DEFAULT_TENANT if name == NO_TENANT else name
        limits = limits_for(budgets, key) if name != OTHER_TENANTS else None
        row: dict[str, Any] = {
            "tenant": name,
            "requests": totals.requests if totals is not None else 0,
            "cost_usd": totals.cost_usd if totals is not None else 0.0,
            "usd_per_day": limits.usd_per_day if limits is not None else None,
            "usd_per_month": limits.usd_per_month if limits is not None else None,
            "spent_day_usd": None,
            "spent_month_usd": None,
        }
        if limits is not None and isinstance(governor, LocalGovernor):
            row["spent_day_usd"] = governor.spent_usd(key, "day")
            row["spent_month_usd"] = governor.spent_usd(key, "month")
        out.append(row)
    out.sort(key=lambda r: (-r["cost_usd"], -r["requests"], r["tenant"]))
    return out


def _decisions(recent: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**d, "route": _route_label(d["route"])} for d in recent]


def panel_state(
    sidecar: Sidecar, telemetry: Telemetry, *, config_path: str | None, auth: bool
) -> dict[str, Any]:
    """The control panel's whole state: one JSON-serialisable dict."""
    status = sidecar.status()
    metrics = telemetry.metrics
    recent = telemetry.recent
    reloads = _sum_by(metrics.reloads.values, 0)
    requests = sum(metrics.requests.values.values())
    ok = sum(v for k, v in metrics.requests.values.items() if k[2] == "ok")
    return {
        "generated_at": time.time(),
        "version": status.version,
        "uptime_s": status.uptime_s,
        "in_flight": status.in_flight,
        "ready": telemetry.ready,
        "auth": auth,
        "totals": {
            "requests": requests,
            "errors": requests - ok,
            "fallbacks": sum(metrics.fallbacks.values.values()),
            "cost_usd": sum(metrics.cost.values.values()),
            "limit_rejections": sum(metrics.limit_rejections.values.values()),
        },
        "models": _models(sidecar, telemetry),
        "routes": _routes(sidecar, telemetry),
        "tenants": _tenants(sidecar, telemetry),
        "decisions": _decisions(recent.decisions(DECISIONS_SHOWN)),
        "config": {
            "file": config_path,
            "models": len(sidecar.config.models),
            "routes": len(sidecar.config.routes),
            "rules": len(sidecar.config.rules),
            "budgets": len(sidecar.config.budgets),
            "state": "redis" if sidecar.config.state is not None else "in-process",
            "last_reload": asdict(recent.reload),
            "reloads_ok": reloads.get("ok", 0.0),
            "reloads_rejected": reloads.get("rejected", 0.0),
        },
    }
