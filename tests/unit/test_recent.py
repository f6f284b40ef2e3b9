"""telemetry/recent.py: the control panel's bounded memory of recent decisions and tenants, without text."""

from __future__ import annotations

import orjson

from tiergate.errors import AllAttemptsFailed, LimitExceeded
from tiergate.request import Attempt, Decision, Message, Outcome, Request, Usage
from tiergate.telemetry import Report
from tiergate.telemetry.recent import OTHER_TENANTS, Finished, RecentActivity, summarise

PROMPT = "call me at +44 20 7946 0958 about the merger"
ANSWER = "the merger answer"
KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz"


def report(tenant: str = "acme", error: BaseException | None = None) -> Report:
    decision = Decision(
        route="default",
        task="chat",
        matched_rules=["phone"],
        attempts=[
            Attempt("mini", Outcome.ERROR, 0.0, 10.0, f"upstream said: bad key {KEY} for {PROMPT}"),
            Attempt("local", Outcome.OK, 5.0, 20.0),
        ],
        served_by="local",
        reason="chain order",
        overhead_ms=0.25,
    )
    return Report(
        Request("chat", [Message("user", PROMPT)], tenant=tenant),
        started_at=1000.0,
        duration_s=0.03,
        decision=decision,
        usage=Usage(10, 5, 0.002) if error is None else None,
        answer=ANSWER,
        error=error,
    )


def test_a_summary_has_the_decision_but_no_text_of_prompt_answer_or_errors() -> None:
    failed = AllAttemptsFailed(f"every attempt failed: {KEY} {PROMPT}")
    for r in (report(), report(error=failed)):
        summary = summarise(Finished.of(r))
        text = orjson.dumps(summary).decode()
        assert PROMPT not in text and ANSWER not in text and KEY not in text and "merger" not in text
        assert [a["outcome"] for a in summary["attempts"]] == ["error", "ok"]
        assert (summary["route"], summary["served_by"], summary["matched_rules"]) == (
            "default",
            "local",
            ["phone"],
        )
    limited = Finished.of(report(error=LimitExceeded("over", limit="usd_per_day")))
    assert summarise(limited)["limit"] == "usd_per_day"


def test_decisions_and_tenants_stay_bounded() -> None:
    recent = RecentActivity(max_decisions=5, max_tenants=3)
    for i in range(20):
        recent.observe(report(tenant=f"t{i}"))
    assert [d["tenant"] for d in recent.decisions()] == [f"t{i}" for i in range(19, 14, -1)]
    assert [d["tenant"] for d in recent.decisions(2)] == ["t19", "t18"]
    assert set(recent.tenants) == {"t0", "t1", "t2", OTHER_TENANTS}
    assert recent.tenants[OTHER_TENANTS].requests == 17
    assert recent.tenants["t0"].cost_usd == 0.002


def test_the_last_reload_is_kept() -> None:
    recent = RecentActivity()
    assert recent.reload.result == "ok" and recent.reloads == 0
    recent.reloaded("rejected", "models.x: unknown key")
    assert (recent.reload.result, recent.reload.detail, recent.reloads) == (
        "rejected",
        "models.x: unknown key",
        1,
    )
