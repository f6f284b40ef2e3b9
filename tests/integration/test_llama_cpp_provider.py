"""LlamaCppProvider against the real embedded model (Gemma 3 270M, a base model: the instruction format),
served by its worker process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.integration.conftest import LOCAL_CONTEXT_WINDOW, LOCAL_QUEUE_SIZE
from tiergate import embedded_model
from tiergate.config import ModelConfig
from tiergate.content import Tool, ToolChoice, ToolMode
from tiergate.local import supervisor
from tiergate.local.supervisor import WorkerStatus
from tiergate.local.worker.prompt import InstructionFormat
from tiergate.providers.base import (
    BadRequest,
    LocalQueueFull,
    LocalWorkerCrashed,
    LocalWorkerDown,
    Provider,
    RequestTooLarge,
)
from tiergate.providers.llama_cpp import LlamaCppProvider, LocalModelError, LocalState
from tiergate.request import Chunk, Message, Request

pytestmark = [pytest.mark.local_model, pytest.mark.asyncio(loop_scope="session")]

# Greedy decoding runs this one well past 300 tokens, so it is still generating whenever a test cancels it.
LONG = "Write a Python program that prints a multiplication table, with comments."
LONG_LIMIT = 400


def ask(text: str, **fields: object) -> Request:
    return Request(task="test", messages=[Message("user", text)], **fields)  # type: ignore[arg-type]


async def until(
    provider: LlamaCppProvider, condition: Callable[[LocalState], bool], timeout_s: float = 30.0
) -> LocalState:
    """Waits (bounded, generously: a loaded machine is slow) for the worker to reach a state: job hand-offs
    cross a process, and a restart loads the model."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = provider.live_state()
        if condition(state):
            return state
        await asyncio.sleep(0.01)
    raise AssertionError(f"state never reached: {provider.live_state()}")


async def drain(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in chunks]


async def test_completion_is_sensible_and_counts_usage(local_model: LlamaCppProvider) -> None:
    request = ask("What is the capital of France?")
    completion = await local_model.complete(request)

    assert "Paris" in completion.text
    assert completion.finish_reason == "stop"
    prompt = InstructionFormat().render(request.messages).text
    usage = completion.usage
    assert usage.input_tokens == await local_model.count_tokens(prompt) + 1  # + BOS
    assert 1 <= usage.output_tokens <= 32
    assert usage.cost_usd == 0.0
    assert isinstance(local_model, Provider)
    assert (local_model.name, local_model.on_device, local_model.prompt_format) == (
        "local",
        True,
        "instruction",
    )


async def test_stream_yields_token_chunks_that_add_up_to_the_completion(
    local_model: LlamaCppProvider,
) -> None:
    request = ask("Write a haiku about the sea.", max_output_tokens=24)
    chunks = await drain(local_model.stream(request))

    *pieces, last = chunks
    assert len(pieces) >= 3 and all(c.text and c.usage is None and c.finish_reason is None for c in pieces)
    assert last.text == "" and last.usage is not None and last.finish_reason in ("stop", "length")
    assert last.usage.output_tokens >= len(pieces)  # a chunk is at most one token's text
    completion = await local_model.complete(request)
    assert "".join(c.text for c in pieces) == completion.text


async def test_a_trailing_assistant_message_is_continued(local_model: LlamaCppProvider) -> None:
    request = Request(
        task="test",
        messages=[
            Message("user", "What is the capital of France?"),
            Message("assistant", "The capital of France is"),
        ],
    )
    completion = await local_model.complete(request)
    assert completion.text.startswith(" ")  # the continuation, leading space kept
    assert "Paris" in completion.text


async def test_sampling_with_a_temperature(local_model: LlamaCppProvider) -> None:
    completion = await local_model.complete(ask("Name a fruit.", temperature=0.8, max_output_tokens=8))
    assert completion.usage.output_tokens >= 1


