"""The CLI commands that talk to a running sidecar over gRPC: `ask`, `explain`, `health`."""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = os.environ.get("TIERGATE_ADDRESS", "127.0.0.1:50051")
SENSITIVITIES = {"public": pb.PUBLIC, "internal": pb.INTERNAL, "restricted": pb.RESTRICTED}


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

    p = sub.add_parser("health", help="exit 0 when the sidecar's gRPC health service answers SERVING")
    p.add_argument("--address", default=DEFAULT_ADDRESS, help=f"gRPC address (default {DEFAULT_ADDRESS})")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds")
    p.set_defaults(func=health)


def _request_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="", help="route name (default: the `default` route)")
    p.add_argument("--sensitivity", choices=sorted(SENSITIVITIES), help="default: decided by the rules")
    p.add_argument("--tenant", default="")
    p.add_argument("--address", default=DEFAULT_ADDRESS, help=f"gRPC address (default {DEFAULT_ADDRESS})")
    p.add_argument("--timeout", type=float, default=60.0, help="the request's deadline in seconds")


def _request(args: argparse.Namespace, max_output_tokens: int = 0) -> pb.CompleteRequest:
    text = sys.stdin.read() if args.question == "-" else args.question
    return pb.CompleteRequest(
        task=args.task,
        messages=[pb.Message(role="user", content=text)],
        sensitivity=SENSITIVITIES.get(args.sensitivity or "", pb.SENSITIVITY_UNSPECIFIED),
        tenant=args.tenant,
        max_output_tokens=max_output_tokens,
    )


def summary(decision: pb.Decision, usage: pb.Usage) -> str:
    """One line: who served, how it got there, what it cost."""
    path = " -> ".join(f"{a.model}:{a.outcome}" for a in decision.attempts) or "no attempt"
    sensitivity = pb.Sensitivity.Name(decision.sensitivity).lower()
    rules = f" rules={','.join(decision.matched_rules)}" if decision.matched_rules else ""
    return (
        f"[{decision.served_by or 'nobody'} via route {decision.route}: {path}; {sensitivity}{rules}; "
        f"{usage.input_tokens}+{usage.output_tokens} tokens, ${usage.cost_usd:.6f}; "
        f"overhead {decision.overhead_ms:.2f} ms]"
    )


def ask(args: argparse.Namespace) -> int:
    with grpc.insecure_channel(args.address) as channel:
        stub = pb_grpc.TiergateStub(channel)
        request = _request(args, args.max_output_tokens)
        try:
            if args.no_stream:
                response = stub.Complete(request, timeout=args.timeout)
                print(response.text)
                print(summary(response.decision, response.usage), file=sys.stderr)
                return 0
            last = None
            for chunk in stub.StreamComplete(request, timeout=args.timeout):
                print(chunk.text, end="", flush=True)
                last = chunk
            print()
            if last is not None:
                print(summary(last.decision, last.usage), file=sys.stderr)
            return 0
        except grpc.RpcError as exc:
            return _failed(exc)


def explain(args: argparse.Namespace) -> int:
    with grpc.insecure_channel(args.address) as channel:
        try:
            d = pb_grpc.TiergateStub(channel).Explain(_request(args), timeout=args.timeout)
        except grpc.RpcError as exc:
            return _failed(exc)
    print(f"route      {d.route}  ({d.reason})")
    print(
        f"sensitivity {pb.Sensitivity.Name(d.sensitivity).lower()}"
        + (f"  rules: {', '.join(d.matched_rules)}" if d.matched_rules else "")
    )
    print(f"complexity {d.complexity or '-'}" + (f"  (by {d.complexity_by})" if d.complexity_by else ""))
    rows = [(str(i + 1), a.model, a.error) for i, a in enumerate(d.attempts)]
    rows += [("skip", s.model, s.reason) for s in d.skipped]
    width = max((len(r[1]) for r in rows), default=5)
    print(f"{'#':>4}  {'model':<{width}}  note")
    for n, model, note in rows:
        print(f"{n:>4}  {model:<{width}}  {note}")
    return 0


def health(args: argparse.Namespace) -> int:
    with grpc.insecure_channel(args.address) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            return _failed(exc)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)
    print(name)
    return 0 if status.status == health_pb2.HealthCheckResponse.SERVING else 1


def _failed(exc: grpc.RpcError) -> int:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    print(f"tiergate: {code.name if code else 'error'}: {details}", file=sys.stderr)
    return 1
