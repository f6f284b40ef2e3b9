"""The control panel (`/ui`) in a real headless Chromium against a running sidecar (subprocess) behind a
bearer token, after traffic with faults (a fallback, a hedge, a breaker that opens, a rate limit, a restricted
request refused, an invalid request): the page's figures match the `/metrics` scrape and `Status`, and no
prompt text, API key or token appears in the page or its data. Without the token everything is refused.

A screenshot of the page is saved in the test's tmp dir (and in $TIERGATE_UI_SCREENSHOT when set, which is how
`docs/control-panel.png` is made).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.provider_server import FakeProvider
from tests.integration.headless_chromium import Chromium, chromium_path
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.server.ui_state import histogram_quantile
from tiergate.v1 import tiergate_pb2 as pb

SECRET = "sk-panel-0123456789-never-print-me"
TOKEN = "panel-token-4f1c9e2b7a"
PROMPT = "Summarise the board minutes of the quarter please"
EMAIL = "jane.doe@example.com"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def config(fake: FakeProvider) -> dict[str, Any]:
    hosted = {"api_key": "env:TIERGATE_TEST_KEY"}
    price = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}
    return {
        "listen": {"auth_token": "env:TIERGATE_TEST_TOKEN"},
        "models": {
            "primary": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "gpt-test",
                "price": price,
            }
            | hosted,
            "backup": {"provider": "anthropic", "base_url": fake.url_anthropic, "model": "claude-test"}
            | hosted,
            "stalled": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "fault:stall_first_byte:2000",
            }
            | hosted,
            "broken": {"provider": "openai", "base_url": fake.url_openai, "model": "fault:status:500"}
            | hosted,
        },
        "routes": {
            "default": {"chain": ["primary", "backup"], "retries": 0},
            "hedged": {"chain": ["stalled", "backup"], "hedge_after_ms": 50},
            "flaky": {"chain": ["broken", "backup"], "retries": 0},
        },
        "breaker": {"min_calls": 2, "window": 2, "failure_rate": 100, "open_ms": 600000},
        "budgets": {"acme": {"usd_per_day": 0.01}, "limited": {"requests_per_minute": 1}},
    }


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    env = {"TIERGATE_TEST_KEY": SECRET, "TIERGATE_TEST_TOKEN": TOKEN}
    with run_sidecar(config(fake), tmp_path_factory.mktemp("panel"), env=env) as running:
        yield running


def message(task: str = "", tenant: str = "", content: str = PROMPT) -> pb.CompleteRequest:
    return pb.CompleteRequest(task=task, tenant=tenant, messages=[pb.Message(role="user", content=content)])


def send_traffic(sidecar: SidecarProcess, fake: FakeProvider) -> int:
    """Requests with every kind of fault; returns how many were sent."""
    stub = sidecar.stub
    sent = 0

    def complete(request: pb.CompleteRequest, code: grpc.StatusCode | None = None) -> None:
        nonlocal sent
        sent += 1
        if code is None:
            stub.Complete(request, timeout=10, metadata=AUTH)
            return
        with pytest.raises(grpc.RpcError) as failed:
            stub.Complete(request, timeout=10, metadata=AUTH)
        assert failed.value.code() == code

    for tenant in ("acme", "acme", "globex"):
        complete(message(tenant=tenant))
    fake.script("status:503", model="gpt-test")
    complete(message(tenant="acme"))  # primary fails, backup serves: a fallback
    complete(message("hedged"))  # stalled is hedged, backup wins
    for _ in range(3):
        complete(message("flaky"))  # broken fails twice, then its breaker is open and it is skipped
    complete(message(tenant="limited"))
    complete(message(tenant="limited"), grpc.StatusCode.RESOURCE_EXHAUSTED)
    complete(message(content=f"Forward this to {EMAIL}"), grpc.StatusCode.FAILED_PRECONDITION)
    complete(pb.CompleteRequest(), grpc.StatusCode.INVALID_ARGUMENT)
    return sent


def scrape(sidecar: SidecarProcess) -> Samples:
    text = httpx.get(f"http://{sidecar.http_address}/metrics", headers=dict(AUTH), timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, key), v in samples.items() if n == name and wanted <= set(key))


def quantile_ms(samples: Samples, q: float, route: str) -> float | None:
    """histogram_quantile over the scraped cumulative buckets, in ms."""
    buckets = sorted(
        (float(dict(key)["le"]), v)
        for (n, key), v in samples.items()
        if n == "tiergate_request_duration_seconds_bucket" and dict(key)["route"] == route
    )
    bounds = [le for le, _ in buckets if le != float("inf")]
    cumulative = [v for _, v in buckets]
    counts = [b - a for a, b in zip([0.0, *cumulative], cumulative, strict=False)]
    found = histogram_quantile(q, bounds, counts)
    return None if found is None else found * 1000


class Fields(HTMLParser):
    """`data-field` -> (data-value, visible text) of every element that has one."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, tuple[str, str]] = {}
        self._open: list[tuple[str, str, str, list[str]]] = []  # tag, field, value, text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        field = a.get("data-field")
        if field is not None:
            self._open.append((tag, field, a.get("data-value") or "", []))

    def handle_data(self, data: str) -> None:
        for *_, text in self._open:
            text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            _, field, value, text = self._open.pop()
            self.fields[field] = (value, "".join(text).strip())