async def test_closing_the_stream_stops_generation_and_the_next_request_starts(
    local_model: LlamaCppProvider,
) -> None:
    before = local_model.live_state()
    long_answer = local_model.stream(ask(LONG, max_output_tokens=LONG_LIMIT))
    assert (await anext(long_answer)).text  # generating

    next_request = asyncio.create_task(drain(local_model.stream(ask("What is the capital of France?"))))
    await until(local_model, lambda s: s.queue_depth == 1)  # waiting behind the long answer
    await long_answer.aclose()  # e.g. the hedge was lost: stop at the next token
    chunks = await next_request

    after = local_model.live_state()
    assert after.jobs_cancelled == before.jobs_cancelled + 1  # stopped, not run to its end
    assert after.jobs_started == before.jobs_started + 2
    usage = chunks[-1].usage
    assert usage is not None and "Paris" in "".join(c.text for c in chunks)
    long_tokens = after.tokens_generated - before.tokens_generated - usage.output_tokens
    assert 1 <= long_tokens < LONG_LIMIT


async def test_cancelling_the_consumer_task_stops_generation(local_model: LlamaCppProvider) -> None:
    before = local_model.live_state()
    first_token = asyncio.Event()

    async def consume() -> None:
        async for _ in local_model.stream(ask(LONG, max_output_tokens=LONG_LIMIT)):
            first_token.set()

    consumer = asyncio.create_task(consume())
    await first_token.wait()
    consumer.cancel()  # e.g. the client went away, or the total deadline passed
    with pytest.raises(asyncio.CancelledError):
        await consumer

    after = await until(local_model, lambda s: s.in_flight == 0)
    assert after.jobs_cancelled == before.jobs_cancelled + 1
    assert after.tokens_generated - before.tokens_generated < LONG_LIMIT


async def test_cancelling_during_a_long_prompt_stops_before_the_first_token(
    local_model: LlamaCppProvider,
) -> None:
    before = local_model.live_state()
    long_prompt = "word " * (LOCAL_CONTEXT_WINDOW - 150)  # four evaluation batches
    consumer = asyncio.create_task(drain(local_model.stream(ask(long_prompt))))
    await until(local_model, lambda s: s.in_flight == 1)  # evaluating the prompt
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    after = await until(local_model, lambda s: s.in_flight == 0)
    assert after.jobs_cancelled == before.jobs_cancelled + 1
    assert after.tokens_generated == before.tokens_generated  # stopped between prompt batches


async def test_a_full_queue_raises_at_once(local_model: LlamaCppProvider) -> None:
    running = local_model.stream(ask(LONG, max_output_tokens=LONG_LIMIT))
    await anext(running)
    waiting = [
        asyncio.create_task(anext(local_model.stream(ask(f"Say {i}.")))) for i in range(LOCAL_QUEUE_SIZE)
    ]
    try:
        await until(local_model, lambda s: s.queue_depth == LOCAL_QUEUE_SIZE)
        with pytest.raises(LocalQueueFull):
            await anext(local_model.stream(ask("One too many.")))
        state = local_model.live_state()
        assert (state.in_flight, state.queue_depth) == (1, LOCAL_QUEUE_SIZE)  # nothing else moved
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await running.aclose()


async def test_a_request_cancelled_while_queued_never_runs(local_model: LlamaCppProvider) -> None:
    before = local_model.live_state()
    running = local_model.stream(ask(LONG, max_output_tokens=LONG_LIMIT))
    await anext(running)
    queued = asyncio.create_task(anext(local_model.stream(ask("Never run this."))))
    await until(local_model, lambda s: s.queue_depth == 1)

    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    state = local_model.live_state()
    assert (state.queue_depth, state.jobs_dropped) == (0, before.jobs_dropped + 1)

    await running.aclose()
    await local_model.complete(ask("What is the capital of France?"))
    after = local_model.live_state()
    assert (
        after.jobs_started == before.jobs_started + 2
    )  # the long one and the last one; never the dropped one


SENTIMENT = {
    "type": "object",
    "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]}},
    "required": ["sentiment"],
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
    "required": ["name", "city"],
}


async def test_json_schema_output_parses_and_validates(local_model: LlamaCppProvider) -> None:
    extracted = await local_model.complete(
        ask(
            'Extract the person\'s name and city: "Maria Lopez moved to Berlin last spring."',
            json_schema=json.dumps(PERSON),
            max_output_tokens=48,
        )
    )
    person = json.loads(extracted.text)
    assert set(person) == {"name", "city"} and all(isinstance(v, str) for v in person.values())
    assert person["city"] == "Berlin"

    classified = await local_model.complete(
        ask(
            'Classify the sentiment of: "The food was cold and the waiter was rude."',
            json_schema=json.dumps(SENTIMENT),
            max_output_tokens=48,
        )
    )
    verdict = json.loads(classified.text)
    assert set(verdict) == {"sentiment"} and verdict["sentiment"] in {"positive", "negative", "neutral"}
    assert classified.finish_reason == "stop"  # the grammar completed, then the model ended


