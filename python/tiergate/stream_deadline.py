"""A request's deadline over a stream's reads, with one timer for the whole stream.

`asyncio.timeout_at` around each read of a stream arms and cancels a timer per chunk (~4 µs of every relayed
chunk). `StreamDeadline` arms one at the deadline: when it fires while the stream is being read, it cancels
that read, which `next` turns into `TimeoutError` (as `asyncio.timeout` does, through `Task.uncancel`, so a
cancellation from anyone else still propagates as one); when it fires while the caller holds the chunk, the
next read raises `TimeoutError` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TypeVar

__all__ = ["StreamDeadline"]

T = TypeVar("T")
S = TypeVar("S")


class StreamDeadline:
    """Reads of one stream, bounded by `when` on the running loop's clock. Call `cancel` when done."""

    __slots__ = ("_expired", "_fired_cancel", "_handle", "_reading", "_task")

    def __init__(self, when: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("StreamDeadline needs a running task")
        self._task = task
        self._expired = False
        self._reading = False
        self._fired_cancel = False
        self._handle = asyncio.get_running_loop().call_at(when, self._fire)

    @property
    def expired(self) -> bool:
        return self._expired

    def _fire(self) -> None:
        self._expired = True
        if self._reading:
            self._fired_cancel = True
            self._task.cancel()

    async def next(self, stream: AsyncGenerator[T, S], value: S) -> T:
        """The stream's next item (sending it `value`); TimeoutError past the deadline; StopAsyncIteration at
        its end."""
        if self._expired:
            raise TimeoutError
        cancelling = self._task.cancelling()
        self._reading = True
        try:
            item = await stream.asend(value)
        except asyncio.CancelledError:
            if self._fired_cancel and self._task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._reading = False
        if self._fired_cancel:  # the read finished anyway (its iterator swallowed the cancellation)
            self._task.uncancel()
            raise TimeoutError
        return item

    def cancel(self) -> None:
        self._handle.cancel()
