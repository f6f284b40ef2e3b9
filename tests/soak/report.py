"""What a soak run found: its settings, every outcome, the upstream's and the sidecar's own counts, the leak
snapshots, and the problems; `markdown()` is the summary the test prints and the bench writes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.provider_server import RecordedRequest
from tests.soak.process_probe import ProcessSnapshot
from tests.soak.traffic import Outcome

FAKE_MODELS = ("gpt-a", "gpt-b", "claude-c", "claude-d")  # tiergate's name and the upstream model id alike
RSS_GROWTH_LIMIT = 0.10

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # a /metrics scrape: (name, labels) -> value


@dataclass(frozen=True, slots=True)
class Settings:
    soak_s: float = 40.0
    warmup_s: float = 10.0
    rate: float = 25.0  # requests per second
    fault_rate: float = 0.2
    seed: int = 7


@dataclass(slots=True)
class Snapshot:
    """The sidecar at a quiet moment: its process (from /proc) and its event loop's task count."""

    process: ProcessSnapshot
    tasks: int
    upstream: int  # sockets to the fake provider (idle keep-alive connections in the pools)
    inbound: int  # accepted connections on the gRPC and HTTP listeners
    fake_open: int  # connections the fake provider sees open


@dataclass(slots=True)
class SoakReport:
    settings: Settings
    outcomes: list[Outcome]
    upstream: list[RecordedRequest]  # what the fake provider received (the slow model's requests too)
    metrics: Samples  # the sidecar's /metrics after the soak
    records: list[dict[str, Any]]  # its decision records
    before: Snapshot
    after: Snapshot
    rss_timeline: list[tuple[float, int]]  # (seconds into the soak phase, RSS KiB), twice a second
    wall_s: float
    fault_labels: dict[str, int] = field(default_factory=dict)  # upstream requests by injected fault ("ok")
    problems: list[str] = field(default_factory=list)

    @property
    def rss_peak_kib(self) -> int:
        """The highest RSS sampled during the soak phase (the quiet snapshots' if none was)."""
        return max((kib for _, kib in self.rss_timeline), default=self.after.process.rss_kib)

    def rss_over_time(self, points: int = 10) -> list[tuple[float, int]]:
        """About `points` samples of the timeline, evenly spaced, the last one included."""
        timeline = self.rss_timeline
        if len(timeline) <= points:
            return timeline
        step = (len(timeline) - 1) / (points - 1)
        return [timeline[round(i * step)] for i in range(points)]

    @property
    def rss_growth(self) -> float:
        return self.after.process.rss_kib / self.before.process.rss_kib - 1

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    def metric_sum(self, name: str, **labels: str) -> float:
        """The sum of `name` over every series whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.metrics.items() if n == name and want <= set(ls))

    def server_outcomes(self) -> Counter[str]:
        """tiergate_requests_total summed by outcome (ok or the error kind)."""
        kinds: Counter[str] = Counter()
        for (name, labels), value in self.metrics.items():
            if name == "tiergate_requests_total":
                kinds[dict(labels)["outcome"]] += int(value)
        return kinds

    @property
    def faults_injected(self) -> int:
        return sum(n for label, n in self.fault_labels.items() if label != "ok")

    def markdown(self) -> list[str]:
        s = self.settings
        sent = len(self.outcomes)
        statuses = Counter(o.status for o in self.outcomes)
        served = Counter(o.served_by for o in self.outcomes if o.status == "OK")
        upstream = sum(self.fault_labels.values())
        refused = int(self.metric_sum("tiergate_attempts_total", model="refused"))
        deadlines = [
            o for o in self.outcomes if o.planned.special == "deadline" and o.status == "DEADLINE_EXCEEDED"
        ]
        by_tiergate = sum(o.from_server for o in deadlines)
        by_timer = len(deadlines) - by_tiergate
        lines = [
            f"- traffic: {sent} requests ({s.warmup_s:g} s warm-up + {s.soak_s:g} s soak at {s.rate:g}/s), "
            f"{self.wall_s:.0f} s wall time",
            f"- upstream: {upstream} requests to the four fake models, {self.faults_injected} with a fault "
            f"({self.faults_injected / max(upstream, 1):.1%}); "
            f"{refused} attempts at the model on a closed port (connection refused)",
            f"- client deadlines (1 s, on the slow route): {by_tiergate} answered by tiergate's "
            f"DEADLINE_EXCEEDED with its decision, {by_timer} ended by the client's own timer first "
            "(the sidecar counts those as cancelled; see tests/soak/test_client_deadline.py)",
            f"- problems: {len(self.problems)}"
            + ("" if not self.problems else " — " + "; ".join(self.problems)),
            "",
            "Outcomes (one per request):",
            "",
            "| status | requests |",
            "|---|---|",
            *(f"| {status} | {n} |" for status, n in statuses.most_common()),
            "",
            "The sidecar's count (tiergate_requests_total by outcome; its decision records agree):",
            "",
            "| outcome | requests |",
            "|---|---|",
            *(f"| {kind} | {n} |" for kind, n in self.server_outcomes().most_common()),
            "",
            "Answers by serving model:",
            "",
            "| served_by | answers |",
            "|---|---|",
            *(f"| {model} | {n} |" for model, n in sorted(served.items())),
            "",
            "Faults injected, by kind (upstream requests to the four fake models):",
            "",
            "| fault | requests |",
            "|---|---|",
            *(
                f"| {label} | {n} |"
                for label, n in sorted(self.fault_labels.items(), key=lambda kv: (kv[0] == "ok", kv[0]))
            ),
            "",
            "The sidecar process, quiet after warm-up vs quiet after the soak:",
            "",
            "| | before | after |",
            "|---|---|---|",
            *_leak_rows(self.before, self.after),
            f"| RSS peak during the soak (MiB) | | {self.rss_peak_kib / 1024:.1f} |",
            f"| RSS growth | | {self.rss_growth:+.1%} (limit +{RSS_GROWTH_LIMIT:.0%}) |",
            "",
            "RSS during the soak phase (MiB), to tell a plateau from a steady climb:",
            "",
            "| s | " + " | ".join(f"{t:.0f}" for t, _ in self.rss_over_time()) + " |",
            "|---|" + "---|" * len(self.rss_over_time()),
            "| MiB | " + " | ".join(f"{kib / 1024:.1f}" for _, kib in self.rss_over_time()) + " |",
        ]
        return lines


def _leak_rows(before: Snapshot, after: Snapshot) -> list[str]:
    b, a = before.process, after.process
    kinds = sorted(set(b.fd_kinds) | set(a.fd_kinds))
    rows = [
        ("open fds", b.fds, a.fds),
        *((f"fds: {kind}", b.fd_kinds[kind], a.fd_kinds[kind]) for kind in kinds),
        ("TCP to the upstream (idle in the pools)", before.upstream, after.upstream),
        ("TCP the fake provider sees open", before.fake_open, after.fake_open),
        ("TCP accepted (gRPC, HTTP)", before.inbound, after.inbound),
        ("TCP in CLOSE_WAIT", b.states()["CLOSE_WAIT"], a.states()["CLOSE_WAIT"]),
        ("asyncio tasks", before.tasks, after.tasks),
        ("threads", b.threads, a.threads),
    ]
    lines = [f"| {name} | {x} | {y} |" for name, x, y in rows]
    lines.append(f"| RSS (MiB) | {b.rss_kib / 1024:.1f} | {a.rss_kib / 1024:.1f} |")
    return lines