WEATHER = Tool(
    "get_weather",
    "The current weather in a city",
    json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
)


async def test_a_forced_tool_is_called_with_arguments_that_fit_its_schema(
    local_model: LlamaCppProvider,
) -> None:
    request = ask(
        "What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice=ToolChoice(ToolMode.TOOL, "get_weather"),
        max_output_tokens=64,
    )
    completion = await local_model.complete(request)
    assert completion.finish_reason == "tool_calls" and completion.text == ""
    (call,) = completion.tool_calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert isinstance(json.loads(call.arguments)["city"], str)

    chunks = await drain(local_model.stream(request))  # streamed: the call whole, then the end
    assert [c.tool_calls[0].name for c in chunks if c.tool_calls] == ["get_weather"]
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].usage is not None


async def test_with_tools_the_model_may_answer_in_text(local_model: LlamaCppProvider) -> None:
    # tool_choice auto: the grammar admits a call or {"answer": ...}; either way the result is well-formed.
    completion = await local_model.complete(ask("Say hello.", tools=[WEATHER], max_output_tokens=64))
    if completion.tool_calls:
        assert completion.finish_reason == "tool_calls" and completion.tool_calls[0].name == "get_weather"
    else:
        assert completion.text and completion.finish_reason in ("stop", "length")
    # tool_choice none: no grammar, an ordinary answer
    plain = await local_model.complete(
        ask("What is the capital of France?", tools=[WEATHER], tool_choice=ToolChoice(ToolMode.NONE))
    )
    assert "Paris" in plain.text and not plain.tool_calls


async def test_stop_sequences_end_the_local_answer(local_model: LlamaCppProvider) -> None:
    full = await local_model.complete(ask("Count from 1 to 10, separated by commas.", max_output_tokens=40))
    assert "3" in full.text
    cut = await local_model.complete(
        ask("Count from 1 to 10, separated by commas.", max_output_tokens=40, stop=["3"])
    )
    assert "3" not in cut.text and full.text.startswith(cut.text.rstrip(", "))


async def test_an_unusable_schema_fails_before_queueing(local_model: LlamaCppProvider) -> None:
    before = local_model.live_state()
    with pytest.raises(BadRequest, match="not valid JSON"):
        await local_model.complete(ask("Hi", json_schema="{not json"))
    assert local_model.live_state().jobs_started == before.jobs_started


async def test_a_prompt_longer_than_the_context_is_too_large(local_model: LlamaCppProvider) -> None:
    with pytest.raises(RequestTooLarge, match=f"context window is {LOCAL_CONTEXT_WINDOW}"):
        await local_model.complete(ask("word " * (LOCAL_CONTEXT_WINDOW + 100)))


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("Hello world", 2), ("Hello world. Hello world.", 6)])
async def test_count_tokens_uses_the_models_vocabulary(
    local_model: LlamaCppProvider, text: str, tokens: int
) -> None:
    assert await local_model.count_tokens(text) == tokens


async def test_live_state_reports_speed_and_an_idle_worker(local_model: LlamaCppProvider) -> None:
    await local_model.complete(ask("Write a haiku about the sea.", max_output_tokens=16))
    state = local_model.live_state()
    assert (state.queue_depth, state.in_flight, state.jobs_ahead) == (0, 0, 0)
    assert state.samples >= 1 and state.tokens_per_s > 0 and state.ttft_ms > 0


async def test_aclose_stops_the_worker_and_fails_what_is_in_flight(
    capfd: pytest.CaptureFixture[str],
) -> None:
    config = ModelConfig(provider="llama_cpp", path="embedded", context_window=512, queue_size=1)
    provider = await LlamaCppProvider.start("second", config)
    assert capfd.readouterr().out == ""  # llama.cpp's load log stays off stdout
    pid = provider.live_state().worker_pid
    assert pid > 0

    running = provider.stream(ask(LONG, max_output_tokens=LONG_LIMIT))
    await anext(running)
    queued = asyncio.create_task(anext(provider.stream(ask("Hi"))))
    await until(provider, lambda s: s.queue_depth == 1)
    await provider.aclose()

    with pytest.raises(LocalWorkerDown, match="shut down"):
        await queued
    with pytest.raises(LocalWorkerDown, match="shut down"):
        await drain(running)
    with pytest.raises(LocalWorkerDown, match="shut down"):
        await anext(provider.stream(ask("After close")))
    with pytest.raises(LocalWorkerDown, match="shut down"):
        await provider.count_tokens("After close")
    assert not _alive(pid)  # the worker process is gone, not orphaned
    assert provider.live_state().crashes == 0  # asked to stop: not a crash
    await provider.aclose()  # idempotent


