"""Injectable clock: every time-dependent object takes one of these."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""A callable returning the current time as POSIX seconds."""


system_clock: Clock = time.time
"""Wall-clock time in POSIX seconds (the C function itself: it is called on every request)."""
