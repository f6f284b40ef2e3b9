"""deploy/observability: the alert rules pass `promtool check rules` and their own `promtool test rules`, and
every expression of the rules and the Grafana dashboard is valid PromQL naming metrics that a live sidecar's
`/metrics` really exports (after real traffic)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
RULES = OBSERVABILITY / "tiergate-alerts.yaml"
RULE_TESTS = OBSERVABILITY / "tiergate-alerts.test.yaml"
DASHBOARD = OBSERVABILITY / "tiergate-dashboard.json"
METRIC = re.compile(r"\btiergate_[a-z_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
# Grafana's variables, replaced by what they expand to, so that promtool can parse the expressions.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$instance": ".*", "$route": ".*"}

requires_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed: `make setup` installs it (apt-get install prometheus)",
)


def promtool(*args: str, cwd: Path = OBSERVABILITY) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard: panel targets, variable queries, annotations."""
    dashboard = json.loads(DASHBOARD.read_text())
    found: dict[str, str] = {}

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            # label_values(METRIC{...}, label) is Grafana's, not PromQL: its series selector is.
            selector = re.fullmatch(r"label_values\((.*), *\w+\)", query["query"])
            assert selector is not None, query
            found[f"variable {variable['name']}"] = selector.group(1)
    for annotation in dashboard["annotations"]["list"]:
        found[f"annotation {annotation['name']!r}"] = annotation["expr"]
    return found


@pytest.fixture(scope="module")
def scraped_names(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The sample names a sidecar exports after traffic (a fallback, a hedge, a limit, a budget), with an
    on-device model configured so that its worker's series are there too."""
    hosted = {"api_key": "env:TIERGATE_TEST_KEY"}
    config = {
        "models": {
            "local": {"provider": "llama_cpp", "path": "embedded", "context_window": 512},
            "primary": {"provider": "openai", "base_url": fake.url_openai, "model": "gpt-obs", **hosted},
            "backup": {
                "provider": "anthropic",
                "base_url": fake.url_anthropic,
                "model": "claude-obs",
                **hosted,
            },
        },
        "routes": {"default": {"chain": ["primary", "backup"], "retries": 0, "hedge_after_ms": 2000}},
        "budgets": {"default": {"usd_per_day": 5.0, "usd_per_month": 50.0}},
    }
    running: SidecarProcess
    with run_sidecar(
        config, tmp_path_factory.mktemp("obs"), env={"TIERGATE_TEST_KEY": "sk-obs-0123456789"}
    ) as running:
        fake.script("status:503", model="gpt-obs")
        for _ in range(3):
            running.stub.Complete(
                pb.CompleteRequest(messages=[pb.Message(role="user", content="hello")]), timeout=10
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # metrics are written just after each answer
            text = httpx.get(f"http://{running.http_address}/metrics", timeout=5).text
            if 'tiergate_requests_total{model="primary",outcome="ok",route="default"} 2.0' in text:
                break
            time.sleep(0.05)
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


@requires_promtool
def test_the_alert_rules_pass_promtool_check() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in checked.stdout


@requires_promtool
def test_each_alert_fires_on_its_series_in_promtool_test() -> None:
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    covered = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    untested = (
        set(rule_expressions()) - covered - {"TiergateBudgetRejections", "TiergateConfigReloadRejected"}
    )
    assert not untested, f"alerts without a promtool test: {untested}"


@requires_promtool
def test_every_dashboard_expression_is_valid_promql(tmp_path: Path) -> None:
    expressions = dashboard_expressions()
    rules = []
    for i, expr in enumerate(expressions.values()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:expression_{i}", "expr": expr})
    path = tmp_path / "dashboard-as-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"  # pick the Prometheus on import
            assert panel["targets"], panel["title"]
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("breaker", "fallback", "budget", "queue", "worker restarts", "cost", "latency"):
        assert topic in titles


def test_every_metric_the_dashboard_and_the_rules_use_is_exported(scraped_names: set[str]) -> None:
    used: dict[str, set[str]] = {}
    for where, expr in {
        **dashboard_expressions(),
        **{f"alert {k}": v for k, v in rule_expressions().items()},
    }.items():
        for name in METRIC.findall(expr):
            used.setdefault(name, set()).add(where)
    missing = {name: sorted(where) for name, where in used.items() if name not in scraped_names}
    assert not missing, f"metrics that /metrics does not export: {missing}"
    assert {"tiergate_local_restarts_total", "tiergate_local_worker_up"} <= set(used)  # the worker's alerts
    for name in ("tiergate_breaker_state", "tiergate_fallbacks_total", "tiergate_route_cost_usd_total"):
        assert name in used and name in scraped_names
    assert {"tiergate_budget_spent_usd", "tiergate_budget_limit_usd", "tiergate_local_queue_depth"} <= set(
        used
    )
