"""Where tiergate's added latency goes: stage timings in-process, then the sidecar under cProfile.

    .venv/bin/python benches/profile_request_path.py    # ~1 minute, writes results/profile_request_path.md
    .venv/bin/python benches/profile_request_path.py --prof-out /tmp/tiergate.prof   # keep the raw stats
    .venv/bin/python benches/profile_request_path.py --ab-pythonpath DIR   # + tiergate with DIR on PYTHONPATH

Part 1 times each stage of a request on its own, in this process, against benches/fast_upstream.py: the
proto -> domain conversion, `Sidecar.prepare` (checks, analysis, plan), building the response, a whole
`Sidecar.complete`, and the upstream round trip through the HTTP stacks tiergate could use (httpx as
`providers/hosted_http.py` calls it, httpcore's pool, raw asyncio streams). Nothing is profiled there, so
these are real microseconds on this machine. Part 2 runs `tiergate serve` under cProfile at concurrency 1 and
lists the hottest functions, which shows shares (cProfile inflates absolute times several-fold). Part 3 runs
bench_overhead.py's naive pass-through over httpx and over raw asyncio streams next to tiergate, end to end.
With `--ab-pythonpath DIR`, part 4 runs two sidecars side by side, as is and with DIR first on PYTHONPATH
(e.g. made by `pip install --target DIR sniffio`), in interleaved rounds: a way to try a fix that can be
injected that way before changing the product.

Not a `bench_*.py`: `benches/run.py` does not run it. It explains bench_overhead.py's numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benches.*, when run as a script

import grpc
import httpcore
import httpcore._synchronization as httpcore_sync
import httpx
import yaml

from benches.bench_overhead import PROMPT, grpc_system, http_system, tiergate_config
from benches.harness import (
    PYTHON,
    Samples,
    Server,
    machine,
    percentile,
    report_head,
    run_server,
    table,
    timed_batch,
    write_result,
)
from tiergate.config import parse, resolve
from tiergate.sidecar import Sidecar
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.wire import decision_to_proto, request_from_proto, usage_to_proto

BENCHES = Path(__file__).resolve().parent


def per_call_us(f: Callable[[], object], n: int = 20_000) -> float:
    for _ in range(500):
        f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e6


async def round_trip_us(f: Callable[[], Awaitable[object]], n: int = 3000) -> tuple[float, float]:
    """p50 wall time and mean CPU time (this process) per awaited call, in microseconds."""
    for _ in range(300):
        await f()
    walls = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        await f()
        walls.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / n
    return percentile(walls, 50) * 1e6, cpu * 1e6


def count_calls(module: object, name: str) -> list[int]:
    """Wraps module.name to count its calls (in this process only); returns the one-element counter."""
    counter = [0]
    original = getattr(module, name)

    def counted(*args: object, **kwargs: object) -> object:
        counter[0] += 1
        return original(*args, **kwargs)

    setattr(module, name, counted)
    return counter


async def stages(upstream_v1: str) -> list[str]:
    sidecar = await Sidecar.start(resolve(parse(tiergate_config(upstream_v1)), {}))
    try:
        message = pb.CompleteRequest(
            task="default", messages=[pb.Message(role="user", content=PROMPT)], max_output_tokens=16
        )
        request = request_from_proto(message, stream=False)
        answer = await sidecar.complete(request)

        def build_response() -> bytes:
            c = answer.completion
            return pb.CompleteResponse(
                text=c.text,
                usage=usage_to_proto(c.usage),
                decision=decision_to_proto(answer.decision),
                finish_reason=c.finish_reason,
            ).SerializeToString()

        provider = sidecar.providers["upstream"]
        body = provider._body(request, stream=False)  # the exact bytes tiergate sends
        url = upstream_v1 + "/chat/completions"
        headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
        rows = [
            [
                "proto -> Request (`wire.py: request_from_proto`)",
                f"{per_call_us(lambda: request_from_proto(message, stream=False)):.1f}",
                "—",
            ],
            [
                "`Sidecar.prepare` (checks, Rust analysis, plan, Run)",
                f"{per_call_us(lambda: sidecar.prepare(request, None)):.1f}",
                "—",
            ],
            [
                "`Analyzer.analyze` alone (one Rust call)",
                f"{per_call_us(lambda: sidecar.analyzer.analyze(request)):.1f}",
                "—",
            ],
            [
                "response: `decision_to_proto` + CompleteResponse + serialize",
                f"{per_call_us(build_response):.1f}",
                "—",
            ],
        ]
        wall, cpu = await round_trip_us(lambda: sidecar.complete(request))
        rows.append(["`Sidecar.complete` incl. upstream round trip", f"{wall:.0f}", f"{cpu:.0f}"])
        wall, cpu = await round_trip_us(lambda: provider.complete(request))
        rows.append(["`OpenAIProvider.complete` incl. upstream round trip", f"{wall:.0f}", f"{cpu:.0f}"])

        async with httpx.AsyncClient() as client:

            async def via_httpx() -> bytes:
                async with client.stream("POST", url, content=body, headers=headers) as response:
                    return await response.aread()

            wall, cpu = await round_trip_us(via_httpx)
            rows.append(["httpx.AsyncClient.stream + aread (as hosted_http.py)", f"{wall:.0f}", f"{cpu:.0f}"])
        async with httpcore.AsyncConnectionPool() as pool:
            header_list = [(k.encode(), v.encode()) for k, v in headers.items()]

            async def via_httpcore() -> bytes:
                response = await pool.request("POST", url, headers=header_list, content=body)
                return response.content

            wall, cpu = await round_trip_us(via_httpcore)
            rows.append(
                ["httpcore.AsyncConnectionPool.request (no httpx layer)", f"{wall:.0f}", f"{cpu:.0f}"]
            )
        host_port = url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        raw = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % (host_port.encode(), len(body))
        ) + body

        async def via_streams() -> bytes:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"content-length:") + 15
            return await reader.readexactly(int(head[at : head.find(b"\r\n", at)]))

        wall, cpu = await round_trip_us(via_streams)
        rows.append(["raw asyncio streams, hand-written HTTP/1.1 (the floor)", f"{wall:.0f}", f"{cpu:.0f}"])
        writer.close()

        def failed_import() -> None:
            try:
                import sniffio  # type: ignore[import-not-found]  # noqa: F401
            except ImportError:
                pass

        counter = count_calls(httpcore_sync, "current_async_library")
        for _ in range(500):
            await sidecar.complete(request)
        per_request = counter[0] / 500
        if "sniffio" not in sys.modules:
            us = per_call_us(failed_import, 2000)
            sniffio_note = (
                "`sniffio` is not installed: httpcore's `current_async_library()` runs `import "
                "sniffio` on every "
                f"call and the failed import searches sys.path each time ({us:.0f} µs here), "
                f"{per_request:.1f} times per request ≈ {us * per_request:.0f} µs per request."
            )
        else:
            sniffio_note = (
                f"`sniffio` is importable; httpcore's `current_async_library()` ran {per_request:.1f} times "
                "per request."
            )
    finally:
        await sidecar.aclose()
    return [
        *table(["stage", "µs per call (p50 wall for round trips)", "CPU µs per call"], rows),
        "",
        f"- {sniffio_note}",
    ]


def profile(upstream_v1: str, requests: int, prof_out: str | None, tmp: Path) -> list[str]:
    config_path = tmp / "tiergate.yaml"
    config_path.write_text(yaml.safe_dump(tiergate_config(upstream_v1)))
    prof = Path(prof_out) if prof_out else tmp / "tiergate.prof"
    argv = [
        PYTHON,
        "-m",
        "cProfile",
        "-o",
        str(prof),
        "-m",
        "tiergate.cli",
        "serve",
        "--config",
        str(config_path),
        "--http",
        "off",
    ]
    with run_server("tiergate (cProfile)", argv, r"serving gRPC on (\S+)") as server:
        address = server.found.group(1)

        async def drive() -> None:
            async with grpc.aio.insecure_channel(address) as channel:
                system = grpc_system("tiergate", channel)
                await timed_batch(system.call, requests, 1)

        asyncio.run(drive())
    stats = pstats.Stats(str(prof))
    out = []
    for sort, pattern in (("tottime", ""), ("cumulative", r"tiergate/|httpx/|httpcore/|anyio/|h11/")):
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.sort_stats(sort).print_stats(pattern, 35) if pattern else stats.sort_stats(sort).print_stats(35)
        out += [
            f"### sorted by {sort}" + (f" (only `{pattern}`)" if pattern else ""),
            "",
            "```",
            buf.getvalue().strip(),
            "```",
            "",
        ]
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_callers(r"\(_find_and_load\)")
    calls = [line for line in buf.getvalue().splitlines() if "<module>" not in line]
    title = "### imports run while serving (callers of `_find_and_load`, module-level imports left out)"
    out += [title, "", "```", "\n".join(calls).strip(), "```", ""]
    return out


def interleaved(
    upstream: Server, servers: dict[str, tuple[list[str], dict[str, str] | None]], rounds: int
) -> list[str]:
    """direct plus the given gRPC servers (name -> argv, env), compared in interleaved rounds at 1 and 16."""
    upstream_v1 = upstream.found.group(1) + "/v1"
    with ExitStack() as stack:
        started = {
            name: stack.enter_context(run_server(name, argv, r"serving gRPC on (\S+)", env=env))
            for name, (argv, env) in servers.items()
        }

        async def go() -> list[list[str]]:
            clients = [httpx.AsyncClient() for _ in range(16)]
            channels = {name: grpc.aio.insecure_channel(s.found.group(1)) for name, s in started.items()}
            systems = {
                "direct": http_system("direct", clients, upstream_v1 + "/chat/completions", "gpt-bench")
            }
            for name, channel in channels.items():
                await channel.channel_ready()
                systems[name] = grpc_system(name, channel)
            pids = {"direct": upstream.proc.pid} | {name: s.proc.pid for name, s in started.items()}
            rows = []
            try:
                for concurrency, per_round in ((1, 300), (16, 480)):
                    results = {name: Samples() for name in systems}
                    for system in systems.values():
                        await timed_batch(system.call, 300, concurrency)
                    for r in range(rounds):
                        names = list(systems)
                        shift = r % len(names)
                        for name in names[shift:] + names[:shift]:
                            batch = await timed_batch(
                                systems[name].call, per_round, concurrency, [pids[name]]
                            )
                            results[name].extend(batch)
                    direct50 = results["direct"].pct_ms(50)
                    for name, res in results.items():
                        n = len(res.latencies)
                        rows.append([
                            str(concurrency), name, f"{res.pct_ms(50):.2f}", f"{res.pct_ms(99):.2f}",
                            "—" if name == "direct" else f"{res.pct_ms(50) - direct50:.2f}",
                            f"{res.throughput:.0f}", f"{res.server_cpu_s / n * 1000:.2f}",
                        ])  # fmt: skip
            finally:
                for client in clients:
                    await client.aclose()
                for channel in channels.values():
                    await channel.close()
            return rows

        rows = asyncio.run(go())
    return [
        f"{rounds} interleaved rounds per concurrency; server CPU is the process under test's (the "
        "upstream's for direct).",
        "",
        *table(
            ["concurrency", "system", "p50 ms", "p99 ms", "added p50 ms", "req/s", "server CPU ms/req"], rows
        ),
    ]


def tiergate_argv(upstream: Server, tmp: Path) -> list[str]:
    config_path = tmp / "tiergate-compare.yaml"
    config_path.write_text(yaml.safe_dump(tiergate_config(upstream.found.group(1) + "/v1")))
    return [
        PYTHON,
        "-m",
        "tiergate.cli",
        "serve",
        "--config",
        str(config_path),
        "--grpc",
        "127.0.0.1:0",
        "--http",
        "off",
    ]


def http_client_share(upstream: Server, tmp: Path, rounds: int = 8) -> list[str]:
    """The pass-through over httpx and over raw asyncio streams, next to tiergate."""
    reference = [PYTHON, str(BENCHES / "grpc_reference_server.py")]
    upstream_v1 = upstream.found.group(1) + "/v1"
    servers: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "passthrough, httpx": ([*reference, "passthrough", "--upstream", upstream_v1], None),
        "passthrough, raw asyncio": ([*reference, "passthrough-raw", "--upstream", upstream_v1], None),
        "tiergate": (tiergate_argv(upstream, tmp), None),
    }
    return [
        "The naive pass-through of bench_overhead.py with its httpx client, and with a hand-written HTTP/1.1 "
        "client on asyncio streams (`grpc_reference_server.py passthrough-raw`): the difference is what "
        "httpx costs a request.",
        "",
        *interleaved(upstream, servers, rounds),
    ]


def ab_compare(upstream: Server, pythonpath: str, tmp: Path, rounds: int = 10) -> list[str]:
    """tiergate as is (A) vs with `pythonpath` first on PYTHONPATH (B)."""
    env_b = dict(os.environ)
    env_b["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env_b.get("PYTHONPATH", "")) if p)
    argv = tiergate_argv(upstream, tmp)
    servers: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "tiergate A": (argv, None),
        "tiergate B": (argv, env_b),
    }
    return [
        f"A: tiergate as is. B: tiergate with `{pythonpath}` first on PYTHONPATH.",
        "",
        *interleaved(upstream, servers, rounds),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests sent to the profiled sidecar")
    parser.add_argument("--prof-out", help="keep cProfile's raw stats in this file")
    parser.add_argument(
        "--ab-pythonpath", help="also compare tiergate with this directory first on PYTHONPATH"
    )
    parser.add_argument(
        "--nice", type=int, default=0, help="os.nice() increment (e.g. -10) for all processes"
    )
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    machine_lines = machine()
    with (
        tempfile.TemporaryDirectory(prefix="tiergate-profile-") as tmp,
        run_server(
            "upstream", [PYTHON, str(BENCHES / "fast_upstream.py")], r"listening on (http://\S+)"
        ) as up,
    ):
        upstream_v1 = up.found.group(1) + "/v1"
        part1 = asyncio.run(stages(upstream_v1))
        part2 = profile(upstream_v1, args.requests, args.prof_out, Path(tmp))
        part3 = http_client_share(up, Path(tmp))
        part4 = ab_compare(up, args.ab_pythonpath, Path(tmp)) if args.ab_pythonpath else []
    lines = [
        *report_head("profile_request_path: where tiergate's added latency goes", machine_lines),
        "## 1. Stage timings (in-process, no profiler; upstream: benches/fast_upstream.py)",
        "",
        *part1,
        "",
        f"## 2. `tiergate serve` under cProfile, {args.requests} requests at concurrency 1",
        "",
        "Start-up is included. cProfile counts every resumption of a coroutine as a call and slows "
        "Python code "
        "several-fold: read shares, not absolute times. "
        "`{method 'run' of '_contextvars.Context' objects}` is "
        "event-loop callbacks, mostly grpc.aio's Cython (not itemised by cProfile).",
        "",
        *part2,
    ]
    lines += ["", "## 3. What the HTTP client costs, end to end", "", *part3]
    if part4:
        lines += ["", "## 4. A/B", "", *part4]
    write_result("profile_request_path", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
