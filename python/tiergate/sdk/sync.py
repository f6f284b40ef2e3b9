"""The blocking `Client` and `Router`: the async API run on an event loop in a background thread.

Each blocking method *is* the async one (`blocking(AsyncAPI.complete)`): same signature, same docs, same
code, submitted to a loop that belongs to the object. Owning its loop is what lets `Router` work where one is
already running in the caller's thread (a Jupyter notebook), and keeps grpc.aio channels and the Sidecar's
tasks on the loop they were made on. The cost is a thread hop per call (tens of microseconds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar

from tiergate.sdk.api import AsyncAPI

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
A = TypeVar("A", bound=AsyncAPI)

_DONE = object()


class LoopThread:
    """An event loop running forever in a daemon thread, until `close()`."""

    def __init__(self, what: str) -> None:
        self._what = what
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=f"tiergate-{what}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        try:
            leftover = asyncio.all_tasks(self.loop)
            for task in leftover:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()

    @property
    def closed(self) -> bool:
        return not self._thread.is_alive()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Runs `awaitable` on the loop and waits for it; interrupting the wait (Ctrl-C) cancels it."""
        if self.closed:
            if isinstance(awaitable, Coroutine):
                awaitable.close()  # never to run: close it rather than leave it "never awaited"
            raise RuntimeError(f"this tiergate {self._what} is closed")
        # The caller's context variables (OpenTelemetry's current span among them) follow the call.
        future = asyncio.run_coroutine_threadsafe(_await(awaitable, contextvars.copy_context()), self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise asyncio.CancelledError() from None
        except BaseException:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """The async iterator's items, each fetched on the loop; closing early closes it there too."""
        try:
            while True:
                item = self.run(_next(iterator))
                if item is _DONE:
                    return
                yield item  # type: ignore[misc]  # not _DONE
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None and not self.closed:
                self.run(close())

    def close(self) -> None:
        if not self.closed:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()


async def _await(awaitable: Awaitable[T], context: contextvars.Context) -> T:
    # This task runs in its own copy of the loop thread's context: the caller's values set here stay here.
    for var, value in context.items():
        var.set(value)
    return await awaitable


async def _next(iterator: AsyncIterator[T]) -> T | object:
    # StopAsyncIteration does not cross a future well: a sentinel says the iterator is done.
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _DONE


def blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncAPI[Any], P], R]:
    """The blocking form of an async method of the wrapped object: its result, computed on the loop."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: SyncAPI[Any], /, *args: P.args, **kwargs: P.kwargs) -> R:
        bound: Callable[P, Coroutine[Any, Any, R]] = getattr(self._inner, name)
        return self._thread.run(bound(*args, **kwargs))

    return call


def blocking_iter(
    method: Callable[Concatenate[Any, P], AsyncIterator[T]],
) -> Callable[Concatenate[SyncAPI[Any], P], Iterator[T]]:
    """The blocking form of an async generator method: a plain iterator over the same items."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: SyncAPI[Any], /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        bound: Callable[P, AsyncIterator[T]] = getattr(self._inner, name)
        return self._thread.iterate(bound(*args, **kwargs))

    return call


class SyncAPI(Generic[A]):
    """The blocking form of an `AsyncAPI`: the same methods, the same results. Use as `with`, or `close()`.

    The wrapped object gets ready (connects, loads its models) in the constructor, so errors such as a bad
    config or a missing model file surface there.
    """

    def __init__(self, inner: A, *, what: str) -> None:
        self._inner = inner
        self._thread = LoopThread(what)
        try:
            self._thread.run(inner._open())
        except BaseException:
            self._thread.close()
            raise

    complete = blocking(AsyncAPI.complete)
    stream = blocking_iter(AsyncAPI.stream)
    explain = blocking(AsyncAPI.explain)
    count_tokens = blocking(AsyncAPI.count_tokens)
    embed = blocking(AsyncAPI.embed)
    status = blocking(AsyncAPI.status)
    feedback = blocking(AsyncAPI.feedback)
    canary = blocking(AsyncAPI.canary)

    @property
    def timeout(self) -> float | None:
        """The default per-call timeout in seconds (None: none)."""
        return self._inner.timeout

    def close(self) -> None:
        """Closes the wrapped object, then stops the loop thread. Calling it again does nothing."""
        if self._thread.closed:
            return
        try:
            self._thread.run(self._inner.aclose())
        finally:
            self._thread.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
