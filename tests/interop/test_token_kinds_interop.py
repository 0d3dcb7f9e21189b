"""Access, refresh and ID tokens of the real ``oidc-provider``, under every policy.

SECURITY-CASES §2/§5: only an access token for this API is accepted, whatever the
audience/``client_ids`` configuration. oidc-provider 9.x introspects a refresh token
as ``active`` with ``client_id`` and ``scope`` but neither ``aud`` nor
``token_type``, so ``client_id`` alone must not count as evidence. Its ID tokens are
JWTs whose ``aud`` is the client (routed to JWT validation by their ``iss``).

Also: a resource whose audience is configured as one space-separated string makes
oidc-provider send exactly that, in JWTs and in introspection answers
(``space_separated_aud``).
"""

from __future__ import annotations

from typing import Any

import pytest
from anyio.from_thread import BlockingPortal

from authbridge import AuthBridgeError, Introspection, InvalidToken, OIDCProvider, Principal
from authbridge import ResourceServer as Bridge

from .op import (
    CC_CLIENT_ID,
    CC_CLIENT_SECRET,
    JWT_RESOURCE,
    OPAQUE_RESOURCE,
    PUBLIC_CLIENT_ID,
    OidcProvider,
    OidcProviderFactory,
    ResourceServer,
)

pytestmark = pytest.mark.interop

POLICIES: dict[str, dict[str, Any]] = {
    "audience": {"audience": [JWT_RESOURCE, OPAQUE_RESOURCE]},
    "client_ids": {"client_ids": [PUBLIC_CLIENT_ID, CC_CLIENT_ID]},
    "both": {"audience": [JWT_RESOURCE, OPAQUE_RESOURCE], "client_ids": [PUBLIC_CLIENT_ID]},
}


def provider_for(op: OidcProvider, **policy: Any) -> OIDCProvider:
    return OIDCProvider(
        "op",
        issuer=op.issuer,
        introspection=Introspection(client_id=CC_CLIENT_ID, client_secret=CC_CLIENT_SECRET),
        **policy,
    )


def outcome(portal: BlockingPortal, server: Bridge, token: str) -> Principal | AuthBridgeError:
    try:
        return portal.call(server.verify, token)
    except AuthBridgeError as exc:
        return exc


@pytest.fixture(scope="module")
def tokens(oidc_provider: OidcProvider) -> dict[str, str]:
    """One user's tokens from two logins (JWT and opaque resource), with refresh tokens."""
    found: dict[str, str] = {}
    for kind, resource in (("jwt", JWT_RESOURCE), ("opaque", OPAQUE_RESOURCE)):
        response = oidc_provider.authorization_code_pkce_login(
            scope="openid offline_access items:read",
            resource=resource,
            extra_params={"prompt": "consent"},
        )
        found[f"{kind}-access"] = response["access_token"]
        found[f"{kind}-refresh"] = response["refresh_token"]
        found[f"{kind}-id"] = response["id_token"]
    assert found["jwt-access"].count(".") == 2
    assert found["opaque-access"].count(".") == 0
    assert found["opaque-refresh"].count(".") == 0
    return found


