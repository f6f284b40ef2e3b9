"""server/ui_state.py: quantiles computed from histogram buckets the way PromQL's histogram_quantile does."""

from __future__ import annotations

import pytest

from tiergate.server.ui_state import cache_figures, histogram_quantile

BOUNDS = (0.1, 0.5, 1.0)


@pytest.mark.parametrize(
    ("q", "counts", "expected"),
    [
        (0.5, [0, 0, 0, 0], None),  # no observations
        (0.5, [10, 0, 0, 0], 0.05),  # inside the first bucket, from 0
        (0.5, [0, 10, 0, 0], 0.3),  # halfway through (0.1, 0.5]
        (0.99, [0, 10, 0, 0], 0.496),
        (0.5, [5, 5, 0, 0], 0.1),  # exactly at a bucket's upper bound
        (0.75, [5, 5, 0, 0], 0.3),
        (0.5, [0, 0, 0, 4], 1.0),  # in the +Inf bucket: the last finite bound
        (0.99, [1, 0, 0, 1], 1.0),
    ],
)
def test_histogram_quantile(q: float, counts: list[float], expected: float | None) -> None:
    found = histogram_quantile(q, BOUNDS, counts)
    assert found == (None if expected is None else pytest.approx(expected))


def test_cache_figures_of_a_route_come_from_the_cache_series() -> None:
    lookups = {("support", "hit"): 3.0, ("support", "miss"): 1.0, ("other", "hit"): 5.0}
    hits = {("support", "exact"): 2.0, ("support", "semantic"): 1.0, ("other", "exact"): 5.0}
    assert cache_figures("support", lookups, hits) == {
        "lookups": 4.0,
        "hit_rate": 0.75,
        "hits": {"exact": 2.0, "semantic": 1.0},
    }
    assert cache_figures("uncached", lookups, hits) == {"lookups": 0, "hit_rate": None, "hits": {}}
