"""`tiergate serve | check-config | count | accuracy | ask | explain | health` — the command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable

from tiergate import config as config_mod
from tiergate.cli_client import add_commands as add_client_commands
from tiergate.config import Config, ConfigError
from tiergate.errors import StartupError


def _load(path: str | None) -> Config:
    return config_mod.load(path) if path else config_mod.default_config()


EVENT_LOOP_ENV = "TIERGATE_EVENT_LOOP"


def _serve(args: argparse.Namespace) -> int:
    from tiergate.server.lifecycle import serve
    from tiergate.telemetry import configure_logging

    config = _load(args.config)
    if args.grpc:
        config = config.model_copy(update={"listen": config.listen.model_copy(update={"grpc": args.grpc})})
    if args.http:
        http = None if args.http == "off" else args.http
        config = config.model_copy(update={"listen": config.listen.model_copy(update={"http": http})})
    stop_logging = configure_logging()
    try:
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            runner.run(serve(config, config_path=args.config))
    finally:
        stop_logging()
    return 0


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop for the server where it is installed (Linux, macOS), else asyncio's own; the
    environment's `TIERGATE_EVENT_LOOP=asyncio` asks for asyncio's.

    Measured side by side (benches/results/bench_streams_uvloop.md): 4-9% less CPU per relayed chunk, over
    gRPC and the HTTP facade alike, and 5% per unary request at concurrency 1. The in-process Router runs on
    whatever loop its caller has.
    """
    choice = os.environ.get(EVENT_LOOP_ENV, "uvloop")
    if choice not in ("uvloop", "asyncio"):
        raise StartupError(f"{EVENT_LOOP_ENV}={choice!r}: expected uvloop or asyncio")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _check_config(args: argparse.Namespace) -> int:
    config = _load(args.file)
    print(
        f"{args.file}: ok ({len(config.models)} models, {len(config.routes)} routes, "
        f"{len(config.rules)} rules)"
    )
    return 0


def _count(args: argparse.Namespace) -> int:
    from tiergate._native import count_tokens

    text = sys.stdin.read() if args.text == "-" else args.text
    print(count_tokens(text, args.encoding))
    return 0


def _accuracy(args: argparse.Namespace) -> int:
    from tiergate.embeddings.accuracy import measure
    from tiergate.embeddings.nearest import load_examples

    labelled = load_examples(args.file)
    scores = asyncio.run(
        measure(labelled, args.examples, k=args.k, min_confidence=args.min_confidence, threads=args.threads)
    )
    print(f"{args.file}: {len(labelled)} labelled requests; examples: {args.examples}, k={args.k}")
    print("\n".join(scores.lines()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tiergate", description="An LLM routing sidecar.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the sidecar")
    p.add_argument("--config", help="YAML config (default: the embedded default config)")
    p.add_argument("--grpc", help="override listen.grpc, e.g. 127.0.0.1:0")
    p.add_argument("--http", help="override listen.http, e.g. 127.0.0.1:0 ('off': no HTTP listener)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("count", help="count tokens of a text ('-' reads stdin)")
    p.add_argument("text")
    p.add_argument("--encoding", default="o200k_base")
    p.set_defaults(func=_count)

    p = sub.add_parser("accuracy", help="how well the learned router labels a JSONL file of {text, label}")
    p.add_argument("file")
    p.add_argument(
        "--examples", default="embedded", help="labelled examples (JSONL; default: the shipped set)"
    )
    p.add_argument("--k", type=int, default=7, help="nearest examples that vote (default 7)")
    p.add_argument("--min-confidence", type=float, default=0.5, help="share of the votes to decide (0.5)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: every core)")
    p.set_defaults(func=_accuracy)

    add_client_commands(sub)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"tiergate: invalid config:\n{exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, StartupError) as exc:
        print(f"tiergate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
