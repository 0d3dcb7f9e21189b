"""GitLab, Keycloak, Auth0, Okta and Cognito: issuers, settings, login quirks and exchange."""

from __future__ import annotations

import time
from typing import Any

import pytest

from authbridge import ConfigurationError, InvalidToken, ResourceServer
from authbridge.providers import (
    Auth0Provider,
    CognitoProvider,
    GitLabProvider,
    KeycloakProvider,
    OktaProvider,
)

from .support import Fake, form, id_claims, jwks, oidc_fake, query, run_login, sign, token_reply


def test_computed_issuers() -> None:
    assert GitLabProvider(client_id="a", client_secret="s").issuer == "https://gitlab.com"
    assert GitLabProvider("https://git.example.test/", "aud").issuer == "https://git.example.test"
    keycloak = KeycloakProvider("https://sso.example.test", "acme", "orders-api")
    assert keycloak.issuer == "https://sso.example.test/realms/acme"
    assert Auth0Provider("tenant.eu.auth0.com", "https://api").issuer == (
        "https://tenant.eu.auth0.com/"
    )
    okta = OktaProvider("acme.okta.com")
    assert okta.issuer == "https://acme.okta.com/oauth2/default"
    assert okta.policy.audiences == {"api://default"}
    assert okta.policy.client_id_claims == ("cid",)
    cognito = CognitoProvider("eu-west-1", "eu-west-1_AbC123", ["app1"])
    assert cognito.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    assert cognito.jwks_uri == cognito.issuer + "/.well-known/jwks.json"
    assert not cognito.login_enabled


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: KeycloakProvider("https://sso", "", "api"), "invalid_realm"),
        (lambda: KeycloakProvider("https://sso", " acme", "api"), "invalid_realm"),
        (lambda: Auth0Provider("tenant.auth0.com/path", "api"), "invalid_domain"),
        (lambda: Auth0Provider("", "api"), "invalid_domain"),
        (lambda: OktaProvider("acme.okta.com", "../x"), "invalid_authorization_server"),
        (lambda: CognitoProvider("eu-west", "eu-west_x", ["a"]), "invalid_region"),
        (lambda: CognitoProvider("eu-west-1", "us-east-1_x", ["a"]), "invalid_user_pool_id"),
        (lambda: CognitoProvider("eu-west-1", "eu-west-1_", ["a"]), "invalid_user_pool_id"),
        (
            lambda: CognitoProvider("eu-west-1", "eu-west-1_x", []),
            "audience_or_client_ids_required",
        ),
        (
            lambda: CognitoProvider("eu-west-1", "eu-west-1_x", ["a"], client_secret="s"),
            "cognito_login_needs_domain",
        ),
        (GitLabProvider, "audience_or_client_ids_required"),
        (lambda: KeycloakProvider("https://sso", "r", client_id="c"), "login_needs_client_secret"),
    ],
)
def test_configuration_errors(make: Any, reason: str) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        make()
    assert excinfo.value.reason == reason


def test_the_login_client_is_always_among_client_ids() -> None:
    keycloak = KeycloakProvider(
        "https://sso", "r", "api", client_id="web", client_secret="s", client_ids=["cli"]
    )
    assert keycloak.policy.client_ids == {"web", "cli"}
    assert keycloak.exchange_client_ids == {"web", "cli"}


async def test_keycloak_login_through_discovery() -> None:
    iss = "https://sso.example.test/realms/acme"
    fake = oidc_fake(
        iss, "web", preferred_username="ana", email="ana@example.test", email_verified=True
    )
    provider = KeycloakProvider(
        "https://sso.example.test", "acme", client_id="web", client_secret="s"
    )
    login, url, identity = await run_login(provider, fake)
    assert url.startswith(f"{iss}/authorize?")
    assert (identity.issuer, identity.subject, identity.username) == (iss, "user-1", "ana")
    assert identity.email_verified
    assert login.supports_logout
    logout = await login.logout_url(
        id_token_hint=None, post_logout_redirect_uri="https://app/", state="st"
    )
    assert logout is not None
    assert logout.startswith(f"{iss}/logout?")


async def test_gitlab_login_posts_the_secret_and_reads_nickname() -> None:
    fake = oidc_fake("https://gitlab.com", "gl-app", nickname="tanuki")
    provider = GitLabProvider(client_id="gl-app", client_secret="gl-s")
    _, _, identity = await run_login(provider, fake)
    assert form(fake.last("https://gitlab.com/token"))["client_secret"] == "gl-s"
    assert (identity.issuer, identity.username) == ("https://gitlab.com", "tanuki")


