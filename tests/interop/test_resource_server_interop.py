"""authbridge against the real OpenID Provider ``oidc-provider`` (npm) on 127.0.0.1.

authbridge does its own discovery and JWKS fetching over real HTTP here: nothing is mocked
between it and the provider. Outbound requests are counted by wrapping the real transport.

Async code (the bridge and its HTTP client) runs in one event loop owned by a blocking portal,
so the test bodies stay synchronous and can drive the provider, sleep and restart it freely.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from authbridge import (
    AuthBridge,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
    ResourceServer,
)

from .op import (
    CC_CLIENT_ID,
    CC_CLIENT_SECRET,
    JWT_RESOURCE,
    OPAQUE_RESOURCE,
    PUBLIC_CLIENT_ID,
    OidcProvider,
    OidcProviderFactory,
    default_config,
    generate_rsa_jwk,
)
from .op import ResourceServer as OpResource
from .support import SkewableClock

pytestmark = pytest.mark.interop

DISCOVERY_PATH = "/.well-known/openid-configuration"
RFC8414_PATH = "/.well-known/oauth-authorization-server"
JWKS_COOLDOWN = 30.0  # RemoteJWKS's default: unknown kids refetch keys at most this often
OTHER_RESOURCE = "https://other.example.test/api"


# -- helpers ------------------------------------------------------------------------------


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real HTTP transport, recording the path of every outbound request."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)

    def count(self, path: str) -> int:
        return self.paths.count(path)


def _segment(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return data


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (to compare with what authbridge returns)."""
    return _segment(token, 1)


