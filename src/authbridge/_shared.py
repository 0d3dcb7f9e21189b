"""Shared in-flight work: concurrent callers asking for the same thing wait for one task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SharedTasks(Generic[T]):
    """At most one task per key; callers of :meth:`run` with that key share it.

    The task is shielded: a caller being cancelled (a client hanging up) does
    not cancel the work the other callers wait for. Once done, the key is free
    again, and the task's exception is marked retrieved here (each waiter
    re-raises it), so a failure nobody waited for is not reported as lost.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[T]] = {}

    def running(self, key: Hashable = None) -> bool:
        """Whether work for ``key`` is in flight."""
        return key in self._tasks

    async def run(self, factory: Callable[[], Coroutine[Any, Any, T]], key: Hashable = None) -> T:
        """Wait for the task of ``key``, starting ``factory()`` if there is none."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(factory())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()
