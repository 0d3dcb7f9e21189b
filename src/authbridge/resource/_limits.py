"""Bounds on the provider calls that unauthenticated requests can cause.

Every distinct opaque token that passes the local checks costs one call to its
provider: a few milliseconds of the event loop's CPU (the HTTP client's work)
and a share of the app's quota at the provider. A flood of made-up tokens must
not turn into unbounded outbound work, so each source may have at most
``max_concurrent_checks`` calls in flight and start at most
``max_checks_per_second``, and all sources of one resource server together at
most `MAX_OUTBOUND_CHECKS` calls in flight. A check beyond a bound is refused at
once with a 503 (`ProviderUnavailable` with ``retry_after``): it never waits in
a queue, so a flood costs the app only the small price of refusing it, and
genuine cached or JWT requests keep their latency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ..errors import ConfigurationError, ProviderUnavailable

DEFAULT_MAX_CONCURRENT_CHECKS = 16
"""Provider calls one source may have in flight when its configuration says nothing."""

DEFAULT_MAX_CHECKS_PER_SECOND = 100.0
"""Provider calls one source may start per second when its configuration says nothing."""

MAX_OUTBOUND_CHECKS = 64
"""Provider calls in flight at once across all sources of one resource server.

The outbound client pools at most 100 connections. Below that bound no check ever
waits for a connection, and key-set and discovery fetches always find one. (A full
pool queues requests, and its bookkeeping then costs CPU in proportion to the queue
times the pool on every event: a thousand queued calls stall the event loop for
seconds.)
"""


def check_limit_settings(
    max_concurrent_checks: object, max_checks_per_second: object, *, provider: str | None
) -> tuple[int, float]:
    """The two limits as configured: a whole number of at least 1, a rate above 0.

    Raises:
        ConfigurationError: anything else.
    """
    concurrent = max_concurrent_checks
    if isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 1:
        raise ConfigurationError(
            "max_concurrent_checks_out_of_range",
            provider=provider,
            message=(
                "max_concurrent_checks must be a whole number of at least 1 (16 by "
                f"default), got {concurrent!r}"
            ),
        )
    rate = max_checks_per_second
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
        raise ConfigurationError(
            "max_checks_per_second_out_of_range",
            provider=provider,
            message=(
                "max_checks_per_second must be a number above 0 (100 by default; "
                f"float('inf') for no rate bound), got {rate!r}"
            ),
        )
    return concurrent, float(rate)


class OutboundBudget:
    """The slots all sources of one resource server share."""

    __slots__ = ("active", "capacity")

    def __init__(self, capacity: int = MAX_OUTBOUND_CHECKS) -> None:
        self.capacity = capacity
        self.active = 0


class CheckLimit:
    """One source's bounds on provider calls; a check beyond them is refused at once.

    Not a semaphore: nothing ever waits. All callers run on one event loop, so
    plain counters are enough. The rate is a token bucket holding one second of
    checks (real time, whatever clock the resource server was given). The
    ``retry_after`` of a refusal is when a check can next start: for the rate,
    when the next token is due; for concurrency, the typical duration of this
    source's recent calls (whole seconds, at least 1).
    """

    __slots__ = (
        "_budget",
        "_burst",
        "_monotonic",
        "_refilled",
        "_tokens",
        "_typical",
        "active",
        "capacity",
        "provider",
        "rate",
        "refused",
    )

    def __init__(
        self,
        provider: str,
        capacity: int,
        rate: float,
        budget: OutboundBudget,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.capacity = capacity
        self.rate = rate
        self.active = 0
        self.refused = 0
        """Checks refused so far because a bound was reached."""
        self._budget = budget
        self._burst = max(1.0, min(rate, 1e9))
        self._tokens = self._burst
        self._monotonic = monotonic
        self._refilled = monotonic()
        self._typical = 1.0

    def acquire(self) -> float:
        """Take a slot and return the start time to give back to `release`.

        Raises:
            ProviderUnavailable: ``too_many_concurrent_checks`` or
                ``too_many_checks_per_second``, with ``retry_after``.
        """
        budget = self._budget
        if self.active >= self.capacity or budget.active >= budget.capacity:
            self.refused += 1
            raise ProviderUnavailable(
                "too_many_concurrent_checks",
                provider=self.provider,
                detail={"in_flight": self.active, "limit": self.capacity},
                retry_after=float(max(1, math.ceil(self._typical))),
            )
        now = self._monotonic()
        if self.rate == math.inf:
            tokens = self._burst
        else:
            tokens = min(self._burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if tokens < 1.0:
            self._tokens = tokens
            self.refused += 1
            raise ProviderUnavailable(
                "too_many_checks_per_second",
                provider=self.provider,
                detail={"limit_per_second": self.rate},
                retry_after=(1.0 - tokens) / self.rate,
            )
        self._tokens = tokens - 1.0
        self.active += 1
        budget.active += 1
        return now

    def release(self, started: float) -> None:
        """Give the slot taken at ``started`` back."""
        self.active -= 1
        self._budget.active -= 1
        # A moving average of call durations, for the next refusal's retry_after.
        self._typical += (self._monotonic() - started - self._typical) * 0.2
