"""The generic OpenID Connect login runtime (client._oidc.OIDCLogin) against a mock OP.

Also holds `MockOP`, the httpx.MockTransport provider the flow tests use: discovery, JWKS,
an authorize step (`MockOP.authorize`), a token endpoint checking client authentication,
PKCE S256, the redirect URI and single use of codes, and userinfo.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from authbridge._http import HttpClientHolder
from authbridge.client._base import AuthorizationRequest, LoginEndpoints, TokenSet, code_challenge
from authbridge.client._id_token import at_hash
from authbridge.client._oidc import OIDCLogin
from authbridge.errors import ConfigurationError, LoginError, ProviderUnavailable

from .test_id_token import CLIENT_ID, ISSUER, Keys, id_claims

CLIENT_SECRET = "app-client-secret-0123456789"
CALLBACK = "https://app.example.test/oauth/callback"


@dataclass
class _Grant:
    sub: str
    nonce: str | None
    challenge: str | None
    redirect_uri: str
    claims: dict[str, Any]


@dataclass
class MockOP:
    """A scriptable OpenID Provider behind an httpx.MockTransport."""

    keys: Keys
    issuer: str = ISSUER
    latency: float = 0.0
    iss_parameter_supported: bool = True
    userinfo: bool = True
    end_session: bool = True
    requests: Counter[str] = field(default_factory=Counter)
    grants: dict[str, _Grant] = field(default_factory=dict)
    userinfo_override: dict[str, Any] | None = None
    token_override: dict[str, Any] | None = None
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    access_tokens: dict[str, str] = field(default_factory=dict)
    token_forms: list[dict[str, str]] = field(default_factory=list)
    seen_secrets: list[str] = field(default_factory=list)
    """Verifiers received and tokens issued (for the never-logged checks)."""

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/auth",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "authorization_response_iss_parameter_supported": self.iss_parameter_supported,
        }
        if self.userinfo:
            doc["userinfo_endpoint"] = f"{self.issuer}/me"
        if self.end_session:
            doc["end_session_endpoint"] = f"{self.issuer}/session/end"
        return doc

    def holder(self) -> HttpClientHolder:
        return HttpClientHolder(httpx.MockTransport(self.handle))

    def login(self, **overrides: Any) -> OIDCLogin:
        arguments: dict[str, Any] = {
            "name": "op",
            "display_name": "The OP",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "issuer": self.issuer,
            "client": self.holder().session,
            "clock": time.time,
            "timeout": 5.0,
        }
        arguments.update(overrides)
        return OIDCLogin(**arguments)

    def authorize(self, url: str, sub: str = "user-1", **claims: Any) -> list[tuple[str, str]]:
        """The callback query the OP would send after ``sub`` logged in at ``url``."""
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{self.issuer}/auth"
        query = dict(parse_qsl(parts.query, strict_parsing=True))
        assert query["response_type"] == "code"
        assert query["client_id"] == CLIENT_ID
        code = "code-" + secrets.token_urlsafe(16)
        self.grants[code] = _Grant(
            sub=sub,
            nonce=query.get("nonce"),
            challenge=query.get("code_challenge"),
            redirect_uri=query["redirect_uri"],
            claims=claims,
        )
        if "code_challenge" in query:
            assert query["code_challenge_method"] == "S256"
        return [("code", code), ("state", query["state"]), ("iss", self.issuer)]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests[path] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.document())
        if path == "/jwks":
            return httpx.Response(200, json=self.keys.jwks())
        if path == "/token":
            return self._token(request)
        if path == "/me":
            return self._userinfo(request)
        return httpx.Response(404)

    def _token(self, request: httpx.Request) -> httpx.Response:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return httpx.Response(401, json={"error": "invalid_client"})
        form = dict(parse_qsl(request.content.decode()))
        grant = self.grants.pop(form.get("code", ""), None)
        if grant is None or form.get("grant_type") != "authorization_code":
            return httpx.Response(400, json={"error": "invalid_grant"})
        if form.get("redirect_uri") != grant.redirect_uri:
            return httpx.Response(400, json={"error": "invalid_grant"})
        self.token_forms.append(form)
        self.seen_secrets.append(form.get("code_verifier", ""))
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                return httpx.Response(400, json={"error": "invalid_grant"})
        if self.token_override is not None:
            return httpx.Response(200, json=self.token_override)
        access_token = "at-" + secrets.token_urlsafe(16)
        claims = id_claims(
            iss=self.issuer,
            sub=grant.sub,
            nonce=grant.nonce,
            email=f"{grant.sub}@example.test",
            at_hash=at_hash(access_token, "RS256"),
        )
        claims.update(self.id_token_claims)
        claims.update(grant.claims)
        id_token = self.keys.id_token({k: v for k, v in claims.items() if v is not None})
        self.seen_secrets.extend([access_token, id_token])
        self.access_tokens[access_token] = grant.sub
        body = {"access_token": access_token, "token_type": "Bearer", "id_token": id_token}
        return httpx.Response(200, json=body)

    def _userinfo(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        sub = self.access_tokens.get(auth.removeprefix("Bearer "))
        if not auth.startswith("Bearer ") or sub is None or request.url.query:
            return httpx.Response(401)
        if self.userinfo_override is not None:
            return httpx.Response(200, json=self.userinfo_override)
        return httpx.Response(200, json={"sub": sub, "name": f"Name of {sub}"})


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def op(keys: Keys) -> MockOP:
    return MockOP(keys)


async def tokens_for(
    op: MockOP, login: OIDCLogin, *, nonce: str = "n-1", **claims: Any
) -> TokenSet:
    """Authorize (without PKCE) and redeem at the mock OP."""
    url = f"{op.issuer}/auth?response_type=code&client_id={CLIENT_ID}&redirect_uri={CALLBACK}"
    params = op.authorize(f"{url}&state=s&nonce={nonce}", **claims)
    return await login.redeem(params[0][1], code_verifier=None, redirect_uri=CALLBACK)


# -- construction ---------------------------------------------------------------------------


def test_the_constructor_refuses_an_unusable_configuration(op: MockOP) -> None:
    with pytest.raises(ConfigurationError, match="issuer"):
        op.login(issuer="not a url")
    with pytest.raises(ConfigurationError, match="login_client_id_required"):
        op.login(client_id=" ")
    with pytest.raises(ConfigurationError, match="oidc_login_needs_openid_scope"):
        op.login(scopes=("email",))
    with pytest.raises(ConfigurationError, match="id_token_algorithms_must_be_asymmetric"):
        op.login(algorithms=("HS256",))
    with pytest.raises(ConfigurationError, match="leeway"):
        op.login(leeway=1000.0)


def test_a_preset_can_subclass_with_hooks(op: MockOP) -> None:
    class Preset(OIDCLogin):
        def expected_issuer(self, claims: Any) -> str | None:
            return None

    login = Preset(
        name="preset",
        display_name="Preset",
        client_id=CLIENT_ID,
        client_secret=None,
        issuer=ISSUER,
        client=op.holder().session,
        clock=time.time,
        timeout=5.0,
    )
    assert login.uses_nonce
    assert login.uses_pkce
    assert login.scopes == ("openid", "email", "profile")
    assert login.token_endpoint_auth == "client_secret_basic"
    assert repr(login) == "Preset('preset', client_id='app-client')"


# -- endpoints --------------------------------------------------------------------------------


async def test_endpoints_are_discovered_once(op: MockOP) -> None:
    login = op.login()
    found = await login.endpoints()
    assert found == LoginEndpoints(
        authorization_endpoint=f"{ISSUER}/auth",
        token_endpoint=f"{ISSUER}/token",
        issuer=ISSUER,
        iss_parameter_supported=True,
        userinfo_endpoint=f"{ISSUER}/me",
        end_session_endpoint=f"{ISSUER}/session/end",
    )
    assert login.supports_logout
    await login.endpoints()
    assert op.requests["/.well-known/openid-configuration"] == 1


async def test_iss_parameter_support_is_read_from_the_metadata(op: MockOP) -> None:
    op.iss_parameter_supported = False
    assert not (await op.login().endpoints()).iss_parameter_supported
    op.document = lambda: {
        **MockOP.document(op),
        "authorization_response_iss_parameter_supported": "yes",
    }  # type: ignore[method-assign]
    assert not (await op.login().endpoints()).iss_parameter_supported


async def test_static_endpoints_skip_discovery(op: MockOP) -> None:
    static = LoginEndpoints(f"{ISSUER}/auth", f"{ISSUER}/token", issuer=ISSUER)
    login = op.login(endpoints=static, jwks_uri=f"{ISSUER}/jwks")
    assert await login.endpoints() is static
    assert not login.supports_logout
    identity = await login.identity(await tokens_for(op, login), nonce="n-1")
    assert identity.subject == "user-1"
    assert op.requests["/.well-known/openid-configuration"] == 0
    assert (
        await login.logout_url(id_token_hint=None, post_logout_redirect_uri="x", state="s") is None
    )


async def test_a_discovery_document_without_endpoints_is_unavailable(op: MockOP) -> None:
    op.document = lambda: {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"}  # type: ignore[method-assign]
    with pytest.raises(ProviderUnavailable, match="metadata_without_authorization_endpoint"):
        await op.login().endpoints()


async def test_an_insecure_end_session_endpoint_is_refused(op: MockOP) -> None:
    op.document = lambda: {**MockOP.document(op), "end_session_endpoint": "http://op/logout"}  # type: ignore[method-assign]
    with pytest.raises(ProviderUnavailable, match="metadata_insecure_url:end_session_endpoint"):
        await op.login().endpoints()


async def test_the_authorization_url_carries_pkce_nonce_and_scopes(op: MockOP) -> None:
    login = op.login()
    url = await login.authorization_url(
        AuthorizationRequest(
            redirect_uri=CALLBACK,
            state="st",
            code_challenge=code_challenge("v" * 43),
            nonce="nn",
            scopes=login.scopes,
            prompt="login",
        )
    )
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["openid email profile"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"] == ["nn"]
    assert query["prompt"] == ["login"]


# -- identity ---------------------------------------------------------------------------------


async def test_identity_from_id_token_and_userinfo(op: MockOP) -> None:
    login = op.login()
    tokens = await tokens_for(op, login)
    identity = await login.identity(tokens, nonce="n-1")
    assert identity.provider == "op"
    assert identity.issuer == ISSUER
    assert identity.subject == "user-1"
    assert identity.email == "user-1@example.test"
    assert identity.email_verified is True
    assert identity.name == "Name of user-1"  # from userinfo
    assert identity.id_token == tokens.id_token
    assert op.requests["/me"] == 1


async def test_userinfo_is_not_called_when_not_advertised(op: MockOP) -> None:
    op.userinfo = False
    login = op.login()
    identity = await login.identity(await tokens_for(op, login), nonce="n-1")
    assert identity.name is None
    assert op.requests["/me"] == 0


async def test_a_userinfo_subject_other_than_the_id_tokens_is_refused(op: MockOP) -> None:
    login = op.login()
    for answer in ({"sub": "someone-else"}, {"name": "no sub"}, {"sub": 1}):
        op.userinfo_override = answer
        with pytest.raises(LoginError, match="userinfo_subject_mismatch"):
            await login.identity(await tokens_for(op, login), nonce="n-1")


async def test_a_failing_or_oversized_userinfo_is_unavailable(op: MockOP) -> None:
    login = op.login()
    op.userinfo_override = {"sub": "user-1", "blob": "x" * 70000}
    with pytest.raises(ProviderUnavailable, match="response_too_large"):
        await login.identity(await tokens_for(op, login), nonce="n-1")


async def test_email_verified_must_be_json_true(op: MockOP) -> None:
    login = op.login()
    for value in ("true", 1, None):
        op.id_token_claims = {"email_verified": value}
        identity = await login.identity(await tokens_for(op, login), nonce="n-1")
        assert identity.email_verified is False


async def test_an_alias_issuer_is_keyed_under_the_configured_issuer(op: MockOP) -> None:
    login = op.login(issuer_aliases=("op.example.test",))
    tokens = await tokens_for(op, login, iss="op.example.test")
    identity = await login.identity(tokens, nonce="n-1")
    assert identity.issuer == ISSUER


async def test_a_missing_id_token_is_refused(op: MockOP) -> None:
    login = op.login()
    with pytest.raises(LoginError, match="id_token_missing"):
        await login.identity(TokenSet(access_token="at-x"), nonce="n-1")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "another-client"}, "id_token_invalid:audience_mismatch"),
        ({"azp": "another-client"}, "id_token_invalid:authorized_party_mismatch"),
        ({"iss": "https://other-op.example.test"}, "id_token_invalid:issuer_mismatch"),
        ({"nonce": "other"}, "nonce_mismatch"),
        ({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}, "at_hash_mismatch"),
    ],
)
async def test_id_token_refusals_reach_the_caller(
    op: MockOP, claims: dict[str, Any], reason: str
) -> None:
    login = op.login()
    with pytest.raises(LoginError) as caught:
        await login.identity(await tokens_for(op, login, **claims), nonce="n-1")
    assert caught.value.reason == reason
    assert caught.value.provider == "op"
    assert op.requests["/me"] == 0  # no userinfo call with a refused token


async def test_expected_issuer_hook_decides_the_iss(op: MockOP) -> None:
    class Tenanted(OIDCLogin):
        def expected_issuer(self, claims: Any) -> str | None:
            tid = claims.get("tid")
            return f"{ISSUER}/{tid}" if tid == "good-tenant" else None

    login = Tenanted(
        name="tenanted",
        display_name="T",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        issuer=ISSUER,
        client=op.holder().session,
        clock=time.time,
        timeout=5.0,
    )
    good = await tokens_for(op, login, tid="good-tenant", iss=f"{ISSUER}/good-tenant")
    identity = await login.identity(good, nonce="n-1")
    assert identity.issuer == f"{ISSUER}/good-tenant"
    bad = await tokens_for(op, login, tid="bad-tenant", iss=f"{ISSUER}/bad-tenant")
    with pytest.raises(LoginError, match="id_token_invalid:issuer_mismatch"):
        await login.identity(bad, nonce="n-1")
    # The tid and iss disagree: the hook's issuer is compared with the verified iss.
    mixed = await tokens_for(op, login, tid="good-tenant", iss=f"{ISSUER}/bad-tenant")
    with pytest.raises(LoginError, match="id_token_invalid:issuer_mismatch"):
        await login.identity(mixed, nonce="n-1")


async def test_identity_from_hook_is_used(op: MockOP) -> None:
    class Quirky(OIDCLogin):
        def identity_from(self, claims: Any, userinfo: Any, id_token: str) -> Any:
            base = super().identity_from(claims, userinfo, id_token)
            return type(base)(
                provider=base.provider, issuer=base.issuer, subject=base.subject, name="quirk"
            )

    login = Quirky(
        name="quirky",
        display_name="Q",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        issuer=ISSUER,
        client=op.holder().session,
        clock=time.time,
        timeout=5.0,
    )
    identity = await login.identity(await tokens_for(op, login), nonce="n-1")
    assert identity.name == "quirk"


async def test_keys_are_fetched_once_and_shared(op: MockOP) -> None:
    login = op.login()
    tokens: Sequence[TokenSet] = [await tokens_for(op, login) for _ in range(5)]
    await asyncio.gather(*(login.identity(t, nonce="n-1") for t in tokens))
    assert op.requests["/jwks"] == 1


# -- logout -----------------------------------------------------------------------------------


async def test_logout_url_follows_rp_initiated_logout(op: MockOP) -> None:
    login = op.login()
    url = await login.logout_url(
        id_token_hint="the.id.token", post_logout_redirect_uri="https://app/after", state="ls"
    )
    assert url is not None
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{ISSUER}/session/end"
    assert parse_qs(parts.query) == {
        "id_token_hint": ["the.id.token"],
        "post_logout_redirect_uri": ["https://app/after"],
        "state": ["ls"],
        "client_id": [CLIENT_ID],
    }
    without = await login.logout_url(
        id_token_hint=None, post_logout_redirect_uri="https://app/after", state="ls"
    )
    assert without is not None
    assert "id_token_hint" not in parse_qs(urlsplit(without).query)


async def test_no_end_session_endpoint_no_logout_url(op: MockOP) -> None:
    op.end_session = False
    login = op.login()
    assert (
        await login.logout_url(id_token_hint=None, post_logout_redirect_uri="x", state="s") is None
    )
    assert not login.supports_logout


async def test_a_userinfo_error_status_is_unavailable(op: MockOP) -> None:
    login = op.login()
    tokens = await tokens_for(op, login)
    op.access_tokens.clear()  # the OP no longer knows the token: 401
    with pytest.raises(ProviderUnavailable, match="userinfo_status:401"):
        await login.identity(tokens, nonce="n-1")


async def test_userinfo_gets_the_access_token_in_the_authorization_header(op: MockOP) -> None:
    seen: list[httpx.Request] = []
    original = op.handle

    async def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await original(request)

    login = op.login(client=HttpClientHolder(httpx.MockTransport(spy)).session)
    tokens = await tokens_for(op, login)
    await login.identity(tokens, nonce="n-1")
    (userinfo,) = [r for r in seen if r.url.path == "/me"]
    assert userinfo.method == "GET"
    assert userinfo.headers["authorization"] == f"Bearer {tokens.access_token}"
    assert tokens.access_token not in str(userinfo.url)
