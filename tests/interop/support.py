"""Helpers shared by the interop tests."""

from __future__ import annotations

import time


class SkewableClock:
    """Wall-clock time plus an offset the test can move forward (passed as ``clock=``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
