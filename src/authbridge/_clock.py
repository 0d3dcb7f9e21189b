"""Injectable clock: every time-dependent object takes one of these."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""A callable returning the current time as POSIX seconds."""


def system_clock() -> float:
    """Wall-clock time in POSIX seconds."""
    return time.time()
