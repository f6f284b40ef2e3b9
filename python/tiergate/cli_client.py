"""The CLI commands that talk to a running sidecar, through `tiergate.Client`: `ask`, `explain`, `status`,
`health`, `canary`. Failures print `tiergate: STATUS: message` on stderr and exit 1."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tiergate.errors import TiergateError
from tiergate.policy.canary import CanaryState
from tiergate.request import Decision, Sensitivity, SidecarStatus, Usage
from tiergate.sdk.client import ADDRESS_ENV, DEFAULT_ADDRESS, TLS_CA_ENV, TOKEN_ENV, Client
from tiergate.sdk.transport_errors import status_name

SENSITIVITIES = sorted(s.name.lower() for s in Sensitivity if s)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ask", help="ask a running sidecar; prints the answer, then a one-line decision")
    p.add_argument("question", help="the user message ('-' reads stdin)")
    _request_options(p)
    p.add_argument("--max-output-tokens", type=int, default=0)
    p.add_argument("--no-stream", action="store_true", help="wait for the whole answer instead of streaming")
    p.set_defaults(func=ask)

    p = sub.add_parser("explain", help="show the plan a running sidecar would follow, calling no model")
    p.add_argument("question", help="the user message ('-' reads stdin)")
    _request_options(p)
    p.set_defaults(func=explain)

    p = sub.add_parser("status", help="live per-model state: breaker, TTFT, tokens/s, queue")
    _connection_options(p, timeout=5.0)
    p.set_defaults(func=status)

    p = sub.add_parser("canary", help="a route's canary rollout: state, or a new percentage with --percent")
    p.add_argument("route")
    p.add_argument("--percent", type=float, help="0..100; also re-arms a rolled-back canary")
    _connection_options(p, timeout=5.0)
    p.set_defaults(func=canary)

    p = sub.add_parser("health", help="exit 0 when the sidecar's gRPC health service answers SERVING")
    _connection_options(p, timeout=3.0)
    p.set_defaults(func=health)


def _connection_options(p: argparse.ArgumentParser, timeout: float) -> None:
    default = os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
    p.add_argument("--address", default=default, help=f"host:port or unix:PATH (default {default})")
    p.add_argument("--token", help=f"bearer token the sidecar requires (default ${TOKEN_ENV})")
    p.add_argument("--tls-ca", help=f"CA certificate (PEM) of a sidecar serving TLS (default ${TLS_CA_ENV})")
    p.add_argument("--timeout", type=float, default=timeout, help=f"seconds (default {timeout:g})")


def _request_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="", help="route name (default: the `default` route)")
    p.add_argument("--sensitivity", choices=SENSITIVITIES, help="default: decided by the rules")
    p.add_argument("--tenant", default="")
    _connection_options(p, timeout=60.0)


def _client(args: argparse.Namespace) -> Client:
    # None leaves the environment's default to the Client.
    return Client(args.address, token=args.token, root_certificates=args.tls_ca, timeout=args.timeout)


def _question(args: argparse.Namespace) -> str:
    return sys.stdin.read() if args.question == "-" else str(args.question)


def summary(decision: Decision, usage: Usage) -> str:
    """One line: who served, how it got there, what it cost."""
    path = " -> ".join(f"{a.model}:{a.outcome.value}" for a in decision.attempts) or "no attempt"
    rules = f" rules={','.join(decision.matched_rules)}" if decision.matched_rules else ""
    return (
        f"[{decision.served_by or 'nobody'} via route {decision.route}: {path}; "
        f"{decision.sensitivity.name.lower()}{rules}; "
        f"{usage.input_tokens}+{usage.output_tokens} tokens, ${usage.cost_usd:.6f}; "
        f"overhead {decision.overhead_ms:.2f} ms]"
    )


def ask(args: argparse.Namespace) -> int:
    text = _question(args)
    options = {"task": args.task, "sensitivity": args.sensitivity, "tenant": args.tenant}
    with _client(args) as client:
        try:
            if args.no_stream:
                response = client.complete(text, max_output_tokens=args.max_output_tokens, **options)
                print(response.text)
                print(summary(response.decision, response.usage), file=sys.stderr)
                return 0
            for chunk in client.stream(text, max_output_tokens=args.max_output_tokens, **options):
                print(chunk.text, end="", flush=True)
                if chunk.decision is not None:
                    print()
                    print(summary(chunk.decision, chunk.usage or Usage()), file=sys.stderr)
            return 0
        except TiergateError as exc:
            return _failed(exc)


def explain(args: argparse.Namespace) -> int:
    text = _question(args)
    with _client(args) as client:
        try:
            d = client.explain(text, task=args.task, sensitivity=args.sensitivity, tenant=args.tenant)
        except TiergateError as exc:
            return _failed(exc)
    print(f"route      {d.route}  ({d.reason})")
    print(
        f"sensitivity {d.sensitivity.name.lower()}"
        + (f"  rules: {', '.join(d.matched_rules)}" if d.matched_rules else "")
    )
    print(f"complexity {d.complexity or '-'}" + (f"  (by {d.complexity_by})" if d.complexity_by else ""))
    rows = [(str(i + 1), a.model, a.error) for i, a in enumerate(d.attempts)]
    rows += [("skip", s.model, s.reason) for s in d.skipped]
    print(_table(("#", "model", "note"), rows, right=(0,)))
    return 0


def canary(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            state = client.canary(args.route, args.percent)
        except TiergateError as exc:
            return _failed(exc)
    print(canary_table(state))
    return 0


def canary_table(state: CanaryState) -> str:
    """The rollout's percentage (or why it was rolled back), then each arm's measures."""
    head = (
        f"route {state.route}: {state.model} at {state.percent:g}% (configured {state.configured_percent:g}%)"
    )
    if state.rolled_back:
        head += f"; rolled back: {state.rolled_back}"
    rows = [
        (
            arm,
            str(s.requests),
            f"{s.error_rate:.1%}",
            f"{s.mean_ttft_ms:.0f}" if s.ttft_n else "-",
            f"{s.mean_score:.2f} ({s.scored})" if s.scored else "-",
        )
        for arm, s in state.arms.items()
    ]
    return head + "\n" + _table(("arm", "requests", "errors", "TTFT ms", "score"), rows, right=(1, 2, 3))


def status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            state = client.status()
        except TiergateError as exc:
            return _failed(exc)
    print(status_table(state))
    return 0


def status_table(state: SidecarStatus) -> str:
    """Every model's live state as a table (an on-device model's worker: up, starting, down; "/2r": restarted
    twice), why a worker last died, then the requests in flight and the uptime."""
    header = (
        "model",
        "provider",
        "on-device",
        "breaker",
        "TTFT ms",
        "tokens/s",
        "samples",
        "queue",
        "worker",
    )
    rows = [
        (
            m.name,
            m.provider,
            "yes" if m.on_device else "no",
            m.breaker,
            f"{m.ttft_ms:.0f}",
            f"{m.tokens_per_s:.1f}",
            str(m.samples),
            str(m.queue) if m.on_device else "-",
            (m.worker + (f"/{m.worker_restarts}r" if m.worker_restarts else "")) if m.worker else "-",
        )
        for m in state.models
    ]
    notes = "".join(f"{m.name}: {m.worker_error}\n" for m in state.models if m.worker_error)
    footer = f"{notes}in flight {state.in_flight}, up {_duration(state.uptime_s)}, tiergate {state.version}"
    # TTFT and tokens/s are priors until a model has samples: routing uses them all the same.
    return f"{_table(header, rows, right=(4, 5, 6, 7))}\n{footer}"


def health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            name = client.health()
        except TiergateError as exc:
            return _failed(exc)
    print(name)
    return 0 if name == "SERVING" else 1


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: tuple[int, ...] = ()) -> str:
    """Columns as wide as their widest cell, two spaces apart; the `right` ones aligned right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s // 60 % 60:02d}m"


def _failed(exc: TiergateError) -> int:
    print(f"tiergate: {status_name(exc)}: {exc}", file=sys.stderr)
    return 1
