"""The resource server: route a bearer token to its verifier, cache verified tokens."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from types import TracebackType
from typing import NamedTuple

import httpx

from .._clock import Clock, system_clock
from .._http import DEFAULT_TIMEOUT, HttpClientHolder
from ..errors import ConfigurationError, InvalidToken, ProviderUnavailable
from ..jose import KeySet, parse_compact
from .principal import Principal
from .provider import BoundProvider, OIDCProvider

logger = logging.getLogger("authbridge.resource")

MAX_CACHE_TTL = 300.0
"""Upper bound on how long a verified token is served from cache."""


class _Verified(NamedTuple):
    principal: Principal
    expires_at: float
    provider: BoundProvider
    keyset: KeySet


class ResourceServer:
    """Validates bearer tokens from the configured providers. Free of FastAPI.

    Routing is deterministic: a JWT goes to the one provider whose configured
    issuer equals its ``iss``; a token naming any other issuer is refused
    without any network request.

    Verified tokens are cached (``cache_size`` entries, FIFO) under the SHA-256
    of their exact bytes, so another spelling of a token is a different entry
    and gets full validation. An entry is served only before the token's
    ``exp`` (and at most :data:`MAX_CACHE_TTL`), and only while the provider's
    key set is the one that verified it: a JWKS refresh drops it.

    Args:
        providers: The issuers whose tokens are accepted.
        transport: Outbound HTTP transport (tests pass ``httpx.MockTransport``
            or the test kit's ``FakeIssuer.transport``).
        clock: Time source, POSIX seconds.
        cache_size: Verified-token cache capacity; 0 disables it.
        http_timeout: Bound on each outbound fetch, in seconds.
    """

    def __init__(
        self,
        providers: Sequence[OIDCProvider],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = system_clock,
        cache_size: int = 10_000,
        http_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not providers:
            raise ConfigurationError("at_least_one_provider_required")
        if cache_size < 0:
            raise ConfigurationError("cache_size_negative")
        self._http = HttpClientHolder(transport)
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, _Verified] = OrderedDict()
        self._by_issuer: dict[str, BoundProvider] = {}
        self._by_name: dict[str, BoundProvider] = {}
        for provider in providers:
            if provider.issuer in self._by_issuer:
                raise ConfigurationError("duplicate_issuer", provider=provider.name)
            if provider.name in self._by_name:
                raise ConfigurationError("duplicate_provider_name", provider=provider.name)
            bound = provider.bind(self._http.session, clock, timeout=http_timeout)
            self._by_issuer[provider.issuer] = bound
            self._by_name[provider.name] = bound
        self._max_bytes = max(p.policy.max_token_bytes for p in providers)

    @property
    def providers(self) -> tuple[OIDCProvider, ...]:
        """The configured providers, in order."""
        return tuple(b.provider for b in self._by_name.values())

    @property
    def cached_tokens(self) -> int:
        """How many verified tokens are cached right now."""
        return len(self._cache)

    def bound(self, name: str) -> BoundProvider:
        """The runtime state (metadata, keys) of the provider called ``name``."""
        return self._by_name[name]

    async def __aenter__(self) -> ResourceServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self, *, warm_up: bool = True) -> None:
        """Open the outbound HTTP client and (optionally) load every provider's keys.

        A provider that is down is logged, not fatal: the app starts anyway and
        retries lazily.
        """
        self._http.open()
        if warm_up:
            results = await asyncio.gather(
                *(b.warm_up() for b in self._by_name.values()), return_exceptions=True
            )
            for bound, result in zip(self._by_name.values(), results, strict=True):
                if isinstance(result, ProviderUnavailable):
                    logger.warning(
                        "Provider %s unavailable at start-up (%s); will retry on demand",
                        bound.provider.name,
                        result.reason,
                    )
                elif isinstance(result, BaseException):
                    raise result

    async def aclose(self) -> None:
        """Close the outbound HTTP client."""
        await self._http.aclose()

    async def verify(self, token: str) -> Principal:
        """Validate a bearer token and return its :class:`Principal`.

        Raises:
            InvalidToken: the token is not acceptable (reason in ``.reason``).
            ProviderUnavailable: its provider's keys could not be obtained.
        """
        if len(token) > self._max_bytes:
            raise InvalidToken("token_too_large")
        cache = self._cache
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        hit = cache.get(digest)
        if hit is not None:
            if self._clock() < hit.expires_at and hit.provider.keyset is hit.keyset:
                return hit.principal
            cache.pop(digest, None)

        parsed = parse_compact(token, max_bytes=self._max_bytes)
        issuer = parsed.claims.get("iss")
        bound = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if bound is None:
            raise InvalidToken("unknown_issuer")
        principal, keyset = await bound.verify(parsed, len(token))

        if self._cache_size:
            exp = parsed.claims["exp"]
            expires_at = min(float(exp), self._clock() + MAX_CACHE_TTL)
            if len(cache) >= self._cache_size:
                cache.popitem(last=False)
            cache[digest] = _Verified(principal, expires_at, bound, keyset)
        return principal
