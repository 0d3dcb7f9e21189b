"""Key rotation and JWKS outages against the real OpenID Provider ``oidc-provider``.

authbridge fetches discovery and keys over real HTTP from the provider. The JWKS answer is
slowed down (the request waits real time before it is sent), so that many verifications are in
flight while it is fetched: a rotation must cost one fetch and refuse nobody. The provider is
then stopped to check that a new ``kid`` during an outage is a 503, never a 401.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from anyio.from_thread import BlockingPortal

from authbridge import (
    AuthBridgeError,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
    ResourceServer,
)

from .op import CC_CLIENT_ID, JWT_RESOURCE, OidcProvider, OidcProviderFactory, generate_rsa_jwk
from .support import SkewableClock

pytestmark = pytest.mark.interop

COOLDOWN = 30.0  # jwks_cooldown's default
JWKS_DELAY = 1.0  # real seconds each JWKS request waits before it is sent


class SlowJWKSTransport(httpx.AsyncHTTPTransport):
    """The real transport; JWKS requests wait ``JWKS_DELAY`` first. Records every path."""

    def __init__(self, jwks_path: str) -> None:
        super().__init__()
        self.jwks_path = jwks_path
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path == self.jwks_path:
            await asyncio.sleep(JWKS_DELAY)
        return await super().handle_async_request(request)

    def jwks_fetches(self) -> int:
        return self.paths.count(self.jwks_path)


def _provider(op: OidcProvider) -> OIDCProvider:
    return OIDCProvider("op", issuer=op.issuer, audience=JWT_RESOURCE, token_type="strict")


def _token(op: OidcProvider) -> str:
    token: str = op.client_credentials_token(JWT_RESOURCE, "items:read")["access_token"]
    return token


async def _outcome(server: ResourceServer, token: str) -> Principal | AuthBridgeError:
    try:
        return await server.verify(token)
    except AuthBridgeError as exc:
        return exc


def test_rotation_burst_one_fetch_nobody_refused(
    oidc_provider_factory: OidcProviderFactory, portal: BlockingPortal
) -> None:
    key_a, key_b = generate_rsa_jwk(), generate_rsa_jwk()
    op = oidc_provider_factory(jwks=(key_a,))
    transport = SlowJWKSTransport(httpx.URL(op.discovery()["jwks_uri"]).path)
    clock = SkewableClock()
    server = ResourceServer([_provider(op)], transport=transport, clock=clock)

    with portal.wrap_async_context_manager(server):
        assert transport.jwks_fetches() == 1
        op.restart(jwks=[key_b])  # the provider now signs with B only
        tokens = [_token(op) for _ in range(40)]
        clock.advance(COOLDOWN + 1)  # past the start-up fetch's cooldown

        async def burst() -> list[Principal | AuthBridgeError]:
            first = asyncio.create_task(_outcome(server, tokens[0]))
            deadline = time.monotonic() + 30
            while transport.jwks_fetches() == 1:  # until the refetch is in flight
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            rest = [asyncio.create_task(_outcome(server, t)) for t in tokens[1:]]
            assert not first.done()
            return [await first, *await asyncio.gather(*rest)]

        results = portal.call(burst)
        assert all(isinstance(r, Principal) for r in results), results[:3]
        assert {r.subject for r in results if isinstance(r, Principal)} == {CC_CLIENT_ID}
        assert transport.jwks_fetches() == 2  # exactly one fetch for the rotation


def test_new_kid_during_an_outage_is_503_then_recovers_within_one_cooldown(
    oidc_provider_factory: OidcProviderFactory, portal: BlockingPortal
) -> None:
    key_a, key_b = generate_rsa_jwk(), generate_rsa_jwk()
    op = oidc_provider_factory(jwks=(key_a,))
    clock = SkewableClock()
    server = ResourceServer([_provider(op)], clock=clock)

    with portal.wrap_async_context_manager(server):
        old = _token(op)
        assert isinstance(portal.call(_outcome, server, old), Principal)
        op.restart(jwks=[key_b])
        new = _token(op)
        op.stop()  # the provider goes down
        clock.advance(COOLDOWN + 1)

        # A kid we cannot look up while the JWKS endpoint fails may be genuine: 503.
        first = portal.call(_outcome, server, new)
        assert isinstance(first, ProviderUnavailable), first
        assert first.retry_after == COOLDOWN
        again = portal.call(_outcome, server, new)
        assert isinstance(again, ProviderUnavailable)
        assert again.reason == "jwks_recently_failed"
        assert again.retry_after is not None
        assert 1 <= again.retry_after <= COOLDOWN
        # Keys already held keep working meanwhile.
        assert isinstance(portal.call(_outcome, server, old), Principal)

        op.restart(jwks=[key_b])  # back, same port and issuer
        clock.advance(COOLDOWN)  # one cooldown after the last failed attempt
        assert isinstance(portal.call(_outcome, server, new), Principal)
        # Key A is gone from the refreshed set: its token is now refused as invalid.
        refused = portal.call(_outcome, server, old)
        assert isinstance(refused, InvalidToken)
        assert refused.reason == "unknown_key"
