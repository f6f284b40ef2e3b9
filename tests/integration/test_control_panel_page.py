"""panel.js in headless Chromium against a canned `/ui/api/state`, for what a live sidecar of this tree cannot
show yet or should never send: on-device worker state, restarts and last error, and client-chosen names
(tenant, task) that look like HTML, which must appear as text and never run; and a route's response cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.headless_chromium import Chromium, chromium_path
from tests.integration.test_control_panel import parse_fields

pytestmark = pytest.mark.skipif(
    chromium_path() is None,
    reason="chromium is not installed: `make setup` installs it (apt-get install chromium)",
)
HOSTILE = "<img src=x onerror=\"document.title='owned'\">"


def model(name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "llama_cpp",
        "on_device": True,
        "breaker": "closed",
        "ttft_ms": 41.0,
        "tokens_per_s": 97.3,
        "samples": 12,
        "queue": 3,
        "worker": "up",
        "worker_restarts": 0,
        "worker_error": "",
        "attempts": {"ok": 12},
        "served": 12.0,
        "cost_usd": 0.0,
    } | overrides


def route(name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "configured": True,
        "objective": "cost",
        "chain": ["local"],
        "requests": 8.0,
        "errors": 0.0,
        "by_model": {"local": 8.0},
        "by_outcome": {"ok": 8.0},
        "fallbacks": 0.0,
        "fallback_rate": 0.0,
        "hedges": 0.0,
        "hedge_rate": 0.0,
        "p50_ms": 12.0,
        "p99_ms": 40.0,
        "cost_usd": 0.0,
    } | overrides


STATE: dict[str, Any] = {
    "generated_at": 1_800_000_000.0,
    "version": "0.1.0",
    "uptime_s": 7380.0,
    "in_flight": 2,
    "ready": True,
    "auth": False,
    "totals": {"requests": 13, "errors": 1, "fallbacks": 0, "cost_usd": 0.0, "limit_rejections": 0},
    "models": [
        model("local"),
        model("crashy", worker="down", worker_restarts=3, worker_error="worker exited with signal SIGSEGV"),
    ],
    "routes": [
        route("support", cache={"lookups": 8.0, "hit_rate": 0.5, "hits": {"exact": 3.0, "semantic": 1.0}}),
        route("uncached", cache={"lookups": 0, "hit_rate": None, "hits": {}}),
    ],
    "tenants": [
        {
            "tenant": HOSTILE,
            "requests": 1,
            "cost_usd": 0.0,
            "usd_per_day": None,
            "usd_per_month": None,
            "spent_day_usd": None,
            "spent_month_usd": None,
        }
    ],
    "decisions": [
        {
            "ts": 1_800_000_000.0,
            "route": "default",
            "task": HOSTILE,
            "tenant": HOSTILE,
            "stream": False,
            "outcome": "ok",
            "limit": "",
            "latency_ms": 12.0,
            "cost_usd": 0.0,
            "sensitivity": "restricted",
            "matched_rules": ["email"],
            "reason": "restricted data: on-device only",
            "served_by": "local",
            "overhead_ms": 0.2,
            "attempts": [
                {"model": "local", "outcome": "ok", "ttft_ms": 40.0, "latency_ms": 12.0, "hedged": False}
            ],
            "skipped": [],
        }
    ],
    "config": {
        "file": None,
        "models": 2,
        "routes": 1,
        "rules": 16,
        "budgets": 0,
        "state": "in-process",
        "last_reload": {"at": 1_800_000_000.0, "result": "rejected", "detail": "models.x: unknown key"},
        "reloads_ok": 0.0,
        "reloads_rejected": 1.0,
    },
}


@pytest.fixture
def canned_panel() -> Iterator[str]:
    """The panel's assets and a canned state on a loopback server; yields its base URL."""
    assets = resources.files("tiergate.server") / "ui_assets"
    files = {
        "/ui": (assets / "panel.html", "text/html"),
        "/ui/panel.js": (assets / "panel.js", "text/javascript"),
        "/ui/panel.css": (assets / "panel.css", "text/css"),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ui/api/state":
                body, kind = orjson.dumps(STATE), "application/json"
            elif self.path in files:
                resource, kind = files[self.path]
                body = resource.read_bytes()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_worker_state_and_hostile_names_render_as_text(canned_panel: str, tmp_path: Path) -> None:
    with Chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.navigate(f"{canned_panel}/ui")
        page.wait_for("Number(document.body.dataset.rendered) >= 1")
        html = page.evaluate("document.documentElement.outerHTML")
        title = page.evaluate("document.title")
        injected = page.evaluate("document.querySelectorAll('main img').length")
    fields = parse_fields(html)
    assert fields["model.local.worker"] == ("up", "up, 0 restarts")
    assert fields["model.crashy.worker"] == ("down", "down, 3 restartsworker exited with signal SIGSEGV")
    assert fields["model.local.queue"] == ("3", "3")
    # The response cache per route: the share of lookups it answered, and its hits by kind.
    assert fields["route.support.cache_hit_rate"] == ("0.5", "50.0% exact 3 · semantic 1")
    assert fields["route.uncached.cache_hit_rate"] == ("", "\N{EN DASH}")  # no lookups: nothing to show
    assert fields["decision.0.sensitivity"][1] == "restricted"
    # The names are shown as text (escaped in the DOM), never parsed as markup.
    assert (title, injected) == ("tiergate control panel", 0)
    assert fields["decision.0.tenant"][1] == HOSTILE
    assert "&lt;img src=x" in html
