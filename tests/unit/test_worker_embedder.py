"""`local/worker/embedder.py`'s batching: texts sorted by length run in batches of at most BATCH_SIZE texts
and BATCH_TOKENS padded tokens, which bounds the activations onnxruntime holds at once."""

from __future__ import annotations

import pytest

from tiergate.local.worker.embedder import BATCH_SIZE, BATCH_TOKENS, batches

CASES = [
    ([], []),
    ([5], [(0, 1)]),
    ([10] * 20, [(0, 16), (16, 20)]),  # short texts: BATCH_SIZE bounds the batch
    ([128] * 5, [(0, 2), (2, 4), (4, 5)]),  # two at a time: 2 x 128 = 256 tokens
    ([20, 30, 80, 200], [(0, 3), (3, 4)]),  # 3 x 80 = 240 fits; 4 x 200 = 800 does not
    ([256, 256], [(0, 1), (1, 2)]),  # the longest texts the model takes: one at a time
    ([300, 400], [(0, 1), (1, 2)]),  # over BATCH_TOKENS alone: still runs, alone
]


@pytest.mark.parametrize(("lengths", "expected"), CASES)
def test_batches(lengths: list[int], expected: list[tuple[int, int]]) -> None:
    assert [(r.start, r.stop) for r in batches(lengths)] == expected


@pytest.mark.parametrize("lengths", [[3] * 40, list(range(1, 257, 3)), [128] * 9])
def test_every_batch_keeps_both_bounds_and_every_text_runs_once(lengths: list[int]) -> None:
    runs = batches(sorted(lengths))
    assert [i for r in runs for i in r] == list(range(len(lengths)))
    for r in runs:
        assert len(r) <= BATCH_SIZE and (len(r) == 1 or len(r) * sorted(lengths)[r.stop - 1] <= BATCH_TOKENS)
