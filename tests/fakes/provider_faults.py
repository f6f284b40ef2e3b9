"""What the fake provider does with one request: a `Fault`, written as a spec string.

A fault spec is `kind[:arg][;key=value...]`, e.g. `status:429;retry_after=2`, `stall_mid_stream:500;after=1`:

  ok                           the answer, at once
  status:<code>                an error response in the provider's format (any code: 400, 429, 500, 529...)
                               options: retry_after=<header value>, retry_after_ms=<n>
  content_policy               400 with the provider's content-policy error code
  latency:<ms>                 wait <ms> before the response headers, then answer
  stall_first_byte[:<ms>]      send nothing for <ms> (forever without it), then answer
  stall_mid_stream[:<ms>]      headers and `after` tokens (default 1; 0 = before the first token), then
                               nothing for <ms> (forever without it), then the rest
  drop_mid_stream              headers and `after` tokens, then close the connection
  reset                        close the connection without answering
  malformed_json               200 whose JSON body is cut off
  malformed_sse                stream events whose data is not JSON (non-streamed: as malformed_json)
  drip:<ms>                    wait <ms> before each token
  error_event[:<type>]         after `after` tokens, an error in the stream (default overloaded_error)
Options for every kind: tokens=<n> (answer length), cached=<n> (cached prompt tokens in usage),
latency=<ms> (delay before anything is sent).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

KINDS = frozenset(
    {
        "ok",
        "status",
        "content_policy",
        "latency",
        "stall_first_byte",
        "stall_mid_stream",
        "drop_mid_stream",
        "reset",
        "malformed_json",
        "malformed_sse",
        "drip",
        "error_event",
    }
)


@dataclass(frozen=True, slots=True)
class Fault:
    """What the server does with one request; `Fault.parse` reads a spec string."""

    kind: str = "ok"
    status: int = 200
    ms: float | None = None  # stall_first_byte / stall_mid_stream / latency / drip duration
    after: int = 1  # tokens sent before a mid-stream fault
    latency_ms: float = 0.0
    retry_after: str | None = None
    retry_after_ms: str | None = None
    tokens: int | None = None
    cached: int = 0
    error_type: str = "overloaded_error"

    @classmethod
    def parse(cls, spec: str) -> Fault:
        head, *options = spec.split(";")
        kind, _, arg = head.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r} in {spec!r} (kinds: {', '.join(sorted(KINDS))})")
        fault = cls(kind=kind)
        if arg:
            if kind == "status":
                fault = replace(fault, status=int(arg))
            elif kind == "error_event":
                fault = replace(fault, error_type=arg)
            else:
                fault = replace(fault, ms=float(arg))
        elif kind in ("latency", "drip"):
            raise ValueError(f"fault {kind!r} needs a duration: {kind}:<ms>")
        for option in options:
            key, _, value = option.partition("=")
            if key == "retry_after":
                fault = replace(fault, retry_after=value)
            elif key == "retry_after_ms":
                fault = replace(fault, retry_after_ms=value)
            elif key in ("after", "tokens", "cached"):
                fault = replace(fault, **{key: int(value)})
            elif key == "latency":
                fault = replace(fault, latency_ms=float(value))
            else:
                raise ValueError(f"unknown fault option {key!r} in {spec!r}")
        if kind == "status" and not 400 <= fault.status <= 599:
            raise ValueError(f"status fault needs a 4xx or 5xx code: {spec!r}")
        return fault
