"""A remote JWKS cache with the behaviour of panva/jose's ``createRemoteJWKSet``.

- Keys are cached for a bounded age: the response's ``Cache-Control: max-age``
  is honoured, clamped to ``[min_age, max_age]`` (``default_age`` without one).
- At most one fetch is in flight. A request that needs keys while a fetch is
  in flight waits for that fetch and uses its result, whatever started it (a
  key rotation therefore costs one fetch, and no request is refused because
  another one is fetching).
- A token with an unknown ``kid`` triggers a refetch, at most once per
  ``cooldown`` after the last successful fetch; a storm of unknown ``kid``
  values costs one request per cooldown. When that refetch succeeds and the ``kid``
  is still unknown, the token is refused as invalid (``unknown_key``).
- A fetch counts as failed only when it has failed. After a failure, no new
  attempt is made for ``cooldown`` seconds, so a dead endpoint is not hammered;
  the last known good keys keep working for at most ``max_stale`` seconds past
  their expiry.
- While the endpoint is failing (the last attempt failed, including while
  stale keys are served and within the cooldown), a token whose ``kid`` is
  unknown gets `ProviderUnavailable` (503: it may be signed with a new key),
  never `InvalidToken`. Every such refusal carries ``retry_after``: the
  seconds until the next attempt is allowed (at least 1).
- A ``url`` callable (discovery) runs inside each attempt, so its failures
  are failures of that attempt and obey this cooldown: given one that ignores
  the discovery cooldown (as `OIDCProvider` does), one outage costs at most
  one cooldown, not a discovery cooldown and a JWKS cooldown stacked.
- The clock is the wall clock, which can step backwards. Keys are fresh only
  between their fetch and their expiry, so never longer than ``max_age`` ahead
  whichever way the clock moved: back before the last fetch, their age is
  unknown and they are fetched again (kept as last known good, for at most
  ``max_stale`` more, while that fails). Every cooldown ends when the clock goes
  back before the moment it started from: a backward step never refuses a
  genuine new key, nor says to retry later than one cooldown.
- Fetches are bounded in time and size and never follow redirects
  (see `authbridge._http`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .._clock import Clock, system_clock
from .._http import ClientSource, fetch_json, max_age_from_cache_control
from .._shared import FailureClock, SharedTasks, within
from ..errors import ProviderUnavailable
from .keys import KeySet, VerificationKey, import_jwks

logger = logging.getLogger("authbridge.jwks")

UrlSource = Callable[[], Awaitable[str]]


class RemoteJWKS:
    """Keys of one issuer, fetched from its ``jwks_uri`` and cached.

    See the module docstring for the exact fetch, cooldown and staleness rules.

    Args:
        url: The JWKS URL, or an async callable resolving it (e.g. from
            discovery), called inside each fetch attempt: its failures are
            failures of that attempt.
        client: Yields the outbound `httpx.AsyncClient` for one fetch.
        label: A safe name for logs and errors (the provider name).
        clock: Injectable time source (POSIX seconds).
        cooldown: Seconds between an unknown-``kid`` refetch and the previous
            successful fetch, and between a failed attempt and the next one.
        default_age: How long keys are used without a ``Cache-Control`` max-age.
        min_age: Lower bound on how long fetched keys are used.
        max_age: Upper bound on how long fetched keys are used.
        max_stale: How long past their expiry the last good keys keep working
            while the endpoint fails.
        timeout: Bound on one fetch, in seconds.
        max_bytes: Bound on the size of the JWKS document.
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
        timeout: float = 5.0,
        max_bytes: int = 512 * 1024,
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
        self._fetched_at = float("-inf")
        self._failures = FailureClock(clock, cooldown)
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
        """Like `lookup` when fresh keys already answer it; else ``None``.

        Lets the common case skip a coroutine round trip.
        """
        keys = self._keys
        if keys is None or not self._fetched_at <= self._clock() < self._expires_at:
            return None
        found = keys.candidates(kid, alg)
        return (keys, found) if found else None

    async def lookup(self, kid: str | None, alg: str) -> tuple[KeySet, tuple[VerificationKey, ...]]:
        """Return the key set used and its keys that may verify (``kid``, ``alg``).

        May fetch (see the module docstring for when). An empty tuple means no
        such key is known, even after any refetch the policy allowed, while the
        endpoint is not failing.

        Raises:
            ProviderUnavailable: no usable key set could be obtained, or the
                ``kid`` is unknown while the endpoint is failing.
        """
        keys = self._keys
        if keys is None or not self._fetched_at <= self._clock() < self._expires_at:
            keys = await self._usable_keys()
        found = keys.candidates(kid, alg)
        if found or kid is None or keys.has_kid(kid):
            return keys, found
        return await self._unknown_kid(keys, kid, alg)

    async def _unknown_kid(
        self, keys: KeySet, kid: str, alg: str
    ) -> tuple[KeySet, tuple[VerificationKey, ...]]:
        if not self._fetches.running():
            now = self._clock()
            if self._failures.failing:
                wait = self._failures.wait(now)
                if wait > 0:
                    # The key may be a new one we cannot fetch right now: 503, not 401.
                    raise self._failures.refusal(
                        "jwks_recently_failed", provider=self._label, wait=wait
                    )
            elif within(now, self._fetched_at, self._cooldown):
                return keys, ()
        # Join the fetch in flight, or start one. If it fails, the error (503)
        # reaches the caller: refusing a possibly genuine token signed with a
        # new key as "invalid" would send clients to log in again.
        keys = await self.refresh()
        return keys, keys.candidates(kid, alg)

    async def _usable_keys(self) -> KeySet:
        now = self._clock()
        if now < self._fetched_at:
            # The clock went back before the fetch: the keys' age is unknown. They count
            # as fetched, and expired, now: fetched again, and kept at most max_stale.
            self._fetched_at = self._expires_at = now
        keys = self._keys
        stale_ok = keys is not None and now < self._expires_at + self._max_stale
        if not self._fetches.running():
            wait = self._failures.wait(now)
            if wait > 0:
                if stale_ok and keys is not None:
                    return keys
                raise self._failures.refusal(
                    "jwks_recently_failed", provider=self._label, wait=wait
                )
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
        try:
            url = self._url if isinstance(self._url, str) else await self._url()
            keys, ttl = await self._download(url)
        except ProviderUnavailable as exc:
            retry_after = self._failures.failed(exc)
            raise ProviderUnavailable(
                exc.reason, provider=self._label, detail=exc.detail, retry_after=retry_after
            ) from None
        except BaseException:
            self._failures.failed(ProviderUnavailable("unexpected_error", provider=self._label))
            raise
        now = self._clock()
        self._keys = keys
        self._expires_at = now + ttl
        self._fetched_at = now
        self._failures.succeeded()
        return keys

    async def _download(self, url: str) -> tuple[KeySet, float]:
        self.fetch_count += 1
        try:
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
        except ProviderUnavailable as exc:
            raise ProviderUnavailable(
                exc.reason, provider=self._label, detail={**exc.detail, "document": "jwks"}
            ) from None
        age = max_age_from_cache_control(response.cache_control)
        ttl = self._default_age if age is None else age
        return keys, min(max(ttl, self._min_age), self._max_age)
