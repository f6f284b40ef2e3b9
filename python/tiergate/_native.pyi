"""Typed stub of the Rust extension `tiergate._native` (rust/py over rust/core).

Checked against the built binary by `mypy.stubtest` (see `make lint`). Every call that can take more than
microseconds releases the GIL; every class is thread-safe.
"""

from collections.abc import Sequence
from typing import Literal, Self, TypeAlias, final

__all__ = [
    "ENCODINGS",
    "RELAY_CLOSED",
    "RELAY_EMPTY",
    "RELAY_FULL",
    "RELAY_PARSER",
    "BreakerState",
    "BudgetCounter",
    "CallFinished",
    "CircuitBreaker",
    "DefaultRule",
    "GrpcCall",
    "GrpcFront",
    "LineTooLong",
    "ManualClock",
    "Rule",
    "RuleError",
    "RuleMatch",
    "RuleSet",
    "SseRelay",
    "TokenBucket",
    "__version__",
    "count_tokens",
    "default_rules",
    "nearest_vector",
]

__version__: str

# --- clock ------------------------------------------------------------------------------------------------

@final
class ManualClock:
    """A clock that only moves when told to: for table-testing breakers and limits."""

    def __new__(cls, start_ms: float = 0.0) -> Self: ...
    def now_ms(self) -> float: ...
    def advance(self, ms: float) -> None: ...
    def set(self, ms: float) -> None: ...

# --- tokens -----------------------------------------------------------------------------------------------

ENCODINGS: tuple[str, ...]

def count_tokens(text: str, encoding: str = "o200k_base") -> int:
    """Exact token count, identical to tiktoken's `len(encode_ordinary(text))`.

    Raises:
        ValueError: unknown encoding (the message names the known ones).
    """

# --- rules ------------------------------------------------------------------------------------------------

# The rule engine's validators (checksums and context checks; rust/core/src/rules/validate.rs).
_RuleValidator: TypeAlias = Literal[
    "luhn",
    "iban",
    "us_ssn",
    "uk_nino",
    "fr_nir",
    "de_tax_id",
    "de_pension_number",
    "es_dni",
    "it_fiscal_code",
    "nl_bsn",
    "br_cpf",
    "br_cnpj",
    "in_aadhaar",
    "jp_my_number",
    "ipv4_public",
    "ipv4_private",
]

@final
class Rule:
    """One rule: a regex pattern or a keyword list (exactly one of them).

    Raises:
        RuleError: both or neither of `regex` and `keywords`, or an unknown validator.
    """

    def __new__(
        cls,
        id: str,
        *,
        regex: str | None = None,
        keywords: Sequence[str] | None = None,
        case_insensitive: bool = False,
        validator: _RuleValidator | None = None,
    ) -> Self: ...
    @property
    def id(self) -> str: ...
    @property
    def regex(self) -> str | None: ...
    @property
    def keywords(self) -> list[str] | None: ...
    @property
    def case_insensitive(self) -> bool: ...
    @property
    def validator(self) -> _RuleValidator | None: ...

@final
class DefaultRule:
    """One rule of the default pack: its stable id, what it matches, and the rule itself."""

    @property
    def id(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def rule(self) -> Rule: ...

def default_rules() -> list[DefaultRule]:
    """The default rule pack (personal data and secrets), in pack order; ids are stable."""

@final
class RuleMatch:
    rule_id: str
    start: int  # character offsets into the scanned str
    end: int

@final
class RuleSet:
    """Rules compiled once and matched in one pass over the text (time linear in the text).

    Raises:
        RuleError: a rule's pattern does not compile (the message names the rule id), or a rule is malformed.
    """

    def __new__(cls, rules: Sequence[Rule]) -> Self: ...
    def __len__(self) -> int: ...
    @property
    def rule_ids(self) -> list[str]: ...
    def scan(self, text: str) -> list[RuleMatch]:
        """Every match of every rule, ordered by start offset."""
    def matched_ids(self, text: str) -> list[str]:
        """The distinct ids of the rules that match, in rule order."""
    def analyze(self, text: str, encoding: str = "o200k_base") -> tuple[int, list[str]]:
        """One call for the request path: (token count, matched rule ids in rule order)."""

class RuleError(ValueError): ...

# --- breaker ----------------------------------------------------------------------------------------------

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]

