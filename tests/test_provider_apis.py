"""Tokens only their provider's API can vouch for: GitHub, Google, Facebook, userinfo.

SECURITY-CASES §5 (opaque tokens checked by asking their provider) and §8 (secrets).
Each test runs the real verifiers (``ResourceServer``, or ``AuthBridge`` behind a
FastAPI app) against the test kit's fake provider APIs, all on one ``FakeClock``
shared by the resource server and the fakes. Google ID tokens are minted by a
``FakeIssuer`` that answers for ``accounts.google.com`` (its JWKS).

The ``world`` fixture routes every outbound request by host, fails any request
to a host nobody serves, and after each test checks that no credential ever
travelled in a URL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import string
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient

from authbridge import (
    AuthBridge,
    FacebookProvider,
    GitHubProvider,
    GoogleProvider,
    InvalidToken,
    Principal,
    ProviderUnavailable,
    ResourceServer,
    UserinfoProvider,
)
from authbridge.resource.base import Provider
from authbridge.resource.server import MAX_CACHE_TTL
from authbridge.testing import (
    FakeAPI,
    FakeFacebook,
    FakeGitHub,
    FakeGoogle,
    FakeIssuer,
    FakeUserinfo,
    sign_jwt,
)

GOOGLE_ISSUER = "https://accounts.google.com"
GOOGLE_CLIENT = "1234567890-fake.apps.googleusercontent.com"  # FakeGoogle's default client
OTHER_GOOGLE_CLIENT = "999999999-other.apps.googleusercontent.com"
ANDROID_CLIENT = "1234567890-android.apps.googleusercontent.com"
SMALL_TIMEOUT = 0.1
CACHE_TTL = 60.0
NEGATIVE_TTL = 5.0
ALNUM = string.ascii_letters + string.digits

KINDS = ("github", "github-app", "google", "facebook", "userinfo")
"""Every verifier that asks a provider's API (``github-app``: GitHub's "Check a token")."""

FAKE_OF_KIND = {
    "github": "github",
    "github-app": "github",
    "google": "google",
    "facebook": "facebook",
    "userinfo": "op",
}


def alnum(length: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(length))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def error_text(error: BaseException) -> str:
    return "".join([str(error), repr(error), *traceback.format_exception(error)])


# -- the network ----------------------------------------------------------------------------


class World:
    """The fake providers, one shared clock, and a transport routing requests by host."""

    def __init__(self, clock: Any, key: rsa.RSAPrivateKey) -> None:
        self.clock = clock
        self.github = FakeGitHub(clock=clock)
        self.google = FakeGoogle(clock=clock)
        self.facebook = FakeFacebook(clock=clock)
        self.op = FakeUserinfo("https://op.example.test", clock=clock)
        self.op2 = FakeUserinfo("https://op2.example.test", clock=clock)
        self.google_keys = FakeIssuer(GOOGLE_ISSUER, GOOGLE_CLIENT, key=key, kid="google-1")
        self.fakes: dict[str, FakeAPI[Any]] = {
            "github": self.github,
            "google": self.google,
            "facebook": self.facebook,
            "op": self.op,
            "op2": self.op2,
        }
        self.discovery: dict[str, dict[str, Any]] = {}
        """Discovery documents served in front of the fakes, by URL."""
        self.discovery_requests: list[str] = []
        self.unrouted: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.host == httpx.URL(GOOGLE_ISSUER).host:
            return await self.google_keys.transport.handle_async_request(request)
        plain = f"{url.scheme}://{url.host}{url.path}"
        if plain in self.discovery:
            self.discovery_requests.append(plain)
            return httpx.Response(200, json=self.discovery[plain])
        for fake in self.fakes.values():
            if fake.serves(url):
                return await fake.transport.handle_async_request(request)
        self.unrouted.append(request)
        raise httpx.ConnectError("no fake serves this host", request=request)

    def counts(self) -> dict[str, int]:
        """Requests received so far by each fake (and JWKS fetches at Google)."""
        counts = {name: len(fake.requests) for name, fake in self.fakes.items()}
        counts["google_jwks"] = len(self.google_keys.requests)
        return counts

    def only(self, **expected: int) -> dict[str, int]:
        """``counts()`` as it must be when only the named fakes were asked."""
        return {name: expected.get(name, 0) for name in self.counts()}

    def secrets(self) -> tuple[str, ...]:
        """Every app credential, in every spelling it travels in."""
        github_basic = f"{self.github.client_id}:{self.github.client_secret}".encode()
        return (
            self.github.client_secret,
            base64.b64encode(github_basic).decode(),
            self.facebook.app_secret,
            self.facebook.app_access_token,
        )

    def assert_no_leak(self, text: str, *tokens: str) -> None:
        for value in (*tokens, *self.secrets()):
            assert value not in text

    # -- providers configured against the fakes ----------------------------------------

    def github_provider(self, *, app: bool = False, **options: Any) -> GitHubProvider:
        if app:
            options.setdefault("client_id", self.github.client_id)
            options.setdefault("client_secret", self.github.client_secret)
        return GitHubProvider(api_base=self.github.api_base, **options)

    def google_provider(self, **options: Any) -> GoogleProvider:
        options.setdefault("client_ids", GOOGLE_CLIENT)
        return GoogleProvider(
            tokeninfo_url=self.google.tokeninfo_url, jwks_uri=self.google_keys.jwks_uri, **options
        )

    def facebook_provider(self, **options: Any) -> FacebookProvider:
        options.setdefault("app_secret", self.facebook.app_secret)
        return FacebookProvider(
            self.facebook.app_id, graph_base=self.facebook.graph_base, **options
        )

    def userinfo_provider(
        self, name: str = "op", fake: FakeUserinfo | None = None, **options: Any
    ) -> UserinfoProvider:
        fake = fake or self.op
        options.setdefault("userinfo_endpoint", fake.userinfo_endpoint)
        return UserinfoProvider(name, fake.issuer, **options)

    def provider(self, kind: str, **options: Any) -> Provider:
        if kind in ("github", "github-app"):
            return self.github_provider(app=kind == "github-app", **options)
        if kind == "google":
            return self.google_provider(**options)
        if kind == "facebook":
            return self.facebook_provider(**options)
        return self.userinfo_provider(**options)

    def all_providers(self) -> list[Provider]:
        """One of each, plus a second unprefixed userinfo source after the first."""
        return [
            self.github_provider(),
            self.google_provider(),
            self.facebook_provider(),
            self.userinfo_provider("op"),
            self.userinfo_provider("op2", self.op2),
        ]

    # -- tokens --------------------------------------------------------------------------

    def issue(self, kind: str, *, expires_in: float | None = 3600) -> str:
        """A valid token for ``kind`` (``None``: a token that never expires, where possible)."""
        if kind in ("github", "github-app"):
            return self.github.issue_token(
                "mona", 583231, scopes=("repo", "read:user"), kind="gho", expires_in=expires_in
            )
        if kind == "google":
            return self.google.issue_access_token(
                "110169484474386276334", expires_in=3600 if expires_in is None else expires_in
            )
        if kind == "facebook":
            return self.facebook.issue_token("10001", expires_in=expires_in)
        return self.op.issue_token("alice", expires_in=expires_in, name="Alice")

    def refused(self, kind: str) -> str:
        """A token the provider refuses in its documented way."""
        if kind == "github":
            return FakeGitHub.well_formed_token("ghp")  # 401 Bad credentials
        if kind == "github-app":
            return self.github.issue_token(client_id="Iv1.another0app")  # 404 from check-token
        if kind == "google":
            return "ya29." + alnum(150)  # 400 invalid_token
        if kind == "facebook":
            return "EAA" + alnum(180)  # 200, is_valid: false
        return alnum(43)  # 401 invalid_token

    def subject(self, kind: str) -> str:
        return {
            "github": "583231",
            "github-app": "583231",
            "google": "110169484474386276334",
            "facebook": "10001",
            "userinfo": "alice",
        }[kind]

    def id_token(self, *, expires_in: float = 300, **claims: Any) -> str:
        """A Google ID token (RS256, ``typ: JWT``) from the fake key set."""
        claims.setdefault("client_id", None)  # Google's ID tokens name their client in azp
        claims.setdefault("azp", GOOGLE_CLIENT)
        claims.setdefault("email", "alice@example.com")
        claims.setdefault("email_verified", True)
        return self.google_keys.token(
            "110169484474386276334", expires_in=expires_in, header={"typ": "JWT"}, **claims
        )


@pytest.fixture
def world(clock: Any, authbridge_signing_key: rsa.RSAPrivateKey) -> Iterator[World]:
    clock.now = float(int(clock.now))  # whole seconds: the providers report whole seconds
    world = World(clock, authbridge_signing_key)
    yield world
    for fake in world.fakes.values():
        fake.assert_no_token_in_urls()
    assert world.unrouted == []


@asynccontextmanager
async def running(world: World, *providers: Provider, **options: Any) -> AsyncIterator[Any]:
    options.setdefault("http_timeout", SMALL_TIMEOUT)
    server = ResourceServer(providers, transport=world.transport, clock=world.clock, **options)
    await server.start(warm_up=False)
    try:
        yield server
    finally:
        await server.aclose()


def fake_of(world: World, kind: str) -> FakeAPI[Any]:
    return world.fakes[FAKE_OF_KIND[kind]]


# -- GitHub -----------------------------------------------------------------------------------


async def test_github_user_endpoint_gives_the_principal_and_reads_x_oauth_scopes(
    world: World,
) -> None:
    token = world.github.issue_token(
        "mona", 583231, scopes=("repo", "read:user"), kind="ghp", name="Mona", email="m@x.test"
    )
    async with running(world, world.github_provider()) as server:
        principal = await server.verify(token)

    assert principal.provider == "github"
    assert principal.issuer == "https://github.com"
    assert principal.subject == "583231"  # the numeric id: logins can change
    assert principal.client_id is None  # /user does not say which app the token belongs to
    assert principal.scopes == {"repo", "read:user"}
    assert principal.expires_at is None
    assert principal.claims["login"] == "mona"
    assert principal.claims["id"] == 583231
    assert principal.claims["name"] == "Mona"
    assert principal.claims["email"] == "m@x.test"
    [request] = world.github.requests
    assert (request.method, request.path) == ("GET", "/user")
    assert request.auth_scheme == "Bearer"
    assert request.credential_locations == {"header"}
    assert request.headers["accept"] == "application/vnd.github+json"


async def test_github_empty_or_absent_scope_header_means_no_scopes(world: World) -> None:
    classic = world.github.issue_token(scopes=(), kind="gho")  # "X-OAuth-Scopes: "
    fine_grained = world.github.issue_token(kind="github_pat", expires_in=7200)  # no header
    async with running(world, world.github_provider()) as server:
        assert (await server.verify(classic)).scopes == frozenset()
        principal = await server.verify(fine_grained)
    assert principal.scopes == frozenset()
    # github-authentication-token-expiration: "YYYY-MM-DD HH:MM:SS UTC"
    assert principal.expires_at == at(world.clock.now + 7200)


async def test_github_app_check_gives_the_principal_with_the_app_client_id(
    world: World,
) -> None:
    token = world.github.issue_token("mona", 583231, scopes=("repo",), expires_in=7200)
    async with running(world, world.github_provider(app=True)) as server:
        principal = await server.verify(token)

    assert principal.provider == "github"
    assert principal.issuer == "https://github.com"
    assert principal.subject == "583231"
    assert principal.client_id == world.github.client_id
    assert principal.scopes == {"repo"}
    assert principal.expires_at == at(world.clock.now + 7200)
    assert principal.claims["login"] == "mona"
    [request] = world.github.requests  # "Check a token", never GET /user
    assert request.method == "POST"
    assert request.path == f"/applications/{world.github.client_id}/token"
    assert request.auth_scheme == "Basic"  # the app's credentials
    assert request.credential_locations == {"header", "body"}  # the token in the JSON body


async def test_github_app_check_refuses_a_token_of_another_app(world: World) -> None:
    other_app = world.github.issue_token(client_id="Iv1.another0app")
    async with running(world, world.github_provider(app=True)) as server:
        with pytest.raises(InvalidToken) as caught:
            await server.verify(other_app)
    assert caught.value.reason == "rejected_by_provider"  # GitHub answered 404
    assert [r.path for r in world.github.requests] == [
        f"/applications/{world.github.client_id}/token"
    ]


async def test_github_app_check_refuses_a_200_naming_another_app(world: World) -> None:
    token = world.github.issue_token()
    body = {
        "app": {"client_id": "Iv1.another0app"},
        "scopes": [],
        "user": {"login": "mona", "id": 1},
    }
    world.github.fail_next(200, body=body)
    async with running(world, world.github_provider(app=True)) as server:
        with pytest.raises(InvalidToken) as caught:
            await server.verify(token)
    assert caught.value.reason == "client_mismatch"


@pytest.mark.parametrize("app", [False, True], ids=["user", "app-check"])
async def test_github_refuses_unknown_revoked_expired_and_refresh_tokens(
    world: World, app: bool
) -> None:
    revoked = world.github.issue_token()
    world.github.revoke(revoked)
    expiring = world.github.issue_token(expires_in=60)
    refresh = world.github.issue_token(kind="ghr")
    world.clock.advance(61)
    tokens = [
        FakeGitHub.well_formed_token("ghp"),
        FakeGitHub.well_formed_token("gho"),
        revoked,
        expiring,
    ]
    if not app:
        tokens.append(refresh)  # /user: 401 Bad credentials for a refresh token
    async with running(world, world.github_provider(app=app)) as server:
        for token in tokens:
            with pytest.raises(InvalidToken) as caught:
                await server.verify(token)
            assert caught.value.reason == "rejected_by_provider"
            assert caught.value.provider == "github"
    assert len(world.github.requests) == len(tokens)


async def test_github_installation_token_is_never_accepted_as_a_user(world: World) -> None:
    installation = world.github.issue_token(kind="ghs")  # /user answers 403
    async with running(world, world.github_provider()) as server:
        with pytest.raises((InvalidToken, ProviderUnavailable)):
            await server.verify(installation)


async def test_github_app_check_with_wrong_app_credentials_fails_closed(world: World) -> None:
    token = world.github.issue_token()
    provider = world.github_provider(app=True, client_secret="not-the-app-secret-0000")
    async with running(world, provider) as server:
        with pytest.raises(ProviderUnavailable) as caught:
            await server.verify(token)
    assert caught.value.reason == "http_status:401"  # our credentials, not the token
    assert [r.method for r in world.github.requests] == ["POST"]  # no fallback to /user


@pytest.mark.parametrize("app", [False, True], ids=["user", "app-check"])
@pytest.mark.parametrize("status", [403, 429])
async def test_github_primary_rate_limit_is_rate_limited(
    world: World, app: bool, status: Any
) -> None:
    token = world.github.issue_token()
    world.github.rate_limit_next(status=status)
    async with running(world, world.github_provider(app=app)) as server:
        with pytest.raises(ProviderUnavailable) as caught:
            await server.verify(token)
        assert caught.value.reason == "rate_limited"
        assert (await server.verify(token)).subject == "1"  # not remembered: asked again
    assert len(world.github.requests) == 2


async def test_github_secondary_rate_limit_and_exhausted_quota_fail_closed(world: World) -> None:
    world.github.rate_limit = 1
    first, second = world.github.issue_token(), world.github.issue_token()
    third = world.github.issue_token(user_id=2)
    world.github.rate_limit_next(secondary=True, retry_after=30)
    async with running(world, world.github_provider()) as server:
        with pytest.raises(ProviderUnavailable):
            await server.verify(third)  # secondary limit: 403, remaining not 0
        await server.verify(first)
        with pytest.raises(ProviderUnavailable) as caught:
            await server.verify(second)  # the user's quota is spent: 403, remaining 0
    assert caught.value.reason == "rate_limited"


async def test_github_200_without_a_numeric_user_id_fails_closed(world: World) -> None:
    token = world.github.issue_token()
    world.github.fail_next(200, body={"login": "mona", "id": "583231"})
    async with running(world, world.github_provider()) as server:
        with pytest.raises(ProviderUnavailable) as caught:
            await server.verify(token)
    assert caught.value.reason == "unexpected_response"


# -- Google access tokens (tokeninfo) ---------------------------------------------------------


async def test_google_access_token_gives_the_principal(world: World) -> None:
    token = world.google.issue_access_token(
        "110169484474386276334",
        scopes=("openid", "email"),
        expires_in=3599,
        email="alice@example.com",
    )
    async with running(world, world.google_provider()) as server:
        principal = await server.verify(token)

    assert principal.provider == "google"
    assert principal.issuer == GOOGLE_ISSUER
    assert principal.subject == "110169484474386276334"
    assert principal.client_id == GOOGLE_CLIENT
    assert principal.scopes == {"openid", "email"}
    assert principal.expires_at == at(world.clock.now + 3599)
    assert principal.claims["email"] == "alice@example.com"
    assert principal.claims["aud"] == GOOGLE_CLIENT
    [request] = world.google.requests
    assert (request.method, request.path) == ("POST", "/tokeninfo")
    assert request.credential_locations == {"header"}
    assert request.query == {}
    assert world.counts()["google_jwks"] == 0  # access tokens need no keys


async def test_google_refuses_unknown_expired_and_revoked_access_tokens(world: World) -> None:
    expiring = world.google.issue_access_token(expires_in=60)
    revoked = world.google.issue_access_token()
    world.google.revoke(revoked)
    world.clock.advance(61)
    async with running(world, world.google_provider()) as server:
        for token in ("ya29." + alnum(150), expiring, revoked):
            with pytest.raises(InvalidToken) as caught:
                await server.verify(token)
            assert caught.value.reason == "rejected_by_provider"  # 400 invalid_token
    assert len(world.google.requests) == 3


async def test_google_refuses_an_access_token_of_another_client(world: World) -> None:
    token = world.google.issue_access_token(client_id=OTHER_GOOGLE_CLIENT)  # aud = azp = other
    async with running(world, world.google_provider()) as server:
        with pytest.raises(InvalidToken) as caught:
            await server.verify(token)
    assert caught.value.reason == "audience_mismatch"


async def test_google_refuses_an_access_token_whose_audience_is_another_client(
    world: World,
) -> None:
    # Issued to our client (azp) for another client's API (aud): a token meant for
    # someone else, who could replay it here. Google: "aud must match your client id".
    token = world.google.issue_access_token(client_id=GOOGLE_CLIENT, aud=OTHER_GOOGLE_CLIENT)
    async with running(world, world.google_provider()) as server:
        with pytest.raises(InvalidToken):
            await server.verify(token)


async def test_google_accepts_a_cross_client_token_whose_audience_is_ours(world: World) -> None:
    # Google's cross-client identity: the Android client (azp) got a token for us (aud).
    token = world.google.issue_access_token(client_id=ANDROID_CLIENT, aud=GOOGLE_CLIENT)
    async with running(world, world.google_provider()) as server:
        principal = await server.verify(token)
    assert principal.client_id == ANDROID_CLIENT


async def test_google_accepts_any_of_several_client_ids(world: World) -> None:
    token = world.google.issue_access_token(client_id=OTHER_GOOGLE_CLIENT)
    provider = world.google_provider(client_ids=[GOOGLE_CLIENT, OTHER_GOOGLE_CLIENT])
    async with running(world, provider) as server:
        assert (await server.verify(token)).client_id == OTHER_GOOGLE_CLIENT


def tokeninfo(world: World, **members: Any) -> dict[str, Any]:
    info = {
        "azp": GOOGLE_CLIENT,
        "aud": GOOGLE_CLIENT,
        "sub": "110169484474386276334",
        "scope": "openid email",
        "exp": str(int(world.clock.now) + 600),
        "expires_in": "600",
    }
    info.update(members)
    return {k: v for k, v in info.items() if v is not None}


async def test_google_checks_expiry_itself(world: World) -> None:
    token = "ya29." + alnum(150)
    world.google.fail_next(200, body=tokeninfo(world, exp=str(int(world.clock.now) - 1)))
    world.google.fail_next(200, body=tokeninfo(world, exp=None, expires_in=None))
    world.google.fail_next(200, body=tokeninfo(world, exp="tomorrow", expires_in=None))
    world.google.fail_next(200, body=tokeninfo(world, exp=None, expires_in="120"))
    async with running(world, world.google_provider(negative_cache_ttl=0)) as server:
        for _ in range(3):
            with pytest.raises(InvalidToken) as caught:
                await server.verify(token)
            assert caught.value.reason == "expired"
        principal = await server.verify(token)  # expires_in alone: now + expires_in
    assert principal.expires_at == at(world.clock.now + 120)


async def test_google_hosted_domain(world: World) -> None:
    provider = world.google_provider(hosted_domain="example.com")
    plain = world.google.issue_access_token()  # tokeninfo reports no hd: cannot be proven
    async with running(world, provider, cache_size=0) as server:
        with pytest.raises(InvalidToken) as caught:
            await server.verify(plain)
        assert caught.value.claim == "hd"
        world.google.fail_next(200, body=tokeninfo(world, hd="other.example"))
        with pytest.raises(InvalidToken):
            await server.verify(plain)
        world.google.fail_next(200, body=tokeninfo(world, hd="example.com"))
        assert (await server.verify(plain)).claims["hd"] == "example.com"

        assert (await server.verify(world.id_token(hd="example.com"))).claims["hd"] == "example.com"
        for id_token in (world.id_token(hd="other.example"), world.id_token()):
            with pytest.raises(InvalidToken) as caught:
                await server.verify(id_token)
            assert caught.value.claim == "hd"


# -- Google ID tokens (JWTs, verified locally) ------------------------------------------------


@pytest.mark.parametrize("iss", [GOOGLE_ISSUER, "accounts.google.com"])
async def test_google_id_token_with_either_issuer_spelling(world: World, iss: str) -> None:
    token = world.id_token(iss=iss)
    async with running(world, world.google_provider()) as server:
        principal = await server.verify(token)

    claims = claims_of(token)
    assert principal.provider == "google"
    assert principal.issuer == GOOGLE_ISSUER  # one spelling in the Principal
    assert principal.subject == "110169484474386276334"
    assert principal.client_id == GOOGLE_CLIENT
    assert principal.scopes == frozenset()
    assert principal.expires_at == at(claims["exp"])
    assert principal.claims == claims
    assert principal.claims["iss"] == iss
    # Verified with Google's keys, never sent to tokeninfo.
    assert world.counts() == world.only(google_jwks=1)


@pytest.mark.parametrize(
    "iss",
    [
        "http://accounts.google.com",
        "https://accounts.google.com/",
        "HTTPS://ACCOUNTS.GOOGLE.COM",
        "Accounts.google.com",
        "https://accounts.google.com.evil.test",
        "accounts.google.com ",
    ],
)
async def test_google_id_token_with_another_issuer_spelling_is_refused(
    world: World, iss: str
) -> None:
    async with running(world, world.google_provider()) as server:
        with pytest.raises(InvalidToken) as caught:
            await server.verify(world.id_token(iss=iss))
    assert caught.value.reason == "unknown_issuer"
    assert world.counts() == world.only()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": OTHER_GOOGLE_CLIENT, "azp": OTHER_GOOGLE_CLIENT}, "audience_mismatch"),
        ({"aud": OTHER_GOOGLE_CLIENT}, "audience_mismatch"),
        (
            {"aud": [GOOGLE_CLIENT, OTHER_GOOGLE_CLIENT], "azp": OTHER_GOOGLE_CLIENT},
            "authorized_party_mismatch",
        ),
        ({"expires_in": -60}, "expired"),  # beyond the 30 s leeway
        ({"sub": None}, "missing_claim"),
        ({"iat": None}, "missing_claim"),
    ],
    ids=["other-client", "other-aud", "other-azp-of-several-aud", "expired", "no-sub", "no-iat"],
)
async def test_google_id_token_refusals(
    world: World, claims: dict[str, Any], reason: str | None
) -> None:
    options = dict(claims)
    expires_in = options.pop("expires_in", 300)
    if "sub" in options:  # world.id_token sets the subject itself
        options.pop("sub")
        token = world.google_keys.token(
            None, expires_in=expires_in, header={"typ": "JWT"}, client_id=None, **options
        )
    else:
        token = world.id_token(expires_in=expires_in, **options)
    async with running(world, world.google_provider()) as server:
        with pytest.raises(InvalidToken) as caught:
            await server.verify(token)
    if reason is not None:
        assert caught.value.reason == reason
    assert world.counts()["google"] == 0


async def test_google_id_token_must_be_an_id_token_signed_by_google(world: World) -> None:
    access_token_typ = world.google_keys.token(
        "110169484474386276334", client_id=None, azp=GOOGLE_CLIENT
    )  # typ at+jwt
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    forged = sign_jwt(
        {"alg": "RS256", "typ": "JWT", "kid": world.google_keys.kid},
        claims_of(world.id_token()),
        stranger,
    )
    no_typ = sign_jwt(
        {"alg": "RS256", "kid": world.google_keys.kid},
        claims_of(world.id_token()),
        world.google_keys.key,
    )
    async with running(world, world.google_provider()) as server:
        for token in (access_token_typ, forged):
            with pytest.raises(InvalidToken):
                await server.verify(token)
        assert (await server.verify(no_typ)).subject == "110169484474386276334"
    assert world.counts()["google"] == 0


async def test_google_id_token_is_cached_and_never_served_past_expiry(world: World) -> None:
    token = world.id_token(expires_in=20)
    async with running(world, world.google_provider()) as server:
        first = await server.verify(token)
        assert await server.verify(token) == first
        assert server.cached_tokens == 1
        world.clock.advance(20 + 30 + 2)  # exp plus the leeway (and a second of minting)
        with pytest.raises(InvalidToken) as caught:
            await server.verify(token)
    assert caught.value.reason == "expired"
    assert world.counts() == world.only(google_jwks=1)


# -- Facebook (debug_token inside a Graph batch) ----------------------------------------------


async def test_facebook_token_gives_the_principal(world: World) -> None:
    token = world.facebook.issue_token("10001", scopes=("public_profile", "email"))
    async with running(world, world.facebook_provider()) as server:
        principal = await server.verify(token)

    assert principal.provider == "facebook"
    assert principal.issuer == "https://www.facebook.com"
    assert principal.subject == "10001"
    assert principal.client_id == world.facebook.app_id
    assert principal.scopes == {"public_profile", "email"}
    assert principal.expires_at == at(world.clock.now + 60 * 24 * 3600)
    assert principal.claims["app_id"] == world.facebook.app_id
    assert principal.claims["is_valid"] is True
    [request] = world.facebook.requests
    assert (request.method, request.path) == ("POST", "/")  # the Graph batch endpoint
    assert request.query == {}
    assert request.credential_locations == {"body"}  # app token and user token in the form
    assert request.form["batch"] == "<redacted>"


async def test_facebook_token_that_never_expires(world: World) -> None:
    token = world.facebook.issue_token(expires_in=None)  # debug_token: "expires_at": 0
    async with running(world, world.facebook_provider()) as server:
        principal = await server.verify(token)
        world.clock.advance(CACHE_TTL - 1)
        await server.verify(token)
        assert len(world.facebook.requests) == 1
        world.clock.advance(1)
        await server.verify(token)
    assert principal.expires_at is None
    assert len(world.facebook.requests) == 2


async def test_facebook_refuses_invalid_expired_revoked_and_other_apps_tokens(
    world: World,
) -> None:
    expiring = world.facebook.issue_token(expires_in=60)
    revoked = world.facebook.issue_token()
    world.facebook.revoke(revoked)
    other_app = world.facebook.issue_token(app_id="6543210987654321")  # is_valid: true!
    world.clock.advance(61)
    cases = [
        ("EAA" + alnum(180), "rejected_by_provider"),
        (expiring, "rejected_by_provider"),
        (revoked, "rejected_by_provider"),
        (other_app, "client_mismatch"),
    ]
    async with running(world, world.facebook_provider()) as server:
        for token, reason in cases:
            with pytest.raises(InvalidToken) as caught:
                await server.verify(token)
            assert caught.value.reason == reason
    assert len(world.facebook.requests) == len(cases)


def graph_batch(data: dict[str, Any], code: int = 200) -> bytes:
    return json.dumps([{"code": code, "body": json.dumps({"data": data})}]).encode()


async def test_facebook_checks_validity_type_and_expiry_itself(world: World) -> None:
    now = int(world.clock.now)
    good = {
        "app_id": world.facebook.app_id,
        "type": "USER",
        "is_valid": True,
        "expires_at": now + 600,
        "user_id": "10001",
        "scopes": [],
    }
    answers = [
        ({**good, "is_valid": "true"}, "rejected_by_provider"),
        ({**good, "is_valid": 1}, "rejected_by_provider"),
        ({**good, "type": "PAGE"}, "wrong_token_type"),
        ({**good, "type": "APP"}, "wrong_token_type"),
        ({**good, "expires_at": now - 1}, "expired"),
        ({**good, "app_id": int(world.facebook.app_id) + 1}, "client_mismatch"),
    ]
    token = "EAA" + alnum(180)
    async with running(world, world.facebook_provider(negative_cache_ttl=0)) as server:
        for data, reason in answers:
            world.facebook.fail_next(200, body=graph_batch(data))
            with pytest.raises(InvalidToken) as caught:
                await server.verify(token)
            assert caught.value.reason == reason
        world.facebook.fail_next(200, body=graph_batch(good))
        assert (await server.verify(token)).subject == "10001"


async def test_facebook_wrong_app_secret_fails_closed(world: World) -> None:
    token = world.facebook.issue_token()
    provider = world.facebook_provider(app_secret="0123456789abcdef0123456789abcdef")
    async with running(world, provider) as server:
        with pytest.raises(ProviderUnavailable) as caught:
            await server.verify(token)
    assert caught.value.reason == "graph_error:190"  # the batch item is our app token's 400


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{}",
        b'[{"code": 200, "body": "not json"}]',
        b'[{"code": 200, "body": "[]"}]',
        b'[{"code": 200, "body": "{}"}]',
        b'[{"code": "200", "body": "{\\"data\\": {}}"}]',
        b'[{"code": 200}, {"code": 200}]',
    ],
)
async def test_facebook_malformed_batch_answers_fail_closed(world: World, body: bytes) -> None:
    world.facebook.fail_next(200, body=body)
    async with running(world, world.facebook_provider()) as server:
        with pytest.raises(ProviderUnavailable):
            await server.verify(world.facebook.issue_token())


# -- userinfo ---------------------------------------------------------------------------------


async def test_userinfo_gives_the_principal(world: World) -> None:
    token = world.op.issue_token("alice", name="Alice", email="alice@example.com")
    async with running(world, world.userinfo_provider()) as server:
        principal = await server.verify(token)

    assert principal.provider == "op"
    assert principal.issuer == world.op.issuer
    assert principal.subject == "alice"
    assert principal.client_id is None  # userinfo does not say
    assert principal.scopes == frozenset()  # nor which scopes
    assert principal.expires_at is None  # nor until when
    assert principal.claims == {"sub": "alice", "name": "Alice", "email": "alice@example.com"}
    [request] = world.op.requests
    assert (request.method, request.path) == ("GET", "/userinfo")
    assert request.credential_locations == {"header"}


async def test_userinfo_refuses_unknown_expired_and_revoked_tokens(world: World) -> None:
    expiring = world.op.issue_token(expires_in=60)
    revoked = world.op.issue_token()
    world.op.revoke(revoked)
    world.clock.advance(61)
    async with running(world, world.userinfo_provider()) as server:
        for token in (alnum(43), expiring, revoked):
            with pytest.raises(InvalidToken) as caught:
                await server.verify(token)
            assert caught.value.reason == "rejected_by_provider"  # 401 invalid_token


async def test_userinfo_without_openid_scope_or_sub_is_never_accepted(world: World) -> None:
    no_openid = world.op.issue_token(scopes=("profile",))  # 403 insufficient_scope
    async with running(world, world.userinfo_provider()) as server:
        with pytest.raises((InvalidToken, ProviderUnavailable)):
            await server.verify(no_openid)
        world.op.fail_next(200, body={"name": "Alice"})
        with pytest.raises(ProviderUnavailable) as caught:
            await server.verify(world.op.issue_token())
    assert caught.value.reason == "userinfo_without_sub"


async def test_userinfo_endpoint_from_discovery(world: World) -> None:
    discovery = f"{world.op.issuer}/.well-known/openid-configuration"
    world.discovery[discovery] = {
        "issuer": world.op.issuer,
        "userinfo_endpoint": world.op.userinfo_endpoint,
    }
    first, second = world.op.issue_token("alice"), world.op.issue_token("bob")
    provider = UserinfoProvider("op", world.op.issuer)
    async with running(world, provider) as server:
        assert (await server.verify(first)).subject == "alice"
        assert (await server.verify(second)).subject == "bob"
    assert world.discovery_requests == [discovery]  # discovered once
    assert len(world.op.requests) == 2


async def test_userinfo_discovery_naming_another_issuer_fails_closed(world: World) -> None:
    discovery = f"{world.op.issuer}/.well-known/openid-configuration"
    world.discovery[discovery] = {
        "issuer": "https://evil.example.test",
        "userinfo_endpoint": world.op.userinfo_endpoint,
    }
    async with running(world, UserinfoProvider("op", world.op.issuer)) as server:
        with pytest.raises(ProviderUnavailable):
            await server.verify(world.op.issue_token())
    assert world.op.requests == []  # the token was not sent


async def test_userinfo_answers_are_cached_at_most_cache_ttl(world: World) -> None:
    # userinfo reports no expiry: a revoked token is seen once cache_ttl has passed.
    token = world.op.issue_token()
    async with running(world, world.userinfo_provider(cache_ttl=30)) as server:
        await server.verify(token)
        world.op.revoke(token)
        world.clock.advance(29)
        await server.verify(token)
        world.clock.advance(1)
        with pytest.raises(InvalidToken):
            await server.verify(token)
    assert len(world.op.requests) == 2


# -- every verifier: faults fail closed -------------------------------------------------------


def inject(fake: FakeAPI[Any], fault: str) -> None:
    if fault == "rate-limited":
        fake.rate_limit_next()
    elif fault == "server-error":
        fake.server_error_next()
    elif fault == "500":
        fake.server_error_next(status=500)
    elif fault == "html":
        fake.garbage_next()  # 200 with an HTML error page
    elif fault == "json-array":
        fake.garbage_next(body=b"[1, 2]", content_type="application/json")
    elif fault == "truncated":
        fake.garbage_next(body=b'{"sub": "al', content_type="application/json")
    elif fault == "redirect":
        fake.fail_next(302, headers={"location": "https://evil.example.test/"})
    elif fault == "slow":
        fake.slow_next(5.0)  # beyond http_timeout
    else:  # pragma: no cover
        raise AssertionError(fault)


FAULTS = (
    "rate-limited",
    "server-error",
    "500",
    "html",
    "json-array",
    "truncated",
    "redirect",
    "slow",
)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", KINDS)
async def test_fault_fails_closed_and_is_not_remembered(
    world: World, kind: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = world.issue(kind)
    fake = fake_of(world, kind)
    inject(fake, fault)
    async with running(world, world.provider(kind)) as server:
        with pytest.raises(ProviderUnavailable) as caught:
            await server.verify(token)
        assert caught.value.provider == world.provider(kind).name
        if fault == "slow":
            assert caught.value.reason == "timeout"
        principal = await server.verify(token)  # the fault passed: asked again, accepted
    assert principal.subject == world.subject(kind)
    assert len(fake.requests) == 2
    world.assert_no_leak(error_text(caught.value) + caplog.text, token)


# -- every verifier: caching and coalescing ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_answer_is_cached_within_cache_ttl(world: World, kind: str) -> None:
    token = world.issue(kind)
    fake = fake_of(world, kind)
    async with running(world, world.provider(kind, cache_ttl=CACHE_TTL)) as server:
        first = await server.verify(token)
        world.clock.advance(CACHE_TTL - 1)
        assert await server.verify(token) == first
        assert len(fake.requests) == 1  # the second call made no request
        world.clock.advance(1)
        assert (await server.verify(token)).subject == first.subject
    assert len(fake.requests) == 2


@pytest.mark.parametrize("kind", ["github", "github-app", "google", "facebook"])
async def test_answer_is_never_served_past_the_token_expiry(world: World, kind: str) -> None:
    token = world.issue(kind, expires_in=20)  # shorter than cache_ttl
    fake = fake_of(world, kind)
    async with running(world, world.provider(kind, cache_ttl=CACHE_TTL)) as server:
        principal = await server.verify(token)
        assert principal.expires_at == at(world.clock.now + 20)
        world.clock.advance(19)
        await server.verify(token)
        assert len(fake.requests) == 1
        world.clock.advance(1)
        with pytest.raises(InvalidToken):
            await server.verify(token)
    assert len(fake.requests) == 2  # expired: asked again, and refused


@pytest.mark.parametrize("kind", KINDS)
async def test_cache_ttl_is_capped(world: World, kind: str) -> None:
    token = world.issue(kind, expires_in=None)
    fake = fake_of(world, kind)
    async with running(world, world.provider(kind, cache_ttl=3600)) as server:
        await server.verify(token)
        world.clock.advance(MAX_CACHE_TTL - 1)
        await server.verify(token)
        assert len(fake.requests) == 1
        world.clock.advance(1)
        await server.verify(token)
    assert len(fake.requests) == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_refusal_is_remembered_briefly(world: World, kind: str) -> None:
    token = world.refused(kind)
    fake = fake_of(world, kind)
    provider = world.provider(kind, negative_cache_ttl=NEGATIVE_TTL)
    async with running(world, provider) as server:
        for _ in range(3):
            with pytest.raises(InvalidToken):
                await server.verify(token)
        assert len(fake.requests) == 1
        world.clock.advance(NEGATIVE_TTL)
        with pytest.raises(InvalidToken):
            await server.verify(token)
    assert len(fake.requests) == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_refusal_is_not_remembered_without_negative_ttl(world: World, kind: str) -> None:
    token = world.refused(kind)
    fake = fake_of(world, kind)
    async with running(world, world.provider(kind, negative_cache_ttl=0)) as server:
        for _ in range(2):
            with pytest.raises(InvalidToken):
                await server.verify(token)
    assert len(fake.requests) == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_requests_with_a_new_token_make_one_request(
    world: World, kind: str
) -> None:
    token = world.issue(kind)
    fake = fake_of(world, kind)
    fake.slow_next(0.05)
    async with running(world, world.provider(kind)) as server:
        principals = await asyncio.gather(*(server.verify(token) for _ in range(20)))
    assert len(fake.requests) == 1
    assert all(p == principals[0] for p in principals)
    assert principals[0].subject == world.subject(kind)


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_requests_with_a_refused_token_make_one_request(
    world: World, kind: str
) -> None:
    token = world.refused(kind)
    fake = fake_of(world, kind)
    fake.slow_next(0.05)
    async with running(world, world.provider(kind)) as server:
        results = await asyncio.gather(
            *(server.verify(token) for _ in range(20)), return_exceptions=True
        )
    assert len(fake.requests) == 1
    assert all(isinstance(r, InvalidToken) for r in results)


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_requests_during_an_outage_all_fail_closed(
    world: World, kind: str
) -> None:
    token = world.issue(kind)
    fake = fake_of(world, kind)
    fake.slow_next(5.0)
    async with running(world, world.provider(kind)) as server:
        results = await asyncio.gather(
            *(server.verify(token) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, ProviderUnavailable) for r in results)
        assert len(fake.requests) == 1
        assert (await server.verify(token)).subject == world.subject(kind)


# -- routing: a token reaches exactly the provider that accepts it ----------------------------


@pytest.mark.parametrize("kind", ["ghp", "gho", "ghu", "github_pat", "ghr"])
async def test_github_tokens_reach_only_github(world: World, kind: Any) -> None:
    token = world.github.issue_token(kind=kind)
    async with running(world, *world.all_providers()) as server:
        if kind == "ghr":
            with pytest.raises(InvalidToken):
                await server.verify(token)
        else:
            assert (await server.verify(token)).provider == "github"
    assert world.counts() == world.only(github=1)


async def test_each_token_reaches_only_its_provider(world: World) -> None:
    unknown_opaque = alnum(43)
    tokens = {
        "google-access": (world.google.issue_access_token(), "google", {"google": 1}),
        "google-id": (world.id_token(), "google", {"google_jwks": 1}),
        "google-id-alias": (world.id_token(iss="accounts.google.com"), "google", {}),
        "facebook": (world.facebook.issue_token(), "facebook", {"facebook": 1}),
        "unprefixed": (world.op.issue_token(), "op", {"op": 1}),
        "unknown-unprefixed": (unknown_opaque, None, {"op": 1}),
    }
    async with running(world, *world.all_providers()) as server:
        for name, (token, provider, asked) in tokens.items():
            before = world.counts()
            if provider is None:
                with pytest.raises(InvalidToken):
                    await server.verify(token)
            else:
                assert (await server.verify(token)).provider == provider, name
            after = world.counts()
            delta = {fake: after[fake] - before[fake] for fake in after}
            assert delta == world.only(**asked), name
    assert world.op2.requests == []  # only the *first* unprefixed source is ever asked


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2V2aWwuZXhhbXBsZS50ZXN0In0.c2ln",
        "a.b.c.d.e",
        "not.a.jwt",
    ],
    ids=["jws-of-unknown-issuer", "jwe", "two-dots"],
)
async def test_tokens_no_provider_accepts_are_refused_without_any_request(
    world: World, token: str
) -> None:
    async with running(world, *world.all_providers()) as server:
        with pytest.raises(InvalidToken):
            await server.verify(token)
    assert world.counts() == world.only()


async def test_jwt_naming_a_userinfo_issuer_is_not_sent_to_it(world: World) -> None:
    token = world.google_keys.token(iss=world.op.issuer)  # userinfo sources verify no JWTs
    async with running(world, *world.all_providers()) as server:
        with pytest.raises(InvalidToken) as caught:
            await server.verify(token)
    assert caught.value.reason == "unknown_issuer"
    assert world.counts() == world.only()


async def test_unprefixed_token_without_an_unprefixed_source_is_sent_nowhere(
    world: World,
) -> None:
    providers = [
        world.github_provider(),
        world.google_provider(),
        world.facebook_provider(),
        world.userinfo_provider("op", accept_unprefixed=False, token_prefixes=("op_",)),
    ]
    prefixed = "op_" + alnum(40)
    async with running(world, *providers) as server:
        with pytest.raises(InvalidToken) as caught:
            await server.verify(alnum(43))
        assert caught.value.reason == "unknown_token_format"
        assert world.counts() == world.only()
        with pytest.raises(InvalidToken):
            await server.verify(prefixed)  # its own prefix: the op is asked (and says 401)
    assert world.counts() == world.only(op=1)


@pytest.mark.parametrize("prefix", ["ghp_", "github_pat_", "ya29.", "EAA", ""])
async def test_oversized_tokens_are_refused_without_any_request(world: World, prefix: str) -> None:
    async with running(world, *world.all_providers()) as server:
        for length in (4097, 16 * 1024 + 1):
            with pytest.raises(InvalidToken) as caught:
                await server.verify(prefix + "A" * (length - len(prefix)))
            assert caught.value.reason == "token_too_large"
    assert world.counts() == world.only()


@pytest.mark.parametrize(
    "token",
    [
        "ghp_" + "é" * 36,
        "ya29.caf\u00e9" + "a" * 40,
        "t\u00f6ken" + "a" * 40,
        "ghp_" + "a" * 20 + "\r\nX-Injected: 1",
        "abc\r\nX-Injected: 1",
        "",
        " ",
    ],
    ids=[
        "github-non-ascii",
        "google-non-ascii",
        "unprefixed-non-ascii",
        "github-crlf",
        "crlf",
        "empty",
        "space",
    ],
)
async def test_malformed_opaque_tokens_are_refused_without_any_request(
    world: World, token: str
) -> None:
    # ResourceServer is usable without FastAPI (whose header parsing already refuses
    # these): a token that is no RFC 6750 b64token must not be put in a provider request.
    async with running(world, *world.all_providers()) as server:
        with pytest.raises(InvalidToken):
            await server.verify(token)
    assert world.counts() == world.only()


@pytest.mark.parametrize("kind", KINDS)
async def test_principal_carries_no_credential(world: World, kind: str) -> None:
    token = world.issue(kind)
    async with running(world, world.provider(kind)) as server:
        principal = await server.verify(token)
    # Apps return principals as response models and log them.
    world.assert_no_leak(principal.model_dump_json() + repr(principal), token)


async def test_prefixed_tokens_are_not_sent_to_the_unprefixed_source(world: World) -> None:
    # With GitHub, Google and Facebook configured, their prefixes never fall through to
    # the userinfo source, even when the token is unknown to its provider.
    tokens = [FakeGitHub.well_formed_token("ghp"), "ya29." + alnum(150), "EAA" + alnum(180)]
    async with running(world, *world.all_providers()) as server:
        for token in tokens:
            with pytest.raises(InvalidToken):
                await server.verify(token)
    assert world.counts() == world.only(github=1, google=1, facebook=1)


# -- through FastAPI --------------------------------------------------------------------------


def make_app(auth: AuthBridge) -> FastAPI:
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/me")
    async def me(user: Principal = Security(auth.principal)) -> dict[str, Any]:
        return {
            "provider": user.provider,
            "issuer": user.issuer,
            "subject": user.subject,
            "client_id": user.client_id,
            "scopes": sorted(user.scopes),
        }

    @app.get("/repos")
    async def repos(user: Principal = Security(auth.principal, scopes=["repo"])) -> str:
        return user.provider

    return app


def bridge(world: World, *providers: Provider) -> AuthBridge:
    return AuthBridge(
        providers or world.all_providers(),
        transport=world.transport,
        clock=world.clock,
        http_timeout=SMALL_TIMEOUT,
    )


EXPECTED_ME = {
    "github": ("https://github.com", ["read:user", "repo"]),
    "github-app": ("https://github.com", ["read:user", "repo"]),
    "google": (GOOGLE_ISSUER, ["https://www.googleapis.com/auth/userinfo.email", "openid"]),
    "facebook": ("https://www.facebook.com", ["email", "public_profile"]),
    "userinfo": ("https://op.example.test", []),
}


@pytest.mark.parametrize("kind", KINDS)
def test_valid_token_is_200_through_fastapi(world: World, kind: str) -> None:
    token = world.issue(kind)
    with TestClient(make_app(bridge(world, world.provider(kind)))) as client:
        response = client.get("/me", headers=bearer(token))
        again = client.get("/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    issuer, scopes = EXPECTED_ME[kind]
    client_id = {
        "github-app": world.github.client_id,
        "google": GOOGLE_CLIENT,
        "facebook": world.facebook.app_id,
    }.get(kind)
    assert response.json() == {
        "provider": world.provider(kind).name,
        "issuer": issuer,
        "subject": world.subject(kind),
        "client_id": client_id,
        "scopes": scopes,
    }
    assert again.json() == response.json()
    assert len(fake_of(world, kind).requests) == 1  # cached across requests


def test_google_id_token_is_200_through_fastapi(world: World) -> None:
    with TestClient(make_app(bridge(world))) as client:
        response = client.get("/me", headers=bearer(world.id_token(iss="accounts.google.com")))
    assert response.status_code == 200
    assert response.json()["issuer"] == GOOGLE_ISSUER
    assert world.google.requests == []  # never sent to tokeninfo


def test_github_scopes_are_enforced_through_fastapi(world: World) -> None:
    with_repo = world.github.issue_token(scopes=("repo",))
    without = world.github.issue_token(scopes=("read:user",))
    with TestClient(make_app(bridge(world))) as client:
        assert client.get("/repos", headers=bearer(with_repo)).status_code == 200
        response = client.get("/repos", headers=bearer(without))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="repo"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("kind", KINDS)
def test_refused_token_is_401_through_fastapi_without_leaks(
    world: World, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = world.refused(kind)
    with TestClient(make_app(bridge(world, world.provider(kind)))) as client:
        response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json() == {"detail": "Invalid or expired access token"}
    assert "invalid_token" in caplog.text  # the refusal was logged, safely
    world.assert_no_leak(response.text + str(response.headers) + caplog.text, token)


@pytest.mark.parametrize("fault", ["rate-limited", "server-error", "html", "slow"])
@pytest.mark.parametrize("kind", KINDS)
def test_fault_is_503_through_fastapi_without_leaks(
    world: World, kind: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = world.issue(kind)
    inject(fake_of(world, kind), fault)
    with TestClient(make_app(bridge(world, world.provider(kind)))) as client:
        response = client.get("/me", headers=bearer(token))
        recovered = client.get("/me", headers=bearer(token))
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": "Authentication temporarily unavailable"}
    # A provider's own Retry-After (GitHub's and the userinfo fake's 60 s) is passed on.
    says_when = fault == "rate-limited" and kind in ("github", "github-app", "userinfo")
    assert response.headers["retry-after"] == ("60" if says_when else "5")
    assert recovered.status_code == 200  # the outage was not remembered
    assert "provider_unavailable" in caplog.text
    world.assert_no_leak(response.text + str(response.headers) + caplog.text, token)


def test_all_providers_together_through_fastapi_without_leaks(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = [world.issue(kind) for kind in ("github", "google", "facebook", "userinfo")]
    good.append(world.id_token())
    bad = [world.refused(kind) for kind in ("github", "google", "facebook", "userinfo")]
    bad.append(world.id_token(aud=OTHER_GOOGLE_CLIENT))
    with TestClient(make_app(bridge(world))) as client:
        statuses = [client.get("/me", headers=bearer(t)).status_code for t in good + bad]
        bodies = [client.get("/me", headers=bearer(t)).text for t in bad]
    assert statuses == [200] * len(good) + [401] * len(bad)
    world.assert_no_leak(caplog.text + "".join(bodies), *good, *bad)
    assert world.op2.requests == []
