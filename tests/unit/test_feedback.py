"""feedback.py: served requests rated once by id, aggregated per route x model x arm, bounded, no text."""

from __future__ import annotations

import dataclasses

import pytest

from tiergate.config import FeedbackConfig
from tiergate.errors import FeedbackNotFound, InvalidRequest
from tiergate.feedback import FeedbackStore, Served
from tiergate.request import Decision


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def decision(request_id: str, model: str = "gpt", arm: str = "") -> Decision:
    return Decision(route="chat", task="chat", served_by=model, request_id=request_id, arm=arm)


def store(**config: object) -> tuple[FeedbackStore, Clock, list[tuple[Served, float | None, str]]]:
    clock, seen = Clock(), []
    hook = lambda served, score, label: seen.append((served, score, label))  # noqa: E731
    return FeedbackStore(FeedbackConfig(**config), on_feedback=hook, clock=clock), clock, seen  # type: ignore[arg-type]


def test_round_trip_and_aggregates() -> None:
    feedback, _, seen = store()
    feedback.served(decision("r1"))
    feedback.served(decision("r2", arm="canary"))
    feedback.served(decision("r3"))
    assert feedback.rate("r1", 1.0, "good") == Served("chat", "gpt", "", 0.0)
    feedback.rate("r3", 0.5, "")
    feedback.rate("r2", None, "bad")
    base, canary = feedback.aggregates[("chat", "gpt", "")], feedback.aggregates[("chat", "gpt", "canary")]
    assert (base.ratings, base.scored, base.mean_score, base.labels) == (2, 2, 0.75, {"good": 1})
    assert (canary.ratings, canary.mean_score, canary.labels) == (1, None, {"bad": 1})
    assert [(s.route, s.model, s.arm, score, label) for s, score, label in seen] == [
        ("chat", "gpt", "", 1.0, "good"),
        ("chat", "gpt", "", 0.5, ""),
        ("chat", "gpt", "canary", None, "bad"),
    ]


def test_it_remembers_no_text() -> None:
    assert [f.name for f in dataclasses.fields(Served)] == ["route", "model", "arm", "at"]


@pytest.mark.parametrize("request_id", ["nope", "", "x" * 10_000])
def test_unknown_id_is_not_found(request_id: str) -> None:
    feedback, _, _ = store()
    with pytest.raises(FeedbackNotFound) as info:
        feedback.rate(request_id, 1.0, "")
    assert len(str(info.value)) < 200


def test_a_rating_consumes_the_id() -> None:
    feedback, _, _ = store()
    feedback.served(decision("r1"))
    feedback.rate("r1", 1.0, "")
    with pytest.raises(FeedbackNotFound, match="already rated"):
        feedback.rate("r1", 1.0, "")


def test_expired_id_is_not_found() -> None:
    feedback, clock, _ = store(ttl_s=60)
    feedback.served(decision("r1"))
    feedback.served(decision("r2"))
    clock.now = 60.0
    feedback.rate("r1", 1.0, "")  # exactly at the TTL: still there
    clock.now = 60.5
    with pytest.raises(FeedbackNotFound):
        feedback.rate("r2", 1.0, "")


def test_bounded_by_max_requests() -> None:
    feedback, _, _ = store(max_requests=100)
    for i in range(10_000):
        feedback.served(decision(f"r{i}"))
    assert len(feedback) == 100
    feedback.rate("r9999", 1.0, "")
    with pytest.raises(FeedbackNotFound):
        feedback.rate("r0", 1.0, "")


def test_unserved_requests_are_not_remembered() -> None:
    feedback, _, _ = store()
    feedback.served(Decision(route="chat", task="", request_id="r1"))  # nothing served it
    with pytest.raises(FeedbackNotFound):
        feedback.rate("r1", 1.0, "")


@pytest.mark.parametrize(
    ("score", "label", "message"),
    [
        (None, "", "needs a score, a label or both"),
        (1.5, "", "outside 0..1"),
        (-0.1, "", "outside 0..1"),
        (float("nan"), "", "outside 0..1"),
        (None, "meh", "not one of feedback.labels"),
    ],
)
def test_invalid_feedback(score: float | None, label: str, message: str) -> None:
    feedback, _, _ = store()
    feedback.served(decision("r1"))
    with pytest.raises(InvalidRequest, match=message):
        feedback.rate("r1", score, label)
    feedback.rate("r1", 1.0, "")  # an invalid rating consumed nothing


def test_reconfigure_keeps_what_fits() -> None:
    feedback, _, _ = store(max_requests=10)
    for i in range(10):
        feedback.served(decision(f"r{i}"))
    feedback.reconfigure(FeedbackConfig(max_requests=5))
    assert len(feedback) == 5
    feedback.rate("r9", 1.0, "")
