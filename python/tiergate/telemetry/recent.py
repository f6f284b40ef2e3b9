"""Recent activity for the control panel (`server/ui.py`): last decisions, cost per tenant, last reload.

Fed by `Telemetry.emit` after each answer, read by the panel's data endpoint; nothing on the request path
reads it. Memory is bounded whatever the traffic: the decisions are a ring buffer of `MAX_DECISIONS`, and
tenants (client input) beyond `MAX_TENANTS` are added up under `OTHER_TENANTS`.

A decision summary holds what the decision record holds minus everything free-form: no prompt or answer text
(even with `telemetry.log_content`), no error messages (an upstream's may quote the prompt or a key), only
outcomes, the ids of matched rules, the planner's own reasons, and numbers. `observe` keeps the few fields it
needs and the finished `Decision` (never the `Request`, which holds the prompt); summaries are built when the
panel asks, so a request pays about a microsecond for this.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tiergate.errors import LimitExceeded
from tiergate.request import Decision

if TYPE_CHECKING:
    from tiergate.telemetry import Report

MAX_DECISIONS = 200
MAX_TENANTS = 100
OTHER_TENANTS = "(other)"
NO_TENANT = "(none)"


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """The last config (re)load: when (wall clock), `ok` or `rejected`, and why it was rejected."""

    at: float
    result: str
    detail: str = ""


@dataclass(slots=True)
class TenantTotals:
    requests: int = 0
    cost_usd: float = 0.0


@dataclass(slots=True)  # not frozen: a frozen dataclass costs twice as much to build
class Finished:
    """What is kept of one finished request until the panel reads it."""

    ts: float
    task: str
    tenant: str
    stream: bool
    outcome: str
    limit: str
    duration_s: float
    cost_usd: float
    decision: Decision | None

    @classmethod
    def of(cls, report: Report) -> Finished:
        decision = report.decision
        error = report.error
        usage = report.usage
        request = report.request
        return cls(
            report.started_at,
            request.task,
            request.tenant,
            request.stream,
            "ok" if error is None else report.error_kind,
            error.limit if isinstance(error, LimitExceeded) else "",
            report.duration_s,
            usage.cost_usd if usage is not None else (decision.cost_usd if decision is not None else 0.0),
            decision,
        )


def summarise(finished: Finished) -> dict[str, Any]:
    """The panel's view of one finished request: no text of the prompt, answer or errors."""
    decision = finished.decision
    out: dict[str, Any] = {
        "ts": finished.ts,
        "route": decision.route if decision is not None else "",
        "task": finished.task,
        "tenant": finished.tenant,
        "stream": finished.stream,
        "outcome": finished.outcome,
        "limit": finished.limit,
        "latency_ms": round(finished.duration_s * 1000, 3),
        "cost_usd": finished.cost_usd,
    }
    if decision is not None:
        out["sensitivity"] = decision.sensitivity.name.lower()
        out["matched_rules"] = list(decision.matched_rules)
        out["reason"] = decision.reason
        out["served_by"] = decision.served_by
        out["overhead_ms"] = round(decision.overhead_ms, 3)
        out["attempts"] = [
            {
                "model": a.model,
                "outcome": a.outcome.value,
                "ttft_ms": round(a.ttft_ms, 1),
                "latency_ms": round(a.latency_ms, 1),
                "hedged": a.hedged,
            }
            for a in decision.attempts
        ]
        out["skipped"] = [{"model": s.model, "reason": s.reason} for s in decision.skipped]
    return out


class RecentActivity:
    """The last `max_decisions` summaries, requests and cost per tenant since start, the last reload."""

    def __init__(self, *, max_decisions: int = MAX_DECISIONS, max_tenants: int = MAX_TENANTS) -> None:
        self._finished: deque[Finished] = deque(maxlen=max_decisions)
        self.tenants: dict[str, TenantTotals] = {}
        self._max_tenants = max_tenants
        self.reload = ReloadResult(time.time(), "ok", "")
        self.reloads = 0

    def observe(self, report: Report) -> None:
        finished = Finished.of(report)
        self._finished.append(finished)
        tenant = finished.tenant or NO_TENANT
        totals = self.tenants.get(tenant)
        if totals is None:
            if len(self.tenants) >= self._max_tenants:
                tenant = OTHER_TENANTS
            totals = self.tenants.setdefault(tenant, TenantTotals())
        totals.requests += 1
        totals.cost_usd += finished.cost_usd

    def decisions(self, newest: int = MAX_DECISIONS) -> list[dict[str, Any]]:
        """Summaries of the last `newest` requests, the newest first."""
        kept = list(self._finished)[-newest:]
        return [summarise(f) for f in reversed(kept)]

    def reloaded(self, result: str, detail: str = "") -> None:
        self.reload = ReloadResult(time.time(), result, detail)
        self.reloads += 1