def header_of(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS."""
    return _segment(token, 0)


def provider_for(op: OidcProvider, **options: Any) -> OIDCProvider:
    options.setdefault("audience", JWT_RESOURCE)
    options.setdefault("token_type", "strict")
    return OIDCProvider("op", issuer=op.issuer, **options)


def cc_token(op: OidcProvider, scope: str = "items:read", resource: str = JWT_RESOURCE) -> str:
    token: str = op.client_credentials_token(resource, scope)["access_token"]
    return token


def refused(portal: BlockingPortal, server: ResourceServer, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        portal.call(server.verify, token)
    return caught.value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_app(auth: AuthBridge) -> FastAPI:
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items", response_model=Principal)
    async def read_items(
        user: Principal = Security(auth.principal, scopes=["items:read"]),
    ) -> Principal:
        return user

    @app.post("/items")
    async def write_items(
        user: Principal = Security(auth.principal, scopes=["items:write"]),
    ) -> dict[str, str | None]:
        return {"written_by": user.subject}

    return app


# -- 1. discovery + JWKS, client credentials ----------------------------------------------


def test_client_credentials_token_verified_via_discovery_and_jwks(
    oidc_provider: OidcProvider, portal: BlockingPortal
) -> None:
    transport = CountingTransport()
    jwks_path = httpx.URL(oidc_provider.discovery()["jwks_uri"]).path
    bridge = AuthBridge([provider_for(oidc_provider)], transport=transport)
    response = oidc_provider.client_credentials_token(JWT_RESOURCE, "items:read items:write")
    token = response["access_token"]
    exp = claims_of(token)["exp"]

    with portal.wrap_async_context_manager(bridge):
        # The lifespan/context warmed the keys up: one discovery, one JWKS fetch, nothing else.
        assert transport.paths == [DISCOVERY_PATH, jwks_path]
        principal = portal.call(bridge.verify, token)

        assert principal.provider == "op"
        assert principal.issuer == oidc_provider.issuer
        assert principal.subject == CC_CLIENT_ID  # RFC 9068: sub is the client for CC tokens
        assert principal.client_id == CC_CLIENT_ID
        assert principal.scopes == {"items:read", "items:write"}
        assert principal.scopes == set(response["scope"].split())
        assert principal.expires_at == datetime.fromtimestamp(exp, UTC)
        assert principal.token_id == claims_of(token)["jti"]
        assert principal.claims["aud"] == JWT_RESOURCE

        # Many more tokens, each a full verification (distinct bytes, so no cache hit):
        # still one discovery and one JWKS fetch in total.
        for scope in ("items:read", "items:write", "items:read items:write", "items:read"):
            other = portal.call(bridge.verify, cc_token(oidc_provider, scope))
            assert other.scopes == set(scope.split())
        for _ in range(20):
            assert portal.call(bridge.verify, token) == principal

    assert transport.paths == [DISCOVERY_PATH, jwks_path]


# -- 2. authorization code + PKCE (a user token) ------------------------------------------


def test_user_token_from_pkce_login(oidc_provider: OidcProvider, portal: BlockingPortal) -> None:
    response = oidc_provider.authorization_code_pkce_login(
        scope="openid email items:read items:write", resource=JWT_RESOURCE
    )
    access_token, id_token = response["access_token"], response["id_token"]
    server = ResourceServer([provider_for(oidc_provider)])

    with portal.wrap_async_context_manager(server):
        principal = portal.call(server.verify, access_token)
        assert principal.subject == "alice"
        assert principal.client_id == PUBLIC_CLIENT_ID
        assert principal.scopes == {"items:read", "items:write"}  # OIDC scopes stay out
        assert principal.expires_at == datetime.fromtimestamp(claims_of(access_token)["exp"], UTC)

        # The ID token of the same login is not an access token (no typ at+jwt).
        assert header_of(id_token).get("typ") is None
        assert refused(portal, server, id_token).reason == "wrong_token_type"

    # ... but a provider configured for ID tokens accepts it, for the client it was issued to.
    id_server = ResourceServer(
        [provider_for(oidc_provider, audience=PUBLIC_CLIENT_ID, token_type="id_token")]
    )
    with portal.wrap_async_context_manager(id_server):
        user = portal.call(id_server.verify, id_token)
        assert user.subject == "alice"
        assert user.scopes == frozenset()
        assert refused(portal, id_server, access_token).reason == "wrong_token_type"


# -- 3. audience and scopes ---------------------------------------------------------------


def test_tokens_for_other_resources_are_refused(
    oidc_provider_factory: OidcProviderFactory, portal: BlockingPortal
) -> None:
    base = default_config()
    op = oidc_provider_factory(
        resources=(*base.resources, OpResource(OTHER_RESOURCE, "items:read", "jwt")),
    )
    other = cc_token(op, resource=OTHER_RESOURCE)
    opaque = cc_token(op, resource=OPAQUE_RESOURCE)
    assert claims_of(other)["aud"] == OTHER_RESOURCE
    server = ResourceServer([provider_for(op)])

    with portal.wrap_async_context_manager(server):
        assert portal.call(server.verify, cc_token(op)).subject == CC_CLIENT_ID
        error = refused(portal, server, other)
        assert (error.reason, error.claim, error.provider) == ("audience_mismatch", "aud", "op")
        # no provider here accepts opaque tokens: refused without any request
        assert refused(portal, server, opaque).reason == "unknown_token_format"


def test_fastapi_routes_enforce_scopes(oidc_provider: OidcProvider) -> None:
    auth = AuthBridge([provider_for(oidc_provider)])
    app = make_app(auth)
    reader = cc_token(oidc_provider, "items:read")
    writer = cc_token(oidc_provider, "items:read items:write")
    opaque = cc_token(oidc_provider, resource=OPAQUE_RESOURCE)

    with TestClient(app) as client:
        ok = client.get("/items", headers=bearer(reader))
        assert ok.status_code == 200
        body = ok.json()
        assert body["provider"] == "op"
        assert body["issuer"] == oidc_provider.issuer
        assert body["subject"] == CC_CLIENT_ID
        assert body["client_id"] == CC_CLIENT_ID
        assert body["scopes"] == ["items:read"]

        forbidden = client.post("/items", headers=bearer(reader))
        assert forbidden.status_code == 403
        challenge = forbidden.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="items:write"' in challenge

        written = client.post("/items", headers=bearer(writer))
        assert written.status_code == 200
        assert written.json() == {"written_by": CC_CLIENT_ID}

        missing = client.get("/items")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"

        for garbage in ("not-a-jwt", "a.b.c", opaque, reader[:-4] + "AAAA"):
            invalid = client.get("/items", headers=bearer(garbage))
            assert invalid.status_code == 401, garbage
            assert 'error="invalid_token"' in invalid.headers["www-authenticate"]


# -- 4. expiry ----------------------------------------------------------------------------


def test_expired_token_is_refused_and_not_served_from_cache(
    oidc_provider_factory: OidcProviderFactory, portal: BlockingPortal
) -> None:
    op = oidc_provider_factory(access_token_ttl=2)
    server = ResourceServer([provider_for(op, leeway=0)])

    with portal.wrap_async_context_manager(server):
        token = cc_token(op)
        exp = claims_of(token)["exp"]
        assert exp - claims_of(token)["iat"] == 2

        first = portal.call(server.verify, token)
        # The second call is a cache hit: the very same Principal object comes back.
        assert portal.call(server.verify, token) is first

        time.sleep(max(0.0, exp - time.time()) + 0.05)

        error = refused(portal, server, token)
        assert (error.reason, error.claim) == ("expired", "exp")
        # Fresh tokens from the same provider still pass.
        assert portal.call(server.verify, cc_token(op)).subject == CC_CLIENT_ID


# -- 5. key rotation ----------------------------------------------------------------------


def test_key_rotation_refetches_keys_for_a_new_kid(
    oidc_provider_factory: OidcProviderFactory, portal: BlockingPortal
) -> None:
    key_a, key_b = generate_rsa_jwk(), generate_rsa_jwk()
    op = oidc_provider_factory(jwks=(key_a,))
    jwks_path = httpx.URL(op.discovery()["jwks_uri"]).path
    clock, transport = SkewableClock(), CountingTransport()
    server = ResourceServer([provider_for(op)], transport=transport, clock=clock)

    with portal.wrap_async_context_manager(server):
        old = cc_token(op)
        assert header_of(old)["kid"] == key_a["kid"]
        assert portal.call(server.verify, old).subject == CC_CLIENT_ID
        assert transport.paths == [DISCOVERY_PATH, jwks_path]

        op.restart(jwks=[key_b])
        new = cc_token(op)
        assert header_of(new)["kid"] == key_b["kid"]

        # Keys were fetched moments ago: within the refetch cooldown an unknown kid is
        # refused without asking the provider (a storm of bogus kids costs nothing).
        assert refused(portal, server, new).reason == "unknown_key"
        assert transport.count(jwks_path) == 1
        # Until the key set is refreshed, the old token is still good.
        assert portal.call(server.verify, old).subject == CC_CLIENT_ID

        clock.advance(JWKS_COOLDOWN + 1)

        assert portal.call(server.verify, new).subject == CC_CLIENT_ID
        assert transport.paths == [DISCOVERY_PATH, jwks_path, jwks_path]  # no rediscovery
        # Key A is gone from the refreshed set: the old token no longer verifies, and the
        # verified-token cache does not keep it alive (the key set it was verified with is gone).
        assert refused(portal, server, old).reason == "unknown_key"
        assert transport.count(jwks_path) == 2


def test_key_rotation_with_overlap_accepts_old_and_new_tokens(
    oidc_provider_factory: OidcProviderFactory, portal: BlockingPortal
) -> None:
    key_a, key_b = generate_rsa_jwk(), generate_rsa_jwk()
    op = oidc_provider_factory(jwks=(key_a,))
    clock, transport = SkewableClock(), CountingTransport()
    server = ResourceServer([provider_for(op)], transport=transport, clock=clock, cache_size=0)

    with portal.wrap_async_context_manager(server):
        old = cc_token(op)
        assert portal.call(server.verify, old).subject == CC_CLIENT_ID

        # The provider now signs with B and still publishes A for tokens already out there.
        op.restart(jwks=[key_b, key_a])
        new = cc_token(op)
        assert header_of(new)["kid"] == key_b["kid"]
        clock.advance(JWKS_COOLDOWN + 1)

        assert portal.call(server.verify, new).subject == CC_CLIENT_ID
        # cache_size=0: every call below is a full verification against the refreshed set.
        for _ in range(3):
            assert portal.call(server.verify, old).subject == CC_CLIENT_ID
            assert portal.call(server.verify, new).subject == CC_CLIENT_ID
        keyset = server.bound("op").keyset
        assert keyset is not None
        assert keyset.has_kid(key_a["kid"])
        assert keyset.has_kid(key_b["kid"])
        assert transport.count(DISCOVERY_PATH) == 1
        assert len(transport.paths) == 3  # discovery, JWKS, one refetch for kid B


# -- 6. failure modes: wrong issuer, provider down ----------------------------------------


def test_misconfigured_issuer_fails_closed(
    oidc_provider: OidcProvider,
    op_signing_key: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_issuer = oidc_provider.issuer + "/"
    transport = CountingTransport()
    auth = AuthBridge(
        [OIDCProvider("op", issuer=wrong_issuer, audience=JWT_RESOURCE, token_type="strict")],
        transport=transport,
    )
    app = make_app(auth)
    genuine = cc_token(oidc_provider)
    # A token signed with the provider's real key that names the configured issuer: only the
    # discovery document's issuer check stands between it and acceptance.
    claims = {**claims_of(genuine), "iss": wrong_issuer}
    forged = jwt.encode(
        {"alg": "RS256", "typ": "at+jwt", "kid": op_signing_key["kid"]},
        claims,
        RSAKey.import_key(op_signing_key),
    )

    with caplog.at_level(logging.WARNING, logger="authbridge"), TestClient(app) as client:
        assert client.get("/health").status_code == 200  # the app started
        # Discovery was fetched once (OIDC well-known URL: trailing slash stripped) and rejected.
        assert transport.paths == [DISCOVERY_PATH]
        assert "discovery_issuer_mismatch" in caplog.text

        for _ in range(3):
            refused_genuine = client.get("/items", headers=bearer(genuine))
            assert refused_genuine.status_code == 401  # routed nowhere: unknown issuer
            assert 'error="invalid_token"' in refused_genuine.headers["www-authenticate"]

            unavailable = client.get("/items", headers=bearer(forged))
            assert unavailable.status_code == 503
            assert 1 <= int(unavailable.headers["retry-after"]) <= JWKS_COOLDOWN  # time left
            assert unavailable.json() == {"detail": "Authentication temporarily unavailable"}

        # Within the cooldown the broken provider is not asked again.
        assert transport.paths == [DISCOVERY_PATH]


def test_misconfigured_issuer_verify_raises_provider_unavailable(
    oidc_provider: OidcProvider, op_signing_key: dict[str, Any], portal: BlockingPortal
) -> None:
    wrong_issuer = oidc_provider.issuer + "/"
    server = ResourceServer(
        [OIDCProvider("op", issuer=wrong_issuer, audience=JWT_RESOURCE)], clock=SkewableClock()
    )
    genuine = cc_token(oidc_provider)
    forged = jwt.encode(
        {"alg": "RS256", "typ": "at+jwt", "kid": op_signing_key["kid"]},
        {**claims_of(genuine), "iss": wrong_issuer},
        RSAKey.import_key(op_signing_key),
    )

    # No warm-up: the first token routed to the provider triggers discovery itself.
    portal.call(functools.partial(server.start, warm_up=False))
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            portal.call(server.verify, forged)
        assert caught.value.reason == "discovery_issuer_mismatch"
        # Within the cooldown the failure is remembered rather than fetched again.
        with pytest.raises(ProviderUnavailable) as caught:
            portal.call(server.verify, forged)
        assert caught.value.reason == "jwks_recently_failed"
        assert refused(portal, server, genuine).reason == "unknown_issuer"
    finally:
        portal.call(server.aclose)


def test_provider_down_at_start_gives_503_then_recovers(
    oidc_provider_factory: OidcProviderFactory,
) -> None:
    op = oidc_provider_factory()
    token = cc_token(op, "items:read")
    op.stop()
    clock, transport = SkewableClock(), CountingTransport()
    auth = AuthBridge([provider_for(op)], transport=transport, clock=clock)
    app = make_app(auth)

    with TestClient(app) as client:
        assert client.get("/health").status_code == 200  # started despite the provider
        # The start-up attempt: both metadata locations, each refused at connect time.
        assert transport.paths == [DISCOVERY_PATH, RFC8414_PATH]
        attempts = len(transport.paths)

        for _ in range(3):
            response = client.get("/items", headers=bearer(token))
            assert response.status_code == 503
            assert 1 <= int(response.headers["retry-after"]) <= JWKS_COOLDOWN  # time left
        assert len(transport.paths) == attempts  # a dead provider is not hammered
        # Garbage is still a plain 401: no provider is needed to refuse it.
        assert client.get("/items", headers=bearer("a.b.c")).status_code == 401

        op.restart()  # same port, issuer and key
        clock.advance(JWKS_COOLDOWN + 1)

        recovered = client.get("/items", headers=bearer(token))
        assert recovered.status_code == 200
        assert recovered.json()["subject"] == CC_CLIENT_ID
        assert transport.paths[attempts:] == [
            DISCOVERY_PATH,
            httpx.URL(op.discovery()["jwks_uri"]).path,
        ]


# -- verify_active: revocation of JWT access tokens ---------------------------------------------

INTROSPECTION_PATH = "/token/introspection"


def test_verify_active_fails_closed_for_jwts_oidc_provider_cannot_introspect(
    oidc_provider: OidcProvider, portal: BlockingPortal
) -> None:
    """oidc-provider can neither introspect nor revoke its JWT access tokens (400
    ``unsupported_token_type`` at both endpoints): revocation is unknowable, so
    ``verify_active`` refuses them while ``verify`` accepts them until ``exp``."""
    token = cc_token(oidc_provider)
    assert oidc_provider.revoke(token).json()["error"] == "unsupported_token_type"
    transport = CountingTransport()
    introspection = Introspection(client_id=CC_CLIENT_ID, client_secret=CC_CLIENT_SECRET)
    server = ResourceServer(
        [provider_for(oidc_provider, introspection=introspection)], transport=transport
    )
    with portal.wrap_async_context_manager(server):
        assert portal.call(server.verify, token).subject == CC_CLIENT_ID
        for _ in range(3):
            with pytest.raises(InvalidToken) as caught:
                portal.call(server.verify_active, token)
            assert caught.value.reason == "revocation_check_unavailable"
            assert caught.value.detail == {"introspection_error": "unsupported_token_type"}
        assert portal.call(server.verify, token).subject == CC_CLIENT_ID
    assert transport.count(INTROSPECTION_PATH) == 1  # the refusal is remembered briefly


def test_verify_active_without_introspection_fails_closed_without_asking(
    oidc_provider: OidcProvider, portal: BlockingPortal
) -> None:
    token = cc_token(oidc_provider)
    transport = CountingTransport()
    server = ResourceServer([provider_for(oidc_provider)], transport=transport)
    with portal.wrap_async_context_manager(server), pytest.raises(InvalidToken) as caught:
        portal.call(server.verify_active, token)
    assert (caught.value.reason, caught.value.provider) == ("revocation_check_unavailable", "op")
    assert transport.count(INTROSPECTION_PATH) == 0


def test_verify_active_sees_a_revoked_opaque_token_within_cache_ttl(
    oidc_provider: OidcProvider, portal: BlockingPortal
) -> None:
    """Opaque tokens are checked online by ``verify`` already; ``verify_active`` is the same."""
    clock, transport = SkewableClock(), CountingTransport()
    introspection = Introspection(
        client_id=CC_CLIENT_ID, client_secret=CC_CLIENT_SECRET, cache_ttl=20.0
    )
    provider = provider_for(oidc_provider, audience=OPAQUE_RESOURCE, introspection=introspection)
    server = ResourceServer([provider], transport=transport, clock=clock)
    token = cc_token(oidc_provider, resource=OPAQUE_RESOURCE)
    with portal.wrap_async_context_manager(server):
        assert portal.call(server.verify_active, token).client_id == CC_CLIENT_ID
        assert oidc_provider.revoke(token).status_code == 200
        clock.advance(19)
        assert portal.call(server.verify_active, token).client_id == CC_CLIENT_ID
        assert transport.count(INTROSPECTION_PATH) == 1
        clock.advance(1)
        with pytest.raises(InvalidToken) as caught:
            portal.call(server.verify_active, token)
    assert caught.value.reason == "inactive"
    assert transport.count(INTROSPECTION_PATH) == 2
