"""The Python API that `tiergate.AsyncClient` (a sidecar over gRPC) and `tiergate.AsyncRouter` (the same
routing inside this process) share: one set of methods, one way to build a request, the same typed results.

`AsyncAPI` writes each public method once: it turns the caller's arguments into a `Request` and hands it to
the backend's `_complete`, `_stream`, `_explain`... The blocking `Client` and `Router` are these same methods
run on an event loop of their own (`sync.py`).
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Self

from tiergate.content import Tool, ToolCall, ToolChoice, ToolMode
from tiergate.embeddings.types import EmbedAnswer, EmbedRequest
from tiergate.errors import InvalidRequest
from tiergate.policy.canary import CanaryState
from tiergate.request import Chunk, Decision, Message, Request, Response, Sensitivity, SidecarStatus

# A plain string is one user message. A dict: `role` and `content`, and `tool_calls` (ToolCall or
# {id, name, arguments}) for an assistant turn, `tool_call_id` for a tool result.
Messages = str | Sequence[Message | Mapping[str, Any]]
SensitivityLike = Sensitivity | str | None  # "public", "internal", "restricted"
JsonSchema = str | Mapping[str, Any] | None  # JSON text, or the schema as a dict


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """What else a request may ask for: tools, structured output, sampling controls.

    Args:
        tools: functions the model may call (`tiergate.Tool`: name, description, JSON-schema parameters).
        tool_choice: "auto" (default), "none", "required", or a tool's name (that tool must be called).
        parallel_tool_calls: False: at most one call per turn (None: the provider's default).
        json_object: the answer is a JSON object (any shape; `json_schema` says which).
        json_schema_strict: with `json_schema`, OpenAI's strict mode (None: when the schema allows it).
        stop: up to 4 sequences that end the answer.
        top_p, seed, presence_penalty, frequency_penalty: as OpenAI defines them (None: the model's default).
    """

    tools: Sequence[Tool] = ()
    tool_choice: str = "auto"
    parallel_tool_calls: bool | None = None
    json_object: bool = False
    json_schema_strict: bool | None = None
    stop: Sequence[str] = field(default=())
    top_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    def apply(self, request: Request) -> None:
        mode = {"auto": ToolMode.AUTO, "none": ToolMode.NONE, "required": ToolMode.REQUIRED}
        choice = self.tool_choice
        request.tools = list(self.tools)
        request.tool_choice = (
            ToolChoice(mode[choice]) if choice in mode else ToolChoice(ToolMode.TOOL, choice)
        )
        request.parallel_tool_calls = self.parallel_tool_calls
        request.json_object = self.json_object
        request.json_schema_strict = self.json_schema_strict
        request.stop = list(self.stop)
        request.top_p = self.top_p
        request.seed = self.seed
        request.presence_penalty = self.presence_penalty
        request.frequency_penalty = self.frequency_penalty


class TokenCount(NamedTuple):
    """A token count and the tokenizer that made it (`o200k_base`, `cl100k_base` or `model:NAME`)."""

    tokens: int
    encoding: str


def build_request(
    messages: Messages,
    *,
    task: str,
    sensitivity: SensitivityLike,
    max_output_tokens: int,
    temperature: float | None,
    tenant: str,
    metadata: Mapping[str, str] | None,
    json_schema: JsonSchema,
    max_cost_usd: float,
    stream: bool,
    options: ChatOptions | None = None,
) -> Request:
    """The caller's arguments as a Request; InvalidRequest for what cannot be one."""
    request = Request(
        task=task,
        messages=_messages(messages),
        sensitivity=_sensitivity(sensitivity),
        max_output_tokens=max_output_tokens,
        temperature=temperature,
        tenant=tenant,
        metadata=dict(metadata or {}),
        json_schema=_json_schema(json_schema),
        max_cost_usd=max_cost_usd,
        stream=stream,
    )
    if options is not None:
        options.apply(request)
    return request


def _messages(messages: Messages) -> list[Message]:
    if isinstance(messages, str):
        return [Message("user", messages)]
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            out.append(m)
        elif (
            isinstance(m, Mapping)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content", ""), str)
            and isinstance(m.get("tool_call_id", ""), str)
        ):
            calls = [_tool_call(i, c) for c in m.get("tool_calls") or ()]
            out.append(
                Message(
                    m["role"], m.get("content", ""), tool_calls=calls, tool_call_id=m.get("tool_call_id", "")
                )
            )
        else:
            raise InvalidRequest(f"messages[{i}]: a tiergate.Message or a dict with `role` and `content`")
    return out


def _tool_call(i: int, call: Any) -> ToolCall:
    if isinstance(call, ToolCall):
        return call
    if isinstance(call, Mapping) and all(isinstance(call.get(k), str) for k in ("id", "name", "arguments")):
        return ToolCall(call["id"], call["name"], call["arguments"])
    raise InvalidRequest(f"messages[{i}].tool_calls: tiergate.ToolCall or {{id, name, arguments}}")


def _json_schema(value: JsonSchema) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    return json.dumps(value)


def _sensitivity(value: SensitivityLike) -> Sensitivity:
    if value is None:
        return Sensitivity.UNSPECIFIED
    if isinstance(value, Sensitivity):
        return value
    try:
        return Sensitivity[value.upper()]
    except KeyError:
        names = ", ".join(s.name.lower() for s in Sensitivity if s)
        raise InvalidRequest(f"sensitivity: unknown value {value!r} ({names})") from None


class AsyncAPI(abc.ABC):
    """The methods of `AsyncClient` and `AsyncRouter`. Use as `async with`, or call `aclose()` when done.

    Args of every request method:
        messages: a string (one user message), or a list of `tiergate.Message` or `{"role", "content"}` (with
            `tool_calls` for an assistant turn that called tools, `tool_call_id` for a tool's result).
        task: the route to follow ("" is the `default` route).
        sensitivity: `Sensitivity` or "public" / "internal" / "restricted"; None lets the rules decide (rules
            can raise a declared sensitivity, never lower it).
        max_output_tokens: 0 is the model's default.
        temperature: None is the model's default.
        tenant: whose budgets and rate limits apply.
        metadata: free-form string pairs, kept with the decision record.
        json_schema: the answer must validate against it (JSON text or a dict).
        max_cost_usd: candidates estimated to cost more are skipped (0: no limit).
        options: tools, tool choice, JSON output, stop sequences and sampling controls (`ChatOptions`).
        timeout: seconds for the whole request, the request's latency budget (None: the default given to
            the constructor).

    Raises (every request method): a `tiergate.errors.TiergateError` subclass, with the Decision so far in
    its `decision` when there is one.
    """

    def __init__(self, *, timeout: float | None) -> None:
        self.timeout = timeout

    async def complete(
        self,
        messages: Messages,
        *,
        task: str = "",
        sensitivity: SensitivityLike = None,
        max_output_tokens: int = 0,
        temperature: float | None = None,
        tenant: str = "",
        metadata: Mapping[str, str] | None = None,
        json_schema: JsonSchema = None,
        max_cost_usd: float = 0.0,
        options: ChatOptions | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Routes and runs the request; the whole answer with its usage and Decision."""
        request = build_request(
            messages,
            task=task,
            sensitivity=sensitivity,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            tenant=tenant,
            metadata=metadata,
            json_schema=json_schema,
            max_cost_usd=max_cost_usd,
            stream=False,
            options=options,
        )
        return await self._complete(request, self._timeout(timeout))

    async def stream(
        self,
        messages: Messages,
        *,
        task: str = "",
        sensitivity: SensitivityLike = None,
        max_output_tokens: int = 0,
        temperature: float | None = None,
        tenant: str = "",
        metadata: Mapping[str, str] | None = None,
        json_schema: JsonSchema = None,
        max_cost_usd: float = 0.0,
        options: ChatOptions | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Chunk]:
        """Routes and runs the request, yielding text as it is generated; the last chunk carries usage,
        finish_reason and the Decision. Stopping early cancels the request."""
        request = build_request(
            messages,
            task=task,
            sensitivity=sensitivity,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            tenant=tenant,
            metadata=metadata,
            json_schema=json_schema,
            max_cost_usd=max_cost_usd,
            stream=True,
            options=options,
        )
        # Closed explicitly: a caller that stops early cancels the request now, not when it is collected.
        async with contextlib.aclosing(self._stream(request, self._timeout(timeout))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def explain(
        self,
        messages: Messages,
        *,
        task: str = "",
        sensitivity: SensitivityLike = None,
        max_output_tokens: int = 0,
        temperature: float | None = None,
        tenant: str = "",
        metadata: Mapping[str, str] | None = None,
        json_schema: JsonSchema = None,
        max_cost_usd: float = 0.0,
        options: ChatOptions | None = None,
        timeout: float | None = None,
    ) -> Decision:
        """The plan, calling no model: a Decision whose attempts are the candidates in order (`planned`)."""
        request = build_request(
            messages,
            task=task,
            sensitivity=sensitivity,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            tenant=tenant,
            metadata=metadata,
            json_schema=json_schema,
            max_cost_usd=max_cost_usd,
            stream=False,
            options=options,
        )
        return await self._explain(request, self._timeout(timeout))

    async def embed(
        self,
        inputs: str | Sequence[str],
        *,
        task: str = "",
        sensitivity: SensitivityLike = None,
        tenant: str = "",
        metadata: Mapping[str, str] | None = None,
        dimensions: int = 0,
        max_cost_usd: float = 0.0,
        timeout: float | None = None,
    ) -> EmbedAnswer:
        """Embeds a text (or several) over the embedding route `task`; restricted text only on the device.
        `answer.vectors` are the vectors in input order, `answer.decision` says who embedded them."""
        request = EmbedRequest(
            task=task,
            inputs=[inputs] if isinstance(inputs, str) else list(inputs),
            sensitivity=_sensitivity(sensitivity),
            tenant=tenant,
            metadata=dict(metadata or {}),
            dimensions=dimensions,
            max_cost_usd=max_cost_usd,
        )
        return await self._embed(request, self._timeout(timeout))

    async def count_tokens(
        self, text: str, encoding: str = "", model: str = "", *, timeout: float | None = None
    ) -> TokenCount:
        """Counts with `encoding` (default `o200k_base`), or with a configured model's own tokenizer."""
        return await self._count_tokens(text, encoding, model, self._timeout(timeout))

    async def status(self, *, timeout: float | None = None) -> SidecarStatus:
        """Every model's live state and the requests in flight."""
        return await self._status(self._timeout(timeout))

    async def feedback(
        self, request_id: str, *, score: float | None = None, label: str = "", timeout: float | None = None
    ) -> tuple[str, str, str]:
        """Rates a served request by its `Decision.request_id`: (route, model, arm) it was counted against.

        Raises FeedbackNotFound for an unknown, expired or already rated id."""
        return await self._feedback(request_id, score, label, self._timeout(timeout))

    async def canary(
        self, route: str, percent: float | None = None, *, timeout: float | None = None
    ) -> CanaryState:
        """A route's canary rollout; with `percent`, sets it first (and re-arms a rolled-back canary)."""
        return await self._canary(route, percent, self._timeout(timeout))

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    # -- what a backend implements --------------------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None:
        """Gets ready to serve (connect, load models); the request methods do it too when needed."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    @abc.abstractmethod
    async def _complete(self, request: Request, timeout: float | None) -> Response: ...

    @abc.abstractmethod
    def _stream(self, request: Request, timeout: float | None) -> AsyncGenerator[Chunk, None]: ...

    @abc.abstractmethod
    async def _explain(self, request: Request, timeout: float | None) -> Decision: ...

    @abc.abstractmethod
    async def _count_tokens(
        self, text: str, encoding: str, model: str, timeout: float | None
    ) -> TokenCount: ...

    @abc.abstractmethod
    async def _status(self, timeout: float | None) -> SidecarStatus: ...

    @abc.abstractmethod
    async def _feedback(
        self, request_id: str, score: float | None, label: str, timeout: float | None
    ) -> tuple[str, str, str]: ...

    @abc.abstractmethod
    async def _canary(self, route: str, percent: float | None, timeout: float | None) -> CanaryState: ...

    @abc.abstractmethod
    async def _embed(self, request: EmbedRequest, timeout: float | None) -> EmbedAnswer: ...
