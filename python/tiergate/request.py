"""Domain types of one request's life: what was asked, what was decided, what happened.

Plain dataclasses with slots (no pydantic, no protobuf, no httpx): they are built per request on the hot path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tiergate.content import (
    FormatKind,
    ImagePart,
    Part,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)


class Sensitivity(enum.IntEnum):
    """How far the data may travel. Values match the proto enum."""

    UNSPECIFIED = 0
    PUBLIC = 1
    INTERNAL = 2
    RESTRICTED = 3  # never leaves the device


class Outcome(enum.StrEnum):
    """What became of one attempt."""

    OK = "ok"
    ERROR = "error"
    TTFT_TIMEOUT = "ttft_timeout"
    DEADLINE = "deadline"
    CANCELLED = "cancelled"
    HEDGE_LOST = "hedge_lost"
    PARTIAL = "partial"  # failed after the first token had reached the client
    REJECTED = "rejected"  # answered, but the answer failed validation
    PLANNED = "planned"  # Explain only: would be tried


@dataclass(slots=True)
class Message:
    """One message. `content` is its text; `parts`, when not empty, is the whole content in order (text and
    images), `content` then being its text parts joined. Roles: system, user, assistant, tool."""

    role: str
    content: str = ""
    parts: list[Part] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant: the calls it asked for
    tool_call_id: str = ""  # tool: the call this is the result of
    name: str = ""  # optional participant name

    @property
    def images(self) -> list[ImagePart]:
        if not self.parts:  # text only: asked several times per request (checks, analysis, planning)
            return []
        return [p for p in self.parts if isinstance(p, ImagePart)]


@dataclass(slots=True)
class Request:
    """One completion request, as the application asked for it."""

    task: str
    messages: list[Message]
    sensitivity: Sensitivity = Sensitivity.UNSPECIFIED
    max_output_tokens: int = 0
    temperature: float | None = None
    tenant: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    json_schema: str = ""
    max_cost_usd: float = 0.0
    stream: bool = False
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool | None = None  # None: the provider's default
    json_object: bool = False  # any JSON object (`json_schema` takes precedence)
    json_schema_strict: bool | None = None  # None: strict when the schema allows it
    stop: list[str] = field(default_factory=list)
    top_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @property
    def response_format(self) -> FormatKind:
        if self.json_schema:
            return FormatKind.JSON_SCHEMA
        return FormatKind.JSON_OBJECT if self.json_object else FormatKind.TEXT

    @property
    def image_count(self) -> int:
        return sum(len(m.images) for m in self.messages if m.parts)

    def prompt_text(self) -> str:
        """Every text the request sends: message texts, tool calls' names and arguments, tool results and
        the tool definitions. What the rules scan and the token count measures."""
        messages = self.messages
        if len(messages) == 1 and not messages[0].tool_calls and not self.tools:
            return messages[0].content  # one plain message: its text, as the join below would give it
        texts: list[str] = []
        for m in self.messages:
            texts.append(m.content)
            texts.extend(f"{c.name} {c.arguments}" for c in m.tool_calls)
        texts.extend(f"{t.name} {t.description} {t.parameters}" for t in self.tools)
        return "\n".join(texts)


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0  # every prompt token, cached ones included
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached_input_tokens: int = 0  # the part of input_tokens read from the provider's prompt cache


@dataclass(slots=True)
class Attempt:
    model: str
    outcome: Outcome
    ttft_ms: float = 0.0
    latency_ms: float = 0.0
    error: str = ""
    hedged: bool = False
    started_at: float = 0.0  # on the dispatcher's clock (time.monotonic()): where its trace span starts


@dataclass(slots=True)
class Skip:
    """A candidate the planner left out, and why."""

    model: str
    reason: str


@dataclass(slots=True)
class Decision:
    """Everything tiergate decided and did for one request; returned with the response."""

    route: str
    task: str
    sensitivity: Sensitivity = Sensitivity.UNSPECIFIED
    complexity: str = ""
    complexity_by: str = ""  # "rules", "model:NAME", or "" when nothing decided
    matched_rules: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    served_by: str = ""
    reason: str = ""
    overhead_ms: float = 0.0
    cost_usd: float = 0.0
    request_id: str = ""  # names the request in Feedback
    arm: str = ""  # canary rollouts: "baseline" or "canary"; "" when no rollout applied
    trace_id: str = ""  # W3C trace id (32 hex digits) when tracing is on: the caller's trace, or a new one
    span_id: str = ""  # tiergate's request span in that trace (16 hex digits); "" when it is not sampled
    cache: str = ""  # the response cache: "hit", "miss", or "" (off, or the request opted out)
    cost_saved_usd: float = 0.0  # a hit: what the cached answer cost when it was made
    cache_match: str = ""  # a hit: "exact", or "semantic" (the answer to a paraphrase, `cache.semantic`)
    cache_similarity: float = 0.0  # a semantic hit: the cosine similarity of the two last user messages


@dataclass(slots=True)
class Completion:
    """A whole answer from one model."""

    text: str
    usage: Usage
    finish_reason: str = "stop"
    tool_calls: list[ToolCall] = field(default_factory=list)
    refusal: str = ""


@dataclass(slots=True)
class Chunk:
    """One piece of a streamed answer. The last one carries usage and finish_reason, and, as the
    application receives it (from `tiergate.Client` or `tiergate.Router`), the Decision.

    `relayed`: its text already reached the client through the server's relay sink (`relay.py`); it comes
    up the pipeline for the answer's record only, and the server does not send it again.
    """

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    decision: Decision | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    refusal: str = ""
    relayed: bool = False

    def carries_answer(self) -> bool:
        """True for a chunk with something for the client: text, a refusal, a tool call, or the end."""
        return bool(
            self.text
            or self.refusal
            or self.tool_calls
            or self.usage is not None
            or self.finish_reason is not None
        )


@dataclass(slots=True)
class Response:
    """What the application gets for a request: the answer, and the Decision that produced it."""

    text: str
    usage: Usage
    decision: Decision
    finish_reason: str = "stop"
    tool_calls: list[ToolCall] = field(default_factory=list)
    refusal: str = ""


@dataclass(frozen=True, slots=True)
class ModelState:
    """One model's live state, as `tiergate status` shows it."""

    name: str
    provider: str
    on_device: bool
    breaker: str  # closed, open or half_open
    ttft_ms: float
    tokens_per_s: float
    samples: int
    queue: int  # on-device: requests queued or generating
    worker: str = ""  # on-device: the worker process is starting, up, down or closed
    worker_restarts: int = 0  # on-device: worker starts after the first
    worker_error: str = ""  # on-device: why the worker last died or failed to load


@dataclass(slots=True)
class SidecarStatus:
    """Live state: every model's breaker, measured TTFT and speed, on-device queue; requests being served."""

    models: list[ModelState] = field(default_factory=list)
    in_flight: int = 0
    uptime_s: float = 0.0
    version: str = ""
