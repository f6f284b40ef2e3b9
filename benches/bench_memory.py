"""Resident memory of the sidecar process: with the embedded model loaded, and with hosted models only.

    .venv/bin/python benches/bench_memory.py [--requests N]

Each variant starts `tiergate serve` as its own process, sends N requests over gRPC (the local variant to the
embedded model, the hosted variant to benches/fast_upstream.py), and reads the process's VmRSS (now) and
VmHWM (peak) from /proc after start-up and after the traffic. Targets: under 500 MB with the embedded model,
under 120 MB without a local model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PYTHON, ROOT, machine, report_head, run_server, table, write_result

from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

LOCAL_TARGET_MB = 500
HOSTED_TARGET_MB = 120


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


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
) -> list[str]:
    args = [PYTHON, "-m", "tiergate.cli", "serve", "--grpc", "127.0.0.1:0", "--http", "off"]
    if config is not None:
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        args += ["--config", str(path)]
    env = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}  # the embedded default: local model only
    with run_server(name, args, r"serving gRPC on (\S+)", env=env, timeout_s=180) as server:
        started_rss, _ = memory_mb(server.proc.pid)
        traffic(server.found.group(1), n, max_output_tokens)
        rss, peak = memory_mb(server.proc.pid)
    return [name, f"{started_rss:.0f}", f"{rss:.0f}", f"{peak:.0f}", str(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    rows = []
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
        rows.append(measure("hosted only (no local model)", hosted, args.requests * 10, 16, tmp))
        rows.append(measure("embedded default (local model)", None, args.requests, 16, tmp))
    hosted_peak = float(rows[0][3])
    local_peak = float(rows[1][3])
    lines = [
        *report_head("bench_memory: the sidecar's resident memory", machine()),
        "## Result (MiB)",
        "",
        *table(["variant", "RSS after start", "RSS after traffic", "peak (VmHWM)", "requests"], rows),
        "",
        "## Against the targets",
        "",
        f"- with the embedded model: peak {local_peak:.0f} MiB (target < {LOCAL_TARGET_MB}: "
        f"**{'met' if local_peak < LOCAL_TARGET_MB else 'MISSED'}**)",
        f"- without a local model: peak {hosted_peak:.0f} MiB (target < {HOSTED_TARGET_MB}: "
        f"**{'met' if hosted_peak < HOSTED_TARGET_MB else 'MISSED'}**)",
    ]
    write_result("bench_memory", lines)


if __name__ == "__main__":
    main()
