"""Hypothesis settings of the property tests: quick and reproducible by default, deep on request.

- `quick` (default; `make test`, CI): a fixed number of examples per test, the same ones every run
  (`derandomize`), nothing written to disk. The whole directory runs in well under a minute.
- `long` (`HYPOTHESIS_PROFILE=long`): 25 times the examples, freshly random each run, with failures kept in
  the example database (`.hypothesis/`, gitignored) so that the next run replays them first.

Each test passes its own `quick` example count (the costs differ a lot: a config parse is microseconds, a
rule set compile milliseconds) to `property_settings`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILES = ("quick", "long")
LONG_FACTOR = 25


def profile() -> str:
    name = os.environ.get("HYPOTHESIS_PROFILE", "quick")
    if name not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE={name!r}: known profiles are {', '.join(PROFILES)}")
    return name


def property_settings(max_examples: int) -> settings:
    """The settings of one property test, `max_examples` being its example count under `quick`."""
    # Wall-clock deadlines flake on loaded CI machines; slowness is caught by the tests' timeouts instead.
    common = settings(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
    if profile() == "long":
        return settings(common, max_examples=max_examples * LONG_FACTOR)
    return settings(common, max_examples=max_examples, derandomize=True, database=None)
