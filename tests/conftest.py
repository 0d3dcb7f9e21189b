"""Shared fixtures for authbridge's own tests (the public kit's fixtures come from its plugin)."""

from __future__ import annotations

import time

import pytest


class FakeClock:
    """A settable clock: ``clock()`` returns the current fake time."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