def parse_fields(html: str) -> dict[str, tuple[str, str]]:
    parser = Fields()
    parser.feed(html)
    return parser.fields


requires_chromium = pytest.mark.skipif(
    chromium_path() is None,
    reason="chromium is not installed: `make setup` installs it (apt-get install chromium)",
)


def test_without_the_token_the_page_and_its_data_are_refused(sidecar: SidecarProcess) -> None:
    base = f"http://{sidecar.http_address}"
    page = httpx.get(f"{base}/ui", timeout=5)
    assert (page.status_code, page.headers["location"]) == (303, "/ui/login")
    for path in ("/ui/api/state", "/ui/panel.js", "/ui/panel.css"):
        assert httpx.get(f"{base}{path}", timeout=5).status_code == 401, path
    wrong = httpx.get(f"{base}/ui/api/state", headers={"authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    forged = httpx.get(f"{base}/ui/api/state", headers={"cookie": "tiergate_ui=9999999999.abcdef"}, timeout=5)
    assert forged.status_code == 401
    login = httpx.get(f"{base}/ui/login", timeout=5)  # the form itself is open
    assert login.status_code == 200 and 'name="token"' in login.text
    refused = httpx.post(f"{base}/ui/login", data={"token": "nope"}, timeout=5)
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    accepted = httpx.post(f"{base}/ui/login", data={"token": TOKEN}, timeout=5)
    assert (accepted.status_code, accepted.headers["location"]) == (303, "/ui")
    cookie = accepted.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert TOKEN not in cookie
    session = cookie.split(";", 1)[0]
    assert httpx.get(f"{base}/ui/api/state", headers={"cookie": session}, timeout=5).status_code == 200
    # The cookie opens the panel only: the API and the metrics still need the bearer token.
    assert httpx.get(f"{base}/metrics", headers={"cookie": session}, timeout=5).status_code == 401
    assert httpx.get(f"{base}/v1/models", headers={"cookie": session}, timeout=5).status_code == 401
    assert TOKEN not in "".join(sidecar.log)


@requires_chromium
def test_the_page_in_chromium_matches_metrics_and_status(
    sidecar: SidecarProcess, fake: FakeProvider, tmp_path: Path
) -> None:
    base = f"http://{sidecar.http_address}"
    with Chromium(tmp_path / "profile") as browser:
        page = browser.new_page(width=1400, height=900)
        page.navigate(f"{base}/ui")
        page.wait_for("location.pathname === '/ui/login' && document.readyState === 'complete'")
        page.evaluate(
            f"document.getElementById('token').value = {orjson.dumps(TOKEN).decode()};"
            "document.querySelector('form').submit(); true"
        )
        page.wait_for("location.pathname === '/ui' && Number(document.body.dataset.rendered) >= 1")
        # The traffic arrives while the page is open: it updates itself (and draws the trend).
        sent = send_traffic(sidecar, fake)
        rendered = page.evaluate("Number(document.body.dataset.rendered)")
        page.wait_for(
            "(() => { const f = document.querySelector('[data-field=\"totals.requests\"]');"
            f" return f && Number(f.dataset.value) === {sent}"
            f" && Number(document.body.dataset.rendered) >= {rendered + 2}; }})()"
        )
        html = page.evaluate("document.documentElement.outerHTML")
        shot = page.screenshot(tmp_path / "control-panel.png")
    if os.environ.get("TIERGATE_UI_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["TIERGATE_UI_SCREENSHOT"])
    assert shot.stat().st_size > 10_000

    samples = scrape(sidecar)
    status = sidecar.stub.Status(pb.StatusRequest(), timeout=5, metadata=AUTH)
    fields = parse_fields(html)

    def value(field: str) -> float:
        return float(fields[field][0])

    assert value("totals.requests") == total(samples, "tiergate_requests_total") == sent
    assert value("totals.fallbacks") == total(samples, "tiergate_fallbacks_total") >= 2
    assert value("totals.cost_usd") == pytest.approx(total(samples, "tiergate_cost_usd_total"))
    assert value("totals.limit_rejections") == total(samples, "tiergate_limit_rejections_total") == 1
    for route in ("default", "hedged", "flaky"):
        requests = total(samples, "tiergate_requests_total", route=route)
        assert value(f"route.{route}.requests") == requests > 0
        assert fields[f"route.{route}.requests"][1] == str(int(requests))
        fallbacks = total(samples, "tiergate_fallbacks_total", route=route)
        assert value(f"route.{route}.fallback_rate") == pytest.approx(fallbacks / requests)
        hedges = total(samples, "tiergate_hedges_total", route=route)
        assert value(f"route.{route}.hedge_rate") == pytest.approx(hedges / requests)
        assert value(f"route.{route}.cost_usd") == pytest.approx(
            total(samples, "tiergate_route_cost_usd_total", route=route)
        )
        for q, name in ((0.5, "p50_ms"), (0.99, "p99_ms")):
            assert value(f"route.{route}.{name}") == pytest.approx(quantile_ms(samples, q, route))
        by_model = orjson.loads(fields[f"route.{route}.by_model"][0])
        for model, count in by_model.items():
            assert count == total(samples, "tiergate_requests_total", route=route, model=model)
    assert value("route.hedged.hedge_rate") == 1.0
    for model in status.models:
        breaker = fields[f"model.{model.name}.breaker"][0]
        assert breaker == model.breaker
        assert total(samples, "tiergate_breaker_state", model=model.name, state=breaker) == 1
        assert value(f"model.{model.name}.ttft_ms") == pytest.approx(model.ttft_ms)
        assert value(f"model.{model.name}.samples") == model.samples
        served = total(samples, "tiergate_requests_total", model=model.name, outcome="ok")
        assert value(f"model.{model.name}.served") == served
        assert value(f"model.{model.name}.cost_usd") == pytest.approx(
            total(samples, "tiergate_cost_usd_total", model=model.name)
        )
    assert fields["model.broken.breaker"] == ("open", "open")
    assert fields["model.primary.breaker"] == ("closed", "closed")
    assert value("tenant.acme.requests") == 3
    assert fields["tenant.acme.day"][1].endswith("/ 0.010000")
    assert total(samples, "tiergate_budget_limit_usd", tenant="acme", period="day") == 0.01
    spent = total(samples, "tiergate_budget_spent_usd", tenant="acme", period="day")
    assert value("tenant.acme.day") == pytest.approx(spent) == value("tenant.acme.cost_usd")
    # The newest decision first: the invalid request, then the restricted one, refused before any call.
    assert fields["decision.0.outcome"][0] == "invalid_request"
    assert fields["decision.1.outcome"][0] == "sensitive_data_blocked"
    assert fields["decision.1.rules"][0] == "email"
    assert fields["decision.1.sensitivity"][1] == "restricted"
    assert fields["decision.2.outcome"] == ("limit_exceeded", "limit_exceeded: requests_per_minute")

    # Nothing secret or private anywhere: the page as rendered, its data, its assets.
    state = httpx.get(f"{base}/ui/api/state", headers=dict(AUTH), timeout=5).text
    assets = "".join(
        httpx.get(f"{base}{p}", headers=dict(AUTH), timeout=5).text for p in ("/ui", "/ui/panel.js")
    )
    for text in (html, state, assets):
        for private in (SECRET, TOKEN, PROMPT, EMAIL, "board minutes"):
            assert private not in text


def test_the_state_shows_the_config_and_a_rejected_reload(sidecar: SidecarProcess) -> None:
    base = f"http://{sidecar.http_address}"
    assert sidecar.config_path is not None
    good = sidecar.config_path.read_text()
    sidecar.config_path.write_text(good + "\nnot_a_key: 1\n")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = httpx.get(f"{base}/ui/api/state", headers=dict(AUTH), timeout=5).json()
            if state["config"]["reloads_rejected"]:
                break
            time.sleep(0.2)
    finally:
        sidecar.config_path.write_text(good)
    config = state["config"]
    assert config["file"] == str(sidecar.config_path)
    assert (config["models"], config["routes"], config["reloads_rejected"]) == (4, 3, 1)
    assert config["last_reload"]["result"] == "rejected"
    assert "not_a_key" in config["last_reload"]["detail"]
    assert SECRET not in orjson.dumps(state).decode()


def test_without_a_token_configured_the_panel_is_open(fake_provider: FakeProvider, tmp_path: Path) -> None:
    cfg = config(fake_provider)
    del cfg["listen"]
    with run_sidecar(cfg, tmp_path, env={"TIERGATE_TEST_KEY": SECRET}) as running:
        base = f"http://{running.http_address}"
        page = httpx.get(f"{base}/ui", timeout=5)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert '<script src="/ui/panel.js"' in page.text
        assert "http" not in page.text  # no external URL: nothing loads from elsewhere
        login = httpx.get(f"{base}/ui/login", timeout=5)
        assert (login.status_code, login.headers["location"]) == (303, "/ui")
        state = httpx.get(f"{base}/ui/api/state", timeout=5).json()
        assert state["auth"] is False and sorted(m["name"] for m in state["models"]) == sorted(cfg["models"])
        assert httpx.post(f"{base}/ui/api/state", content=b"x", timeout=5).status_code == 405
