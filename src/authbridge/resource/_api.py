"""What the verifiers that ask a provider's API share: configuration, runtime, principal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._clock import Clock
from .._http import ClientSource, RawResponse, request
from ..errors import ConfigurationError, InvalidToken, ProviderUnavailable
from ._limits import check_limit_settings
from ._upstream import check_expiry, unavailable, utc
from .base import NoJWT, Verified, as_tuple
from .principal import Principal

MAX_API_RESPONSE = 256 * 1024
"""Largest answer read from a provider's API."""


def api_principal(
    *,
    provider: str,
    issuer: str,
    subject: str | None,
    client_id: str | None,
    scopes: Sequence[str],
    expires_at: float | None,
    claims: Mapping[str, Any],
) -> Principal:
    return Principal(
        provider=provider,
        issuer=issuer,
        subject=subject,
        client_id=client_id,
        scopes=frozenset(scopes),
        expires_at=utc(expires_at),
        token_id=None,
        claims=dict(claims),
    )


class ApiProviderBase:
    """What the API-verifier configurations share: routing and cache settings."""

    name: str
    token_prefixes: tuple[str, ...]
    accept_unprefixed: bool = False
    cache_ttl: float
    negative_cache_ttl: float
    max_concurrent_checks: int
    max_checks_per_second: float
    check_token_format: bool = False

    def _set_common(
        self,
        name: str,
        token_prefixes: Sequence[str],
        cache_ttl: float,
        negative_cache_ttl: float,
        limits: tuple[int, float],
    ) -> None:
        if cache_ttl < 0 or negative_cache_ttl < 0:
            raise ConfigurationError("negative_cache_ttl", provider=name)
        self.max_concurrent_checks, self.max_checks_per_second = check_limit_settings(
            *limits, provider=name
        )
        self.name = name
        self.token_prefixes = as_tuple(token_prefixes)
        if any(not prefix for prefix in self.token_prefixes):
            raise ConfigurationError("empty_token_prefix", provider=name)
        self.cache_ttl = cache_ttl
        self.negative_cache_ttl = negative_cache_ttl


class ApiSource(NoJWT):
    """Shared runtime of the API verifiers: routing attributes, HTTP, cache horizon."""

    max_token_bytes = 4096
    cache_marker: object = None

    def __init__(
        self, provider: ApiProviderBase, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        self.name = provider.name
        self.opaque_prefixes = provider.token_prefixes
        self.accepts_unprefixed = provider.accept_unprefixed
        self.negative_cache_ttl = provider.negative_cache_ttl
        self.max_concurrent_checks = provider.max_concurrent_checks
        self.max_checks_per_second = provider.max_checks_per_second
        self._check_format = provider.check_token_format
        self._cache_ttl = provider.cache_ttl
        self._client = client
        self._clock = clock
        self._timeout = timeout

    async def warm_up(self) -> None:
        """Nothing to load ahead of time."""

    async def _call(self, method: str, url: str, **kwargs: Any) -> RawResponse:
        return await request(
            self._client,
            method,
            url,
            timeout=self._timeout,
            max_bytes=MAX_API_RESPONSE,
            provider=self.name,
            **kwargs,
        )

    def _check_expiry(self, expires_at: float | None) -> None:
        # Before a Principal is built: an expiry in year 1 is expired, not a crash.
        check_expiry(expires_at, self._clock(), provider=self.name)

    def _verified(self, principal: Principal, expires_at: float | None) -> Verified:
        now = self._clock()
        check_expiry(expires_at, now, provider=self.name)
        horizon = now + self._cache_ttl
        return Verified(principal, min(horizon, expires_at) if expires_at else horizon)

    def _unavailable(self, response: RawResponse) -> ProviderUnavailable:
        return unavailable(response, self.name, self._clock())

    def _refuse_format(self, expected: str) -> None:
        raise InvalidToken("malformed_token", provider=self.name, detail={"expected": expected})

    def _check_size(self, token: str) -> None:
        if len(token) > self.max_token_bytes:
            raise InvalidToken("token_too_large", provider=self.name)
