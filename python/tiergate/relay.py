"""The relay: a stream's plain text deltas go from the provider's bytes straight to the client.

Most chunks of a streamed answer are plain text. Carrying each one up through the chunk pipeline (the
provider's parser, dispatch, the sidecar, the servicer, the wire encoding) costs tens of microseconds of
Python per chunk. Instead, once the first chunk has gone to the client the normal way (the TTFT guardrail and
hedging race on it), the server that serves the stream hands a `RelaySink` down to the winning attempt
(`dispatch.Run.stream` sends it into the provider's generator); the provider's event stream
(`providers/hosted_http.py` `EventStream.relay`) then forwards every plain text delta natively
(`tiergate._native.SseRelay`, `rust/core/src/relay/`) until an event that needs the provider's parser (a
tool call, the finish, usage, an error, the end). That text comes up the pipeline afterwards as one chunk
marked `relayed` — so the answer, its usage estimate, the cache, the decision and the order of what the
client sees are as before — which the server does not send again.

The OpenAI and Anthropic wires relay (their parsers name the wire in `relays`; Anthropic's not while a forced
answer tool streams the answer); the on-device provider ignores the sink.
Sinks: `server/grpc_relay.py` (a gRPC call's queue) and `server/sse_relay.py` (the HTTP facade's SSE).
"""

from __future__ import annotations

from typing import Protocol

from tiergate._native import RELAY_CLOSED, RELAY_EMPTY, RELAY_FULL, RELAY_PARSER, SseRelay

__all__ = ["RELAY_CLOSED", "RELAY_EMPTY", "RELAY_FULL", "RELAY_PARSER", "RelaySink", "SseRelay"]


class RelaySink(Protocol):
    """Where a stream's plain text deltas go, straight from the provider's decoded events."""

    def relay(self, events: SseRelay) -> int:
        """Forwards the text deltas at the front of `events`; RELAY_EMPTY (feed more), RELAY_PARSER (the
        front event is for the parser), RELAY_FULL (await `room`, then call again) or RELAY_CLOSED."""
        ...

    async def room(self) -> None:
        """After RELAY_FULL: returns once the client can take more."""
        ...
