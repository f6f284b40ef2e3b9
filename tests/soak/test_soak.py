"""The bounded soak (about a minute): `tiergate serve` under steady mixed traffic while 20% of upstream
requests fail in every way the fault table knows. Deselect with `-m "not soak"`; the long one is
benches/bench_soak.py. What is run and checked: tests/soak/engine.py and reconcile.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.soak.engine import run_soak
from tests.soak.report import Settings

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the sidecar's /proc entries"),
]


@pytest.mark.timeout(300)
async def test_soak(tmp_path: Path) -> None:
    report = await run_soak(Settings(warmup_s=10, soak_s=40, rate=25), tmp_path)
    print("\n".join(report.markdown()))  # the figures, with `pytest -s`
    assert len(report.outcomes) == 10 * 25 + 40 * 25
    assert report.faults_injected > 0
    assert report.problems == []
