"""authbridge's RFC 7662 introspection against the real OpenID Provider ``oidc-provider``.

The resource server authenticates as the confidential ``cc-client`` and finds the
introspection endpoint through discovery; nothing is mocked between it and the provider.
Outbound requests are counted by wrapping the real transport.

What oidc-provider 9.x answers (``POST /token/introspection``), as pinned down below:

* an active opaque access token: ``active``, ``client_id``, ``exp``, ``iat``, ``iss``, ``aud``
  (a single string: the resource indicator), ``scope`` and ``token_type: "Bearer"``, plus
  ``sub`` for user tokens; no ``sub`` for client-credentials tokens, no ``jti``, no
  ``username``; ``Cache-Control: no-store``;
* a revoked or expired token: exactly ``{"active": false}``;
* a refresh token: active, with ``sub``, ``client_id``, ``exp``, ``iat``, ``iss`` and
  ``scope``, but neither ``aud`` nor ``token_type`` (``token_type_hint=access_token`` does
  not stop it from finding the refresh token);
* a JWT access token: 400 ``unsupported_token_type``;
* wrong client credentials: 401 ``invalid_client``. Basic credentials are form-urldecoded
  (RFC 6749 §2.3.1), so a secret with reserved characters only works when encoded.

Async code runs in one event loop owned by a blocking portal, so test bodies stay
synchronous and can drive the provider freely.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient

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
    default_clients,
)
from .op import ResourceServer as OpResource
from .support import SkewableClock

pytestmark = pytest.mark.interop

DISCOVERY_PATH = "/.well-known/openid-configuration"
INTROSPECTION_PATH = "/token/introspection"  # what oidc-provider's discovery advertises
CACHE_TTL = 30.0
OTHER_OPAQUE_RESOURCE = "https://other.example.test/opaque"
RS_CLIENT_ID = "orders-api"
# Reserved characters (VSCHAR only: oidc-provider refuses other secrets at registration).
RS_CLIENT_SECRET = "p%25:s w+rd/?&=~-0123456789"


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real HTTP transport, recording method and path of every outbound request."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        return await super().handle_async_request(request)

    @property
    def introspections(self) -> int:
        return self.requests.count(("POST", INTROSPECTION_PATH))

    @property
    def paths(self) -> list[str]:
        return [path for _, path in self.requests]


def provider_for(
    op: OidcProvider,
    *,
    audience: str | tuple[str, ...] = OPAQUE_RESOURCE,
    leeway: float = 30.0,
    client_id: str = CC_CLIENT_ID,
    client_secret: str = CC_CLIENT_SECRET,
    **introspection: Any,
) -> OIDCProvider:
    introspection.setdefault("cache_ttl", CACHE_TTL)
    return OIDCProvider(
        "op",
        issuer=op.issuer,
        audience=audience,
        leeway=leeway,
        introspection=Introspection(
            client_id=client_id, client_secret=client_secret, endpoint=None, **introspection
        ),
    )


def opaque_token(op: OidcProvider, scope: str = "items:read items:write") -> str:
    token: str = op.client_credentials_token(OPAQUE_RESOURCE, scope)["access_token"]
    assert token.count(".") == 0
    return token


def refused(portal: BlockingPortal, server: ResourceServer, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        portal.call(server.verify, token)
    return caught.value


def started(portal: BlockingPortal, server: ResourceServer, mode: str) -> None:
    """``cold``: nothing loaded ahead; ``jwks-loaded``: warmed up as AuthBridge's lifespan does."""
    portal.call(functools.partial(server.start, warm_up=mode == "jwks-loaded"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- accepted tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_opaque_token_is_accepted(
    oidc_provider: OidcProvider, portal: BlockingPortal, auth_method: Any
) -> None:
    transport = CountingTransport()
    jwks_path = httpx.URL(oidc_provider.discovery()["jwks_uri"]).path
    assert httpx.URL(oidc_provider.discovery()["introspection_endpoint"]).path == (
        INTROSPECTION_PATH
    )
    server = ResourceServer(
        [provider_for(oidc_provider, auth_method=auth_method)], transport=transport
    )
    token = opaque_token(oidc_provider)
    answer = oidc_provider.introspect(token)  # what the provider says, for comparison

    with portal.wrap_async_context_manager(server):
        principal = portal.call(server.verify, token)

    assert principal.provider == "op"
    assert principal.issuer == oidc_provider.issuer
    # Unlike its JWT access tokens (sub = client id), oidc-provider sends no sub here.
    assert principal.subject is None
    assert principal.client_id == CC_CLIENT_ID
    assert principal.scopes == {"items:read", "items:write"}
    assert principal.expires_at == datetime.fromtimestamp(answer["exp"], UTC)
    assert principal.token_id is None
    assert principal.claims == answer
    assert answer == {
        "active": True,
        "client_id": CC_CLIENT_ID,
        "exp": answer["exp"],
        "iat": answer["iat"],
        "iss": oidc_provider.issuer,
        "aud": OPAQUE_RESOURCE,
        "scope": "items:read items:write",
        "token_type": "Bearer",
    }
    # Discovery once (it names the introspection endpoint), keys at start-up, one POST.
    assert transport.requests == [
        ("GET", DISCOVERY_PATH),
        ("GET", jwks_path),
        ("POST", INTROSPECTION_PATH),
    ]


def test_opaque_user_token_from_pkce_login_is_accepted(
    oidc_provider: OidcProvider, portal: BlockingPortal
) -> None:
    response = oidc_provider.authorization_code_pkce_login(
        scope="openid email items:read", resource=OPAQUE_RESOURCE
    )
    token = response["access_token"]
    assert token.count(".") == 0
    server = ResourceServer([provider_for(oidc_provider)])

    with portal.wrap_async_context_manager(server):
        principal = portal.call(server.verify, token)

    assert principal.subject == "alice"
    assert principal.client_id == PUBLIC_CLIENT_ID
    assert principal.scopes == {"items:read"}  # OIDC scopes stay out of the resource's token
    assert principal.claims["aud"] == OPAQUE_RESOURCE
    assert principal.claims["token_type"] == "Bearer"


def test_jwt_access_token_of_the_same_provider_is_not_introspected(
    oidc_provider: OidcProvider, portal: BlockingPortal
) -> None:
    transport = CountingTransport()
    provider = provider_for(oidc_provider, audience=(OPAQUE_RESOURCE, JWT_RESOURCE))
    server = ResourceServer([provider], transport=transport)
    jwt_token = oidc_provider.client_credentials_token(JWT_RESOURCE, "items:read")["access_token"]
    assert jwt_token.count(".") == 2

    with portal.wrap_async_context_manager(server):
        for _ in range(3):
            principal = portal.call(server.verify, jwt_token)
            assert principal.subject == CC_CLIENT_ID
            assert principal.claims["aud"] == JWT_RESOURCE
        assert transport.introspections == 0  # verified with the JWKS alone
        jwks_fetches = transport.paths.count(httpx.URL(oidc_provider.discovery()["jwks_uri"]).path)
        assert jwks_fetches == 1

        assert portal.call(server.verify, opaque_token(oidc_provider)).client_id == CC_CLIENT_ID
        assert transport.introspections == 1


# -- revocation, expiry ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["cold", "jwks-loaded"])
def test_revoked_token_is_served_from_cache_until_the_entry_expires(
    oidc_provider: OidcProvider, portal: BlockingPortal, mode: str
) -> None:
    """Documented behaviour: a revocation is seen at the latest ``cache_ttl`` seconds later.

    ``jwks-loaded`` is the state every AuthBridge app is in after its lifespan started.
    """
    clock, transport = SkewableClock(), CountingTransport()
    server = ResourceServer([provider_for(oidc_provider)], transport=transport, clock=clock)
    token = opaque_token(oidc_provider)
    started(portal, server, mode)
    try:
        first = portal.call(server.verify, token)
        assert transport.introspections == 1

        assert oidc_provider.revoke(token).status_code == 200
        assert oidc_provider.introspect(token) == {"active": False}

        clock.advance(CACHE_TTL - 1)
        assert portal.call(server.verify, token) is first  # still served from the cache
        assert transport.introspections == 1

        clock.advance(1)
        assert refused(portal, server, token).reason == "inactive"
        assert transport.introspections == 2
        # The refusal itself is remembered for negative_cache_ttl (5 s by default).
        assert refused(portal, server, token).reason == "inactive"
        assert transport.introspections == 2
    finally:
        portal.call(server.aclose)


def test_revoked_token_is_refused_once_the_cache_entry_expired(
    oidc_provider: OidcProvider, portal: BlockingPortal
) -> None:
    clock, transport = SkewableClock(), CountingTransport()
    server = ResourceServer([provider_for(oidc_provider)], transport=transport, clock=clock)
    token = opaque_token(oidc_provider)

    with portal.wrap_async_context_manager(server):
        assert portal.call(server.verify, token).client_id == CC_CLIENT_ID
        assert oidc_provider.revoke(token).status_code == 200
        clock.advance(CACHE_TTL)
        error = refused(portal, server, token)

    assert (error.reason, error.provider) == ("inactive", "op")
    assert transport.introspections == 2


def test_expired_token_is_refused(
    oidc_provider_factory: OidcProviderFactory, portal: BlockingPortal
) -> None:
    # 3 s: room for a loaded machine between minting and the first check.
    op = oidc_provider_factory(access_token_ttl=3)
    transport = CountingTransport()
    server = ResourceServer([provider_for(op, leeway=0)], transport=transport)
    token = opaque_token(op)

    with portal.wrap_async_context_manager(server):
        principal = portal.call(server.verify, token)
        assert principal.expires_at is not None
        exp = principal.expires_at.timestamp()
        # The cache entry ends at exp (shorter than cache_ttl), then the provider is asked.
        time.sleep(max(0.0, exp + 1.05 - time.time()))
        error = refused(portal, server, token)

    assert error.reason == "inactive"  # oidc-provider answers {"active": false}
    assert transport.introspections == 2


def test_expiry_is_checked_even_while_the_provider_says_active(
    oidc_provider: OidcProvider, portal: BlockingPortal
) -> None:
    """Our clock ahead of the provider's: its ``active: true`` is not enough past ``exp``."""
    clock = SkewableClock()
    server = ResourceServer([provider_for(oidc_provider, leeway=0)], clock=clock)
    token = opaque_token(oidc_provider)
    exp = oidc_provider.introspect(token)["exp"]

    with portal.wrap_async_context_manager(server):
        clock.advance(exp - time.time() + 1)
        error = refused(portal, server, token)

    assert (error.reason, error.claim) == ("expired", "exp")
    assert oidc_provider.introspect(token)["active"] is True


# -- tokens of other kinds or for other resources -------------------------------------------


def test_refresh_token_is_not_accepted_as_an_access_token(
    oidc_provider: OidcProvider, portal: BlockingPortal
) -> None:
    """SECURITY-CASES §2/§5: a refresh token presented as a bearer token must be refused.

    oidc-provider's introspection of a refresh token is ``active`` but carries neither
    ``aud`` nor ``token_type``: with an audience configured, the missing ``aud`` refuses
    it. Every other policy is covered in ``test_token_kinds_interop.py``.
    """
    response = oidc_provider.authorization_code_pkce_login(
        scope="openid offline_access items:read",
        resource=OPAQUE_RESOURCE,
        extra_params={"prompt": "consent"},
    )
    refresh_token = response["refresh_token"]
    answer = oidc_provider.introspect(refresh_token, token_type_hint="access_token")
    assert answer["active"] is True
    assert "aud" not in answer
    assert "token_type" not in answer
    server = ResourceServer([provider_for(oidc_provider)])

    with portal.wrap_async_context_manager(server):
        result: Principal | InvalidToken
        try:
            result = portal.call(server.verify, refresh_token)
        except InvalidToken as exc:
            result = exc

    assert isinstance(result, InvalidToken), (
        f"refresh token accepted as an access token: {result!r}; introspection said {answer}"
    )


def test_tokens_for_another_resource_and_encoded_client_credentials(
    oidc_provider_factory: OidcProviderFactory, portal: BlockingPortal
) -> None:
    """A resource server client whose secret has reserved characters; a foreign audience."""
    base_clients = default_clients()
    rs_client = {
        **base_clients[0],
        "client_id": RS_CLIENT_ID,
        "client_secret": RS_CLIENT_SECRET,
        "grant_types": ["client_credentials"],
    }
    op = oidc_provider_factory(
        clients=(*base_clients, rs_client),
        resources=(
            OpResource(OPAQUE_RESOURCE, "items:read", "opaque"),
            OpResource(OTHER_OPAQUE_RESOURCE, "items:read", "opaque"),
        ),
    )
    ours = opaque_token(op, "items:read")
    foreign = op.client_credentials_token(OTHER_OPAQUE_RESOURCE, "items:read")["access_token"]
    assert op.introspect(foreign)["aud"] == OTHER_OPAQUE_RESOURCE

    for auth_method in ("client_secret_basic", "client_secret_post"):
        provider = provider_for(
            op, client_id=RS_CLIENT_ID, client_secret=RS_CLIENT_SECRET, auth_method=auth_method
        )
        server = ResourceServer([provider])
        with portal.wrap_async_context_manager(server):
            assert portal.call(server.verify, ours).client_id == CC_CLIENT_ID
            error = refused(portal, server, foreign)
        assert (error.reason, error.claim) == ("audience_mismatch", "aud")


# -- fail closed ----------------------------------------------------------------------------


def test_refused_credentials_fail_closed_without_leaking(
    oidc_provider: OidcProvider, portal: BlockingPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_secret = "not-the-secret-" + CC_CLIENT_SECRET
    token = opaque_token(oidc_provider)
    server = ResourceServer([provider_for(oidc_provider, client_secret=wrong_secret)])

    with portal.wrap_async_context_manager(server):
        with pytest.raises(ProviderUnavailable) as caught:
            portal.call(server.verify, token)
        with pytest.raises(ProviderUnavailable):  # not cached: asked (and refused) again
            portal.call(server.verify, token)

    assert caught.value.reason == "introspection_refused_our_credentials"
    for text in (str(caught.value), repr(caught.value), caplog.text):
        assert token not in text
        assert wrong_secret not in text


def make_app(auth: AuthBridge) -> FastAPI:
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/items")
    async def read_items(
        user: Principal = Security(auth.principal, scopes=["items:read"]),
    ) -> dict[str, Any]:
        return {"subject": user.subject, "client_id": user.client_id, "scopes": sorted(user.scopes)}

    @app.post("/items")
    async def write_items(
        user: Principal = Security(auth.principal, scopes=["items:write"]),
    ) -> dict[str, str | None]:
        return {"written_by": user.client_id}

    return app


def test_fastapi_route_200_then_401_after_revocation_and_cache_expiry(
    oidc_provider: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock, transport = SkewableClock(), CountingTransport()
    auth = AuthBridge([provider_for(oidc_provider)], transport=transport, clock=clock)
    token = opaque_token(oidc_provider, "items:read")

    with TestClient(make_app(auth)) as client:
        ok = client.get("/items", headers=bearer(token))
        assert ok.status_code == 200
        assert ok.json() == {"subject": None, "client_id": CC_CLIENT_ID, "scopes": ["items:read"]}
        forbidden = client.post("/items", headers=bearer(token))
        assert forbidden.status_code == 403
        assert 'scope="items:write"' in forbidden.headers["www-authenticate"]

        assert transport.introspections == 1

        assert oidc_provider.revoke(token).status_code == 200
        clock.advance(CACHE_TTL - 1)
        still_cached = client.get("/items", headers=bearer(token))
        assert still_cached.status_code == 200  # documented: up to cache_ttl after revocation
        assert transport.introspections == 1

        clock.advance(1)
        revoked = client.get("/items", headers=bearer(token))
        assert revoked.status_code == 401
        assert 'error="invalid_token"' in revoked.headers["www-authenticate"]
        assert revoked.json() == {"detail": "Invalid or expired access token"}
        assert token not in revoked.text

    assert transport.introspections == 2
    assert token not in caplog.text
    assert CC_CLIENT_SECRET not in caplog.text


def test_fastapi_wrong_credentials_are_503(oidc_provider: OidcProvider) -> None:
    auth = AuthBridge([provider_for(oidc_provider, client_secret="wrong-secret-0123456789")])
    token = opaque_token(oidc_provider, "items:read")

    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer(token))

    assert response.status_code == 503
    assert response.json() == {"detail": "Authentication temporarily unavailable"}
    assert token not in response.text
