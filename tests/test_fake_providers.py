"""The fake provider APIs answer like the documented real ones.

Each fake is exercised in process (``httpx`` with ``fake.transport``) and over
real loopback HTTP (``fake.serve()``); both paths share one dispatcher, so the
HTTP tests check the wire (status, headers, body, timeouts) rather than every
answer again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from authbridge.testing._providers import (
    FakeAPI,
    FakeFacebook,
    FakeGitHub,
    FakeGoogle,
    FakeUserinfo,
    combined_transport,
)

ALNUM = re.compile(r"^[0-9A-Za-z]+$")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@asynccontextmanager
async def client_for(fake: FakeAPI[Any], **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=fake.transport, base_url=fake.base_url, **kwargs) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- GitHub ------------------------------------------------------------------------------


def base62_decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + BASE62.index(char)
    return value


@pytest.mark.parametrize("kind", ["ghp", "gho", "ghu", "ghs", "ghr"])
def test_github_classic_token_format(kind: Any) -> None:
    token = FakeGitHub().issue_token(kind=kind)
    prefix, _, rest = token.partition("_")
    assert prefix == kind
    assert len(token) == 40
    assert len(rest) == 36
    assert ALNUM.match(rest)
    assert base62_decode(rest[-6:]) == zlib.crc32(rest[:-6].encode())


@pytest.mark.parametrize("kind", ["ghp", "gho", "ghu", "ghs", "ghr"])
async def test_github_well_formed_tokens_carry_the_checksum_and_were_never_issued(
    kind: Any,
) -> None:
    fake = FakeGitHub()
    token = FakeGitHub.well_formed_token(kind)
    rest = token.partition("_")[2]
    assert len(token) == 40
    assert base62_decode(rest[-6:]) == zlib.crc32(rest[:-6].encode())
    assert token != FakeGitHub.well_formed_token(kind)
    assert fake.token_state(token) == "unknown"
    async with client_for(fake, headers={"User-Agent": "test"}) as client:
        response = await client.get("/user", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["message"] == "Bad credentials"


def test_github_fine_grained_token_format() -> None:
    token = FakeGitHub().issue_token(kind="github_pat")
    assert re.fullmatch(r"github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59}", token)
    assert len(token) == 93


def test_github_tokens_are_unique_and_kind_is_checked() -> None:
    fake = FakeGitHub()
    assert len({fake.issue_token() for _ in range(50)}) == 50
    with pytest.raises(ValueError, match="unknown GitHub token kind"):
        fake.issue_token(kind="gha")  # type: ignore[arg-type]


async def test_github_user_with_classic_token() -> None:
    fake = FakeGitHub()
    token = fake.issue_token("mona", 583231, scopes=("repo", "read:user"), kind="ghp", name="Mona")
    async with client_for(fake) as client:
        response = await client.get("/user", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["x-oauth-scopes"] == "repo, read:user"
    assert response.headers["x-accepted-oauth-scopes"] == ""
    assert response.headers["x-ratelimit-limit"] == "5000"
    assert response.headers["x-ratelimit-remaining"] == "4999"
    assert response.headers["x-ratelimit-used"] == "1"
    assert response.headers["x-ratelimit-resource"] == "core"
    assert int(response.headers["x-ratelimit-reset"]) > 0
    assert "github-authentication-token-expiration" not in response.headers
    user = response.json()
    assert user["login"] == "mona"
    assert user["id"] == 583231
    assert user["name"] == "Mona"
    assert user["type"] == "User"
    assert base64.b64decode(user["node_id"]) == b"04:User583231"
    assert user["url"] == "https://api.github.com/users/mona"


async def test_github_accepts_the_token_scheme_and_empty_scopes() -> None:
    fake = FakeGitHub()
    token = fake.issue_token(scopes=(), kind="gho")
    async with client_for(fake) as client:
        response = await client.get("/user", headers={"Authorization": f"token {token}"})
    assert response.status_code == 200
    assert response.headers["x-oauth-scopes"] == ""


@pytest.mark.parametrize("kind", ["ghu", "github_pat"])
async def test_github_fine_grained_tokens_carry_no_scope_header(kind: Any) -> None:
    fake = FakeGitHub()
    token = fake.issue_token(kind=kind, expires_in=3600)
    async with client_for(fake) as client:
        response = await client.get("/user", headers=bearer(token))
    assert response.status_code == 200
    assert "x-oauth-scopes" not in response.headers
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
        response.headers["github-authentication-token-expiration"],
    )


async def test_github_installation_and_refresh_tokens_cannot_identify_a_user() -> None:
    fake = FakeGitHub()
    installation, refresh = fake.issue_token(kind="ghs"), fake.issue_token(kind="ghr")
    async with client_for(fake) as client:
        forbidden = await client.get("/user", headers=bearer(installation))
        unauthorized = await client.get("/user", headers=bearer(refresh))
    assert forbidden.status_code == 403
    assert forbidden.json()["message"] == "Resource not accessible by integration"
    assert unauthorized.status_code == 401
    assert unauthorized.json()["message"] == "Bad credentials"


async def test_github_bad_revoked_and_expired_tokens(clock: Any) -> None:
    fake = FakeGitHub(clock=clock)
    revoked = fake.issue_token()
    expiring = fake.issue_token(expires_in=60)
    fake.revoke(revoked)
    clock.advance(61)
    async with client_for(fake) as client:
        for token in ("gho_" + "x" * 36, revoked, expiring):
            response = await client.get("/user", headers=bearer(token))
            assert response.status_code == 401
            assert response.json() == {
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401",
            }
    assert fake.token_state(revoked) == "revoked"
    assert fake.token_state(expiring) == "expired"
    assert fake.token_state("nope") == "unknown"


async def test_github_without_credentials_or_with_a_query_token() -> None:
    fake = FakeGitHub()
    token = fake.issue_token()
    async with client_for(fake) as client:
        missing = await client.get("/user")
        in_query = await client.get("/user", params={"access_token": token})
    for response in (missing, in_query):
        assert response.status_code == 401
        assert response.json()["message"] == "Requires authentication"
    assert [r.token_in_url for r in fake.requests] == [False, True]
    assert fake.requests[1].query == {"access_token": "<redacted>"}
    assert fake.requests[1].credential_locations == {"query"}
    with pytest.raises(AssertionError, match="credentials travelled in URLs: GET /user"):
        fake.assert_no_token_in_urls()


async def test_github_requires_a_user_agent() -> None:
    fake = FakeGitHub()
    token = fake.issue_token()
    async with client_for(fake) as client:
        response = await client.get("/user", headers={**bearer(token), "User-Agent": ""})
    assert response.status_code == 403
    assert response.headers["content-type"] == "text/plain"
    assert "User-Agent" in response.text


async def test_github_unknown_path_and_enterprise_base() -> None:
    fake = FakeGitHub("https://ghe.example.test/api/v3/")
    token = fake.issue_token()
    assert fake.api_base == "https://ghe.example.test/api/v3"
    async with client_for(fake) as client:
        ok = await client.get("/user", headers=bearer(token))
        outside = await client.get("https://ghe.example.test/user", headers=bearer(token))
        sibling = await client.get("https://ghe.example.test/api/v3x/user")
        unknown = await client.get("/repos/octo/hello", headers=bearer(token))
    assert ok.status_code == 200
    assert ok.json()["url"] == "https://ghe.example.test/api/v3/users/octocat"
    for response in (outside, sibling, unknown):
        assert response.status_code == 404
        assert response.json()["message"] == "Not Found"


async def test_github_primary_rate_limit_by_use(clock: Any) -> None:
    fake = FakeGitHub(rate_limit=2, clock=clock)
    token = fake.issue_token(user_id=42)
    async with client_for(fake) as client:
        first = await client.get("/user", headers=bearer(token))
        second = await client.get("/user", headers=bearer(token))
        limited = await client.get("/user", headers=bearer(token))
        clock.advance(3600)
        after_reset = await client.get("/user", headers=bearer(token))
    assert [first.status_code, second.status_code] == [200, 200]
    assert second.headers["x-ratelimit-remaining"] == "0"
    assert limited.status_code == 403
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-used"] == "2"
    assert limited.headers["x-ratelimit-reset"] == first.headers["x-ratelimit-reset"]
    assert limited.json()["message"] == "API rate limit exceeded for user ID 42."
    assert "rate-limits" in limited.json()["documentation_url"]
    assert after_reset.status_code == 200
    assert after_reset.headers["x-ratelimit-remaining"] == "1"


async def test_github_injected_rate_limits(clock: Any) -> None:
    fake = FakeGitHub(clock=clock)
    token = fake.issue_token(user_id=7)
    fake.rate_limit_next(retry_after=120, status=429)
    fake.rate_limit_next(secondary=True, retry_after=30)
    fake.rate_limit_next(secondary=True)
    fake.rate_limit_next()
    async with client_for(fake) as client:
        primary = await client.get("/user", headers=bearer(token))
        secondary = await client.get("/user", headers=bearer(token))
        no_retry_after = await client.get("/user")
        anonymous = await client.get("/user")
        ok = await client.get("/user", headers=bearer(token))
    assert primary.status_code == 429
    assert primary.headers["x-ratelimit-remaining"] == "0"
    assert int(primary.headers["x-ratelimit-reset"]) == int(clock() + 120)
    assert primary.json()["message"] == "API rate limit exceeded for user ID 7."
    assert secondary.status_code == 403
    assert secondary.headers["retry-after"] == "30"
    assert secondary.headers["x-ratelimit-remaining"] != "0"
    assert "secondary rate limit" in secondary.json()["message"]
    assert no_retry_after.status_code == 403
    assert "retry-after" not in no_retry_after.headers
    assert anonymous.json()["message"] == "API rate limit exceeded for user ID 1."
    assert ok.status_code == 200


# -- failure injection (shared by every fake) --------------------------------------------


async def test_server_errors_garbage_and_custom_failures() -> None:
    fake = FakeGitHub()
    token = fake.issue_token()
    fake.server_error_next(status=502)
    fake.garbage_next()
    fake.fail_next(418, headers={"x-teapot": "yes"}, body={"message": "short and stout"}, count=2)
    fake.fail_next(500, body="plain")
    fake.fail_next(504)
    async with client_for(fake) as client:
        answers = [await client.get("/user", headers=bearer(token)) for _ in range(7)]
    assert answers[0].status_code == 502
    assert answers[0].json() == {"message": "Server Error"}
    assert answers[1].status_code == 200
    assert answers[1].headers["content-type"] == "text/html"
    with pytest.raises(json.JSONDecodeError):
        answers[1].json()
    assert [a.status_code for a in answers[2:4]] == [418, 418]
    assert answers[2].headers["x-teapot"] == "yes"
    assert answers[2].json() == {"message": "short and stout"}
    assert (answers[4].status_code, answers[4].text) == (500, "plain")
    assert (answers[5].status_code, answers[5].content) == (504, b"")
    assert answers[6].status_code == 200


async def test_failure_mode_lasts_until_cleared() -> None:
    fake = FakeUserinfo()
    token = fake.issue_token()
    fake.server_error_next(count=None)
    async with client_for(fake) as client:
        failing = [
            (await client.get("/userinfo", headers=bearer(token))).status_code for _ in range(3)
        ]
        fake.clear_failures()
        ok = await client.get("/userinfo", headers=bearer(token))
    assert failing == [503, 503, 503]
    assert ok.status_code == 200
    with pytest.raises(ValueError, match="count must be at least 1"):
        fake.fail_next(count=0)


async def test_slow_answers_in_process() -> None:
    fake = FakeGoogle()
    token = fake.issue_access_token()
    fake.slow_next(5)
    fake.slow_next(0.01)
    async with client_for(fake) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await client.get("/tokeninfo", headers=bearer(token))
        late = await client.get("/tokeninfo", headers=bearer(token))
    assert late.status_code == 200


def test_sync_clients_use_the_transport_too() -> None:
    fake = FakeUserinfo()
    token = fake.issue_token(name="Alice")
    fake.slow_next(0.01)
    with httpx.Client(transport=fake.transport) as client:
        response = client.get(fake.userinfo_endpoint, headers=bearer(token))
    assert response.json() == {"sub": "alice", "name": "Alice"}


async def test_other_hosts_are_unreachable_and_combined_transport_routes() -> None:
    github, google = FakeGitHub(), FakeGoogle()
    gh_token, g_token = github.issue_token(), google.issue_access_token()
    async with httpx.AsyncClient(transport=github.transport) as client:
        with pytest.raises(httpx.ConnectError, match="FakeGitHub does not serve"):
            await client.get(google.tokeninfo_url)
    transport = combined_transport(github, google)
    async with httpx.AsyncClient(transport=transport) as client:
        user = await client.get(f"{github.api_base}/user", headers=bearer(gh_token))
        info = await client.get(google.tokeninfo_url, headers=bearer(g_token))
        with pytest.raises(httpx.ConnectError, match="no fake serves"):
            await client.get("https://example.test/")
    with httpx.Client(transport=transport) as client:
        assert client.get(f"{github.api_base}/user", headers=bearer(gh_token)).status_code == 200
    assert (user.status_code, info.status_code) == (200, 200)
    assert github.serves("https://api.github.com/anything")
    assert not github.serves("http://api.github.com/user")


def test_revoke_needs_an_issued_token() -> None:
    fake = FakeFacebook()
    token = fake.issue_token()
    assert fake.is_active(token)
    fake.revoke(token)
    assert not fake.is_active(token)
    with pytest.raises(KeyError):
        fake.revoke("EAAnotissued")


async def test_request_log_redacts_credentials() -> None:
    fake = FakeGitHub()
    token = fake.issue_token()
    async with client_for(fake) as client:
        await client.get("/user", headers={"Authorization": f"Bearer {token}", "X-Trace": "1"})
    (record,) = fake.requests
    assert record.method == "GET"
    assert record.path == "/user"
    assert record.auth_scheme == "Bearer"
    assert record.headers["authorization"] == "Bearer <redacted>"
    assert record.headers["x-trace"] == "1"
    assert record.credential_locations == {"header"}
    assert not record.token_in_url
    assert record.via == "transport"
    assert token not in repr(record)
    fake.assert_no_token_in_urls()


# -- Google ------------------------------------------------------------------------------


async def test_google_tokeninfo_by_query_form_and_header(clock: Any) -> None:
    fake = FakeGoogle(clock=clock)
    token = fake.issue_access_token(
        "1234567890",
        "client-a.apps.googleusercontent.com",
        ("openid", "email"),
        expires_in=3599,
        email="alice@example.com",
        access_type="offline",
    )
    assert token.startswith("ya29.")
    clock.advance(99)
    async with client_for(fake) as client:
        by_query = await client.get("/tokeninfo", params={"access_token": token})
        by_form = await client.post("/tokeninfo", data={"access_token": token})
        by_header = await client.post("/tokeninfo", headers=bearer(token))
    expected = {
        "azp": "client-a.apps.googleusercontent.com",
        "aud": "client-a.apps.googleusercontent.com",
        "sub": "1234567890",
        "scope": "openid email",
        "exp": str(int(clock() - 99 + 3599)),
        "expires_in": "3500",
        "email": "alice@example.com",
        "email_verified": "true",
        "access_type": "offline",
    }
    for response in (by_query, by_form, by_header):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=UTF-8"
        assert response.json() == expected
    assert [r.token_in_url for r in fake.requests] == [True, False, False]
    assert [set(r.credential_locations) for r in fake.requests] == [{"query"}, {"body"}, {"header"}]
    assert fake.requests[1].form == {"access_token": "<redacted>"}


async def test_google_email_needs_an_email_scope() -> None:
    fake = FakeGoogle()
    without = fake.issue_access_token(scopes=("openid",), email="alice@example.com", aud="other")
    unverified = fake.issue_access_token(
        scopes=("https://www.googleapis.com/auth/userinfo.email",),
        email="bob@example.com",
        email_verified=False,
    )
    async with client_for(fake) as client:
        first = (await client.post("/tokeninfo", data={"access_token": without})).json()
        second = (await client.post("/tokeninfo", data={"access_token": unverified})).json()
    assert "email" not in first
    assert "email_verified" not in first
    assert first["aud"] == "other"
    assert first["azp"] == "1234567890-fake.apps.googleusercontent.com"
    assert (second["email"], second["email_verified"]) == ("bob@example.com", "false")


async def test_google_invalid_tokens(clock: Any) -> None:
    fake = FakeGoogle(clock=clock)
    revoked, expired = fake.issue_access_token(), fake.issue_access_token(expires_in=10)
    fake.revoke(revoked)
    clock.advance(10)
    async with client_for(fake) as client:
        answers = [
            await client.post("/tokeninfo", data={"access_token": token})
            for token in ("ya29.unknown", revoked, expired)
        ]
        id_token = await client.get("/tokeninfo", params={"id_token": "a.b.c"})
        assert fake.requests[-1].token_in_url
        missing = await client.post("/tokeninfo")
    for response in (*answers, id_token):
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_token", "error_description": "Invalid Value"}
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "invalid_token",
        "error_description": "Either access_token, id_token, or token_handle required",
    }


async def test_google_errors_have_google_shapes() -> None:
    fake = FakeGoogle()
    token = fake.issue_access_token()
    fake.rate_limit_next(retry_after=10)
    fake.rate_limit_next()
    fake.server_error_next()
    async with client_for(fake) as client:
        limited = await client.post("/tokeninfo", data={"access_token": token})
        limited_again = await client.post("/tokeninfo", data={"access_token": token})
        unavailable = await client.post("/tokeninfo", data={"access_token": token})
        not_found = await client.get("/oauth2/v9/tokeninfo")
        wrong_method = await client.delete("/tokeninfo")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "10"
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "retry-after" not in limited_again.headers
    assert unavailable.status_code == 503
    assert unavailable.json() == {
        "error": {
            "code": 503,
            "message": "The service is currently unavailable.",
            "status": "UNAVAILABLE",
        }
    }
    assert not_found.status_code == wrong_method.status_code == 404
    assert not_found.headers["content-type"].startswith("text/html")


# -- Facebook ----------------------------------------------------------------------------


async def test_facebook_debug_token_for_a_valid_token(clock: Any) -> None:
    fake = FakeFacebook("111", "s3cret-s3cret", clock=clock)
    token = fake.issue_token("4242", ("email", "public_profile"), expires_in=3600)
    assert token.startswith("EAA")
    assert ALNUM.match(token)
    assert fake.app_access_token == "111|s3cret-s3cret"
    assert fake.graph_base == "https://graph.facebook.com"
    assert fake.debug_token_url == "https://graph.facebook.com/v19.0/debug_token"
    async with client_for(fake) as client:
        response = await client.get(
            fake.debug_token_url,
            params={"input_token": token, "access_token": fake.app_access_token},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    now = int(clock())
    assert response.json() == {
        "data": {
            "app_id": "111",
            "type": "USER",
            "application": "authbridge-test",
            "data_access_expires_at": now + 90 * 24 * 3600,
            "expires_at": now + 3600,
            "is_valid": True,
            "issued_at": now,
            "scopes": ["email", "public_profile"],
            "user_id": "4242",
        }
    }
    assert fake.requests[0].token_in_url
    assert fake.requests[0].query == {"input_token": "<redacted>", "access_token": "<redacted>"}


async def test_facebook_reports_other_apps_and_never_expiring_tokens() -> None:
    fake = FakeFacebook()
    foreign = fake.issue_token(app_id="999", expires_in=None)
    async with client_for(fake) as client:
        response = await client.get(
            "/debug_token", params={"input_token": foreign, "access_token": fake.app_access_token}
        )
    data = response.json()["data"]
    assert data["is_valid"] is True
    assert data["app_id"] == "999"
    assert data["application"] != fake.app_name
    assert data["expires_at"] == 0


async def test_facebook_invalid_input_tokens_answer_200(clock: Any) -> None:
    fake = FakeFacebook(clock=clock)
    expired, revoked = fake.issue_token("1", expires_in=60), fake.issue_token("2")
    fake.revoke(revoked)
    clock.advance(120)
    async with client_for(fake) as client:

        async def debug(token: str) -> dict[str, Any]:
            params = {"input_token": token, "access_token": fake.app_access_token}
            response = await client.get("/v19.0/debug_token", params=params)
            assert response.status_code == 200
            data: dict[str, Any] = response.json()["data"]
            return data

        garbage = await debug("xxxx")
        gone = await debug(expired)
        invalidated = await debug(revoked)
    assert garbage == {
        "error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
        "is_valid": False,
        "scopes": [],
    }
    assert gone["is_valid"] is False
    assert gone["user_id"] == "1"
    assert gone["error"]["code"] == 190
    assert gone["error"]["subcode"] == 463
    assert re.search(
        r"Session has expired on \w+day, \d\d-\w{3}-\d\d [\d:]{8} PST", gone["error"]["message"]
    )
    assert invalidated["is_valid"] is False
    assert invalidated["error"]["subcode"] == 460


@pytest.mark.parametrize(
    ("access_token", "code", "message"),
    [
        (None, 100, "(#100) You must provide an app access token"),
        ("USER", 100, "(#100) You must provide an app access token"),
        ("1234567890123456|wrong", 190, "Invalid OAuth access token signature."),
        ("garbage", 190, "Invalid OAuth access token - Cannot parse access token"),
    ],
)
async def test_facebook_bad_app_tokens_answer_400(
    access_token: str | None, code: int, message: str
) -> None:
    fake = FakeFacebook()
    user_token = fake.issue_token()
    params = {"input_token": user_token}
    if access_token is not None:
        params["access_token"] = user_token if access_token == "USER" else access_token
    async with client_for(fake) as client:
        response = await client.get("/v19.0/debug_token", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(message)
    assert error["type"] == "OAuthException"
    assert re.fullmatch(r"[0-9A-Za-z]{23}", error["fbtrace_id"])


async def test_facebook_missing_input_token_and_unknown_paths() -> None:
    fake = FakeFacebook()
    async with client_for(fake) as client:
        missing = await client.get("/debug_token", headers=bearer(fake.app_access_token))
        unknown = await client.get("/v19.0/me", headers=bearer(fake.app_access_token))
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == 100
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == 2500


async def test_facebook_app_token_in_the_authorization_header() -> None:
    fake = FakeFacebook()
    token = fake.issue_token()
    async with client_for(fake) as client:
        bearer_answer = await client.get(
            "/v21.0/debug_token",
            params={"input_token": token},
            headers=bearer(fake.app_access_token),
        )
        oauth_answer = await client.get(
            "/debug_token",
            params={"input_token": token},
            headers={"Authorization": f"OAuth {fake.app_access_token}"},
        )
    assert bearer_answer.json()["data"]["is_valid"] is True
    assert oauth_answer.json()["data"]["is_valid"] is True
    assert all(fake.app_secret not in str(r.query) for r in fake.requests)
    assert all(r.token_in_url for r in fake.requests)  # the user's token is still in the URL


async def test_facebook_post_debug_token_is_refused_unless_enabled() -> None:
    strict, lenient = FakeFacebook(), FakeFacebook(accept_post=True)
    form = {"input_token": strict.issue_token(), "access_token": strict.app_access_token}
    lenient_form = {"input_token": lenient.issue_token(), "access_token": lenient.app_access_token}
    async with client_for(strict) as client:
        refused = await client.post("/v19.0/debug_token", data=form)
    async with client_for(lenient) as client:
        accepted = await client.post("/v19.0/debug_token", data=lenient_form)
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "GraphMethodException"
    assert refused.json()["error"]["error_subcode"] == 33
    assert accepted.status_code == 200
    assert accepted.json()["data"]["is_valid"] is True
    lenient.assert_no_token_in_urls()


async def test_facebook_batch_keeps_the_token_out_of_the_url() -> None:
    fake = FakeFacebook()
    token = fake.issue_token("77")
    batch = [
        {"method": "GET", "relative_url": f"v19.0/debug_token?input_token={token}"},
        {"method": "GET", "relative_url": "debug_token?input_token=nope"},
        {"method": "GET", "relative_url": "me"},
        {"method": "POST", "relative_url": "debug_token"},
        "not an object",
    ]
    async with client_for(fake) as client:
        response = await client.post(
            "/",
            data={
                "access_token": fake.app_access_token,
                "batch": json.dumps(batch),
                "include_headers": "false",
            },
        )
        with_headers = await client.post(
            "/v19.0/", data={"batch": json.dumps(batch[:1])}, headers=bearer(fake.app_access_token)
        )
    assert response.status_code == 200
    results = response.json()
    assert [r["code"] for r in results] == [200, 200, 400, 400, 400]
    assert all("headers" not in r for r in results)
    first = json.loads(results[0]["body"])
    assert first["data"]["user_id"] == "77"
    assert first["data"]["is_valid"] is True
    assert json.loads(results[1]["body"])["data"]["is_valid"] is False
    assert json.loads(results[2]["body"])["error"]["code"] == 2500
    assert json.loads(results[4]["body"])["error"]["type"] == "OAuthException"
    item = with_headers.json()[0]
    assert item["headers"] == [{"name": "Content-Type", "value": "text/javascript; charset=UTF-8"}]
    assert json.loads(item["body"])["data"]["is_valid"] is True
    fake.assert_no_token_in_urls()
    assert fake.requests[0].form["batch"] == "<redacted>"
    assert fake.requests[0].credential_locations == {"body"}


async def test_facebook_batch_errors() -> None:
    fake = FakeFacebook()
    async with client_for(fake) as client:
        not_json = await client.post(
            "/", data={"batch": "[", "access_token": fake.app_access_token}
        )
        not_list = await client.post(
            "/", data={"batch": "{}", "access_token": fake.app_access_token}
        )
        too_many = await client.post(
            "/",
            data={
                "batch": json.dumps([{"relative_url": "me"}] * 51),
                "access_token": fake.app_access_token,
            },
        )
        no_app_token = await client.post(
            "/", data={"batch": json.dumps([{"relative_url": "debug_token?input_token=x"}])}
        )
    for response in (not_json, not_list, too_many):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == 100
    assert no_app_token.status_code == 200
    assert json.loads(no_app_token.json()[0]["body"])["error"]["code"] == 100


async def test_facebook_throttling_and_outages() -> None:
    fake = FakeFacebook()
    params = {"input_token": fake.issue_token(), "access_token": fake.app_access_token}
    fake.rate_limit_next()
    fake.server_error_next(status=500)
    async with client_for(fake) as client:
        limited = await client.get("/debug_token", params=params)
        broken = await client.get("/debug_token", params=params)
    assert limited.status_code == 403
    assert limited.json()["error"]["code"] == 4
    assert limited.json()["error"]["is_transient"] is True
    assert json.loads(limited.headers["x-app-usage"])["call_count"] == 100
    assert broken.status_code == 500
    assert broken.json()["error"]["code"] == 2


# -- OpenID Connect UserInfo -------------------------------------------------------------


async def test_userinfo_answers_claims_by_header_or_form() -> None:
    fake = FakeUserinfo("https://op.example.test/realms/main", userinfo_path="protocol/userinfo")
    token = fake.issue_token("alice", name="Alice", email="alice@example.test")
    assert fake.userinfo_endpoint == "https://op.example.test/realms/main/protocol/userinfo"
    assert fake.issuer == "https://op.example.test/realms/main"
    async with httpx.AsyncClient(transport=fake.transport) as client:
        by_header = await client.get(
            fake.userinfo_endpoint, headers={"Authorization": f"bearer {token}"}
        )
        by_form = await client.post(fake.userinfo_endpoint, data={"access_token": token})
    for response in (by_header, by_form):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"sub": "alice", "name": "Alice", "email": "alice@example.test"}
    fake.assert_no_token_in_urls()


async def test_userinfo_rfc6750_errors(clock: Any) -> None:
    fake = FakeUserinfo(clock=clock)
    good = fake.issue_token()
    revoked = fake.issue_token()
    expired = fake.issue_token(expires_in=5)
    no_openid = fake.issue_token(scopes=("profile",), expires_in=None)
    fake.revoke(revoked)
    clock.advance(5)
    async with client_for(fake) as client:
        missing = await client.get("/userinfo")
        in_query = await client.get("/userinfo", params={"access_token": good})
        unknown = await client.get("/userinfo", headers=bearer("not-a-token-at-all"))
        was_revoked = await client.get("/userinfo", headers=bearer(revoked))
        was_expired = await client.post("/userinfo", data={"access_token": expired})
        scope = await client.get("/userinfo", headers=bearer(no_openid))
        twice = await client.post("/userinfo", headers=bearer(good), data={"access_token": good})
        put = await client.put("/userinfo", headers=bearer(good))
        elsewhere = await client.get("/me", headers=bearer(good))
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
    assert (in_query.status_code, in_query.headers["www-authenticate"]) == (401, "Bearer")
    invalid = 'Bearer error="invalid_token", error_description="The access token is invalid"'
    assert (unknown.status_code, unknown.headers["www-authenticate"]) == (401, invalid)
    assert was_revoked.headers["www-authenticate"] == invalid
    assert was_expired.status_code == 401
    assert was_expired.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The access token expired"'
    )
    assert scope.status_code == 403
    assert scope.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", '
        'error_description="The openid scope is required", scope="openid"'
    )
    assert twice.status_code == 400
    assert twice.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert (put.status_code, put.headers["allow"]) == (405, "GET, POST")
    assert elsewhere.status_code == 404
    assert fake.requests[1].token_in_url


async def test_userinfo_rate_limit_and_outage() -> None:
    fake = FakeUserinfo()
    token = fake.issue_token()
    fake.rate_limit_next()
    fake.rate_limit_next(retry_after=5)
    async with client_for(fake) as client:
        first = await client.get("/userinfo", headers=bearer(token))
        second = await client.get("/userinfo", headers=bearer(token))
    assert (first.status_code, first.headers["retry-after"]) == (429, "60")
    assert second.headers["retry-after"] == "5"


# -- over real loopback HTTP -------------------------------------------------------------


@pytest.mark.parametrize("served", [True, False], ids=["http", "transport"])
async def test_requests_in_flight_are_counted(served: bool) -> None:
    fake = FakeUserinfo()
    token = fake.issue_token()
    fake.slow_next(2.0, count=5)  # long enough for all five to overlap, even under load
    with fake.serve() if served else contextlib.nullcontext(fake):
        kwargs: dict[str, Any] = {} if served else {"transport": fake.transport}
        async with httpx.AsyncClient(base_url=fake.base_url, **kwargs) as client:
            answers = await asyncio.gather(
                *(client.get("/userinfo", headers=bearer(token)) for _ in range(5))
            )
            after = await client.get("/userinfo", headers=bearer(token))
    assert [a.status_code for a in answers] == [200] * 5
    assert after.status_code == 200
    assert fake.peak_in_flight == 5
    assert fake.in_flight == 0


async def test_served_fakes_keep_connections_alive() -> None:
    fake = FakeUserinfo()
    token = fake.issue_token()
    with fake.serve():
        async with httpx.AsyncClient(base_url=fake.base_url) as client:
            first = await client.get("/userinfo", headers=bearer(token))
            second = await client.get("/userinfo", headers=bearer(token))
    assert first.http_version == second.http_version == "HTTP/1.1"
    assert "close" not in first.headers.get("connection", "").lower()
    assert second.status_code == 200


async def test_github_over_http() -> None:
    fake = FakeGitHub()
    token = fake.issue_token(scopes=("read:user",))
    with fake.serve() as served:
        assert served is fake
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.api_base)
        async with httpx.AsyncClient(base_url=fake.api_base) as client:
            ok = await client.get("/user", headers=bearer(token))
            head = await client.head("/user", headers=bearer(token))
            bad = await client.get("/user", headers=bearer("gho_nope"))
        with pytest.raises(RuntimeError, match="already serving"), fake.serve():
            pass  # pragma: no cover - never entered
    assert fake.api_base == "https://api.github.com"
    assert ok.status_code == 200
    assert ok.headers["x-oauth-scopes"] == "read:user"
    assert ok.json()["login"] == "octocat"
    assert ok.json()["url"].startswith("http://127.0.0.1:")
    assert (head.status_code, head.content) == (200, b"")
    assert int(head.headers["content-length"]) > 0
    assert bad.status_code == 401
    assert {r.via for r in fake.requests} == {"http"}
    fake.assert_no_token_in_urls()


async def test_enterprise_base_path_survives_serving() -> None:
    fake = FakeGitHub("https://ghe.example.test/api/v3")
    token = fake.issue_token()
    with fake.serve():
        assert fake.api_base.endswith("/api/v3")
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{fake.api_base}/user", headers=bearer(token))
    assert response.status_code == 200


async def test_google_and_facebook_over_http() -> None:
    google, facebook = FakeGoogle(), FakeFacebook()
    g_token, f_token = google.issue_access_token(), facebook.issue_token()
    with google.serve(), facebook.serve():
        async with httpx.AsyncClient() as client:
            info = await client.post(google.tokeninfo_url, data={"access_token": g_token})
            debug = await client.get(
                facebook.debug_token_url,
                params={"input_token": f_token},
                headers=bearer(facebook.app_access_token),
            )
    assert info.status_code == 200
    assert info.json()["sub"] == "110169484474386276334"
    assert debug.status_code == 200
    assert debug.json()["data"]["is_valid"] is True
    assert google.requests[0].via == facebook.requests[0].via == "http"


async def test_userinfo_over_http_with_failures() -> None:
    fake = FakeUserinfo()
    token = fake.issue_token(email="a@example.test")
    fake.server_error_next()
    fake.garbage_next(status=200)
    with fake.serve():
        async with httpx.AsyncClient() as client:
            down = await client.get(fake.userinfo_endpoint, headers=bearer(token))
            garbage = await client.get(fake.userinfo_endpoint, headers=bearer(token))
            ok = await client.post(fake.userinfo_endpoint, data={"access_token": token})
            challenge = await client.get(fake.userinfo_endpoint)
            others = [
                (await client.request(method, fake.userinfo_endpoint)).status_code
                for method in ("PUT", "PATCH", "DELETE")
            ]
    assert others == [405, 405, 405]
    assert down.status_code == 503
    assert garbage.headers["content-type"] == "text/html"
    assert ok.json() == {"sub": "alice", "email": "a@example.test"}
    assert challenge.headers["www-authenticate"] == "Bearer"


async def test_slow_answers_over_http_time_out() -> None:
    fake = FakeUserinfo()
    token = fake.issue_token()
    fake.slow_next(5)
    fake.slow_next(0.05)
    with fake.serve():
        async with httpx.AsyncClient(timeout=0.5) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(fake.userinfo_endpoint, headers=bearer(token))
            late = await client.get(fake.userinfo_endpoint, headers=bearer(token))
    assert late.status_code == 200
