"""Any provider's opaque tokens checked at its OpenID Connect userinfo endpoint."""

from __future__ import annotations

from collections.abc import Sequence

from .._clock import Clock
from .._http import ClientSource
from ..errors import InvalidToken, ProviderUnavailable
from ..metadata import MetadataCache, check_issuer_url
from ..resource._api import ApiProviderBase, ApiSource, api_principal
from ..resource._upstream import (
    rate_limited,
    subject,
)
from ..resource.base import Verified


class UserinfoProvider(ApiProviderBase):
    """Any OpenID provider's access tokens, checked by calling its userinfo endpoint.

    The last resort for opaque tokens of a provider without introspection. Note
    what it cannot check: userinfo answers for tokens issued to *any* client of
    that provider, and reports no scopes or expiry. Prefer JWT validation or
    introspection when the provider offers them.

    Args:
        name: Provider name in the [Principal][authbridge.Principal].
        issuer: The provider's issuer (its userinfo endpoint is discovered).
        userinfo_endpoint: Use this endpoint instead of discovery.
        token_prefixes: Prefixes of tokens routed here.
        accept_unprefixed: Whether opaque tokens without a known prefix may be
            sent here (only the first such provider gets them); by default only
            when no ``token_prefixes`` are declared.
        cache_ttl: Longest reuse of a positive answer, in seconds.
        negative_cache_ttl: How long a refused token is remembered.
        max_concurrent_checks: Most userinfo calls in flight at once.
        max_checks_per_second: Most userinfo calls started per second. A token
            needing a call beyond either bound is refused at once with a 503
            (see [ResourceServer][authbridge.ResourceServer]). OpenID Connect
            defines no token format: these bounds are what limits a flood.
    """

    def __init__(
        self,
        name: str,
        issuer: str,
        *,
        userinfo_endpoint: str | None = None,
        token_prefixes: Sequence[str] = (),
        accept_unprefixed: bool | None = None,
        cache_ttl: float = 60.0,
        negative_cache_ttl: float = 5.0,
        max_concurrent_checks: int = 16,
        max_checks_per_second: float = 100.0,
    ) -> None:
        check_issuer_url(issuer, provider=name)
        limits = (max_concurrent_checks, max_checks_per_second)
        self._set_common(name, token_prefixes, cache_ttl, negative_cache_ttl, limits)
        self.issuer = issuer
        self.userinfo_endpoint = userinfo_endpoint
        self.accept_unprefixed = (
            not self.token_prefixes if accept_unprefixed is None else accept_unprefixed
        )

    def __repr__(self) -> str:
        return f"UserinfoProvider({self.name!r}, issuer={self.issuer!r})"

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float) -> _UserinfoSource:
        """Create the runtime for one app."""
        return _UserinfoSource(self, client, clock, timeout=timeout)


class _UserinfoSource(ApiSource):
    def __init__(
        self, provider: UserinfoProvider, client: ClientSource, clock: Clock, *, timeout: float
    ) -> None:
        super().__init__(provider, client, clock, timeout=timeout)
        self._provider = provider
        self._metadata = MetadataCache(
            client, provider.issuer, clock=clock, label=provider.name, timeout=timeout
        )

    async def warm_up(self) -> None:
        """Discover the userinfo endpoint ahead of the first request."""
        await self._endpoint()

    async def _endpoint(self) -> str:
        provider = self._provider
        if provider.userinfo_endpoint:
            return provider.userinfo_endpoint
        endpoint = (await self._metadata.get()).userinfo_endpoint
        if endpoint is None:
            raise ProviderUnavailable("metadata_without_userinfo_endpoint", provider=self.name)
        return endpoint

    async def verify_opaque(self, token: str) -> Verified:
        self._check_size(token)
        response = await self._call(
            "GET", await self._endpoint(), headers={"Authorization": f"Bearer {token}"}
        )
        if response.status == 401 or (response.status == 403 and not rate_limited(response)):
            # 403: e.g. insufficient_scope (a token without `openid`): not for us.
            raise InvalidToken("rejected_by_provider", provider=self.name)
        if response.status != 200:
            raise self._unavailable(response)
        claims = response.json_object(provider=self.name)
        sub = subject(claims.get("sub"))
        if sub is None:
            raise ProviderUnavailable("userinfo_without_sub", provider=self.name)
        principal = api_principal(
            provider=self.name,
            issuer=self._provider.issuer,
            subject=sub,
            client_id=None,
            scopes=(),
            expires_at=None,
            claims=claims,
        )
        return self._verified(principal, None)
