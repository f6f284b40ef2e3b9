"""telemetry/: decision records (fields, no content unless opted in, secrets redacted) and the metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tiergate._native import CircuitBreaker
from tiergate.config import parse, resolve
from tiergate.errors import AllAttemptsFailed, InvalidRequest, LimitExceeded
from tiergate.local.supervisor import LocalState, WorkerStatus
from tiergate.request import Attempt, Decision, Message, Outcome, Request, Sensitivity, Skip, Usage
from tiergate.telemetry import Report, Telemetry
from tiergate.telemetry.records import LOGGER_NAME, DecisionLog, secrets_of

SECRET = "sk-live-0123456789abcdef"
HEADER_SECRET = "tok-ABCDEFGHIJKLMNOP"
PROMPT = "my account number is 12345, please help"
ANSWER = "Here is the help you asked for"


def config(**telemetry: Any) -> Any:
    data = {
        "models": {
            "mini": {
                "provider": "openai",
                "model": "m",
                "api_key": "env:KEY",
                "headers": {"X-Auth-Token": HEADER_SECRET, "X-Team": "platform-team-name"},
            },
            "backup": {"provider": "anthropic", "model": "b", "api_key": "env:KEY"},
        },
        "routes": {"default": {"chain": ["mini", "backup"]}},
        "telemetry": telemetry,
    }
    return resolve(parse(data), {"KEY": SECRET})


def served_report() -> Report:
    decision = Decision(
        route="default",
        task="classify",
        sensitivity=Sensitivity.INTERNAL,
        complexity="trivial",
        matched_rules=["greeting"],
        attempts=[
            Attempt("mini", Outcome.ERROR, 0.0, 12.5, f"authentication: bad key {SECRET}"),
            Attempt("backup", Outcome.OK, 80.0, 120.25, hedged=True),
        ],
        skipped=[Skip("local", "prompt too long")],
        served_by="backup",
        reason="chain order",
        overhead_ms=0.4321,
        cost_usd=0.0025,
    )
    request = Request("classify", [Message("user", PROMPT)], tenant="acme")
    usage = Usage(input_tokens=100, output_tokens=20, cost_usd=0.0025, cached_input_tokens=60)
    return Report(request, 1_795_337_201.366, 0.1405, decision, usage, ANSWER)


def test_secrets_are_the_api_keys_and_credential_headers() -> None:
    assert secrets_of(config()) == [SECRET, HEADER_SECRET]  # longest first


def test_a_served_request_record() -> None:
    log = DecisionLog(secrets=secrets_of(config()))
    record = log.record(served_report())
    assert record == {
        "ts": "2026-11-22T08:46:41.366Z",
        "route": "default",
        "task": "classify",
        "tenant": "acme",
        "stream": False,
        "outcome": "ok",
        "sensitivity": "INTERNAL",
        "complexity": "trivial",
        "matched_rules": ["greeting"],
        "reason": "chain order",
        "attempts": [
            {
                "model": "mini",
                "outcome": "error",
                "ttft_ms": 0.0,
                "latency_ms": 12.5,
                "error": f"authentication: bad key {SECRET}",
            },
            {"model": "backup", "outcome": "ok", "ttft_ms": 80.0, "latency_ms": 120.25, "hedged": True},
        ],
        "skipped": [{"model": "local", "reason": "prompt too long"}],
        "served_by": "backup",
        "input_tokens": 100,
        "output_tokens": 20,
        "cached_input_tokens": 60,
        "cost_usd": 0.0025,
        "latency_ms": 140.5,
        "overhead_ms": 0.432,
    }


def emitted(log: DecisionLog, report: Report, caplog: pytest.LogCaptureFixture) -> tuple[str, dict[str, Any]]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        log.emit(report)
    (line,) = [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]
    return line, orjson.loads(line)


def test_the_logged_line_never_holds_a_key_nor_content(caplog: pytest.LogCaptureFixture) -> None:
    log = DecisionLog(secrets=secrets_of(config()))
    report = served_report()
    assert report.decision is not None
    report.decision.attempts[1].error = f"header was {HEADER_SECRET}"
    line, record = emitted(log, report, caplog)
    assert SECRET not in line and HEADER_SECRET not in line
    assert record["attempts"][0]["error"] == "authentication: bad key [redacted]"
    assert record["attempts"][1]["error"] == "header was [redacted]"
    assert PROMPT not in line and ANSWER not in line
    assert "prompt" not in record and "answer" not in record


def test_content_is_logged_only_when_opted_in(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry(config(log_content=True))
    _, record = emitted(telemetry.decisions, served_report(), caplog)
    assert record["prompt"] == [{"role": "user", "content": PROMPT}]
    assert record["answer"] == ANSWER
    telemetry.configure(config())  # a reload that turns it off again
    _, record = emitted(telemetry.decisions, served_report(), caplog)
    assert "prompt" not in record and "answer" not in record


def test_records_can_be_turned_off(caplog: pytest.LogCaptureFixture) -> None:
    log = DecisionLog(enabled=False)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        log.emit(served_report())
    assert not [r for r in caplog.records if r.name == LOGGER_NAME]


def test_a_failed_request_record() -> None:
    decision = Decision(route="default", task="", skipped=[Skip("mini", "estimated $1 exceeds ...")])
    error = LimitExceeded(
        "tenant 'acme': the usd_per_day budget of $1 is spent", decision, limit="usd_per_day"
    )
    report = Report(Request("", [Message("user", PROMPT)], tenant="acme"), 0.0, 0.001, decision, error=error)
    record = DecisionLog().record(report)
    assert record["outcome"] == "limit_exceeded"
    assert record["limit"] == "usd_per_day"
    assert record["error"] == "tenant 'acme': the usd_per_day budget of $1 is spent"
    assert record["served_by"] == "" and record["cost_usd"] == 0.0
    # Failed before planning: no decision at all.
    early = Report(Request("", []), 0.0, 0.0, None, error=InvalidRequest("messages is empty"))
    record = DecisionLog().record(early)
    assert record["outcome"] == "invalid_request" and record["route"] == "" and "attempts" not in record


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (None, "ok"),
        (AllAttemptsFailed("x"), "all_attempts_failed"),
        (asyncio.CancelledError(), "cancelled"),
        (RuntimeError("bug"), "internal"),
    ],
)
def test_error_kinds(error: BaseException | None, kind: str) -> None:
    assert Report(Request("", []), 0.0, error=error).error_kind == kind


# -- metrics ----------------------------------------------------------------------------------------------


def sample(telemetry: Telemetry, name: str, **labels: str) -> float | None:
    return telemetry.metrics.registry.get_sample_value(name, labels)


def test_a_served_request_in_the_metrics() -> None:
    telemetry = Telemetry(config())
    telemetry.emit(served_report())
    telemetry.emit(served_report())
    assert sample(telemetry, "tiergate_requests_total", route="default", model="backup", outcome="ok") == 2
    assert sample(telemetry, "tiergate_request_duration_seconds_count", route="default") == 2
    assert sample(telemetry, "tiergate_request_duration_seconds_sum", route="default") == pytest.approx(0.281)
    assert sample(telemetry, "tiergate_overhead_seconds_bucket", route="default", le="0.0005") == 2
    assert sample(telemetry, "tiergate_overhead_seconds_bucket", route="default", le="0.00025") == 0
    assert sample(telemetry, "tiergate_ttft_seconds_count", model="backup") == 2
    assert sample(telemetry, "tiergate_ttft_seconds_count", model="mini") is None  # it produced no token
    assert sample(telemetry, "tiergate_attempts_total", model="mini", outcome="error") == 2
    assert sample(telemetry, "tiergate_fallbacks_total", route="default", model="mini", reason="error") == 2
    assert sample(telemetry, "tiergate_hedges_total", route="default", result="won") == 2
    assert sample(telemetry, "tiergate_tokens_total", model="backup", type="input") == 200
    assert sample(telemetry, "tiergate_tokens_total", model="backup", type="output") == 40
    assert sample(telemetry, "tiergate_tokens_total", model="backup", type="cached_input") == 120
    assert sample(telemetry, "tiergate_cost_usd_total", model="backup") == pytest.approx(0.005)


def test_failures_in_the_metrics() -> None:
    telemetry = Telemetry(config())
    decision = Decision(route="default", task="")
    limit = LimitExceeded("no", decision, limit="requests_per_minute")
    telemetry.emit(Report(Request("", []), 0.0, 0.001, decision, error=limit))
    telemetry.emit(Report(Request("", []), 0.0, 0.001, None, error=InvalidRequest("bad")))
    assert (
        sample(telemetry, "tiergate_requests_total", route="default", model="", outcome="limit_exceeded") == 1
    )
    assert sample(telemetry, "tiergate_limit_rejections_total", limit="requests_per_minute") == 1
    assert sample(telemetry, "tiergate_requests_total", route="", model="", outcome="invalid_request") == 1
    telemetry.metrics.state_failure("admit", "allowed")
    telemetry.metrics.reload("rejected")
    assert sample(telemetry, "tiergate_state_failures_total", operation="admit", action="allowed") == 1
    assert sample(telemetry, "tiergate_config_reloads_total", result="rejected") == 1


class QueuedModel:
    """Anything with `live_state()`, as the on-device provider has: here, a worker restarted twice."""

    def live_state(self) -> LocalState:
        return LocalState(
            queue_depth=3,
            in_flight=1,
            tokens_per_s=40.0,
            ttft_ms=50.0,
            samples=4,
            jobs_started=5,
            jobs_cancelled=0,
            jobs_dropped=0,
            tokens_generated=99,
            worker=WorkerStatus.UP,
            worker_pid=1234,
            restarts=2,
            crashes=1,
            last_error="the worker process died (SIGSEGV)",
        )


@dataclass
class View:
    breakers: Mapping[str, CircuitBreaker]
    providers: Mapping[str, object]


def test_breaker_state_and_local_queue_are_read_at_scrape_time() -> None:
    telemetry = Telemetry(config())
    assert (
        sample(telemetry, "tiergate_breaker_state", model="mini", state="closed") is None
    )  # nothing watched
    tripped = CircuitBreaker(min_calls=2, window=2)
    view = View({"mini": CircuitBreaker(), "backup": tripped}, {"local": QueuedModel(), "mini": object()})
    telemetry.watch(lambda: view)
    assert sample(telemetry, "tiergate_breaker_state", model="backup", state="closed") == 1
    for _ in range(2):
        assert tripped.try_acquire()
        tripped.record(False, 5.0)
    assert sample(telemetry, "tiergate_breaker_state", model="backup", state="open") == 1
    assert sample(telemetry, "tiergate_breaker_state", model="backup", state="closed") == 0
    assert sample(telemetry, "tiergate_breaker_state", model="mini", state="closed") == 1
    assert sample(telemetry, "tiergate_local_queue_depth", model="local") == 3
    assert sample(telemetry, "tiergate_local_in_flight", model="local") == 1
    assert sample(telemetry, "tiergate_local_queue_depth", model="mini") is None
    assert sample(telemetry, "tiergate_local_worker_up", model="local") == 1
    assert sample(telemetry, "tiergate_local_restarts_total", model="local") == 2
    assert sample(telemetry, "tiergate_local_crashes_total", model="local") == 1
    assert telemetry.metrics.workers_down() == []


async def test_report_runs_after_the_current_turn_of_the_loop() -> None:
    telemetry = Telemetry(config())
    telemetry.report(served_report())
    assert sample(telemetry, "tiergate_requests_total", route="default", model="backup", outcome="ok") is None
    await asyncio.sleep(0)
    assert sample(telemetry, "tiergate_requests_total", route="default", model="backup", outcome="ok") == 1
