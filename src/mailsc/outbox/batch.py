"""Group commit: concurrent callers' items are written together in one transaction.

Each caller awaits its own result, which is set only after the shared transaction committed, so a caller never
returns before its own row is durable, and a burst of N callers costs one commit instead of N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommitter(Generic[T, R]):
    """Runs ``write(items)`` for everything queued while the previous write was in progress."""

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
        max_batch: int = 500,
        linger: float = 0.0,
        in_flight: int = 1,
    ):
        self._write = write
        self._max_batch = max_batch
        self._linger = linger
        self._in_flight = in_flight  # transactions at once: 1 for SQLite's single writer, more for PostgreSQL
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runners: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._runners) < self._in_flight:
            # While one transaction commits, another can carry the callers that arrived meanwhile.
            runner = asyncio.create_task(self._run())
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)  # also when cancelled before it ran
        return await future

    async def _run(self) -> None:
        try:
            await self._drain()
        finally:
            # No await between the last look at _pending and this: a submit() after it starts a new runner.
            task = asyncio.current_task()
            if task is not None:
                self._runners.discard(task)

    async def _drain(self) -> None:
        while self._pending:
            # Let callers scheduled in this same tick (or within ``linger`` seconds) join the batch.
            await asyncio.sleep(self._linger if len(self._pending) < self._max_batch else 0)
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            if not batch:  # another runner took them
                continue
            try:
                results = await self._write([item for item, _ in batch])
            except BaseException as exc:  # the whole transaction failed: every caller in it gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