@final
class CircuitBreaker:
    """resilience4j-style breaker over a count-based sliding window.

    CLOSED: calls are permitted; once `min_calls` are recorded and the failure rate or slow-call rate (in %)
    reaches its threshold, it opens. OPEN: no permission until `open_ms` passed; the next permission request
    then moves it to HALF_OPEN (lazily). HALF_OPEN: at most `half_open_calls` probe permits; when all probes
    are recorded it closes, or opens again if the probes' rates reach a threshold.
    """

    def __new__(
        cls,
        *,
        failure_rate: float = 50.0,
        slow_call_rate: float = 100.0,
        slow_call_ms: float = 10_000.0,
        window: int = 20,
        min_calls: int = 5,
        open_ms: float = 30_000.0,
        half_open_calls: int = 2,
        clock: ManualClock | None = None,
    ) -> Self: ...
    def try_acquire(self) -> bool:
        """Asks for permission to call; in HALF_OPEN it takes one probe permit."""
    def record(self, success: bool, duration_ms: float) -> None:
        """Records a permitted call's outcome (a success slower than `slow_call_ms` counts as slow)."""
    def release(self) -> None:
        """Gives back a permit without an outcome (the call was cancelled before it meant anything)."""
    @property
    def state(self) -> BreakerState:
        """The current state (reading it never moves OPEN to HALF_OPEN)."""
    def metrics(self) -> dict[str, float]:
        """failure_rate, slow_call_rate (%, -1 below min_calls), calls, failed, slow."""
    def reset(self) -> None: ...

# --- limits -----------------------------------------------------------------------------------------------

@final
class TokenBucket:
    """Token bucket: holds up to `capacity`, refills at `refill_per_sec`."""

    def __new__(cls, capacity: float, refill_per_sec: float, clock: ManualClock | None = None) -> Self: ...
    def try_take(self, amount: float = 1.0) -> bool: ...
    def available(self) -> float: ...
    def retry_after_ms(self, amount: float = 1.0) -> float:
        """How long until `amount` could be taken (0 if now; inf if it exceeds capacity)."""

@final
class BudgetCounter:
    """Spend against a limit in a calendar period (UTC day or month) that resets itself.

    Reserve before the call, settle with the real amount after.
    """

    def __new__(
        cls, limit: float, period: Literal["day", "month"] = "day", clock: ManualClock | None = None
    ) -> Self: ...
    def try_reserve(self, amount: float) -> bool: ...
    def settle(self, reserved: float, actual: float) -> None: ...
    def spent(self) -> float: ...
    def remaining(self) -> float: ...

# --- vectors ----------------------------------------------------------------------------------------------

def nearest_vector(query: bytes, rows: bytes) -> tuple[int, float] | None:
    """The index and dot product of the row of `rows` nearest to `query` (the largest dot product, the first
    row winning a tie); None when `rows` is empty. Both are float32 little-endian bytes, `rows` whole
    vectors of the query's width.

    Raises:
        ValueError: the query is empty or not whole float32 values, or `rows` is not whole rows.
    """

# --- the gRPC front door ----------------------------------------------------------------------------------

class CallFinished(RuntimeError):
    """A gRPC call was already finished: its client has its answer."""

