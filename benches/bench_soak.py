"""Issue 7: the long soak. `tiergate serve` under steady mixed traffic for ten minutes while 20% of upstream
requests fail in every way the fault table knows; then: did every request end once, do the counts reconcile,
did anything leak, did memory grow?

    nice .venv/bin/python benches/bench_soak.py                  # 10 minutes, writes results/soak.md
    .venv/bin/python benches/bench_soak.py --seconds 120 --rate 30

The engine is tests/soak/engine.py, the same the bounded soak test (`make test`, about a minute) runs; what
it sets up, sends and checks is described there and in tests/soak/reconcile.py. Exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.soak, when run as a script

from benches.harness import machine, report_head, write_result
from tests.soak.engine import ROUTE_TOTAL_MS, SLOW_MODEL_ID, run_soak
from tests.soak.fault_mix import FAULT_KINDS
from tests.soak.report import RSS_GROWTH_LIMIT, Settings
from tests.soak.traffic import SPECIALS, TASKS, TENANTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="the soak phase, after warm-up")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of traffic before 'before'")
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    settings = Settings(
        soak_s=args.seconds,
        warmup_s=args.warmup,
        rate=args.rate,
        fault_rate=args.fault_rate,
        seed=args.seed,
    )
    machine_lines = machine()
    print(f"soak: {args.warmup:g} s warm-up + {args.seconds:g} s at {args.rate:g}/s", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="tiergate-soak-") as tmp:
        report = asyncio.run(run_soak(settings, Path(tmp)))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        *report_head(
            "soak: steady mixed traffic against failing upstreams",
            machine_lines,
            f"- load average at end {load}; priority (nice) {os.nice(0)}",
        ),
        "## Setup",
        "",
        "- upstream: tests/fakes/provider_server.py `FakeProvider` in this process (its own thread): models "
        "gpt-a, gpt-b (OpenAI wire), claude-c, claude-d (Anthropic wire); "
        f"{settings.fault_rate:.0%} of their requests meet a fault, evenly spread over: "
        + ", ".join(FAULT_KINDS)
        + f"; `refused` points at a closed port; `slow` is `{SLOW_MODEL_ID}` (~3 s per answer)",
        "- routes: default [gpt-a, claude-c] retries 1; chat [claude-c, gpt-b, gpt-a] ttft 400 ms; search "
        "[gpt-b, claude-d] hedge after 150 ms, ttft 1000 ms; extract [refused, claude-d, gpt-a] retries 0; "
        f"all with total_ms {ROUTE_TOTAL_MS}; slow [slow]. Breakers reopen after 2 s",
        "- traffic: grpc.aio from this process, one request every 1/rate s whatever the answers take; half "
        "unary, half streamed; tasks "
        + ", ".join(f"{t or '—'} {w}%" for t, w in TASKS)
        + "; tenants "
        + ", ".join(f"{t or 'none'} {w}%" for t, w in TENANTS)
        + " (tiny: 20 requests/minute); specials "
        + ", ".join(f"{s} {w}%" for s, w in SPECIALS if s)
        + " (cancel and deadline on the slow route)",
        "- checks: exactly one outcome per request; client, /metrics, decision records and the fake agree; "
        "after a quiet period nothing grew against the quiet after warm-up (fds, sockets, tasks, threads), "
        f"no upstream request left open; RSS growth < {RSS_GROWTH_LIMIT:.0%}",
        "",
        "## Results",
        "",
        *report.markdown(),
    ]
    write_result("soak", lines)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