async def test_auth0_asks_for_the_api_audience() -> None:
    iss = "https://tenant.auth0.test/"
    fake = oidc_fake(iss, "a0-app")
    provider = Auth0Provider(
        "tenant.auth0.test", "https://api.example.test", client_id="a0-app", client_secret="s"
    )
    _, url, identity = await run_login(provider, fake)
    assert query(url)["audience"] == "https://api.example.test"
    assert identity.issuer == iss
    without = Auth0Provider("tenant.auth0.test", client_id="a0-app", client_secret="s")
    _, url, _ = await run_login(without, oidc_fake(iss, "a0-app"))
    assert "audience" not in query(url)


async def verify(provider: Any, claims: dict[str, Any], fake: Fake) -> Any:
    async with ResourceServer([provider], transport=fake.transport) as rs:
        return await rs.verify(sign(claims))


def okta_fake(iss: str) -> Fake:
    return Fake(
        {
            f"{iss}/.well-known/openid-configuration": {
                "issuer": iss,
                "jwks_uri": f"{iss}/v1/keys",
            },
            f"{iss}/v1/keys": jwks(),
        }
    )


async def test_okta_exchange_keys_access_tokens_by_uid_and_refuses_other_clients() -> None:
    iss = "https://acme.okta.test/oauth2/default"
    okta = OktaProvider("acme.okta.test", client_id="0oaweb", client_secret="s")
    fake = okta_fake(iss)
    access = id_claims(
        iss, "api://default", nonce=None, sub="ana@example.test", uid="00u1", cid="0oaweb"
    )
    principal = await verify(okta, access, fake)
    identity = okta.exchange_identity(principal)
    assert identity is not None
    assert identity.subject == "00u1"  # not the login name in sub
    other = await verify(okta, {**access, "cid": "0oaother"}, fake)
    assert okta.exchange_identity(other) is None
    machine = await verify(okta, {k: v for k, v in access.items() if k != "uid"}, fake)
    assert okta.exchange_identity(machine) is None
    # An ID token (aud = our client): sub is the user id there.
    login_fake = oidc_fake(iss, "0oaweb", sub="00u1")
    _, _, logged_in = await run_login(okta, login_fake)
    assert (logged_in.issuer, logged_in.subject) == (identity.issuer, identity.subject)


POOL = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
HOSTED = "https://login.example.test"


def cognito(**kwargs: Any) -> CognitoProvider:
    return CognitoProvider("eu-west-1", "eu-west-1_AbC123", ["web", "mobile"], HOSTED, **kwargs)


def cognito_fake(**id_extra: Any) -> Fake:
    access = "cognito-access"
    return Fake(
        {
            f"{POOL}/.well-known/jwks.json": jwks(),
            f"{HOSTED}/oauth2/token": token_reply(
                access_token=access,
                id_token=sign(id_claims(POOL, "web", token_use="id", **id_extra)),
            ),
            f"{HOSTED}/oauth2/userInfo": {
                "sub": "user-1",
                "email": "c@example.test",
                "email_verified": "true",
                "username": "cathy",
            },
        }
    )


async def test_cognito_public_client_login_with_the_hosted_ui() -> None:
    provider = cognito(token_endpoint_auth="none")
    fake = cognito_fake(**{"cognito:username": "cathy"})
    login, url, identity = await run_login(provider, fake)
    assert url.startswith(f"{HOSTED}/oauth2/authorize?")
    sent = form(fake.last(f"{HOSTED}/oauth2/token"))
    assert "client_secret" not in sent
    assert sent["client_id"] == "web"
    assert identity.email == "c@example.test"
    assert identity.email_verified  # userinfo's "true" string
    assert identity.username == "cathy"
    assert not any("well-known/openid" in u for u in fake.urls())
    logout = await login.logout_url(
        id_token_hint="x", post_logout_redirect_uri="https://app/bye", state="s"
    )
    assert logout == f"{HOSTED}/logout?client_id=web&logout_uri=https%3A%2F%2Fapp%2Fbye"


def cognito_access(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": POOL,
        "sub": "user-1",
        "client_id": "mobile",
        "token_use": "access",
        "exp": now + 300,
        "iat": now,
        "username": "cathy",
        "scope": "openid",
    }
    claims.update(extra)
    return claims


async def test_cognito_access_tokens_carry_client_id_and_token_use() -> None:
    provider = cognito(client_secret="s")
    fake = Fake({f"{POOL}/.well-known/jwks.json": jwks()})
    principal = await verify(provider, cognito_access(), fake)
    identity = provider.exchange_identity(principal)
    assert identity is not None
    assert (identity.issuer, identity.subject, identity.username) == (POOL, "user-1", "cathy")
    for bad, reason in (
        ({"token_use": "id"}, "unexpected_claim_value"),
        ({"client_id": "someone-else"}, "client_mismatch"),
    ):
        with pytest.raises(InvalidToken) as excinfo:
            await verify(provider, cognito_access(**bad), fake)
        assert excinfo.value.reason == reason
    forged = principal.model_copy(update={"client_id": "someone-else"})
    assert provider.exchange_identity(forged) is None
