"""How fast the on-device model serves again after its worker process dies; what a restart costs in memory.

    .venv/bin/python benches/bench_local_worker.py [--crashes 10] [--signal SIGSEGV]

Starts `tiergate serve` with the embedded model alone (its breaker set never to open, so that the figures are
the restart's own), answers one request, then, `--crashes` times: kills the worker process with the signal,
and times

    kill -> up       until `Status` says a new worker is up (one more restart, the model loaded)
    kill -> answer   until a request is answered by the local model again (polling with requests)

Between crashes one request is answered, so each restart takes the supervisor's first back-off step (0.1 s):
a worker that served restarts at once. Also reads VmRSS of the sidecar and of the worker before the first
crash and after the last: a restart maps the model's pages from the page cache again, it does not add a copy.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PYTHON, machine, memory_mb, report_head, run_server, table, worker_pids, write_result

from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

# The embedded model alone, with a breaker that never opens: a crash is one failure, and this bench crashes
# the worker ten times in a row, which the default breaker would answer by holding the model off for its
# open_ms (30 s). The figures are then the restart's own.
CONFIG = {
    "models": {"local": {"provider": "llama_cpp", "path": "embedded"}},
    "routes": {"default": {"chain": ["local"], "retries": 0}},
    "breaker": {"min_calls": 1_000_000},
}
QUESTION = pb.CompleteRequest(
    messages=[pb.Message(role="user", content="What is the capital of France?")], max_output_tokens=8
)


def local_worker(stub: pb_grpc.TiergateStub) -> pb.ModelStatus:
    return next(m for m in stub.Status(pb.StatusRequest(), timeout=10).models if m.name == "local")


def answered_locally(stub: pb_grpc.TiergateStub) -> bool:
    try:
        return stub.Complete(QUESTION, timeout=30).decision.served_by == "local"
    except grpc.RpcError:
        return False


def until(condition: object, timeout_s: float = 120.0) -> float:
    """Polls `condition()` every 5 ms; the time it first held (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(0.005)
    raise SystemExit("the local model never came back")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crashes", type=int, default=10)
    parser.add_argument("--signal", default="SIGSEGV", choices=["SIGSEGV", "SIGKILL", "SIGABRT"])
    args = parser.parse_args()
    sig = signal.Signals[args.signal]
    config = Path(tempfile.mkdtemp(prefix="tiergate-bench-")) / "tiergate.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    args_serve = [PYTHON, "-m", "tiergate.cli", "serve", "--grpc", "127.0.0.1:0", "--http", "off"]
    args_serve += ["--config", str(config)]
    env = {**os.environ, "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}  # the embedded default: local only
    up_s: list[float] = []
    answer_s: list[float] = []
    with run_server("sidecar", args_serve, r"serving gRPC on (\S+)", env=env, timeout_s=180) as server:
        sidecar = server.proc.pid
        with grpc.insecure_channel(server.found.group(1)) as channel:
            stub = pb_grpc.TiergateStub(channel)
            until(lambda: answered_locally(stub))
            (worker,) = worker_pids(sidecar)
            before = (memory_mb(sidecar)[0], memory_mb(worker)[0])
            for i in range(args.crashes):
                (worker,) = worker_pids(sidecar)
                killed = time.monotonic()
                os.kill(worker, sig)
                # Up again: a new worker (one more restart) that loaded the model.
                up_s.append(
                    until(lambda n=i + 1: (w := local_worker(stub)).worker == "up" and w.worker_restarts == n)
                    - killed
                )
                answer_s.append(until(lambda: answered_locally(stub)) - killed)
            (worker,) = worker_pids(sidecar)
            after = (memory_mb(sidecar)[0], memory_mb(worker)[0])
            restarts = local_worker(stub).worker_restarts
    med = statistics.median
    lines = [
        *report_head("bench_local_worker: the on-device worker process after a crash", machine()),
        f"## Crash -> serving again ({args.crashes} crashes, {sig.name}; Status: {restarts} restarts)",
        "",
        *table(
            ["measure", "median s", "max s"],
            [
                ["kill -> Status says the worker is up", f"{med(up_s):.3f}", f"{max(up_s):.3f}"],
                [
                    "kill -> a request answered by the local model",
                    f"{med(answer_s):.3f}",
                    f"{max(answer_s):.3f}",
                ],
            ],
        ),
        "",
        "Per crash (kill -> answer, s): " + ", ".join(f"{s:.3f}" for s in answer_s),
        "",
        "## Resident memory (MiB) before the first crash and after the last",
        "",
        *table(
            ["process", "before", f"after {args.crashes} restarts"],
            [
                ["sidecar", f"{before[0]:.0f}", f"{after[0]:.0f}"],
                ["worker (a new process each time)", f"{before[1]:.0f}", f"{after[1]:.0f}"],
                ["both", f"{sum(before):.0f}", f"{sum(after):.0f}"],
            ],
        ),
    ]
    write_result("bench_local_worker", lines)


if __name__ == "__main__":
    main()
