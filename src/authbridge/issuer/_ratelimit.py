"""Fixed-window rate limits of the password grant, kept in the store (shared by every instance).

Two limits, checked before any hashing:

- per client address: every attempt counts (``password_attempts_per_address``);
- per account: failures count (``password_failures_per_account``), keyed by the
  normalised username whether or not the account exists, so probing unknown
  names is limited like guessing passwords of known ones.

Keys never hold a username or an address in plain text beyond what is needed:
usernames (a user may type a password into the username field) are hashed,
addresses kept as the network they stand for.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math

from ..store import RateLimitStore
from ._errors import OAuthError

ADDRESS_PREFIX = "pw:addr:"
ACCOUNT_PREFIX = "pw:acct:"

IPV6_NETWORK_BITS = 64
"""IPv6 clients are limited per /64: one host is routinely given a whole /64."""

RATE_LIMIT_ERROR = "slow_down"
"""The OAuth error code of a rate-limited request (RFC 6749 defines none for the token endpoint)."""


def address_key(address: str) -> str:
    """The counter key of a client address: IPv4 as is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        # Not an IP address (a proxy-supplied name?): bounded, as a digest.
        return (
            ADDRESS_PREFIX + "h:" + hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()
        )
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ADDRESS_PREFIX + str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip, IPV6_NETWORK_BITS), strict=False)
        return ADDRESS_PREFIX + str(network)
    return ADDRESS_PREFIX + str(ip)


def account_key(normalized_username: str) -> str:
    """The counter key of an account: a digest of its normalised username."""
    digest = hashlib.sha256(normalized_username.encode("utf-8", "surrogatepass")).hexdigest()
    return ACCOUNT_PREFIX + digest


def retry_after(window_end: float, now: float) -> int:
    """Whole seconds until ``window_end`` (at least 1)."""
    return max(1, math.ceil(window_end - now))


def limited(reason: str, window_end: float, now: float) -> OAuthError:
    """The 429 answer of a request over a limit, with ``Retry-After`` at the window's end."""
    return OAuthError(
        RATE_LIMIT_ERROR,
        "Too many attempts; retry later",
        reason=reason,
        status=429,
        retry_after=retry_after(window_end, now),
    )


async def count(
    counters: RateLimitStore, key: str, *, limit: int, window: float, now: float, reason: str
) -> float:
    """Count one event of ``key``; refuse it (429) if it is beyond ``limit`` in this window.

    Returns:
        When the window of this count ends.

    Raises:
        OAuthError: 429 beyond the limit.
        StoreUnavailable: the store failed.
    """
    hits, window_end = await counters.hit(key, window=window, now=now)
    if hits > limit:
        raise limited(reason, window_end, now)
    return window_end


async def refund(
    counters: RateLimitStore, key: str, *, window: float, now: float, end: float
) -> None:
    """Take back one event counted by `count` in the window ending at ``end``.

    Nothing is done once that window is over (a refund must not credit the next one).
    """
    if now < end:
        await counters.hit(key, window=window, now=now, cost=-1)
