"""Quality feedback: a score and/or label for a served request, named by its Decision's `request_id`.

Every answered request is remembered as (route, model, arm) only, never its prompt or answer, for
`feedback.ttl_s` and among at most `feedback.max_requests` (the least recent dropped first), so memory stays
bounded whatever clients do. `FeedbackStore.rate` counts one rating per request against its route x model x
arm: in the `tiergate_feedback_*` metrics (through the hook the Sidecar passes) and in `aggregate`, which
canary rollback reads. A rating consumes the id: an unknown, expired or already rated id is
`FeedbackNotFound`. Scores are 0 (worst) to 1 (best); labels come from the config's `feedback.labels`, so the
metrics' label values are bounded too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tiergate.config import FeedbackConfig
from tiergate.errors import FeedbackNotFound, InvalidRequest
from tiergate.lru import LruDict
from tiergate.request import Decision

MAX_REQUEST_ID = 64  # longer ids were not issued here


@dataclass(frozen=True, slots=True)
class Served:
    """What a rating is counted against."""

    route: str
    model: str
    arm: str
    at: float  # clock seconds when it was served


@dataclass(slots=True)
class Aggregate:
    """Ratings of one route x model x arm."""

    ratings: int = 0
    scored: int = 0
    score_sum: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.scored if self.scored else None


FeedbackHook = Callable[[Served, float | None, str], None]


class FeedbackStore:
    """Served requests awaiting feedback, and the aggregates; carried over by a config reload."""

    def __init__(
        self,
        config: FeedbackConfig,
        *,
        on_feedback: FeedbackHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._hook = on_feedback
        self._clock = clock
        self._served: LruDict[str, Served] = LruDict(config.max_requests)
        # Keyed by (route, model, arm) of the config: bounded by it.
        self.aggregates: dict[tuple[str, str, str], Aggregate] = {}

    def reconfigure(self, config: FeedbackConfig) -> None:
        """A reload's new settings; the served requests and aggregates stay."""
        if config.max_requests != self._config.max_requests:
            kept = self._served
            self._served = LruDict(config.max_requests)
            for key, value in kept.items():
                self._served.put(key, value)
        self._config = config

    def served(self, decision: Decision) -> None:
        """Remembers an answered request so that it can be rated."""
        if decision.request_id and decision.served_by:
            self._served.put(
                decision.request_id, Served(decision.route, decision.served_by, decision.arm, self._clock())
            )

    def rate(self, request_id: str, score: float | None, label: str) -> Served:
        """Counts one rating of a served request.

        Raises:
            InvalidRequest: no score and no label, a score outside 0..1, or a label not configured.
            FeedbackNotFound: the id is unknown, expired or already rated.
        """
        if score is None and not label:
            raise InvalidRequest("feedback needs a score, a label or both")
        if score is not None and not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise InvalidRequest(f"score {score} is outside 0..1")
        if label and label not in self._config.labels:
            raise InvalidRequest(
                f"label {label[:64]!r} is not one of feedback.labels ({', '.join(self._config.labels)})"
            )
        found = self._served.pop(request_id) if len(request_id) <= MAX_REQUEST_ID else None
        if found is None or self._clock() - found.at > self._config.ttl_s:
            raise FeedbackNotFound(
                f"no served request {request_id[:MAX_REQUEST_ID]!r} awaits feedback "
                f"(unknown, older than {self._config.ttl_s:g} s, or already rated)"
            )
        aggregate = self.aggregates.setdefault((found.route, found.model, found.arm), Aggregate())
        aggregate.ratings += 1
        if score is not None:
            aggregate.scored += 1
            aggregate.score_sum += score
        if label:
            aggregate.labels[label] = aggregate.labels.get(label, 0) + 1
        if self._hook is not None:
            self._hook(found, score, label)
        return found

    def __len__(self) -> int:
        return len(self._served)
