"""Budget gauges, read at scrape time from the serving Sidecar's in-process limits:

    budget_spent_usd{tenant,period}     spent (settled plus reserved) in this UTC day or month
    budget_limit_usd{tenant,period}     the configured `usd_per_day` / `usd_per_month`

One series per tenant named in `budgets` (the `default` entry: requests without a tenant), so the label set
is bounded by the config, never by client input; other tenants that share the `default` limits each have
their own counter and are not exported. With `state: redis` the counters live in Redis, shared by the
fleet, and no sidecar exports them (each would report the same fleet-wide figure). Alert rules divide the
two (`deploy/observability/tiergate-alerts.yaml`: budget nearly spent, burning too fast).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tiergate.config import Config
from tiergate.governance import LocalGovernor


class BudgetCollector(Collector):
    def __init__(self) -> None:
        self.view: Callable[[], object | None] = lambda: None

    def collect(self) -> Iterator[Metric]:
        spent = GaugeMetricFamily(
            "tiergate_budget_spent_usd",
            "Spent in the current UTC day or month, per tenant with a budget (in-process limits only)",
            labels=["tenant", "period"],
        )
        limit = GaugeMetricFamily(
            "tiergate_budget_limit_usd",
            "Configured budget per tenant and period",
            labels=["tenant", "period"],
        )
        live = self.view()
        governor = getattr(live, "governor", None)
        config = getattr(live, "config", None)
        if isinstance(governor, LocalGovernor) and isinstance(config, Config):
            for tenant, limits in config.budgets.items():
                for period, usd in (("day", limits.usd_per_day), ("month", limits.usd_per_month)):
                    if usd:
                        limit.add_metric([tenant, period], usd)
                        spent.add_metric([tenant, period], governor.spent_usd(tenant, period))
        yield spent
        yield limit
