"""The soak's checks: every request ended once, the four ledgers agree, nothing leaked.

The ledgers: the client's outcomes, the sidecar's Prometheus counters, its decision records, and the fake
provider's record of every upstream request. Each check returns the problems it found, as sentences.
"""

from __future__ import annotations

from collections import Counter

from tests.soak.fault_mix import SLOW_BUT_OK, label_of
from tests.soak.report import FAKE_MODELS, RSS_GROWTH_LIMIT, SoakReport
from tests.soak.traffic import NO_ROUTE, Outcome
from tiergate.providers.hosted_http import MAX_KEEPALIVE_CONNECTIONS

# What a request may end with, by what it was meant to do. The tenant "tiny" may also be refused first.
EXPECTED = {
    "": {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"},  # failures: every candidate failed, or total_ms ran out
    "cancel": {"CANCELLED"},
    "deadline": {"DEADLINE_EXCEEDED"},
    "invalid": {"INVALID_ARGUMENT"},
    "restricted": {"FAILED_PRECONDITION"},
}
# The sidecar's error kinds (tiergate_requests_total's outcome label) behind each status the client sees.
# A client deadline is meant to end in tiergate's own DEADLINE_EXCEEDED, just before the client's timer;
# when the client's timer fires first anyway, the sidecar sees a cancellation. Both add up here; which of
# the two happened is a figure of the report, and tests/soak/test_client_deadline.py insists on the first.
SERVER_KINDS = {
    "OK": {"ok"},
    "UNAVAILABLE": {"all_attempts_failed", "stream_interrupted"},
    "DEADLINE_EXCEEDED/CANCELLED": {"deadline_exceeded", "cancelled"},
    "RESOURCE_EXHAUSTED": {"limit_exceeded"},
    "INVALID_ARGUMENT": {"invalid_request"},
    "FAILED_PRECONDITION": {"sensitive_data_blocked"},
    "NOT_FOUND": {"unknown_task"},
}
# Attempt outcomes that may have consumed a whole upstream answer without delivering it.
UNDELIVERED = ("hedge_lost", "cancelled", "deadline", "ttft_timeout")


def check(report: SoakReport) -> list[str]:
    return [
        *one_outcome_each(report.outcomes),
        *client_vs_metrics(report),
        *records_vs_metrics(report),
        *upstream_vs_answers(report),
        *leaks(report),
    ]


def one_outcome_each(outcomes: list[Outcome]) -> list[str]:
    """Exactly one outcome per request, of a kind its purpose allows, and every answer whole."""
    problems = []
    indexes = Counter(o.planned.index for o in outcomes)
    if sorted(indexes) != list(range(len(outcomes))) or max(indexes.values(), default=1) != 1:
        problems.append("the outcomes do not cover each request exactly once")
    for o in outcomes:
        allowed = EXPECTED[o.planned.special] | (
            {"RESOURCE_EXHAUSTED"} if o.planned.tenant == "tiny" else set()
        )
        if o.planned.task == NO_ROUTE and o.planned.special in ("", "restricted"):
            allowed = {"NOT_FOUND"}  # the route is looked up before sensitivity and limits
        what = f"request {o.planned} ended {o.status}"
        if o.status not in allowed:
            problems.append(f"{what}, expected one of {sorted(allowed)}: {o.detail or o.problems}")
        elif o.problems:
            problems.append(f"{what}: {'; '.join(o.problems)}")
        elif o.planned.special == "" and o.status != "OK" and not o.from_server:
            problems.append(f"{what} without tiergate's decision trailer (not a typed error): {o.detail}")
    return problems[:20]  # the first ones say enough


def client_vs_metrics(report: SoakReport) -> list[str]:
    """The sidecar's tiergate_requests_total agrees with the client, status by status and answer by answer."""
    problems = []
    by_kind = report.server_outcomes()
    answers_by_route: Counter[tuple[str, str]] = Counter()
    for (name, labels), value in report.metrics.items():
        label = dict(labels)
        if name == "tiergate_requests_total" and label["outcome"] == "ok":
            answers_by_route[(label["route"], label["model"])] += int(value)
    client: Counter[str] = Counter()
    for o in report.outcomes:
        client[
            "DEADLINE_EXCEEDED/CANCELLED" if o.status in ("DEADLINE_EXCEEDED", "CANCELLED") else o.status
        ] += 1
    for status, kinds in SERVER_KINDS.items():
        server = sum(by_kind[k] for k in kinds)
        if server != client[status]:
            problems.append(
                f"{status}: the client saw {client[status]}, the sidecar counted {server} ({kinds})"
            )
    unknown = set(by_kind) - set().union(*SERVER_KINDS.values())
    if unknown:
        problems.append(
            f"the sidecar counted outcomes nobody expects: { ({k: by_kind[k] for k in unknown}) }"
        )
    if sum(by_kind.values()) != len(report.outcomes):
        problems.append(f"{len(report.outcomes)} requests sent, the sidecar counted {sum(by_kind.values())}")
    client_answers = Counter((o.route, o.served_by) for o in report.outcomes if o.status == "OK")
    if client_answers != answers_by_route:
        problems.append(f"answers by (route, model): client {client_answers}, sidecar {answers_by_route}")
    return problems


def records_vs_metrics(report: SoakReport) -> list[str]:
    """One decision record per request, with the same outcome counts as the metrics."""
    records = Counter(r["outcome"] for r in report.records)
    metrics = report.server_outcomes()
    if records != metrics:
        return [f"decision records by outcome {dict(records)} != metrics {dict(metrics)}"]
    return []


def upstream_vs_answers(report: SoakReport) -> list[str]:
    """Per fake model: tiergate's attempts against the requests the fake received, answers against whole
    replies, failed attempts against the faults injected."""
    problems = []
    answers = Counter(o.served_by for o in report.outcomes if o.status == "OK")
    received = Counter(r.model for r in report.upstream)
    harmless = {"ok", *SLOW_BUT_OK}
    whole = Counter(
        r.model for r in report.upstream if r.finished_at is not None and label_of(r.fault) in harmless
    )
    failing = Counter(r.model for r in report.upstream if label_of(r.fault) not in harmless)
    for model in FAKE_MODELS:
        attempts = int(report.metric_sum("tiergate_attempts_total", model=model))
        ok = int(report.metric("tiergate_attempts_total", model=model, outcome="ok"))
        undelivered = sum(
            int(report.metric("tiergate_attempts_total", model=model, outcome=o)) for o in UNDELIVERED
        )
        not_ok = attempts - ok
        if ok != answers[model]:
            problems.append(f"{model}: {ok} successful attempts but {answers[model]} answers served by it")
        if not answers[model] <= whole[model] <= answers[model] + undelivered:
            problems.append(
                f"{model}: the fake sent {whole[model]} whole replies for {answers[model]} answers "
                f"({undelivered} attempts given up on)"
            )
        if not received[model] <= attempts:
            problems.append(
                f"{model}: the fake received {received[model]} requests, tiergate made {attempts} attempts"
            )
        if failing[model] > not_ok:
            problems.append(
                f"{model}: {failing[model]} failing faults injected, only {not_ok} failed attempts"
            )
    if report.faults_injected == 0:
        problems.append("no fault was injected")
    return problems


def leaks(report: SoakReport) -> list[str]:
    """After the soak, quiet, against after warm-up, quiet: nothing grew that should not."""
    b, a = report.before, report.after
    problems = []
    for kind in set(b.process.fd_kinds) | set(a.process.fd_kinds):
        if kind != "socket" and a.process.fd_kinds[kind] > b.process.fd_kinds[kind]:
            problems.append(f"fds of kind {kind}: {b.process.fd_kinds[kind]} -> {a.process.fd_kinds[kind]}")
    # Sockets other than upstream connections: listeners, the gRPC connection of this client, wake-up pairs.
    other_b = b.process.fd_kinds["socket"] - b.upstream
    other_a = a.process.fd_kinds["socket"] - a.upstream
    if other_a > other_b:
        problems.append(f"sockets other than upstream connections: {other_b} -> {other_a}")
    if a.inbound > b.inbound:
        problems.append(f"accepted connections: {b.inbound} -> {a.inbound}")
    # Upstream connections: the pools keep idle keep-alive connections (each up to its peak concurrency,
    # at most MAX_KEEPALIVE_CONNECTIONS per model), so their number after a quiet period may differ from
    # the one after warm-up; it may not exceed the pools' cap. A connection abandoned mid-request is caught
    # by the quiet period instead (every upstream request must have ended or been closed by then), and one
    # that the sidecar forgot but the fake closed shows as CLOSE_WAIT.
    cap = (len(FAKE_MODELS) + 1) * MAX_KEEPALIVE_CONNECTIONS  # + the slow model
    if a.upstream > cap:
        problems.append(f"upstream connections: {a.upstream} after the soak, more than the pools' cap {cap}")
    if a.upstream != a.fake_open:
        problems.append(
            f"upstream connections: the sidecar holds {a.upstream}, the fake sees {a.fake_open} open"
        )
    close_wait = a.process.states()["CLOSE_WAIT"]
    if close_wait:
        problems.append(f"{close_wait} sockets in CLOSE_WAIT (closed by the peer, never by the sidecar)")
    if a.tasks < 0 or a.tasks > b.tasks:
        problems.append(f"asyncio tasks: {b.tasks} -> {a.tasks}")
    if a.process.threads > b.process.threads:
        problems.append(f"threads: {b.process.threads} -> {a.process.threads}")
    if report.rss_growth >= RSS_GROWTH_LIMIT:
        problems.append(
            f"RSS grew {report.rss_growth:.1%} after warm-up "
            f"({b.process.rss_kib / 1024:.1f} -> {a.process.rss_kib / 1024:.1f} MiB)"
        )
    return problems
