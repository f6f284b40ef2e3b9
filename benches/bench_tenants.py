"""Resident memory of per-tenant limit state when clients send 1,000,000 distinct tenant names.

    .venv/bin/python benches/bench_tenants.py [--tenants N]

Every request names a new tenant, counted under `budgets.default` (requests_per_minute), through the real
`Planner` and the in-process `LocalGovernor`. Each variant runs in a fresh interpreter and reads its own VmRSS
from /proc before the traffic and after every tenth of it: `bounded` is the governor as configured by
default (`limits.max_tenants: 100000`), `unbounded` the same with a bound above the number of tenants, which
is what the governor did before it had one. The bound caps the growth; without it RSS grows with every name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, report_head, table, write_result

from tiergate.analysis import Analysis
from tiergate.config import parse, resolve
from tiergate.governance import DEFAULT_MAX_TENANTS, LocalGovernor
from tiergate.request import Decision, Message, Request, Sensitivity
from tiergate.routing import Planner

CONFIG = {
    "models": {"m": {"provider": "openai", "model": "m", "api_key": "k"}},
    "routes": {"default": {"chain": ["m"]}},
    "budgets": {"default": {"requests_per_minute": 60}},
}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one(tenants: int, max_tenants: int) -> dict[str, object]:
    config = resolve(parse(CONFIG), {})
    governor = LocalGovernor(config.budgets, max_tenants=max_tenants)
    planner = Planner(config, {}, lambda _: 0)
    analysis = Analysis(10, [], Sensitivity.PUBLIC, "", "")
    samples = [(0, rss_mb())]
    step = max(tenants // 10, 1)
    for i in range(tenants):
        request = Request("", [Message("user", "hi")], tenant=f"tenant-{i:07d}")
        plan = planner.plan(request, analysis)
        await governor.admit(request, plan, Decision(route="default", task=""), 10)
        if (i + 1) % step == 0:
            samples.append((i + 1, rss_mb()))
    return {"held": governor.tenants_held, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=1_000_000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a variant's max_tenants, in a child
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(asyncio.run(one(args.tenants, args.one))))
        return
    head = report_head("Per-tenant state: 1,000,000 distinct tenant names", machine())
    results = {}
    for name, bound in (("bounded", DEFAULT_MAX_TENANTS), ("unbounded", args.tenants * 2)):
        out = subprocess.run(
            [sys.executable, __file__, "--tenants", str(args.tenants), "--one", str(bound)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[name] = json.loads(out)
    rows = []
    for i, (count, _) in enumerate(results["bounded"]["samples"]):
        rows.append([f"{count:,}"] + [f"{results[v]['samples'][i][1]:.0f}" for v in ("bounded", "unbounded")])
    lines = [
        *head,
        "## Resident memory (MB) after N distinct tenants",
        "",
        *table(["tenants", f"bounded (max_tenants {DEFAULT_MAX_TENANTS:,})", "unbounded"], rows),
        "",
        f"Tenants held at the end: bounded {results['bounded']['held']:,}, "
        f"unbounded {results['unbounded']['held']:,}.",
    ]
    write_result("bench_tenants", lines)


if __name__ == "__main__":
    main()