@final
class GrpcFront:
    """The gRPC listener: HTTP/2, framing, health and reflection in Rust; calls handed to Python as events.

    Raises:
        OSError: the address cannot be bound.
        ValueError: a malformed address, or TLS files that are not a PEM certificate and key.
    """

    def __new__(
        cls,
        address: str,
        methods: list[tuple[str, bool]],
        descriptor_set: bytes,
        max_message_bytes: int,
        stream_capacity: int = 64,
        tls: tuple[bytes, bytes] | None = None,
        token: str | None = None,
        max_streams_per_connection: int = 1024,
    ) -> Self: ...
    @property
    def port(self) -> int | None:
        """The TCP port bound (None for a unix socket)."""
    def fileno(self) -> int:
        """The socket that becomes readable when events wait."""
    def take_events(self) -> list[tuple[int, int, GrpcCall | None]]:
        """Every event queued: (kind, call id, call) with kind 0 a new call, 1 cancelled, 2 writable again."""
    def flush(self) -> None:
        """Sends on what streaming calls queued (and their ends) since the last flush: once per batch."""
    def set_health(self, service: str, serving: bool) -> None: ...
    def stop(self, grace_s: float) -> None:
        """Stops accepting, gives answered calls `grace_s` to flush, then closes every connection."""

@final
class GrpcCall:
    """One call: what arrived, and how to answer it."""

    @property
    def id(self) -> int: ...
    @property
    def method(self) -> str: ...
    @property
    def streaming(self) -> bool: ...
    @property
    def timeout(self) -> float | None:
        """The client's deadline in seconds from the call's arrival, or None."""
    @property
    def peer(self) -> str | None: ...
    @property
    def request(self) -> bytes: ...
    @property
    def metadata(self) -> list[tuple[str, str | bytes]]:
        """(key, value) pairs: str values, bytes for keys ending in `-bin`."""
    def send(self, message: bytes) -> int:
        """Queues a message of a streaming call: 0 sent, 1 full (call `want_writable`), 2 the call is over."""
    def want_writable(self) -> bool:
        """After a full `send`: True if there is room now; else a "writable" event will come."""
    def finish_ok(self, message: bytes | None = None) -> None:
        """Status OK: a unary call with its answer, a streaming call with None."""
    def finish_error(self, code: int, message: str, trailers: list[tuple[str, str | bytes]]) -> None:
        """An error status with its message and trailers ((key, str) or (key ending in -bin, bytes))."""

# --- stream relay -----------------------------------------------------------------------------------------

class LineTooLong(ValueError):
    """An event-stream line grew past 8 MiB without ending: not a stream a provider would send."""

RELAY_EMPTY: int
RELAY_PARSER: int
RELAY_FULL: int
RELAY_CLOSED: int

@final
class SseRelay:
    """One streamed answer's server-sent events, decoded; plain text deltas forwarded straight to the
    client."""

    def __new__(cls, wire: str = "openai") -> Self:
        """`wire`: whose plain text deltas are relayed, "openai" or "anthropic" (else ValueError)."""
    @property
    def wire(self) -> str: ...
    @wire.setter
    def wire(self, wire: str) -> None: ...
    def feed(self, data: bytes) -> None:
        """Takes the next piece of the body.

        Raises:
            LineTooLong: a line grew past 8 MiB without ending.
        """
    def feed_line(self, line: str) -> None:
        """Takes one line without its terminator."""
    def flush(self) -> None:
        """Completes the pending event (the end of the stream)."""
    def next_event(self) -> tuple[str, str] | None:
        """The oldest decoded event not taken yet, as (event, data)."""
    def relay_grpc(self, call: GrpcCall) -> int:
        """Forwards the plain text deltas at the front of the queue to `call` as `CompleteChunk`s:
        RELAY_EMPTY, RELAY_PARSER (an event for the parser is at the front), RELAY_FULL (the event stays),
        RELAY_CLOSED."""
    def relay_sse(self, prefix: bytes, suffix: bytes) -> tuple[bytes, int]:
        """Forwards the plain text deltas at the front of the queue as SSE events (`prefix`, the text as a
        JSON string, `suffix`): their bytes, and RELAY_EMPTY or RELAY_PARSER."""
    def take_text(self) -> str:
        """The text relayed since the last call."""
