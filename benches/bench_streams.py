"""Issue 16: streaming at scale. Sidecar CPU per relayed chunk, p99 inter-chunk gap added, RSS, N streams.

    .venv/bin/python benches/bench_streams.py                    # writes results/bench_streams.md
    .venv/bin/python benches/bench_streams.py --streams 100,1000 --before-ref 5ba62b7   # before/after
    .venv/bin/python benches/bench_streams.py --quick            # fewer streams, shorter windows
    .venv/bin/python benches/bench_streams.py --go-floor         # also the Go relay: this machine's floor

One cheap upstream (an OpenAI-wire SSE stream per request, one chunk every 1/rate s: benches/upstream, Go,
built here, or with `--upstream python` benches/stream_upstream.py, the same bytes from asyncio) and a cheap
load generator (benches/loadgen, Go, built here: gRPC StreamComplete or the HTTP facade's SSE) drive each
sidecar in turn: `tiergate serve` from this tree ("after") and, with `--before-ref REF`, the same command
from the Python sources of commit REF ("before", with this tree's built extension). With `--go-floor`,
also benches/relay_floor ("go relay (floor)", Go, built here): a minimal gateway with the same two
interfaces that parses each upstream chunk's JSON and re-encodes it, and does nothing else; its CPU per
chunk is what relaying one chunk costs on this machine when the relay is compiled and multi-threaded:
the floor for a relay that parses and re-encodes each chunk. For each level (streams x interface) every
system gets one window, in the same run.

Figures, inside the measured window only (after a warm-up during which every stream has started):
sidecar CPU (user + system, from /proc) per relayed chunk, and the upstream's and the load generator's (so
the table shows whether either was the bottleneck); the machine's idle share (from /proc/stat: near 0, the
2 cores were saturated, by whatever ran); chunks/s delivered; p99 of the gaps between consecutive chunks
of a stream as the clients see them, minus the upstream's interval ("gap added"); the
sidecar's RSS at the window's end; errors (any failed stream, whole run). With `--modes unary`, each
"stream" is a client calling gRPC Complete in a loop: a "chunk" is then a request, and its gap the
request's latency (the upstream answers a non-streamed request at once).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benches.*, when run as a script

import yaml

from benches.harness import (
    PYTHON,
    ROOT,
    machine,
    machine_cpu_ticks,
    memory_mb,
    process_trees_cpu_s,
    report_head,
    run_server,
    table,
    write_result,
)

BENCHES = Path(__file__).resolve().parent
LOADGEN_SRC = BENCHES / "loadgen"
UPSTREAM_SRC = BENCHES / "upstream"
RELAY_FLOOR_SRC = BENCHES / "relay_floor"
GO_FLOOR = "go relay (floor)"
FLOOR_NOTE = (
    f"`{GO_FLOOR}` = benches/relay_floor, the floor: a minimal gateway in Go (grpc-go, net/http, "
    "encoding/json, all cores) serving StreamComplete and the SSE facade, which POSTs each call to the "
    "same upstream, decodes each chunk's JSON and re-encodes it (one CompleteChunk, or one SSE event "
    "flushed, per upstream chunk) and does nothing else: no routing, policy, limits or metrics. Its CPU "
    "per chunk (in the sidecar column) is what relaying one chunk costs this machine under this load "
    "(one upstream read and one client write, each a thread wake-up when chunks arrive alone); a "
    "sidecar's excess over it is what its own code adds."
)


HEADER = ["system", "interface", "streams", "sidecar µs CPU/chunk", "upstream µs CPU/chunk",
          "loadgen µs CPU/chunk", "idle %", "chunks/s", "gap p50 ms", "gap p99 ms", "p99 gap added ms",
          "RSS MB", "errors"]  # fmt: skip


@dataclass
class Window:
    system: str
    mode: str
    streams: int
    cpu_us_per_chunk: float
    upstream_us_per_chunk: float
    loadgen_us_per_chunk: float
    idle_share: float
    chunks_per_s: float
    gap_p50_ms: float
    gap_p99_ms: float
    gap_added_p99_ms: float
    rss_mb: float
    errors: int
    first_error: str


def go_build(src: Path, out_dir: Path, needed_for: str) -> Path:
    """Builds the Go program in `src` into `out_dir`; without Go, says what needed it."""
    if shutil.which("go") is None:
        raise SystemExit(f"bench_streams needs Go to build {needed_for} ({src.relative_to(ROOT)})")
    exe = out_dir / src.name
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    subprocess.run(["go", "build", "-o", str(exe), "."], cwd=src, check=True, env=env)
    return exe


def build_loadgen(out_dir: Path) -> Path:
    return go_build(LOADGEN_SRC, out_dir, "its load generator")


def build_upstream(out_dir: Path) -> Path:
    return go_build(UPSTREAM_SRC, out_dir, "its upstream (`--upstream python` needs no Go)")


def build_relay_floor(out_dir: Path) -> Path:
    return go_build(RELAY_FLOOR_SRC, out_dir, "the relay floor (--go-floor)")


def before_tree(ref: str, into: Path) -> Path:
    """The Python sources of commit `ref`, with this tree's built extension and generated protobuf code."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "before.tar"
    subprocess.run(["git", "archive", "-o", str(archive), ref, "python"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    native = next((ROOT / "python/tiergate").glob("_native*.so"))
    shutil.copy(native, into / "python/tiergate" / native.name)
    return into / "python"


def sidecar_config(upstream_v1: str, max_streams: int) -> dict[str, object]:
    return {
        "listen": {"grpc": "127.0.0.1:0", "http": "127.0.0.1:0"},
        "limits": {"max_concurrent_requests": max_streams + 64},
        "models": {
            "upstream": {
                "provider": "openai",
                "base_url": upstream_v1,
                "api_key": "sk-bench",
                "model": "gpt-bench",
            }
        },
        "routes": {"default": {"chain": ["upstream"]}},
    }


@dataclass
class Measured:
    """What run_window saw in the window, besides the load generator's own result."""

    sidecar_cpu_s: float
    upstream_cpu_s: float
    loadgen_cpu_s: float
    idle_share: float  # of the whole machine's CPU time in the window
    rss_mb: float  # the sidecar's, at the window's end


def run_window(
    loadgen: Path,
    mode: str,
    target: str,
    pid: int,
    upstream_pid: int,
    streams: int,
    warmup_s: float,
    window_s: float,
) -> tuple[dict[str, object], Measured]:
    """Runs the load generator; returns its result and the CPU seconds that the sidecar (`pid`), the upstream
    and the load generator used in the window, the machine's idle share then, and the sidecar's RSS."""
    ramp = f"{max(1.0, warmup_s - 2)}s"
    args = [str(loadgen), "-mode", mode, "-target", target, "-streams", str(streams),
            "-ramp", ramp, "-warmup", f"{warmup_s}s", "-window", f"{window_s}s"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = [pid, upstream_pid, proc.pid]
    cpu_start = cpu_end = [0.0] * len(pids)
    ticks_start = ticks_end = (0, 0)
    rss = 0.0
    result: dict[str, object] = {}
    for line in proc.stdout:
        if line.startswith("mark start"):
            ticks_start, cpu_start = machine_cpu_ticks(), process_trees_cpu_s(pids)
        elif line.startswith("mark end"):
            ticks_end, cpu_end = machine_cpu_ticks(), process_trees_cpu_s(pids)
            rss = memory_mb(pid)[0]
        elif line.startswith("{"):
            result = json.loads(line)
    if proc.wait() != 0 or not result:
        raise RuntimeError(f"loadgen failed ({proc.returncode})")
    sidecar, upstream, own = (end - start for start, end in zip(cpu_start, cpu_end, strict=True))
    ticks = ticks_end[1] - ticks_start[1]
    idle = (ticks_end[0] - ticks_start[0]) / ticks if ticks > 0 else float("nan")
    return result, Measured(sidecar, upstream, own, idle, rss)


def window(
    system: str,
    mode: str,
    streams: int,
    result: dict[str, object],
    measured: Measured,
    interval_ms: float,
) -> Window:
    chunks = int(result["chunks"])  # type: ignore[call-overload]
    gap_p99 = float(result["gap_p99_ms"])  # type: ignore[arg-type]

    def per_chunk_us(cpu_s: float) -> float:
        return cpu_s / chunks * 1e6 if chunks else float("nan")

    return Window(
        system=system,
        mode=mode,
        streams=streams,
        cpu_us_per_chunk=per_chunk_us(measured.sidecar_cpu_s),
        upstream_us_per_chunk=per_chunk_us(measured.upstream_cpu_s),
        loadgen_us_per_chunk=per_chunk_us(measured.loadgen_cpu_s),
        idle_share=measured.idle_share,
        chunks_per_s=float(result["chunks_per_s"]),  # type: ignore[arg-type]
        gap_p50_ms=float(result["gap_p50_ms"]),  # type: ignore[arg-type]
        gap_p99_ms=gap_p99,
        gap_added_p99_ms=gap_p99 - interval_ms if mode != "unary" else float("nan"),
        rss_mb=measured.rss_mb,
        errors=int(result["errors"]),  # type: ignore[call-overload]
        first_error=str(result["first_error"] or ""),
    )


def start_litellm(stack: ExitStack, tmp: Path, upstream_v1: str) -> tuple[str, int] | None:
    """LiteLLM's proxy (its own venv, benches/setup_litellm.sh) routing model `default` to the upstream,
    without uvicorn's per-request access log; (base URL, pid), or None (and why, on stderr)."""
    from benches.bench_overhead import LITELLM_VENV, ensure_litellm, litellm_env, litellm_log_config
    from benches.harness import free_port, wait_http_ok

    problem = ensure_litellm()
    if problem is not None:
        print(f"LiteLLM not measured: {problem}", file=sys.stderr)
        return None
    config = {
        "model_list": [{"model_name": "default", "litellm_params": {
            "model": "openai/gpt-bench", "api_base": upstream_v1, "api_key": "sk-bench"}}],
        "litellm_settings": {"telemetry": False},
    }  # fmt: skip
    (tmp / "litellm.yaml").write_text(yaml.safe_dump(config))
    (tmp / "litellm-logging.yaml").write_text(yaml.safe_dump(litellm_log_config()))
    port = free_port()
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(tmp / "litellm.yaml"),
            "--host", "127.0.0.1", "--port", str(port), "--telemetry", "False", "--num_workers", "1",
            "--log_config", str(tmp / "litellm-logging.yaml")]  # fmt: skip
    server = stack.enter_context(
        run_server("litellm", argv, r"Application startup complete", env=litellm_env(), timeout_s=180)
    )
    wait_http_ok(f"http://127.0.0.1:{port}/health/liveliness", 60, server.proc)
    return f"http://127.0.0.1:{port}", server.proc.pid


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", default="100,1000", help="comma-separated stream counts")
    parser.add_argument("--modes", default="grpc,http", help="grpc, http, unary (comma-separated)")
    parser.add_argument("--unary-clients", default="1,16", help="comma-separated client counts for unary")
    parser.add_argument(
        "--upstream",
        choices=["go", "python"],
        default="go",
        help="the streaming upstream: benches/upstream (Go, built here) or benches/stream_upstream.py",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="chunks per second per stream")
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--before-ref", help="also run the sidecar from this commit's Python sources")
    parser.add_argument(
        "--asyncio-loop",
        action="store_true",
        help="also run this tree's sidecar on asyncio's own event loop (TIERGATE_EVENT_LOOP=asyncio)",
    )
    parser.add_argument(
        "--litellm",
        action="store_true",
        help="also LiteLLM's proxy on the HTTP rows (benches/setup_litellm.sh)",
    )
    parser.add_argument(
        "--go-floor",
        action="store_true",
        help="also benches/relay_floor, a minimal Go relay: this machine's floor per chunk (gRPC, HTTP)",
    )
    parser.add_argument("--out", default="bench_streams", help="results/<out>.md")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.warmup, args.window = "50", 4.0, 4.0
    levels = [int(n) for n in args.streams.split(",")]
    unary_levels = [int(n) for n in args.unary_clients.split(",")]
    modes = args.modes.split(",")
    interval_ms = 1000.0 / args.rate
    chunks_per_stream = int((args.warmup + args.window + 10) * args.rate)
    start_machine = machine()
    windows: list[Window] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tiergate-bench-streams-") as tmp_dir:
        tmp = Path(tmp_dir)
        loadgen = build_loadgen(tmp)
        upstream_argv = (
            [str(build_upstream(tmp))]
            if args.upstream == "go"
            else [PYTHON, str(BENCHES / "stream_upstream.py")]
        )
        upstream_argv += ["--chunks", str(chunks_per_stream), "--interval-ms", str(interval_ms)]
        upstream = stack.enter_context(run_server("upstream", upstream_argv, r"listening on (http://\S+)"))
        upstream_pid = upstream.proc.pid
        upstream_v1 = upstream.found.group(1) + "/v1"
        config_path = tmp / "tiergate.yaml"
        config_path.write_text(yaml.safe_dump(sidecar_config(upstream_v1, max(levels))))
        systems: dict[str, dict[str, str]] = {"after": dict(os.environ)}
        if args.before_ref:
            pythonpath = before_tree(args.before_ref, tmp / "before")
            systems = {"before": {**os.environ, "PYTHONPATH": str(pythonpath)}, **systems}
        serve = [PYTHON, "-m", "tiergate.cli", "serve", "--config", str(config_path)]
        commands = {name: serve for name in systems}
        if args.asyncio_loop:
            systems["after, asyncio loop"] = {**os.environ, "TIERGATE_EVENT_LOOP": "asyncio"}
            commands["after, asyncio loop"] = serve
        if args.go_floor:
            systems[GO_FLOOR] = dict(os.environ)
            commands[GO_FLOOR] = [str(build_relay_floor(tmp)), "--upstream", upstream.found.group(1)]
        litellm_target = start_litellm(stack, tmp, upstream_v1) if args.litellm and "http" in modes else None
        for mode in modes:
            for streams in unary_levels if mode == "unary" else levels:
                if mode == "http" and litellm_target is not None:
                    base, pid = litellm_target
                    result, measured = run_window(
                        loadgen, mode, base, pid, upstream_pid, streams, args.warmup, args.window
                    )
                    windows.append(window("litellm", mode, streams, result, measured, interval_ms))
                    print(windows[-1], file=sys.stderr, flush=True)
                for name, env in systems.items():
                    if name == GO_FLOOR and mode == "unary":
                        continue  # it serves StreamComplete only
                    with run_server(name, commands[name], r"serving gRPC on (\S+)", env=env) as sidecar:
                        http = sidecar.log.read_text()
                        http_address = http.split("serving HTTP on ", 1)[1].split(" ", 1)[0]
                        target = f"http://{http_address}" if mode == "http" else sidecar.found.group(1)
                        result, measured = run_window(
                            loadgen,
                            mode,
                            target,
                            sidecar.proc.pid,
                            upstream_pid,
                            streams,
                            args.warmup,
                            args.window,
                        )
                    windows.append(window(name, mode, streams, result, measured, interval_ms))
                    print(windows[-1], file=sys.stderr, flush=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = [
        (w.system, w.mode, str(w.streams), f"{w.cpu_us_per_chunk:.1f}", f"{w.upstream_us_per_chunk:.1f}",
         f"{w.loadgen_us_per_chunk:.1f}", f"{w.idle_share * 100:.0f}", f"{w.chunks_per_s:.0f}",
         f"{w.gap_p50_ms:.1f}", f"{w.gap_p99_ms:.1f}", f"{w.gap_added_p99_ms:.1f}", f"{w.rss_mb:.0f}",
         str(w.errors) + (f" ({w.first_error[:60]})" if w.first_error else ""))
        for w in windows
    ]  # fmt: skip
    report = report_head("Streaming at scale: sidecar CPU per relayed chunk", start_machine,
                         f"- load average at the end {load}")  # fmt: skip
    upstream_name = (
        "benches/upstream (Go)" if args.upstream == "go" else "benches/stream_upstream.py (Python asyncio)"
    )
    report += [
        f"Upstream: {upstream_name}, one chunk every {interval_ms:g} ms per stream ({args.rate:g}/s). "
        f"Load generator: benches/loadgen (Go). Warm-up {args.warmup:g} s (streams start during it), then a "
        f"{args.window:g} s window. `before` = the sidecar from commit {args.before_ref or '-'}'s Python "
        "sources; `after` = this tree. CPU is user + system time from /proc over the window, per chunk "
        "delivered, of the sidecar, the upstream and the load generator (each with its children); idle % is "
        "the whole machine's idle share of the window (/proc/stat), whatever else ran.",
        "",
        *([FLOOR_NOTE, ""] if args.go_floor else []),
        *table(HEADER, rows),
        "",
    ]
    write_result(args.out, report)


if __name__ == "__main__":
    main()
