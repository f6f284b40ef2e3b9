"""Recent activity for the control panel (`server/ui.py`): last decisions, cost per tenant, last reload.

Fed by `Telemetry.emit` after each answer, read by the panel's data endpoint; nothing on the request path
reads it. Memory is bounded whatever the traffic: the decisions are a ring buffer of `MAX_DECISIONS`, and
tenants (client input) beyond `MAX_TENANTS` are added up under `OTHER_TENANTS`.

A decision summary holds what the decision record holds minus everything free-form: no prompt or answer text
(even with `telemetry.log_content`), no error messages (an upstream's may quote the prompt or a key), only
outcomes, the ids of matched rules, the planner's own reasons, and numbers.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tiergate.errors import LimitExceeded

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


def summarise(report: Report) -> dict[str, Any]:
    """The panel's view of one finished request: no text of the prompt, answer or errors."""
    decision = report.decision
    error = report.error
    usage = report.usage
    out: dict[str, Any] = {
        "ts": report.started_at,
        "route": decision.route if decision is not None else "",
        "task": report.request.task,
        "tenant": report.request.tenant,
        "stream": report.request.stream,
        "outcome": "ok" if error is None else report.error_kind,
        "limit": error.limit if isinstance(error, LimitExceeded) else "",
        "latency_ms": round(report.duration_s * 1000, 3),
        "cost_usd": usage.cost_usd if usage is not None else (decision.cost_usd if decision else 0.0),
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
        self.decisions: deque[dict[str, Any]] = deque(maxlen=max_decisions)
        self.tenants: dict[str, TenantTotals] = {}
        self._max_tenants = max_tenants
        self.reload = ReloadResult(time.time(), "ok", "")
        self.reloads = 0

    def observe(self, report: Report) -> None:
        summary = summarise(report)
        self.decisions.append(summary)
        tenant = report.request.tenant or NO_TENANT
        totals = self.tenants.get(tenant)
        if totals is None:
            if len(self.tenants) >= self._max_tenants:
                tenant = OTHER_TENANTS
            totals = self.tenants.setdefault(tenant, TenantTotals())
        totals.requests += 1
        totals.cost_usd += summary["cost_usd"]

    def reloaded(self, result: str, detail: str = "") -> None:
        self.reload = ReloadResult(time.time(), result, detail)
        self.reloads += 1
