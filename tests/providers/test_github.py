"""GitHubProvider: login (PKCE, /user, /user/emails) and the exchange rule."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from authbridge import ConfigurationError, GitHubProvider, ProviderUnavailable, ResourceServer
from authbridge.client import AuthorizationRequest
from authbridge.errors import LoginError

from .support import Fake, form, query, run_login, token_reply

WEB, API = "https://github.test", "https://api.github.test"
USER = {"id": 583231, "login": "octocat", "name": "The Octocat", "email": None}


def github(**kwargs: Any) -> GitHubProvider:
    options: dict[str, Any] = {
        "client_id": "Iv1.abc",
        "client_secret": "gh-secret",
        "web_base": WEB,
        "api_base": API,
        **kwargs,
    }
    return GitHubProvider(**options)


def fake(emails: Any = None, user: Any = None, emails_status: int = 200) -> Fake:
    def reply_emails(request: httpx.Request) -> httpx.Response:
        return httpx.Response(emails_status, json=emails if emails is not None else [])

    return Fake(
        {
            f"{WEB}/login/oauth/access_token": token_reply(
                access_token="gho_" + "a" * 36, scope="read:user,user:email"
            ),
            f"{API}/user": USER if user is None else user,
            f"{API}/user/emails": reply_emails,
        }
    )


def test_login_needs_both_credentials() -> None:
    assert not GitHubProvider().login_enabled
    with pytest.raises(ConfigurationError) as excinfo:
        GitHubProvider().bind_login(Fake().holder().session, time_now, timeout=5.0)
    assert excinfo.value.reason == "login_not_configured"
    with pytest.raises(ConfigurationError):
        GitHubProvider(client_id="x")
    assert github().login_enabled


def time_now() -> float:
    return 0.0


async def test_authorize_uses_pkce_and_no_nonce_and_the_token_request_posts_the_secret() -> None:
    f = fake([{"email": "octo@example.test", "primary": True, "verified": True}])
    _login, url, identity = await run_login(github(), f)
    assert url.startswith(f"{WEB}/login/oauth/authorize?")
    params = query(url)
    assert params["code_challenge_method"] == "S256"
    assert "code_challenge" in params
    assert "nonce" not in params
    assert params["scope"] == "read:user user:email"
    token_request = f.last(f"{WEB}/login/oauth/access_token")
    sent = form(token_request)
    assert sent["client_secret"] == "gh-secret"
    assert sent["client_id"] == "Iv1.abc"
    assert "code_verifier" in sent
    assert token_request.headers["accept"] == "application/json"
    user_request = f.last(f"{API}/user")
    assert user_request.headers["authorization"] == "Bearer gho_" + "a" * 36
    assert (identity.issuer, identity.subject) == (WEB, "583231")
    assert identity.email == "octo@example.test"
    assert identity.email_verified
    assert identity.username == "octocat"
    assert identity.name == "The Octocat"


async def test_login_hint_is_githubs_login_parameter() -> None:
    login = github().bind_login(Fake().holder().session, time_now, timeout=5.0)
    params = login.authorization_params(
        AuthorizationRequest(
            redirect_uri="https://app/cb",
            state="s",
            code_challenge="c" * 43,
            nonce=None,
            scopes=(),
            prompt="consent",
            login_hint="octocat",
        )
    )
    assert params["login"] == "octocat"
    assert "login_hint" not in params
    assert "prompt" not in params  # GitHub knows only select_account


@pytest.mark.parametrize(
    ("emails", "expected"),
    [
        # An unverified primary is not verified.
        (
            [{"email": "p@example.test", "primary": True, "verified": False}],
            ("p@example.test", False),
        ),
        # A verified address that is not the primary does not count.
        (
            [
                {"email": "p@example.test", "primary": True, "verified": False},
                {"email": "v@example.test", "primary": False, "verified": True},
            ],
            ("p@example.test", False),
        ),
        # "true" is not true.
        (
            [{"email": "p@example.test", "primary": True, "verified": "true"}],
            ("p@example.test", False),
        ),
        ([{"email": None, "primary": True, "verified": True}], (None, False)),
        ([], (None, False)),
    ],
)
async def test_only_the_verified_primary_email_is_verified(
    emails: list[dict[str, Any]], expected: tuple[str | None, bool]
) -> None:
    _, _, identity = await run_login(github(), fake(emails))
    assert (identity.email, identity.email_verified) == expected


async def test_without_the_email_scope_the_public_email_is_kept_unverified() -> None:
    user = {**USER, "email": "public@example.test"}
    _, _, identity = await run_login(github(), fake(user=user, emails_status=404))
    assert (identity.email, identity.email_verified) == ("public@example.test", False)


async def test_a_null_email_everywhere_is_no_email() -> None:
    _, _, identity = await run_login(github(), fake(emails_status=403))
    assert identity.email is None
    assert not identity.email_verified


@pytest.mark.parametrize("user_id", ["583231", True, None, 0, 2**64])
async def test_a_user_without_a_numeric_id_is_no_subject(user_id: Any) -> None:
    with pytest.raises(LoginError) as excinfo:
        await run_login(github(), fake(user={**USER, "id": user_id}))
    assert excinfo.value.reason == "no_subject"


async def test_github_errors_at_the_token_endpoint_and_the_user_api() -> None:
    refused = fake()
    refused.routes[f"{WEB}/login/oauth/access_token"] = {"error": "bad_verification_code"}
    with pytest.raises(LoginError) as excinfo:
        await run_login(github(), refused)
    assert excinfo.value.reason == "token_error"
    assert excinfo.value.detail == {"error": "bad_verification_code"}
    revoked = fake()
    revoked.routes[f"{API}/user"] = lambda r: httpx.Response(401, json={})
    with pytest.raises(LoginError):
        await run_login(github(), revoked)
    down = fake()
    down.routes[f"{API}/user/emails"] = lambda r: httpx.Response(502, json={})
    with pytest.raises(ProviderUnavailable):
        await run_login(github(), down)
    limited = fake()
    limited.routes[f"{API}/user/emails"] = lambda r: httpx.Response(
        403, json={}, headers={"x-ratelimit-remaining": "0"}
    )
    with pytest.raises(ProviderUnavailable) as unavailable:
        await run_login(github(), limited)
    assert unavailable.value.reason == "rate_limited"


def check_a_token(client_id: str) -> Fake:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"app": {"client_id": client_id}, "user": USER, "scopes": ["read:user"]},
        )

    return Fake({f"{API}/applications/Iv1.abc/token": reply, f"{API}/user": USER})


TOKEN = "github_pat_" + "A1" * 11 + "_" + "b2" * 29 + "c"  # not checksummed


async def test_exchange_needs_the_app_check_and_the_same_identity_as_login() -> None:
    provider = github()
    async with ResourceServer([provider], transport=check_a_token("Iv1.abc").transport) as rs:
        principal = await rs.verify(TOKEN)
    exchanged = provider.exchange_identity(principal)
    assert exchanged is not None
    _, _, logged_in = await run_login(provider, fake())
    assert (exchanged.issuer, exchanged.subject) == (logged_in.issuer, logged_in.subject)
    assert not exchanged.email_verified
    # Without the app check, a token of any app passes the verifier: never exchanged.
    plain = GitHubProvider(api_base=API)
    async with ResourceServer([plain], transport=check_a_token("x").transport) as rs:
        any_app = await rs.verify(TOKEN)
    assert plain.exchange_identity(any_app) is None


async def test_exchange_refuses_a_principal_of_another_app() -> None:
    provider = github()
    async with ResourceServer([provider], transport=check_a_token("Iv1.abc").transport) as rs:
        principal = await rs.verify(TOKEN)
    forged = principal.model_copy(update={"client_id": "Iv1.other"})
    assert provider.exchange_identity(forged) is None
