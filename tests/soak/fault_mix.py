"""The soak's upstream faults: a share of requests (20% by default) meets a fault, spread evenly over every
kind of the fault table. A `FaultMix` is the fake provider's default (`FakeProvider(default=mix)`), so it
decides for every request whose model id does not name its own fault.
"""

from __future__ import annotations

import random
import threading

from tests.fakes.provider_faults import Fault

# Every row of tests/integration/test_fault_table.py, as it is injected here. "connection refused" is not a
# fault of the fake (nothing listens): the soak's `refused` model points at a closed port instead.
FAULT_KINDS: dict[str, str] = {
    "500": "status:500",
    "502": "status:502",
    "503": "status:503",
    "529 overloaded": "status:529",
    "429 retry-after 1 s": "status:429;retry_after=1",
    "400": "status:400",
    "401": "status:401",
    "content policy": "content_policy",
    "connection reset": "reset",
    "stall before first byte": "stall_first_byte",  # forever: the TTFT guardrail or the deadline ends it
    "stall mid-stream": "stall_mid_stream;after=1",  # forever, after one token
    "drop mid-stream": "drop_mid_stream;after=2",
    "malformed JSON": "malformed_json",
    "malformed SSE": "malformed_sse",
    "slow drip": "drip:60",
    "error event": "error_event;after=1",
    "latency 300 ms": "latency:300",
}
FAULTS = {label: Fault.parse(spec) for label, spec in FAULT_KINDS.items()}
LABELS = {fault: label for label, fault in FAULTS.items()}
# Faults after which the upstream answer can still be a success (slow, but whole).
SLOW_BUT_OK = frozenset({"slow drip", "latency 300 ms"})
OK = Fault()


def label_of(fault: Fault) -> str:
    """The fault-table name of a fault the mix injects; "ok" for any other."""
    return LABELS.get(fault, "ok")


class FaultMix:
    """Called by the fake provider (on its own thread) once per request: `OK`, or a fault of a random kind.

    `enabled = False` turns the faults off (the closing clean request).
    """

    def __init__(self, rate: float = 0.2, seed: int = 0) -> None:
        self.rate = rate
        self.enabled = True
        self._choices = list(FAULTS.values())
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self) -> Fault:
        with self._lock:
            if not self.enabled or self._random.random() >= self.rate:
                return OK
            return self._random.choice(self._choices)
