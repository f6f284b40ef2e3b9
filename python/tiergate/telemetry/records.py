"""Decision records: one JSON line per request on the `tiergate.decisions` logger.

A record says what tiergate decided and did: route, task, tenant, sensitivity, the rule ids that matched
(never the matched text), each attempt with its outcome and timings, the candidates skipped and why, the
model that served, tokens, cost, tiergate's own overhead, and the outcome (`ok` or the error kind and
message); with tracing on, the request's `trace_id` and `span_id` (the span only when sampled); with the
response cache on, `cache` (`hit`, `miss`) and on a hit `cache_match` (`exact`, `semantic`), `cost_saved_usd`
and a semantic hit's `cache_similarity`. Prompt and
answer text appear only with `telemetry.log_content: true`. Configured API keys and credential headers never
appear: any that an upstream error message echoes is replaced by `[redacted]`.

Example (one line in the log, wrapped here)::

    {"ts":"2026-11-22T08:31:02.113Z","route":"default","task":"classify","tenant":"acme","stream":false,
     "outcome":"ok","sensitivity":"PUBLIC","complexity":"","matched_rules":[],"reason":"chain order",
     "attempts":[{"model":"mini","outcome":"ok","ttft_ms":212.4,"latency_ms":240.1}],"skipped":[],
     "served_by":"mini","input_tokens":12,"output_tokens":3,"cached_input_tokens":0,"cost_usd":0.000009,
     "latency_ms":240.9,"overhead_ms":0.31}
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from tiergate.config import Config
from tiergate.errors import LimitExceeded
from tiergate.request import Attempt

if TYPE_CHECKING:
    from tiergate.telemetry import Report

LOGGER_NAME = "tiergate.decisions"
REDACTED = "[redacted]"
_CREDENTIAL_HEADERS = ("authorization", "key", "token", "secret", "cookie")
_MIN_SECRET_LEN = 8  # shorter values would redact ordinary words


def secrets_of(config: Config) -> list[str]:
    """Every credential in the config: API keys, and header values whose name says they are one."""
    found = []
    for model in config.models.values():
        if model.api_key is not None:
            found.append(model.api_key.get_secret_value())
        for name, value in model.headers.items():
            if any(word in name.lower() for word in _CREDENTIAL_HEADERS):
                found.append(value)
    return sorted({s for s in found if len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True)


class DecisionLog:
    """Builds and writes the records. `log_content` and the secrets change on a config reload."""

    def __init__(
        self, *, log_content: bool = False, secrets: Iterable[str] = (), enabled: bool = True
    ) -> None:
        self.logger = logging.getLogger(LOGGER_NAME)
        self.configure(log_content=log_content, secrets=secrets, enabled=enabled)

    def configure(self, *, log_content: bool, secrets: Iterable[str], enabled: bool = True) -> None:
        self.log_content = log_content
        self.enabled = enabled
        self._secrets = tuple(secrets)
        self._second = -1
        self._second_text = ""

    def _iso(self, ts: float) -> str:
        """2026-11-22T08:31:02.113Z; the text of the second is reused while it lasts."""
        second, micros = divmod(round(ts * 1_000_000), 1_000_000)  # rounded like datetime.fromtimestamp
        if second != self._second:
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{micros // 1000:03d}Z"

    def emit(self, report: Report) -> None:
        logger = self.logger
        if not self.enabled or not logger.isEnabledFor(logging.INFO):
            return
        line = orjson.dumps(self.record(report)).decode()
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        handlers = logger.handlers
        if (
            len(handlers) == 1
            and isinstance(handlers[0], LineWriter)
            and not logger.filters
            and not handlers[0].filters
            and handlers[0].level <= logging.INFO
        ):
            # As `tiergate serve` sets it up: the line goes straight to the writer, without a LogRecord.
            handlers[0].write(line)
            return
        # logger.info() would also walk the stack for the caller's file and line, which a record does not
        # need. handle() still applies the logger's filters, handlers and propagation.
        logger.handle(logging.LogRecord(LOGGER_NAME, logging.INFO, __file__, 0, line, None, None))

    def record(self, report: Report) -> dict[str, Any]:
        request = report.request
        decision = report.decision
        error = report.error
        out: dict[str, Any] = {
            "ts": self._iso(report.started_at),
            "route": decision.route if decision is not None else "",
            "task": request.task,
            "tenant": request.tenant,
            "stream": request.stream,
            "outcome": "ok" if error is None else report.error_kind,
        }
        if error is not None:
            out["error"] = str(error)[:1000]
            if isinstance(error, LimitExceeded) and error.limit:
                out["limit"] = error.limit
        if decision is not None:
            out["sensitivity"] = decision.sensitivity.name
            out["complexity"] = decision.complexity
            out["matched_rules"] = decision.matched_rules
            out["reason"] = decision.reason
            out["attempts"] = [_attempt(a) for a in decision.attempts]
            out["skipped"] = [{"model": s.model, "reason": s.reason} for s in decision.skipped]
            out["served_by"] = decision.served_by
            if decision.cache:  # the response cache was looked up: "hit" ("exact" or "semantic") or "miss"
                out["cache"] = decision.cache
                if decision.cache_match:
                    out["cache_match"] = decision.cache_match
                    out["cost_saved_usd"] = decision.cost_saved_usd
                if decision.cache_match == "semantic":
                    out["cache_similarity"] = round(decision.cache_similarity, 4)
            if decision.trace_id:  # tracing is on: the trace, and the request's span when it was sampled
                out["trace_id"] = decision.trace_id
                if decision.span_id:
                    out["span_id"] = decision.span_id
        usage = report.usage
        if usage is not None:
            out["input_tokens"] = usage.input_tokens
            out["output_tokens"] = usage.output_tokens
            out["cached_input_tokens"] = usage.cached_input_tokens
            out["cost_usd"] = usage.cost_usd
        elif decision is not None:
            out["cost_usd"] = decision.cost_usd
        out["latency_ms"] = round(report.duration_s * 1000, 3)
        if decision is not None:
            out["overhead_ms"] = round(decision.overhead_ms, 3)
        if self.log_content:
            out["prompt"] = [{"role": m.role, "content": m.content} for m in request.messages]
            if report.answer is not None:
                out["answer"] = report.answer
        return out


def _attempt(a: Attempt) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": a.model,
        "outcome": a.outcome.value,
        "ttft_ms": round(a.ttft_ms, 3),
        "latency_ms": round(a.latency_ms, 3),
    }
    if a.error:
        out["error"] = a.error
    if a.hedged:
        out["hedged"] = True
    return out


class LineWriter(logging.Handler):
    """Writes each record's message as one line, from a background thread that wakes every `interval_s`.

    The event loop only appends the line to a queue (nobody is woken): a slow reader of the log never stalls
    it, and the thread writes everything queued at once, one flush per batch. Waking the thread for each
    record would cost a GIL hand-off per request; a log line may well appear a tenth of a second later.
    """

    def __init__(self, stream: TextIO, interval_s: float = 0.1) -> None:
        super().__init__()
        self._stream = stream
        self._interval_s = interval_s
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tiergate-decision-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.put(record.getMessage())

    def write(self, line: str) -> None:
        """What `emit` does, for a caller that has the line without a LogRecord."""
        self._lines.put(line)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._write_queued()
        self._write_queued()

    def _write_queued(self) -> None:
        batch = []
        while True:
            try:
                batch.append(self._lines.get_nowait())
            except queue.Empty:
                break
        if batch:
            self._stream.write("\n".join(batch) + "\n")
            self._stream.flush()

    def close(self) -> None:
        """Writes what is queued, then stops the thread."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        super().close()