# -- crashes: the worker dies, the provider fails what was in flight, and serves again after a restart ------


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
async def test_a_worker_killed_mid_generation_fails_the_request_and_restarts(sig: signal.Signals) -> None:
    config = ModelConfig(provider="llama_cpp", path="embedded", context_window=512, queue_size=1)
    provider = await LlamaCppProvider.start("crashing", config)
    try:
        pid = provider.live_state().worker_pid
        running = provider.stream(ask(LONG, max_output_tokens=LONG_LIMIT))
        await anext(running)
        queued = asyncio.create_task(anext(provider.stream(ask("Hi"))))
        await until(provider, lambda s: s.queue_depth == 1)
        os.kill(pid, sig)

        with pytest.raises(LocalWorkerCrashed, match=f"pid {pid}\\) died during this request"):
            await drain(running)
        with pytest.raises(LocalWorkerCrashed):
            await queued
        state = await until(provider, lambda s: s.worker_up, timeout_s=120)
        assert state.worker_pid not in (0, pid)
        assert (state.restarts, state.crashes) == (1, 1)
        assert state.last_error == f"the worker process died ({sig.name})"
        assert (state.queue_depth, state.in_flight) == (0, 0)
        completion = await provider.complete(ask("What is the capital of France?"))
        assert "Paris" in completion.text
    finally:
        await provider.aclose()


async def test_a_request_while_the_worker_restarts_fails_at_once_naming_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "FIRST_RESTART_S", 3.0)  # a window to ask in while it is down
    config = ModelConfig(provider="llama_cpp", path="embedded", context_window=512)
    provider = await LlamaCppProvider.start("restarting", config)
    try:
        os.kill(provider.live_state().worker_pid, signal.SIGKILL)
        # Down at once; the reason names the signal once the process is reaped.
        state = await until(provider, lambda s: s.worker is WorkerStatus.DOWN and "(" in s.last_error)
        assert state.last_error == "the worker process died (SIGKILL)"
        with pytest.raises(
            LocalWorkerDown, match=r"not serving \(the worker process died \(SIGKILL\)\); restart 1"
        ):
            await provider.complete(ask("Hi"))
        await until(provider, lambda s: s.worker_up, timeout_s=120)
        assert "Paris" in (await provider.complete(ask("What is the capital of France?"))).text
    finally:
        await provider.aclose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- start-up: a missing or non-GGUF file fails at start; one llama.cpp cannot load leaves the model down


def _config(path: Path) -> ModelConfig:
    return ModelConfig(provider="llama_cpp", path=str(path), context_window=512)


async def test_a_missing_model_file_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="model file not found"):
        await LlamaCppProvider.start("local", _config(tmp_path / "absent.gguf"))


async def test_a_directory_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="cannot read model file"):
        await LlamaCppProvider.start("local", _config(tmp_path))


async def test_a_file_that_is_not_gguf_is_a_start_up_error(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"\x00" + os.urandom(4095))
    with pytest.raises(LocalModelError, match="not a GGUF model file"):
        await LlamaCppProvider.start("local", _config(path))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: b"GGUF" + os.urandom(4092), id="GGUF magic, then garbage"),
        pytest.param(lambda: embedded_model.ensure().read_bytes()[: 1 << 20], id="truncated model"),
    ],
)
async def test_a_model_llama_cpp_cannot_load_leaves_the_model_down_with_a_clear_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], content: Callable[[], bytes]
) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content())
    provider = await LlamaCppProvider.start("broken", _config(path))  # starts: the sidecar serves on
    try:
        state = provider.live_state()
        assert not state.worker_up and state.worker in (WorkerStatus.DOWN, WorkerStatus.STARTING)
        assert "corrupt or unsupported" in state.last_error
        with pytest.raises(LocalWorkerDown, match="corrupt or unsupported"):
            await provider.complete(ask("Hi"))
        assert capfd.readouterr().out == ""
    finally:
        await provider.aclose()
