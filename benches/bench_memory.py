"""Resident memory of the sidecar: with the embedded model (sidecar + its worker process), and with hosted
models only.

    .venv/bin/python benches/bench_memory.py [--requests N]

Each variant starts `tiergate serve` as its own process, sends N requests over gRPC (the local variant to the
embedded model, the hosted variant to benches/fast_upstream.py), and reads VmRSS (now) and VmHWM (peak) from
/proc after start-up and after the traffic, of the sidecar and of its on-device worker process. Targets: under
500 MB for sidecar + worker with the embedded model, under 120 MB for the sidecar alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    PYTHON,
    ROOT,
    machine,
    memory_mb,
    report_head,
    run_server,
    table,
    worker_pids,
    write_result,
)

from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

LOCAL_TARGET_MB = 500
HOSTED_TARGET_MB = 120


def traffic(address: str, n: int, max_output_tokens: int) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.TiergateStub(channel)
        for i in range(n):
            request = pb.CompleteRequest(
                messages=[pb.Message(role="user", content=f"Question {i}: what is the capital of France?")],
                max_output_tokens=max_output_tokens,
            )
            if i % 2:
                list(stub.StreamComplete(request, timeout=120))
            else:
                stub.Complete(request, timeout=120)


def measure(
    name: str, config: dict[str, object] | None, n: int, max_output_tokens: int, tmp: Path
) -> list[list[str]]:
    """Rows: the sidecar, each worker process, and their sum when there are workers."""
    args = [PYTHON, "-m", "tiergate.cli", "serve", "--grpc", "127.0.0.1:0", "--http", "off"]
    if config is not None:
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        args += ["--config", str(path)]
    env = {**os.environ, "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}  # the embedded default: local only
    with run_server(name, args, r"serving gRPC on (\S+)", env=env, timeout_s=180) as server:
        workers = worker_pids(server.proc.pid)
        pids = {"sidecar": server.proc.pid, **{f"worker {i + 1}": p for i, p in enumerate(workers)}}
        started = {role: memory_mb(pid)[0] for role, pid in pids.items()}
        traffic(server.found.group(1), n, max_output_tokens)
        after = {role: memory_mb(pid) for role, pid in pids.items()}
    rows = [
        [f"{name}: {role}", f"{started[role]:.0f}", f"{rss:.0f}", f"{peak:.0f}", str(n)]
        for role, (rss, peak) in after.items()
    ]
    if len(pids) > 1:
        rows.append(
            [
                f"{name}: sidecar + worker",
                f"{sum(started.values()):.0f}",
                f"{sum(r for r, _ in after.values()):.0f}",
                f"{sum(p for _, p in after.values()):.0f}",
                str(n),
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        upstream = stack.enter_context(
            run_server(
                "upstream", [PYTHON, str(ROOT / "benches/fast_upstream.py")], r"listening on (http://\S+)"
            )
        )
        hosted = {
            "models": {
                "hosted": {
                    "provider": "openai",
                    "base_url": upstream.found.group(1) + "/v1",
                    "model": "gpt-bench",
                    "api_key": "bench",
                }
            },
            "routes": {"default": {"chain": ["hosted"]}},
        }
        hosted_rows = measure("hosted only", hosted, args.requests * 10, 16, tmp)
        local_rows = measure("embedded default", None, args.requests, 16, tmp)
        rows = hosted_rows + local_rows
    hosted_peak = float(hosted_rows[0][3])
    sidecar_peak = float(local_rows[0][3])
    local_peak = float(local_rows[-1][3])
    lines = [
        *report_head("bench_memory: the sidecar's resident memory", machine()),
        "## Result (MiB)",
        "",
        *table(["variant", "RSS after start", "RSS after traffic", "peak (VmHWM)", "requests"], rows),
        "",
        "## Against the targets",
        "",
        f"- sidecar + worker with the embedded model: peak {local_peak:.0f} MiB (target < {LOCAL_TARGET_MB}: "
        f"**{'met' if local_peak < LOCAL_TARGET_MB else 'MISSED'}**)",
        f"- the sidecar alone, with the embedded model in its worker: peak {sidecar_peak:.0f} MiB (target < "
        f"{HOSTED_TARGET_MB}: **{'met' if sidecar_peak < HOSTED_TARGET_MB else 'MISSED'}**)",
        f"- without a local model: peak {hosted_peak:.0f} MiB (target < {HOSTED_TARGET_MB}: "
        f"**{'met' if hosted_peak < HOSTED_TARGET_MB else 'MISSED'}**)",
        "",
        "The peaks are summed per process (each its own VmHWM): an upper bound of the pair's peak. The model",
        "file is memory-mapped, so its pages count in the worker's RSS and are shared with the page cache.",
    ]
    write_result("bench_memory", lines)


if __name__ == "__main__":
    main()
