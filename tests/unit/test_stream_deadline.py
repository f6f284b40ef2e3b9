"""StreamDeadline: one timer for a stream's reads, turned into TimeoutError like asyncio.timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from tiergate.stream_deadline import StreamDeadline


async def items(gate: asyncio.Event, count: int) -> AsyncGenerator[int, None]:
    for i in range(count):
        yield i
    await gate.wait()  # then stalls until the gate opens
    yield count


async def test_a_stall_past_the_deadline_times_out() -> None:
    gate = asyncio.Event()  # never opened: the stream stalls for good after three items
    stream = items(gate, 3)
    assert [await anext(stream) for _ in range(3)] == [0, 1, 2]
    deadline = StreamDeadline(asyncio.get_running_loop().time() + 0.05)
    with pytest.raises(TimeoutError):
        await deadline.next(stream, None)  # the stream stalls on the gate past the deadline
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert deadline.expired
    with pytest.raises(TimeoutError):
        await deadline.next(stream, None)
    await stream.aclose()


async def test_a_deadline_passing_while_the_caller_holds_an_item_fails_the_next_read_at_once() -> None:
    stream = items(asyncio.Event(), 5)
    deadline = StreamDeadline(asyncio.get_running_loop().time())
    while not deadline.expired:  # the timer fires while no read is in progress
        await asyncio.sleep(0.001)
    with pytest.raises(TimeoutError):
        await deadline.next(stream, None)
    await stream.aclose()


async def test_the_end_of_the_stream_is_not_a_timeout() -> None:
    async def two() -> AsyncGenerator[int, None]:
        yield 1
        yield 2

    stream = two()
    deadline = StreamDeadline(asyncio.get_running_loop().time() + 60)
    assert [await deadline.next(stream, None), await deadline.next(stream, None)] == [1, 2]
    with pytest.raises(StopAsyncIteration):
        await deadline.next(stream, None)
    deadline.cancel()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    gate = asyncio.Event()

    async def reader() -> None:
        deadline = StreamDeadline(asyncio.get_running_loop().time() + 60)
        stream = items(gate, 0)
        try:
            await deadline.next(stream, None)
        finally:
            deadline.cancel()
            await stream.aclose()

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
