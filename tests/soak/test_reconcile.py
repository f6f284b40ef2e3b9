"""The soak's checks on a small hand-made report: a healthy one passes, and each kind of damage is named.

Quick (no process, no network): they run with `-m "not soak"` too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from tests.fakes.provider_server import RecordedRequest
from tests.soak.fault_mix import FAULTS, OK
from tests.soak.process_probe import ProcessSnapshot, TcpSocket
from tests.soak.reconcile import check
from tests.soak.report import Settings, Snapshot, SoakReport
from tests.soak.traffic import Outcome, Planned


def upstream(index: int, model: str, label: str = "ok", finished: bool = True) -> RecordedRequest:
    return RecordedRequest(
        index=index,
        connection=0,
        method="POST",
        path="/v1/chat/completions",
        headers={},
        body={"model": model},
        fault=OK if label == "ok" else FAULTS[label],
        received_at=0.0,
        finished_at=1.0 if finished else None,
    )


def quiet(tasks: int = 14, rss_kib: int = 80_000, pipes: int = 2, close_wait: int = 0) -> Snapshot:
    tcp = [TcpSocket(40000 + i, 9000, "CLOSE_WAIT") for i in range(close_wait)]
    kinds = Counter({"socket": 6, "pipe": pipes, "anon_inode:[eventfd]": 2})
    process = ProcessSnapshot(sum(kinds.values()), kinds, tcp, threads=10, rss_kib=rss_kib, hwm_kib=rss_kib)
    return Snapshot(process, tasks=tasks, upstream=2, inbound=2, fake_open=2)


def requests_total(route: str, model: str, outcome: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("tiergate_requests_total", (("model", model), ("outcome", outcome), ("route", route)))


def attempts_total(model: str, outcome: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("tiergate_attempts_total", (("model", model), ("outcome", outcome)))


def healthy() -> SoakReport:
    """An answer after a failed attempt, every candidate failing, and a cancellation, all accounted for."""
    return SoakReport(
        settings=Settings(),
        outcomes=[
            Outcome(Planned(0, "unary", "default", "acme", ""), "OK", route="default", served_by="gpt-a"),
            Outcome(Planned(1, "stream", "chat", "", ""), "UNAVAILABLE", route="chat", from_server=True),
            Outcome(Planned(2, "stream", "slow", "", "cancel"), "CANCELLED"),
        ],
        upstream=[upstream(0, "claude-c", "503"), upstream(1, "gpt-a"), upstream(2, "claude-c", "502")],
        metrics={
            requests_total("default", "gpt-a", "ok"): 1,
            requests_total("chat", "", "all_attempts_failed"): 1,
            requests_total("slow", "", "cancelled"): 1,
            attempts_total("claude-c", "error"): 2,
            attempts_total("gpt-a", "ok"): 1,
        },
        records=[{"outcome": "ok"}, {"outcome": "all_attempts_failed"}, {"outcome": "cancelled"}],
        before=quiet(),
        after=quiet(),
        rss_timeline=[(0.0, 80_000), (0.5, 80_100)],
        wall_s=1.0,
        fault_labels={"ok": 1, "503": 1, "502": 1},
    )


def lose_an_outcome(r: SoakReport) -> None:
    del r.outcomes[1]


def hang(r: SoakReport) -> None:
    r.outcomes[1] = Outcome(r.outcomes[1].planned, "HUNG", problems=["no answer and no error"])


def untyped(r: SoakReport) -> None:
    r.outcomes[1].from_server = False


def internal(r: SoakReport) -> None:
    r.outcomes[1].status = "INTERNAL"


def miscount(r: SoakReport) -> None:
    r.metrics[requests_total("default", "gpt-a", "ok")] = 2


def lose_a_record(r: SoakReport) -> None:
    r.records.pop()


def answer_from_nowhere(r: SoakReport) -> None:
    r.upstream[1] = upstream(1, "gpt-a", finished=False)


def leak_a_pipe(r: SoakReport) -> None:
    r.after = quiet(pipes=3)


def leak_tasks(r: SoakReport) -> None:
    r.after = quiet(tasks=15)


def leave_close_wait(r: SoakReport) -> None:
    r.after = quiet(close_wait=1)


def grow(r: SoakReport) -> None:
    r.after = quiet(rss_kib=88_000)


DAMAGE: list[tuple[Callable[[SoakReport], None], str]] = [
    (lose_an_outcome, "the outcomes do not cover each request exactly once"),
    (hang, "ended HUNG"),
    (untyped, "not a typed error"),
    (internal, "ended INTERNAL"),
    (miscount, "OK: the client saw 1, the sidecar counted 2"),
    (lose_a_record, "decision records by outcome"),
    (answer_from_nowhere, "gpt-a: the fake sent 0 whole replies for 1 answers"),
    (leak_a_pipe, "fds of kind pipe: 2 -> 3"),
    (leak_tasks, "asyncio tasks: 14 -> 15"),
    (leave_close_wait, "CLOSE_WAIT"),
    (grow, "RSS grew 10.0%"),
]


def test_a_healthy_report_has_no_problems() -> None:
    assert check(healthy()) == []


@pytest.mark.parametrize(("damage", "named"), DAMAGE, ids=[d.__name__ for d, _ in DAMAGE])
def test_each_kind_of_damage_is_named(damage: Callable[[SoakReport], None], named: str) -> None:
    report = healthy()
    damage(report)
    problems = check(report)
    assert any(named in p for p in problems), problems
