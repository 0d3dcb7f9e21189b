"""OIDCProvider: login settings, the login runtime it binds, and the exchange rule."""

from __future__ import annotations

from typing import Any

import pytest

from authbridge import ConfigurationError, OIDCProvider, ResourceServer
from authbridge.client._oidc import OIDCLogin

from .support import Fake, clock, form, id_claims, jwks, oidc_fake, query, run_login, sign

ISS = "https://op.example.test"


def provider(**kwargs: Any) -> OIDCProvider:
    options: dict[str, Any] = {"client_id": "app", "client_secret": "s3cret", **kwargs}
    return OIDCProvider("op", ISS, "https://api.example.test", **options)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"client_id": None, "client_secret": "s"}, "client_secret_without_client_id"),
        ({"client_secret": None}, "login_needs_client_secret"),
        ({"client_secret": ""}, "login_needs_client_secret"),
        ({"client_secret": "s", "token_endpoint_auth": "none"}, "public_client_with_secret"),
        ({"login_scopes": ("email",)}, "oidc_login_needs_openid_scope"),
        ({"token_endpoint_auth": "private_key_jwt"}, "unknown_token_endpoint_auth"),
        ({"client_id": " "}, "login_client_id_required"),
    ],
)
def test_inconsistent_login_settings_are_refused(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        provider(**kwargs)
    assert excinfo.value.reason == reason


def test_login_is_enabled_by_a_client_id_only() -> None:
    resource_only = OIDCProvider("op", ISS, "api")
    assert not resource_only.login_enabled
    with pytest.raises(ConfigurationError) as excinfo:
        resource_only.bind_login(Fake().holder().session, clock, timeout=5.0)
    assert excinfo.value.reason == "login_not_configured"
    public = OIDCProvider("op", ISS, "api", client_id="spa", token_endpoint_auth="none")
    assert public.login_enabled
    assert provider().display_name == "op"
    assert provider(display_name="Example").display_name == "Example"


def test_bind_login_passes_the_configuration_on() -> None:
    op = provider(
        issuer_aliases=("op.example.test",),
        discovery_url=f"{ISS}/custom-discovery",
        jwks_uri=f"{ISS}/keys",
        login_scopes=("openid", "email"),
        token_endpoint_auth="client_secret_post",
        hmac_secret=None,
        algorithms=["ES256"],
        leeway=10,
    )
    login = op.bind_login(Fake().holder().session, clock, timeout=5.0)
    assert isinstance(login, OIDCLogin)
    assert (login.name, login.client_id, login.issuer) == ("op", "app", ISS)
    assert login.issuer_aliases == ("op.example.test",)
    assert login.scopes == ("openid", "email")
    assert login.token_endpoint_auth == "client_secret_post"
    assert login.algorithms == ("ES256",)
    assert login.leeway == 10.0
    assert login.uses_pkce
    assert login.uses_nonce


def test_an_hmac_resource_configuration_still_logs_in_with_asymmetric_id_tokens() -> None:
    op = provider(hmac_secret="x" * 32)
    login = op.bind_login(Fake().holder().session, clock, timeout=5.0)
    assert "HS256" not in login.algorithms
    assert "RS256" in login.algorithms


async def test_login_through_discovery_gives_the_identity() -> None:
    fake = oidc_fake(
        ISS,
        "app",
        userinfo={"sub": "user-1", "preferred_username": "alice", "name": "Alice"},
        email="alice@example.test",
        email_verified=True,
    )
    login, url, identity = await run_login(provider(), fake)
    params = query(url)
    assert url.startswith(f"{ISS}/authorize?")
    assert params["client_id"] == "app"
    assert params["code_challenge_method"] == "S256"
    assert params["scope"] == "openid email profile"
    assert "nonce" in params
    token_request = fake.last(f"{ISS}/token")
    assert token_request.headers["authorization"].startswith("Basic ")
    assert "client_secret" not in form(token_request)
    assert (identity.issuer, identity.subject) == (ISS, "user-1")
    assert identity.email == "alice@example.test"
    assert identity.email_verified
    assert identity.username == "alice"
    assert login.supports_logout


async def test_an_unverified_email_is_not_verified() -> None:
    fake = oidc_fake(ISS, "app", email="alice@example.test", email_verified="true")
    _, _, identity = await run_login(provider(), fake)
    assert identity.email == "alice@example.test"
    assert not identity.email_verified  # only JSON true counts for a generic provider


async def resource_principal(op: OIDCProvider, claims: dict[str, Any]) -> Any:
    fake = Fake(
        {
            f"{ISS}/.well-known/openid-configuration": {"issuer": ISS, "jwks_uri": f"{ISS}/jwks"},
            f"{ISS}/jwks": jwks(),
        }
    )
    async with ResourceServer([op], transport=fake.transport) as rs:
        return await rs.verify(sign(claims))


def access_claims(**extra: Any) -> dict[str, Any]:
    claims = id_claims(ISS, "https://api.example.test", nonce=None)
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


async def test_exchange_accepts_tokens_of_our_clients_only() -> None:
    op = provider(client_ids=None)
    ours = await resource_principal(op, access_claims(azp="app"))
    identity = op.exchange_identity(ours)
    assert identity is not None
    assert (identity.provider, identity.issuer, identity.subject) == ("op", ISS, "user-1")
    # Token substitution: the same issuer, our API, but minted for another client.
    theirs = await resource_principal(op, access_claims(azp="another-app"))
    assert op.exchange_identity(theirs) is None
    no_client = await resource_principal(op, access_claims())
    assert op.exchange_identity(no_client) is None


async def test_exchange_counts_client_ids_and_an_audience_naming_our_client() -> None:
    op = OIDCProvider(
        "op",
        ISS,
        ["https://api.example.test", "app"],
        client_ids=["app", "mobile"],
        client_id="app",
        client_secret="s",
    )
    mobile = await resource_principal(op, access_claims(client_id="mobile"))
    assert op.exchange_identity(mobile) is not None
    id_token_like = await resource_principal(
        op, access_claims(aud="app", client_id="app", email="a@example.test", email_verified=True)
    )
    identity = op.exchange_identity(id_token_like)
    assert identity is not None
    assert identity.email_verified


async def test_exchange_refuses_another_providers_principal() -> None:
    op = provider()
    principal = await resource_principal(op, access_claims(azp="app"))
    other = provider()
    other.name = "other"
    assert other.exchange_identity(principal) is None


async def test_login_and_exchange_key_the_person_alike() -> None:
    op = provider()
    fake = oidc_fake(ISS, "app")
    _, _, login_identity = await run_login(op, fake)
    exchanged = op.exchange_identity(await resource_principal(op, access_claims(azp="app")))
    assert exchanged is not None
    assert (exchanged.issuer, exchanged.subject) == (login_identity.issuer, login_identity.subject)
