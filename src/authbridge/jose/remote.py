"""A remote JWKS cache with the behaviour of panva/jose's ``createRemoteJWKSet``.

- Keys are cached for a bounded age: the response's ``Cache-Control: max-age``
  is honoured, clamped to ``[min_age, max_age]`` (``default_age`` without one).
- A token with an unknown ``kid`` triggers a refetch, at most once per
  ``cooldown``; a storm of unknown ``kid``\\ s costs one request per cooldown.
- At most one fetch is in flight; concurrent callers share it.
- When a refresh fails, the last known good keys keep working for at most
  ``max_stale`` seconds past their expiry; failures are retried at most once
  per ``cooldown`` so a dead endpoint is not hammered. A token whose ``kid``
  is unknown while the endpoint is failing gets :class:`ProviderUnavailable`
  (it may be signed with a new key), not :class:`InvalidToken`.
- Fetches are bounded in time and size and never follow redirects
  (see :mod:`authbridge._http`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .._clock import Clock, system_clock
from .._http import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    ClientSource,
    fetch_json,
    max_age_from_cache_control,
)
from .._shared import SharedTasks
from ..errors import ProviderUnavailable
from .keys import KeySet, VerificationKey, import_jwks

logger = logging.getLogger("authbridge.jwks")

UrlSource = Callable[[], Awaitable[str]]


class RemoteJWKS:
    """Keys of one issuer, fetched from its ``jwks_uri`` and cached.

    Args:
        url: The JWKS URL, or an async callable resolving it (e.g. from
            discovery), called inside the same single in-flight refresh.
        client: Yields the outbound :class:`httpx.AsyncClient` for one fetch.
        label: A safe name for logs and errors (the provider name).
        clock: Injectable time source (POSIX seconds).
    """

    def __init__(
        self,
        url: str | UrlSource,
        *,
        client: ClientSource,
        label: str = "jwks",
        clock: Clock = system_clock,
        cooldown: float = 30.0,
        default_age: float = 600.0,
        min_age: float = 60.0,
        max_age: float = 3600.0,
        max_stale: float = 6 * 3600.0,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._url = url
        self._client = client
        self._label = label
        self._clock = clock
        self._cooldown = cooldown
        self._default_age = default_age
        self._min_age = min_age
        self._max_age = max_age
        self._max_stale = max_stale
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._keys: KeySet | None = None
        self._expires_at = float("-inf")
        self._last_attempt = float("-inf")
        self._last_failed = False
        self._fetches: SharedTasks[KeySet] = SharedTasks()
        self.fetch_count = 0
        """Number of JWKS requests made (for tests and diagnostics)."""

    @property
    def current(self) -> KeySet | None:
        """The cached key set, fresh or stale, or ``None`` before the first load."""
        return self._keys

    def lookup_cached(
        self, kid: str | None, alg: str
    ) -> tuple[KeySet, tuple[VerificationKey, ...]] | None:
        """Like :meth:`lookup` when fresh keys already answer it; else ``None``.

        Lets the common case skip a coroutine round trip.
        """
        keys = self._keys
        if keys is None or self._clock() >= self._expires_at:
            return None
        found = keys.candidates(kid, alg)
        return (keys, found) if found else None

    async def lookup(self, kid: str | None, alg: str) -> tuple[KeySet, tuple[VerificationKey, ...]]:
        """Return the key set used and its keys that may verify (``kid``, ``alg``).

        May fetch (see the module docstring for when). An empty tuple means no
        such key is known, even after any refetch the policy allowed.

        Raises:
            ProviderUnavailable: no usable key set could be obtained.
        """
        now = self._clock()
        keys = self._keys
        if keys is None or now >= self._expires_at:
            keys = await self._usable_keys(now)
            return keys, keys.candidates(kid, alg)
        found = keys.candidates(kid, alg)
        if found or kid is None or keys.has_kid(kid):
            return keys, found
        if now - self._last_attempt < self._cooldown:
            if self._last_failed:
                # The key may be a new one we cannot fetch right now: 503, not 401.
                raise ProviderUnavailable("jwks_recently_failed", provider=self._label)
            return keys, found
        # If this refetch fails, say so (503): refusing a possibly genuine token
        # signed with a new key as "invalid" would send clients to log in again.
        keys = await self.refresh()
        return keys, keys.candidates(kid, alg)

    async def _usable_keys(self, now: float) -> KeySet:
        keys = self._keys
        stale_ok = keys is not None and now < self._expires_at + self._max_stale
        recently_failed = self._last_failed and now - self._last_attempt < self._cooldown
        if recently_failed and not self._fetches.running():
            if stale_ok and keys is not None:
                return keys
            raise ProviderUnavailable("jwks_recently_failed", provider=self._label)
        try:
            return await self.refresh()
        except ProviderUnavailable:
            if stale_ok and keys is not None:
                logger.warning("Using last known good keys for %s: refresh failed", self._label)
                return keys
            raise

    async def refresh(self) -> KeySet:
        """Fetch the key set now, joining a fetch already in flight."""
        return await self._fetches.run(self._fetch)

    async def _fetch(self) -> KeySet:
        self._last_attempt = self._clock()
        self._last_failed = True
        url = self._url if isinstance(self._url, str) else await self._url()
        self.fetch_count += 1
        response = await fetch_json(
            self._client,
            url,
            timeout=self._timeout,
            max_bytes=self._max_bytes,
            provider=self._label,
        )
        try:
            keys = import_jwks(response.body, source=self._label)
        except ValueError:
            raise ProviderUnavailable("jwks_malformed", provider=self._label) from None
        if not len(keys):
            raise ProviderUnavailable("jwks_without_usable_keys", provider=self._label)
        age = max_age_from_cache_control(response.cache_control)
        ttl = self._default_age if age is None else age
        ttl = min(max(ttl, self._min_age), self._max_age)
        now = self._clock()
        self._keys = keys
        self._expires_at = now + ttl
        self._last_failed = False
        return keys
