"""Shared in-flight work and failure cooldowns for everything fetched from a provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

from ._clock import Clock
from .errors import ProviderUnavailable

T = TypeVar("T")


class SharedTasks(Generic[T]):
    """At most one task per key; callers of `run()` with that key share it.

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


def within(now: float, since: float, period: float) -> bool:
    """Whether ``now`` is in the ``period`` seconds that began at ``since``.

    The clock is the wall clock (injectable, POSIX seconds), which can step backwards
    (NTP, a resumed VM, an operator). Back before ``since``, the period counts as over:
    waiting for the clock to catch up would stretch it by the size of the step (a key
    rotation refused for an hour after a one-hour step). Every wait is then at most
    ``period``, whichever way the clock moves.
    """
    return since <= now < since + period


class FailureClock:
    """When the last attempt at something failed, and when the next one may be made.

    After a failure, callers within ``cooldown`` seconds are refused at once
    instead of asking again, so a provider that is down is not hammered (nor
    used to amplify traffic). The refusal says exactly when the next attempt
    is allowed (its ``retry_after``, at least 1 s and at most the cooldown). A
    success clears it. A clock that went back before the failure ends the
    cooldown (see `within`).
    """

    __slots__ = ("_clock", "_failed_at", "_last_detail", "cooldown")

    def __init__(self, clock: Clock, cooldown: float) -> None:
        self._clock = clock
        self.cooldown = cooldown
        self._failed_at: float | None = None
        self._last_detail: dict[str, Any] = {}

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed (and none succeeded since)."""
        return self._failed_at is not None

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until the next attempt is allowed (0 when it is).

        Never more than the cooldown; 0 when the clock went back before the failure.
        """
        failed_at = self._failed_at
        if failed_at is None or not within(now, failed_at, self.cooldown):
            return 0.0
        return min(self.cooldown, failed_at + self.cooldown - now)

    def failed(self, error: ProviderUnavailable) -> float:
        """Record a failed attempt now (and why); return its ``retry_after``."""
        self._failed_at = self._clock()
        self._last_detail = {**error.detail, "last_failure": error.reason}
        return max(1.0, self.cooldown)

    def succeeded(self) -> None:
        """Record a successful attempt."""
        self._failed_at = None

    def refusal(self, reason: str, *, provider: str, wait: float) -> ProviderUnavailable:
        """The error for a caller refused within the cooldown, ``wait`` seconds before its end.

        Its ``detail`` is the last failure's, plus that failure's reason as ``last_failure``;
        its ``retry_after`` is ``wait``, within [1, cooldown].
        """
        retry_after = max(1.0, min(wait, self.cooldown))
        return ProviderUnavailable(
            reason, provider=provider, detail=self._last_detail, retry_after=retry_after
        )
