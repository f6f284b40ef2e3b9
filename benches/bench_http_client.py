"""The upstream HTTP client, side by side: CPU per small JSON POST and per streamed (SSE) answer.

    .venv/bin/python benches/bench_http_client.py   # ~1 minute, writes results/bench_http_client.md
    .venv/bin/python benches/bench_http_client.py --candidates DIR
        # + clients pip-installed with --target DIR (aiosonic, pyreqwest), kept out of the venv

One process, sequential requests (keep-alive) to benches/stream_upstream.py (raw asyncio, another process),
client CPU from `time.process_time` (so other load on a shared machine does not count). Rounds interleave the
clients, in an order that rotates each round; the table gives each client's median round. Each row uses the
client the way `providers/hosted_http.py` would: the whole body for a POST, the body as it arrives (not
parsed: SSE parsing is the same code for all) for a stream.

    httpx + FastTransport   the hand-written HTTP/1.1 transport under httpx's API (tiergate before issue 16)
    aiohttp                 aiohttp's client (C HTTP parser), one ClientSession
    httpx                   plain httpx (httpcore)
    aiosonic, pyreqwest     other strong candidates, when installed (--candidates)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benches.*, when run as a script

from benches.harness import PYTHON, machine, report_head, run_server, table, write_result

BENCHES = Path(__file__).resolve().parent
POST_BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
STREAM_CHUNKS = 10

Call = Callable[[bytes], Awaitable[int]]  # sends a body, returns the bytes received


async def httpx_fast(stack: AsyncExitStack, url: str) -> Call:
    import httpx
    from tiergate.providers.fast_transport import FastTransport

    client = await stack.enter_async_context(httpx.AsyncClient(transport=FastTransport(), timeout=10))
    return await _httpx_call(client, url)


async def httpx_plain(stack: AsyncExitStack, url: str) -> Call:
    import httpx

    client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
    return await _httpx_call(client, url)


async def _httpx_call(client: Any, url: str) -> Call:
    async def call(body: bytes) -> int:
        n = 0
        async with client.stream("POST", url, content=body, headers=HEADERS) as response:
            async for part in response.aiter_bytes():
                n += len(part)
        return n

    return call


async def aiohttp_client(stack: AsyncExitStack, url: str) -> Call:
    import aiohttp

    session = await stack.enter_async_context(aiohttp.ClientSession())

    async def call(body: bytes) -> int:
        n = 0
        async with session.post(url, data=body, headers=HEADERS) as response:
            async for part in response.content.iter_any():
                n += len(part)
        return n

    return call


async def aiosonic_client(stack: AsyncExitStack, url: str) -> Call:
    import aiosonic  # type: ignore[import-not-found]

    client = aiosonic.HTTPClient()

    async def call(body: bytes) -> int:
        n = 0
        response = await client.post(url, data=body, headers=HEADERS)
        if response.chunked:
            async for part in response.read_chunks():
                n += len(part)
        else:
            n = len(await response.content())
        return n

    return call


async def pyreqwest_client(stack: AsyncExitStack, url: str) -> Call:
    from pyreqwest.client import ClientBuilder  # type: ignore[import-not-found]

    client = await stack.enter_async_context(ClientBuilder().build())

    async def call(body: bytes) -> int:
        n = 0
        builder = client.post(url).body_bytes(body)
        for k, v in HEADERS.items():
            builder = builder.header(k, v)
        async with builder.build_streamed() as response:
            while (part := await response.body_reader.read_chunk()) is not None:
                n += len(part)
        return n

    return call


CLIENTS: dict[str, Callable[[AsyncExitStack, str], Awaitable[Call]]] = {
    "httpx + FastTransport": httpx_fast,
    "aiohttp": aiohttp_client,
    "httpx": httpx_plain,
    "aiosonic": aiosonic_client,
    "pyreqwest": pyreqwest_client,
}


async def measure(url: str, rounds: int, per_round: int) -> dict[tuple[str, str], list[float]]:
    results: dict[tuple[str, str], list[float]] = {}
    async with AsyncExitStack() as stack:
        calls: dict[str, Call] = {}
        for name, make in CLIENTS.items():
            try:
                calls[name] = await make(stack, url)
            except ImportError:
                print(f"{name}: not installed, skipped", file=sys.stderr)
        names = list(calls)
        for call in calls.values():  # warm up: connections, imports, caches
            for _ in range(50):
                await call(POST_BODY)
                await call(STREAM_BODY)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                for kind, body in (("POST", POST_BODY), ("stream", STREAM_BODY)):
                    start = time.process_time()
                    for _ in range(per_round):
                        await calls[name](body)
                    cpu_us = (time.process_time() - start) / per_round * 1e6
                    results.setdefault((name, kind), []).append(cpu_us)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--candidates", type=Path, help="a pip --target folder with aiosonic and pyreqwest")
    args = parser.parse_args()
    if args.candidates:
        sys.path.append(str(args.candidates))
    start_machine = machine()
    with ExitStack() as stack:
        upstream = stack.enter_context(
            run_server(
                "upstream",
                [
                    PYTHON,
                    str(BENCHES / "stream_upstream.py"),
                    "--chunks",
                    str(STREAM_CHUNKS),
                    "--interval-ms",
                    "0",
                ],
                r"listening on (http://\S+)",
            )
        )
        url = upstream.found.group(1) + "/v1/chat/completions"
        results = asyncio.run(measure(url, args.rounds, args.per_round))
    import os

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    first = next(name for name in CLIENTS if (name, "POST") in results)
    base = {kind: statistics.median(results[(first, kind)]) for kind in ("POST", "stream")}
    for name in CLIENTS:
        if (name, "POST") not in results:
            continue
        post = statistics.median(results[(name, "POST")])
        stream = statistics.median(results[(name, "stream")])
        rows.append((name, f"{post:.0f}", f"{post / base['POST']:.2f}", f"{stream:.0f}",
                     f"{stream / base['stream']:.2f}"))  # fmt: skip
    report = report_head("The upstream HTTP client: CPU per request, side by side", start_machine,
                         f"- load average at the end {load}")  # fmt: skip
    report += [
        f"Sequential keep-alive requests to benches/stream_upstream.py; {args.rounds} interleaved rounds of "
        f"{args.per_round} requests per client and kind; median round. `stream` = a {STREAM_CHUNKS}-chunk "
        "SSE answer (chunked encoding) plus its finish, usage and [DONE] events, read as it arrives.",
        f"`vs first`: the ratio to the first row ({first}).",
        "",
        *table(["client", "µs CPU per POST", "vs first", "µs CPU per stream", "vs first"], rows),
        "",
    ]
    write_result("bench_http_client", report)


if __name__ == "__main__":
    main()
