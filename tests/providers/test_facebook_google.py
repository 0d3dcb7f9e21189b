"""FacebookProvider and GoogleProvider: login against their documented APIs, and exchange."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from authbridge import ConfigurationError, FacebookProvider, GoogleProvider, ResourceServer
from authbridge.errors import LoginError

from .support import Fake, form, id_claims, jwks, query, run_login, sign, token_reply

GRAPH, DIALOG = "https://graph.facebook.test", "https://www.facebook.test/v19.0/dialog/oauth"
FB_TOKEN = "EAAB" + "x" * 40


def facebook(**kwargs: Any) -> FacebookProvider:
    return FacebookProvider("1234", "fb-secret", graph_base=GRAPH, dialog_url=DIALOG, **kwargs)


def facebook_fake(me: dict[str, Any]) -> Fake:
    return Fake(
        {
            f"{GRAPH}/v19.0/oauth/access_token": token_reply(access_token=FB_TOKEN),
            f"{GRAPH}/v19.0/me": me,
        }
    )


async def test_facebook_login_dialog_token_and_me_with_appsecret_proof() -> None:
    fake = facebook_fake({"id": "10158", "name": "Mark", "email": "mark@example.test"})
    _login, url, identity = await run_login(facebook(), fake)
    assert url.startswith(DIALOG + "?")
    params = query(url)
    assert params["client_id"] == "1234"
    assert params["scope"] == "email,public_profile"
    assert "code_challenge" not in params
    assert "nonce" not in params
    sent = form(fake.last(f"{GRAPH}/v19.0/oauth/access_token"))
    assert sent["client_secret"] == "fb-secret"
    assert sent["redirect_uri"].endswith("/callback")
    me = fake.last(f"{GRAPH}/v19.0/me")
    expected = hmac.new(b"fb-secret", FB_TOKEN.encode(), hashlib.sha256).hexdigest()
    assert me.url.params["appsecret_proof"] == expected
    assert me.url.params["fields"] == "id,name,email"
    assert FB_TOKEN not in str(me.url)  # the token goes in the header only
    assert me.headers["authorization"] == f"Bearer {FB_TOKEN}"
    assert (identity.issuer, identity.subject) == ("https://www.facebook.com", "10158")
    assert identity.email == "mark@example.test"
    assert not identity.email_verified  # Facebook never says


@pytest.mark.parametrize("user_id", [None, "", "abc", True, -1])
async def test_facebook_user_without_an_id_is_no_subject(user_id: Any) -> None:
    with pytest.raises(LoginError) as excinfo:
        await run_login(facebook(), facebook_fake({"id": user_id, "name": "x"}))
    assert excinfo.value.reason == "no_subject"


async def test_facebook_graph_refusal_is_a_token_error() -> None:
    fake = facebook_fake({})
    fake.routes[f"{GRAPH}/v19.0/me"] = lambda r: httpx.Response(
        400, json={"error": {"type": "OAuthException", "code": 190}}
    )
    with pytest.raises(LoginError) as excinfo:
        await run_login(facebook(), fake)
    assert excinfo.value.reason == "token_error"


def debug_token(app_id: str) -> Fake:
    def reply(request: httpx.Request) -> httpx.Response:
        data = {
            "app_id": app_id,
            "type": "USER",
            "is_valid": True,
            "expires_at": 0,
            "user_id": "10158",
            "scopes": ["email"],
        }
        return httpx.Response(200, json=[{"code": 200, "body": json.dumps({"data": data})}])

    return Fake({f"{GRAPH}/": reply})


async def test_facebook_exchange_is_keyed_as_login_and_only_for_our_app() -> None:
    provider = facebook()
    async with ResourceServer([provider], transport=debug_token("1234").transport) as rs:
        principal = await rs.verify(FB_TOKEN)
    exchanged = provider.exchange_identity(principal)
    assert exchanged is not None
    assert (exchanged.issuer, exchanged.subject) == ("https://www.facebook.com", "10158")
    forged = principal.model_copy(update={"client_id": "9999"})
    assert provider.exchange_identity(forged) is None


# -- Google ---------------------------------------------------------------------------

G_AUTH, G_TOKEN = "https://accounts.google.test/auth", "https://oauth2.google.test/token"
G_USERINFO, G_JWKS = "https://oidc.google.test/userinfo", "https://www.google.test/certs"


def google(**kwargs: Any) -> GoogleProvider:
    options: dict[str, Any] = {
        "client_secret": "g-secret",
        "authorization_endpoint": G_AUTH,
        "token_endpoint": G_TOKEN,
        "userinfo_endpoint": G_USERINFO,
        "jwks_uri": G_JWKS,
        **kwargs,
    }
    return GoogleProvider(["web.apps.googleusercontent.com", "ios.apps"], **options)


def google_fake(**id_extra: Any) -> Fake:
    claims = id_claims(
        "https://accounts.google.com", "web.apps.googleusercontent.com", sub="1098765", **id_extra
    )
    return Fake(
        {
            G_TOKEN: token_reply(access_token="ya29.abc", id_token=sign(claims)),
            G_USERINFO: {"sub": "1098765", "name": "Gina"},
            G_JWKS: jwks(),
        }
    )


def test_google_login_needs_the_secret_and_uses_the_first_client_id() -> None:
    assert not GoogleProvider("web").login_enabled
    assert google().client_id == "web.apps.googleusercontent.com"
    assert google(client_id="ios.apps").client_id == "ios.apps"
    with pytest.raises(ConfigurationError):
        GoogleProvider([])


async def test_google_login_with_static_endpoints_and_no_discovery() -> None:
    fake = google_fake(email="gina@example.test", email_verified=True)
    login, url, identity = await run_login(google(), fake)
    assert url.startswith(G_AUTH + "?")
    assert form(fake.last(G_TOKEN))["client_secret"] == "g-secret"
    assert not any("well-known" in u for u in fake.urls())
    assert (identity.issuer, identity.subject) == ("https://accounts.google.com", "1098765")
    assert identity.email_verified
    assert identity.name == "Gina"
    assert not login.supports_logout


async def test_google_alias_issuer_is_keyed_under_the_canonical_one() -> None:
    fake = google_fake(iss="accounts.google.com")
    _, _, identity = await run_login(google(), fake)
    assert identity.issuer == "https://accounts.google.com"


async def test_google_hosted_domain_is_asked_for_and_enforced() -> None:
    _, url, _identity = await run_login(
        google(hosted_domain="example.test"), google_fake(hd="example.test")
    )
    assert query(url)["hd"] == "example.test"
    with pytest.raises(LoginError) as excinfo:
        await run_login(google(hosted_domain="example.test"), google_fake(hd="evil.test"))
    assert excinfo.value.reason == "id_token_invalid:unexpected_claim_value"
    with pytest.raises(LoginError):
        await run_login(google(hosted_domain="example.test"), google_fake())


async def test_google_id_token_for_another_client_is_refused_at_login() -> None:
    claims = id_claims("https://accounts.google.com", "someone-else", sub="1")
    fake = google_fake()
    fake.routes[G_TOKEN] = token_reply(access_token="ya29.x", id_token=sign(claims))
    with pytest.raises(LoginError) as excinfo:
        await run_login(google(), fake)
    assert excinfo.value.reason.startswith("id_token_invalid:")


async def google_principal(provider: GoogleProvider, **claims: Any) -> Any:
    fake = Fake({G_JWKS: jwks()})
    token = sign(
        id_claims(
            "https://accounts.google.com",
            "web.apps.googleusercontent.com",
            nonce=None,
            sub="1098765",
            **claims,
        )
    )
    async with ResourceServer([provider], transport=fake.transport) as rs:
        return await rs.verify(token)


async def test_google_exchange_refuses_a_token_minted_for_another_site() -> None:
    provider = google()
    principal = await google_principal(provider, email="g@example.test", email_verified=True)
    exchanged = provider.exchange_identity(principal)
    assert exchanged is not None
    assert exchanged.email_verified
    assert (exchanged.issuer, exchanged.subject) == ("https://accounts.google.com", "1098765")
    other = GoogleProvider("another-site", jwks_uri=G_JWKS)
    assert other.exchange_identity(principal.model_copy(update={"provider": "google"})) is None


async def test_google_tokeninfo_string_true_counts_as_verified() -> None:
    provider = google()
    principal = await google_principal(provider, email="g@example.test", email_verified="true")
    exchanged = provider.exchange_identity(principal)
    assert exchanged is not None
    assert exchanged.email_verified
    unverified = await google_principal(provider, email="g@example.test", email_verified="false")
    assert not provider.exchange_identity(unverified).email_verified  # type: ignore[union-attr]