def test_what_oidc_provider_says_about_each_kind(
    oidc_provider: OidcProvider, tokens: dict[str, str]
) -> None:
    """The premises of the rule, pinned down against this provider version."""
    access = oidc_provider.introspect(tokens["opaque-access"])
    assert (access["active"], access["token_type"], access["aud"]) == (
        True,
        "Bearer",
        OPAQUE_RESOURCE,
    )
    for name in ("opaque-refresh", "jwt-refresh"):
        refresh = oidc_provider.introspect(tokens[name], token_type_hint="access_token")
        assert refresh["active"] is True
        assert refresh["client_id"] == PUBLIC_CLIENT_ID
        assert "aud" not in refresh
        assert "token_type" not in refresh


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_access_tokens_accepted_refresh_and_id_tokens_refused(
    oidc_provider: OidcProvider, portal: BlockingPortal, tokens: dict[str, str], policy: str
) -> None:
    server = Bridge([provider_for(oidc_provider, **POLICIES[policy])])
    with portal.wrap_async_context_manager(server):
        results = {name: outcome(portal, server, token) for name, token in tokens.items()}

    for name in ("jwt-access", "opaque-access"):
        principal = results[name]
        assert isinstance(principal, Principal), f"{name} refused under {policy}: {principal!r}"
        assert principal.subject == "alice"
        assert principal.client_id == PUBLIC_CLIENT_ID
        assert principal.scopes == {"items:read"}
    for name in ("jwt-refresh", "opaque-refresh", "jwt-id", "opaque-id"):
        refusal = results[name]
        assert isinstance(refusal, InvalidToken), f"{name} accepted under {policy}"
        assert refusal.reason in {
            "missing_claim",  # a refresh token has no aud for the configured audience
            "not_an_access_token",  # ... nor any other evidence of an access token
            "audience_mismatch",  # an ID token's aud is the client
            "client_mismatch",  # an ID token names no client_id
            "wrong_token_type",
        }


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_client_credentials_tokens_under_every_policy(
    oidc_provider: OidcProvider, portal: BlockingPortal, policy: str
) -> None:
    options = dict(POLICIES[policy])
    if "client_ids" in options:
        options["client_ids"] = [CC_CLIENT_ID]
    server = Bridge([provider_for(oidc_provider, **options)])
    jwt = oidc_provider.client_credentials_token(JWT_RESOURCE)["access_token"]
    opaque = oidc_provider.client_credentials_token(OPAQUE_RESOURCE)["access_token"]
    with portal.wrap_async_context_manager(server):
        assert portal.call(server.verify, jwt).client_id == CC_CLIENT_ID
        assert portal.call(server.verify, opaque).client_id == CC_CLIENT_ID


def test_client_ids_only_refusal_names_the_missing_evidence(
    oidc_provider: OidcProvider, portal: BlockingPortal, tokens: dict[str, str]
) -> None:
    server = Bridge([provider_for(oidc_provider, client_ids=[PUBLIC_CLIENT_ID])])
    with portal.wrap_async_context_manager(server):
        refresh = outcome(portal, server, tokens["opaque-refresh"])
        id_token = outcome(portal, server, tokens["jwt-id"])
    assert isinstance(refresh, InvalidToken)
    assert refresh.reason == "not_an_access_token"
    assert isinstance(id_token, InvalidToken)
    assert id_token.reason == "client_mismatch"  # aud names the client, no client_id claim


# -- aud as one space-separated string -----------------------------------------------------------

SPACED = f"{JWT_RESOURCE} https://other.example.test"
SPACED_OPAQUE = f"{OPAQUE_RESOURCE} https://other.example.test"


def test_space_separated_aud_string_from_a_real_server(
    oidc_provider_factory: OidcProviderFactory, portal: BlockingPortal
) -> None:
    op = oidc_provider_factory(
        resources=(
            ResourceServer(JWT_RESOURCE, "items:read", "jwt", audience=SPACED),
            ResourceServer(OPAQUE_RESOURCE, "items:read", "opaque", audience=SPACED_OPAQUE),
        )
    )
    jwt = op.client_credentials_token(JWT_RESOURCE)["access_token"]
    opaque = op.client_credentials_token(OPAQUE_RESOURCE)["access_token"]
    assert op.introspect(opaque)["aud"] == SPACED_OPAQUE  # one string, as sent in the JWT

    audience = {"audience": [JWT_RESOURCE, OPAQUE_RESOURCE]}
    strict = Bridge([provider_for(op, **audience)])
    with portal.wrap_async_context_manager(strict):
        for token in (jwt, opaque):
            refusal = outcome(portal, strict, token)
            assert isinstance(refusal, InvalidToken)
            assert (refusal.reason, refusal.claim) == ("audience_mismatch", "aud")

    opted_in = Bridge([provider_for(op, space_separated_aud=True, **audience)])
    with portal.wrap_async_context_manager(opted_in):
        assert portal.call(opted_in.verify, jwt).claims["aud"] == SPACED
        assert portal.call(opted_in.verify, opaque).claims["aud"] == SPACED_OPAQUE

    elsewhere = Bridge(
        [provider_for(op, audience="https://third.example.test", space_separated_aud=True)]
    )
    with portal.wrap_async_context_manager(elsewhere):
        for token in (jwt, opaque):
            refusal = outcome(portal, elsewhere, token)
            assert isinstance(refusal, InvalidToken)
            assert refusal.reason == "audience_mismatch"
