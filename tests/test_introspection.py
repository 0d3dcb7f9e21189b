"""RFC 7662 introspection of opaque access tokens (SECURITY-CASES §5 and §8).

Everything runs against an in-process upstream (``httpx.MockTransport``): the
test kit's FakeIssuer serves discovery and JWKS, and each test programs the
introspection endpoint. Every outbound request is recorded per host, so the
tests can count exactly who was asked what.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import inspect
import json
import logging
import secrets
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote_plus

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient
from tests.conftest import FakeClock

from authbridge import (
    AuthBridge,
    AuthBridgeError,
    ConfigurationError,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
    ResourceServer,
)
from authbridge.resource.server import MAX_CACHE_TTL
from authbridge.testing import FakeIssuer

INTROSPECT_PATH = "/oauth2/introspect"
DISCOVERY_PATH = "/.well-known/openid-configuration"
CLIENT_ID = "orders-api"
# Reserved characters on purpose: ':' splits Basic credentials, '%' starts an escape,
# '+' means a space in form encoding (RFC 6749 §2.3.1 / Appendix B).
CLIENT_SECRET = "s3cr%t:pa ss+word/=?&~-Zq81"
SMALL_TIMEOUT = 0.2


class _Missing:
    """The type of MISSING."""

    def __repr__(self) -> str:
        return "MISSING"  # the same in every process: test ids show it (pytest-xdist compares them)


MISSING = _Missing()
"""A member to leave out of an introspection response."""

Answer = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def new_token(prefix: str = "") -> str:
    """A fresh opaque token: long and random, so a substring search for it is meaningful."""
    return prefix + secrets.token_urlsafe(32)


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode("ascii"), keep_blank_values=True, strict_parsing=True)


def basic_header(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode("ascii")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def secret_spellings() -> tuple[str, ...]:
    """Every form in which the client secret travels: none may show up in logs or responses."""
    return (CLIENT_SECRET, quote(CLIENT_SECRET, safe=""), basic_header().split()[1])


def assert_no_leak(text: str, token: str) -> None:
    assert token not in text
    for spelling in secret_spellings():
        assert spelling not in text


def error_text(error: BaseException) -> str:
    return "".join([str(error), repr(error), *traceback.format_exception(error)])


def json_response(body: Any, status: int = 200) -> httpx.Response:
    """``body`` as JSON, with the non-standard ``NaN``/``Infinity`` Python accepts when parsing."""
    content = json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={"content-type": "application/json"})


# -- the upstream ---------------------------------------------------------------------------


class Upstream:
    """One authorization server: discovery + JWKS from a FakeIssuer, plus introspection.

    ``body`` is what the introspection endpoint answers (a JSON object, 200) unless
    ``answer`` is replaced. Every request is recorded.
    """

    def __init__(self, fake: FakeIssuer, clock: FakeClock, *, advertise: bool = True) -> None:
        self.fake = fake
        self.advertise = advertise
        self.requests: list[httpx.Request] = []
        now = clock.now
        self.body: dict[str, Any] = {
            "active": True,
            "iss": fake.issuer,
            "aud": fake.audience,
            "sub": "alice",
            "client_id": "web-app",
            "scope": "items:read items:write",
            "exp": int(now) + 600,
            "iat": int(now),
            "jti": "at-1",
            "token_type": "Bearer",
        }
        self.answer: Answer = lambda _request: json_response(self.body)

    @property
    def host(self) -> str:
        return httpx.URL(self.fake.issuer).host

    @property
    def introspection_endpoint(self) -> str:
        return self.fake.issuer.rstrip("/") + INTROSPECT_PATH

    def respond(self, **members: Any) -> None:
        """Answer with the default active body changed by ``members`` (``MISSING`` removes)."""
        body = {**self.body, **members}
        self.body = {name: value for name, value in body.items() if value is not MISSING}

    @property
    def introspections(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == INTROSPECT_PATH]

    @property
    def calls(self) -> int:
        return len(self.introspections)

    def discovery(self) -> dict[str, Any]:
        doc = self.fake.discovery_document()
        if self.advertise:
            doc["introspection_endpoint"] = self.introspection_endpoint
        return doc

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == INTROSPECT_PATH:
            result = self.answer(request)
            if inspect.isawaitable(result):
                result = await result
            return result
        if path == DISCOVERY_PATH:
            return httpx.Response(200, json=self.discovery())
        return await self.fake.transport.handle_async_request(request)


class Network:
    """Routes requests to upstreams by host; anything else is recorded and answered 404."""

    def __init__(self, *upstreams: Upstream) -> None:
        self.upstreams = {u.host: u for u in upstreams}
        self.unknown: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        upstream = self.upstreams.get(request.url.host)
        if upstream is None:
            self.unknown.append(request)
            return httpx.Response(404, json={"error": "unknown_host"})
        return await upstream.handle(request)

    @property
    def requests(self) -> list[httpx.Request]:
        return [r for u in self.upstreams.values() for r in u.requests] + self.unknown


@pytest.fixture
def up(fake_issuer: FakeIssuer, clock: FakeClock) -> Upstream:
    return Upstream(fake_issuer, clock)


def idp(
    up: Upstream,
    name: str = "idp",
    *,
    provider: dict[str, Any] | None = None,
    **introspection: Any,
) -> OIDCProvider:
    """An OIDCProvider for ``up`` with introspection (explicit endpoint unless overridden)."""
    introspection.setdefault("endpoint", up.introspection_endpoint)
    options: dict[str, Any] = {"audience": up.fake.audience, **(provider or {})}
    return OIDCProvider(
        name,
        issuer=up.fake.issuer,
        introspection=Introspection(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **introspection
        ),
        **options,
    )


def server_for(
    *providers: OIDCProvider, network: Network, clock: FakeClock, **options: Any
) -> ResourceServer:
    return ResourceServer(providers, transport=network.transport, clock=clock, **options)


async def outcome(server: ResourceServer, token: str) -> Principal | AuthBridgeError:
    try:
        return await server.verify(token)
    except AuthBridgeError as exc:
        return exc


async def refused(server: ResourceServer, token: str) -> InvalidToken:
    result = await outcome(server, token)
    assert isinstance(result, InvalidToken), f"expected InvalidToken, got {result!r}"
    return result


@asynccontextmanager
async def running(server: ResourceServer, mode: str = "cold") -> AsyncIterator[ResourceServer]:
    """``cold``: nothing loaded ahead; ``jwks-loaded``: warmed up as AuthBridge's lifespan does."""
    await server.start(warm_up=mode == "jwks-loaded")
    try:
        yield server
    finally:
        await server.aclose()


# -- 1. what counts as active -----------------------------------------------------------------


@pytest.mark.parametrize(
    "active",
    [False, "true", "True", 1, 1.0, "1", "yes", None, MISSING, [True], {"value": True}, 0],
    ids=repr,
)
async def test_only_boolean_true_is_active(
    up: Upstream, clock: FakeClock, active: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    up.respond(active=active)
    token = new_token()
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server):
        error = await refused(server, token)
    assert (error.reason, error.provider) == ("inactive", "idp")
    assert_no_leak(error_text(error) + caplog.text, token)


ACTIVE_BUT_REFUSED: list[tuple[str, Callable[[int], dict[str, Any]], str]] = [
    ("expired-beyond-leeway", lambda now: {"exp": now - 31}, "expired"),
    ("exp-wrong-type", lambda now: {"exp": str(now + 600)}, "invalid_claim_type"),
    ("exp-boolean", lambda now: {"exp": True}, "invalid_claim_type"),
    ("not-yet-valid", lambda now: {"nbf": now + 120}, "not_yet_valid"),
    ("wrong-aud", lambda now: {"aud": "https://other.example.test"}, "audience_mismatch"),
    ("wrong-aud-list", lambda now: {"aud": ["https://other.example.test"]}, "audience_mismatch"),
    ("empty-aud-list", lambda now: {"aud": []}, "audience_mismatch"),
    ("aud-object", lambda now: {"aud": {"https://api.example.test": 1}}, "audience_mismatch"),
    ("aud-number", lambda now: {"aud": 5}, "audience_mismatch"),
    ("wrong-iss", lambda now: {"iss": "https://evil.example.test"}, "issuer_mismatch"),
    ("iss-trailing-slash", lambda now: {"iss": "https://issuer.example.test/"}, "issuer_mismatch"),
    ("iss-case", lambda now: {"iss": "https://ISSUER.example.test"}, "issuer_mismatch"),
    ("iss-number", lambda now: {"iss": 1}, "issuer_mismatch"),
    ("refresh-token", lambda now: {"token_type": "refresh_token"}, "wrong_token_type"),
    ("dpop-bound", lambda now: {"token_type": "DPoP"}, "wrong_token_type"),
    ("dpop-lowercase", lambda now: {"token_type": "dpop"}, "wrong_token_type"),
    ("token-type-number", lambda now: {"token_type": 1}, "wrong_token_type"),
    ("hydra-refresh", lambda now: {"token_use": "refresh_token"}, "wrong_token_type"),
    ("hydra-other-use", lambda now: {"token_use": "id_token"}, "wrong_token_type"),
    ("sub-number", lambda now: {"sub": 42}, "invalid_claim_type"),
    ("client-id-list", lambda now: {"client_id": ["web-app"]}, "invalid_claim_type"),
    ("scope-list", lambda now: {"scope": ["items:read"]}, "invalid_claim_type"),
]


@pytest.mark.parametrize(
    ("members", "reason"),
    [pytest.param(members, reason, id=name) for name, members, reason in ACTIVE_BUT_REFUSED],
)
async def test_active_but_unacceptable_is_refused(
    up: Upstream,
    clock: FakeClock,
    members: Callable[[int], dict[str, Any]],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    up.respond(**members(int(clock.now)))
    token = new_token()
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server):
        error = await refused(server, token)
    assert (error.reason, error.provider) == (reason, "idp")
    assert_no_leak(error_text(error) + caplog.text, token)


async def test_expiry_equal_to_now_is_refused_without_leeway(
    up: Upstream, clock: FakeClock
) -> None:
    up.respond(exp=clock.now)
    server = server_for(idp(up, provider={"leeway": 0}), network=Network(up), clock=clock)
    async with running(server):
        assert (await refused(server, new_token())).reason == "expired"


async def test_accepted_response_becomes_the_principal(up: Upstream, clock: FakeClock) -> None:
    up.respond(groups=["staff"])
    provider = idp(up, provider={"roles_claims": ["groups"]})
    server = server_for(provider, network=Network(up), clock=clock)
    async with running(server):
        principal = await server.verify(new_token())
    assert principal.provider == "idp"
    assert principal.issuer == up.fake.issuer
    assert principal.subject == "alice"
    assert principal.client_id == "web-app"
    assert principal.scopes == {"items:read", "items:write"}
    assert principal.roles == {"staff"}
    assert principal.token_id == "at-1"
    assert principal.expires_at == datetime.fromtimestamp(up.body["exp"], UTC)
    assert principal.claims == up.body


@pytest.mark.parametrize(
    "members",
    [
        pytest.param({"exp": MISSING}, id="no-exp"),
        pytest.param({"iss": MISSING}, id="no-iss"),
        pytest.param({"token_type": MISSING}, id="no-token-type"),
        pytest.param(
            dict.fromkeys(("exp", "iss", "sub", "client_id", "scope", "jti", "iat"), MISSING),
            id="only-active-and-aud",
        ),
        pytest.param({"aud": ["https://other.example.test", "https://api.example.test"]}, id="aud"),
        pytest.param({"token_type": "bearer"}, id="bearer-lowercase"),
        pytest.param({"token_use": "access_token"}, id="hydra-access-token"),
    ],
)
async def test_optional_members_absent_or_fitting_are_accepted(
    up: Upstream, clock: FakeClock, members: dict[str, Any]
) -> None:
    """RFC 7662 makes every member but ``active`` optional: what is absent is not checked,
    except ``aud`` when an audience is configured (see the next test)."""
    up.respond(**members)
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server):
        principal = await server.verify(new_token())
    assert principal.claims == up.body
    if "exp" not in up.body:
        assert principal.expires_at is None


async def test_missing_aud_is_refused_when_an_audience_is_configured(
    up: Upstream, clock: FakeClock
) -> None:
    """As for JWTs. It also stops refresh tokens that a server introspects as active
    without ``aud`` or ``token_type`` (oidc-provider does, see the interop test)."""
    up.respond(aud=MISSING)
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server):
        with pytest.raises(InvalidToken) as excinfo:
            await server.verify(new_token())
    assert (excinfo.value.reason, excinfo.value.claim) == ("missing_claim", "aud")


@pytest.mark.parametrize(
    ("members", "accepted"),
    [
        pytest.param({"client_id": "web-app"}, True, id="configured-client"),
        pytest.param({"client_id": MISSING, "azp": "web-app"}, True, id="azp-fallback"),
        pytest.param({"client_id": "other-app"}, False, id="other-client"),
        pytest.param({"client_id": MISSING}, False, id="client-absent"),
    ],
)
async def test_configured_client_ids_require_the_client(
    up: Upstream, clock: FakeClock, members: dict[str, Any], *, accepted: bool
) -> None:
    up.respond(**members)
    provider = idp(up, provider={"client_ids": ["web-app", "cli"]})
    server = server_for(provider, network=Network(up), clock=clock)
    async with running(server):
        result = await outcome(server, new_token())
    if accepted:
        assert isinstance(result, Principal)
        assert result.client_id == "web-app"
    else:
        assert isinstance(result, InvalidToken)
        assert (result.reason, result.claim) == ("client_mismatch", "client_id")


# -- 2. the request ---------------------------------------------------------------------------


async def test_request_is_a_form_post_with_basic_credentials(
    up: Upstream, clock: FakeClock
) -> None:
    token = new_token() + "+/=="  # b64token characters that form encoding must escape
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server):
        await server.verify(token)

    [request] = up.requests  # endpoint configured, cold start: nothing else was fetched
    assert request.method == "POST"
    assert str(request.url) == up.introspection_endpoint  # no query string at all
    assert token not in str(request.url)
    assert quote(token, safe="") not in str(request.url)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    assert form(request) == {"token": [token], "token_type_hint": ["access_token"]}
    # RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined with ':' and base64ed.
    assert request.headers["authorization"] == basic_header()
    scheme, encoded = request.headers["authorization"].split(" ")
    user, _, password = base64.b64decode(encoded).decode("ascii").partition(":")
    assert scheme == "Basic"
    assert (unquote_plus(user), unquote_plus(password)) == (CLIENT_ID, CLIENT_SECRET)
    assert ":" not in password  # the secret's own ':' is escaped, so the split is unambiguous
    assert CLIENT_SECRET not in request.content.decode("ascii")


async def test_client_secret_post_sends_credentials_in_the_body(
    up: Upstream, clock: FakeClock
) -> None:
    token = new_token()
    provider = idp(up, auth_method="client_secret_post")
    server = server_for(provider, network=Network(up), clock=clock)
    async with running(server):
        await server.verify(token)

    [request] = up.introspections
    assert request.method == "POST"
    assert "authorization" not in request.headers
    assert str(request.url) == up.introspection_endpoint
    for value in (token, CLIENT_SECRET, quote(CLIENT_SECRET, safe="")):
        assert value not in str(request.url)
    assert form(request) == {
        "token": [token],
        "token_type_hint": ["access_token"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }


async def test_endpoint_comes_from_discovery_when_not_configured(
    up: Upstream, clock: FakeClock
) -> None:
    server = server_for(idp(up, endpoint=None), network=Network(up), clock=clock)
    async with running(server):
        await server.verify(new_token())
        await server.verify(new_token())

    assert [(r.method, r.url.path) for r in up.requests] == [
        ("GET", DISCOVERY_PATH),
        ("POST", INTROSPECT_PATH),
        ("POST", INTROSPECT_PATH),  # metadata is remembered
    ]
    assert str(up.introspections[0].url) == up.introspection_endpoint


async def test_discovery_without_introspection_endpoint_fails_closed(
    fake_issuer: FakeIssuer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    up = Upstream(fake_issuer, clock, advertise=False)
    token = new_token()
    server = server_for(idp(up, endpoint=None), network=Network(up), clock=clock)
    async with running(server):
        result = await outcome(server, token)
    assert isinstance(result, ProviderUnavailable)
    assert result.reason == "metadata_without_introspection_endpoint"
    assert up.calls == 0
    assert_no_leak(error_text(result) + caplog.text, token)


async def test_plain_http_endpoint_in_discovery_of_https_issuer_fails_closed(
    up: Upstream, clock: FakeClock
) -> None:
    up.advertise = False
    original = up.discovery
    up.discovery = lambda: {  # type: ignore[method-assign]
        **original(),
        "introspection_endpoint": "http://issuer.example.test" + INTROSPECT_PATH,
    }
    server = server_for(idp(up, endpoint=None), network=Network(up), clock=clock)
    async with running(server):
        result = await outcome(server, new_token())
    assert isinstance(result, ProviderUnavailable)
    assert result.reason == "metadata_insecure_url:introspection_endpoint"
    assert up.calls == 0


def test_introspection_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        Introspection(client_id="", client_secret=CLIENT_SECRET)
    with pytest.raises(ConfigurationError):
        Introspection(client_id=CLIENT_ID, client_secret="")
    with pytest.raises(ConfigurationError):
        Introspection(client_id=CLIENT_ID, client_secret="x", auth_method="none")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Introspection(client_id=CLIENT_ID, client_secret="x", token_prefixes=("",))
    with pytest.raises(ConfigurationError):
        Introspection(client_id=CLIENT_ID, client_secret="x", cache_ttl=-1)
    # The secret stays out of the configuration's repr.
    assert CLIENT_SECRET not in repr(
        Introspection(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    )


# -- 3. cache ---------------------------------------------------------------------------------
# Every cache test runs twice: "cold" (no keys loaded) and "jwks-loaded" (the provider's JWKS
# fetched at start-up, which is what AuthBridge's lifespan always does).

CACHE_MODES = pytest.mark.parametrize("mode", ["cold", "jwks-loaded"])


@CACHE_MODES
async def test_repeated_token_is_introspected_once(
    up: Upstream, clock: FakeClock, mode: str
) -> None:
    token = new_token()
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server, mode):
        first = await server.verify(token)
        for _ in range(5):
            assert await server.verify(token) is first
        other = await server.verify(new_token())
    assert other is not first
    assert up.calls == 2  # one per distinct token


@CACHE_MODES
@pytest.mark.parametrize(
    ("cache_ttl", "expires_in", "served_for"),
    [
        pytest.param(60, 10, 10, id="exp-first"),
        pytest.param(5, 100, 5, id="cache-ttl-first"),
        pytest.param(60, MISSING, 60, id="no-exp"),
        pytest.param(3600, 10_000, MAX_CACHE_TTL, id="server-cap"),
    ],
)
async def test_cache_entry_lives_at_most_min_of_ttl_and_exp(
    up: Upstream,
    clock: FakeClock,
    mode: str,
    cache_ttl: float,
    expires_in: Any,
    served_for: float,
) -> None:
    up.respond(exp=MISSING if expires_in is MISSING else clock.now + expires_in)
    token = new_token()
    server = server_for(idp(up, cache_ttl=cache_ttl), network=Network(up), clock=clock)
    async with running(server, mode):
        first = await server.verify(token)
        clock.advance(served_for - 0.01)
        assert await server.verify(token) is first
        assert up.calls == 1
        clock.advance(0.01)
        await outcome(server, token)
        assert up.calls == 2  # asked again once the entry is due


@CACHE_MODES
async def test_revocation_is_seen_when_the_cache_entry_expires(
    up: Upstream, clock: FakeClock, mode: str
) -> None:
    token = new_token()
    server = server_for(idp(up, cache_ttl=30), network=Network(up), clock=clock)
    async with running(server, mode):
        first = await server.verify(token)
        up.body = {"active": False}  # revoked at the provider

        # Documented trade-off: for up to cache_ttl the cached result is still served.
        clock.advance(29)
        assert await server.verify(token) is first
        assert up.calls == 1

        clock.advance(1)
        assert (await refused(server, token)).reason == "inactive"
        assert up.calls == 2


@CACHE_MODES
@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param({"active": False}, id="inactive"),
        pytest.param({"active": True, "aud": "https://other.example.test"}, id="wrong-aud"),
    ],
)
async def test_refusals_are_remembered_for_negative_cache_ttl(
    up: Upstream, clock: FakeClock, mode: str, refusal: dict[str, Any]
) -> None:
    token = new_token()
    server = server_for(idp(up, negative_cache_ttl=5), network=Network(up), clock=clock)
    active, up.body = up.body, refusal
    async with running(server, mode):
        first = await refused(server, token)
        clock.advance(4.99)
        again = await refused(server, token)
        assert again.reason == first.reason
        assert up.calls == 1

        clock.advance(0.01)
        up.body = active
        assert (await server.verify(token)).subject == "alice"
        assert up.calls == 2


async def test_zero_ttls_disable_caching(up: Upstream, clock: FakeClock) -> None:
    active, inactive = new_token(), new_token()
    provider = idp(up, cache_ttl=0, negative_cache_ttl=0)
    server = server_for(provider, network=Network(up), clock=clock)
    async with running(server):
        for _ in range(3):
            await server.verify(active)
        up.body = {"active": False}
        for _ in range(3):
            await refused(server, inactive)
    assert up.calls == 6


async def test_cache_size_zero_asks_every_time(up: Upstream, clock: FakeClock) -> None:
    token = new_token()
    server = server_for(idp(up), network=Network(up), clock=clock, cache_size=0)
    async with running(server):
        for _ in range(3):
            await server.verify(token)
    assert up.calls == 3


async def test_provider_unavailable_is_not_cached(up: Upstream, clock: FakeClock) -> None:
    token = new_token()
    server = server_for(idp(up), network=Network(up), clock=clock)
    healthy = up.answer
    up.answer = lambda _request: httpx.Response(500)
    async with running(server):
        for _ in range(2):
            assert isinstance(await outcome(server, token), ProviderUnavailable)
        up.answer = healthy
        assert (await server.verify(token)).subject == "alice"
    assert up.calls == 3


# -- 4. coalescing of concurrent first requests -------------------------------------------------


def slow(answer: Answer, delay: float = 0.05) -> Answer:
    async def delayed(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(delay)
        result = answer(request)
        return await result if inspect.isawaitable(result) else result

    return delayed


@CACHE_MODES
async def test_concurrent_requests_with_one_new_token_share_one_call(
    up: Upstream, clock: FakeClock, mode: str
) -> None:
    token = new_token()
    up.answer = slow(up.answer)
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server, mode):
        principals = await asyncio.gather(*(server.verify(token) for _ in range(50)))
    assert up.calls == 1
    assert all(p is principals[0] for p in principals)
    assert principals[0].subject == "alice"


async def test_concurrent_distinct_tokens_are_not_mixed_up(up: Upstream, clock: FakeClock) -> None:
    def per_token(request: httpx.Request) -> httpx.Response:
        [token] = form(request)["token"]
        return httpx.Response(200, json={**up.body, "sub": f"user-{token}"})

    up.answer = slow(per_token)
    tokens = [new_token() for _ in range(10)]
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server):
        principals = await asyncio.gather(*(server.verify(t) for t in tokens * 3))
    assert up.calls == 10
    assert [p.subject for p in principals] == [f"user-{t}" for t in tokens * 3]


async def test_concurrent_requests_share_a_refusal(up: Upstream, clock: FakeClock) -> None:
    token = new_token()
    up.body = {"active": False}
    up.answer = slow(up.answer)
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server):
        results = await asyncio.gather(*(outcome(server, token) for _ in range(50)))
    assert up.calls == 1
    assert all(isinstance(r, InvalidToken) and r.reason == "inactive" for r in results)


async def test_concurrent_requests_share_a_failure_and_the_next_call_retries(
    up: Upstream, clock: FakeClock
) -> None:
    token = new_token()
    healthy = up.answer
    up.answer = slow(lambda _request: httpx.Response(502, text="<html>bad gateway</html>"))
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server):
        results = await asyncio.gather(*(outcome(server, token) for _ in range(50)))
        assert up.calls == 1
        assert all(isinstance(r, ProviderUnavailable) for r in results)
        assert {r.reason for r in results if isinstance(r, AuthBridgeError)} == {
            "introspection_http_status:502"
        }

        up.answer = healthy
        assert (await server.verify(token)).subject == "alice"
        assert up.calls == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_call(
    up: Upstream, clock: FakeClock
) -> None:
    token = new_token()
    up.answer = slow(up.answer, delay=0.1)
    server = server_for(idp(up), network=Network(up), clock=clock)
    async with running(server):
        impatient = asyncio.create_task(server.verify(token))
        patient = asyncio.create_task(server.verify(token))
        await asyncio.sleep(0.02)
        impatient.cancel()
        principal = await patient
        with pytest.raises(asyncio.CancelledError):
            await impatient
    assert principal.subject == "alice"
    assert up.calls == 1


# -- 5. faults fail closed ----------------------------------------------------------------------


async def _hang(_request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(30)
    return httpx.Response(200, json={"active": True})


def _refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def _endless(_request: httpx.Request) -> httpx.Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"active": true, "pad": "'
        while True:
            yield b"x" * 16384

    return httpx.Response(200, content=chunks())


FAULTS: dict[str, Answer] = {
    "connection-refused": _refuse_connection,
    "http-500": lambda _r: httpx.Response(500, json={"error": "server_error"}),
    "http-503-html": lambda _r: httpx.Response(503, html="<html><body>down</body></html>"),
    "http-401-our-credentials": lambda _r: httpx.Response(401, json={"error": "invalid_client"}),
    "http-403": lambda _r: httpx.Response(403, json={"error": "access_denied"}),
    "http-400": lambda _r: httpx.Response(400, json={"error": "invalid_request"}),
    "redirect": lambda _r: httpx.Response(
        307, headers={"location": "https://elsewhere.example.test/introspect"}
    ),
    "timeout": _hang,
    "html-200": lambda _r: httpx.Response(200, html="<!doctype html><title>Login</title>"),
    "json-array": lambda _r: httpx.Response(200, json=[{"active": True}]),
    "json-string": lambda _r: httpx.Response(200, json="active"),
    "json-true": lambda _r: httpx.Response(200, json=True),
    "empty-body": lambda _r: httpx.Response(200, content=b""),
    "not-utf8": lambda _r: httpx.Response(200, content=b'{"active": true, "sub": "\xff\xfe"}'),
    "deeply-nested": lambda _r: httpx.Response(200, content=b"[" * 60_000),
    "huge-declared": lambda _r: httpx.Response(200, json={"active": True, "pad": "x" * 1_000_000}),
    "huge-streamed": _endless,
    "gzip": lambda _r: httpx.Response(
        200,
        content=gzip.compress(json.dumps({"active": True}).encode()),
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    ),
}

FAULT_REASONS = {
    "connection-refused": "transport_error:ConnectError",
    "http-500": "introspection_http_status:500",
    "http-503-html": "introspection_http_status:503",
    "http-401-our-credentials": "introspection_refused_our_credentials",
    "http-403": "introspection_refused_our_credentials",
    "http-400": "introspection_http_status:400",
    "redirect": "introspection_http_status:307",
    "timeout": "timeout",
    "html-200": "invalid_json",
    "json-array": "json_not_an_object",
    "json-string": "json_not_an_object",
    "json-true": "json_not_an_object",
    "empty-body": "invalid_json",
    "not-utf8": "invalid_json",
    "deeply-nested": "invalid_json",
    "huge-declared": "response_too_large",
    "huge-streamed": "response_too_large",
    "gzip": "unexpected_content_encoding",
}


@pytest.fixture(params=sorted(FAULTS))
def fault(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_fault_is_provider_unavailable(
    up: Upstream, clock: FakeClock, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    up.answer = FAULTS[fault]
    network = Network(up)
    token = new_token()
    server = server_for(idp(up), network=network, clock=clock, http_timeout=SMALL_TIMEOUT)
    started = time.monotonic()
    async with running(server, "jwks-loaded"):
        result = await outcome(server, token)
    assert time.monotonic() - started < 2  # bounded, even for the hanging endpoint

    assert isinstance(result, ProviderUnavailable), f"{fault}: got {result!r}"
    assert (result.reason, result.provider) == (FAULT_REASONS[fault], "idp")
    assert up.calls == 1
    assert network.unknown == []  # the redirect was not followed
    assert_no_leak(error_text(result) + caplog.text, token)
    for request in network.requests:
        assert token not in str(request.url)


def make_app(auth: AuthBridge) -> FastAPI:
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {"subject": user.subject, "client_id": user.client_id, "provider": user.provider}

    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_fault_is_503_through_fastapi(
    up: Upstream, clock: FakeClock, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    up.answer = FAULTS[fault]
    network = Network(up)
    token = new_token()
    auth = AuthBridge(
        [idp(up)], transport=network.transport, clock=clock, http_timeout=SMALL_TIMEOUT
    )
    with TestClient(make_app(auth)) as client:
        responses = [client.get("/items", headers=bearer(token)) for _ in range(2)]

    for response in responses:
        assert response.status_code == 503, f"{fault}: {response.status_code} {response.text}"
        assert response.json() == {"detail": "Authentication temporarily unavailable"}
        assert_no_leak(response.text + str(response.headers), token)
    assert up.calls == 2  # failures are not cached: the second request asked again
    assert_no_leak(caplog.text, token)
    assert "provider_unavailable" in caplog.text  # the refusal was logged, safely


REFUSED_BODIES: dict[str, dict[str, Any]] = {
    "inactive": {"active": False},
    "active-string": {"active": "true"},
    "wrong-aud": {"active": True, "aud": "https://other.example.test"},
    "refresh-token": {"active": True, "token_type": "refresh_token"},
    "bad-exp": {"active": True, "exp": "tomorrow"},
}


@pytest.mark.parametrize("body", REFUSED_BODIES.values(), ids=REFUSED_BODIES.keys())
def test_refused_token_is_401_through_fastapi_without_leaks(
    up: Upstream, clock: FakeClock, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    up.body = body
    token = new_token()
    auth = AuthBridge([idp(up)], transport=Network(up).transport, clock=clock)
    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json() == {"detail": "Invalid or expired access token"}
    assert "invalid_token" in caplog.text  # the refusal was logged, safely
    assert_no_leak(response.text + str(response.headers) + caplog.text, token)


def test_valid_opaque_token_is_200_through_fastapi(up: Upstream, clock: FakeClock) -> None:
    auth = AuthBridge([idp(up, endpoint=None)], transport=Network(up).transport, clock=clock)
    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer(new_token()))
    assert response.status_code == 200
    assert response.json() == {"subject": "alice", "client_id": "web-app", "provider": "idp"}


# -- 6. routing -------------------------------------------------------------------------------


@pytest.fixture
def hosts(authbridge_signing_key: rsa.RSAPrivateKey, clock: FakeClock) -> dict[str, Upstream]:
    upstreams = {}
    for name in ("plain", "gamma", "alpha", "beta"):
        fake = FakeIssuer(f"https://{name}.example.test", key=authbridge_signing_key)
        upstream = Upstream(fake, clock)
        upstream.respond(sub=f"{name}-user")
        upstreams[name] = upstream
    return upstreams


def routing_server(hosts: dict[str, Upstream], clock: FakeClock) -> tuple[ResourceServer, Network]:
    """plain (JWT only), gamma (prefix only), alpha and beta (prefix + unprefixed), in order."""
    plain = hosts["plain"]
    providers = [
        OIDCProvider("plain", issuer=plain.fake.issuer, audience=plain.fake.audience),
        idp(hosts["gamma"], "gamma", token_prefixes=("gamma_",), accept_unprefixed=False),
        idp(hosts["alpha"], "alpha", token_prefixes=("alpha_at_",), accept_unprefixed=True),
        idp(hosts["beta"], "beta", token_prefixes=("beta_at_", "b2_"), accept_unprefixed=True),
    ]
    network = Network(*hosts.values())
    return server_for(*providers, network=network, clock=clock), network


def test_providers_with_prefixes_take_no_unprefixed_tokens_by_default() -> None:
    assert Introspection(client_id="a", client_secret="s").accept_unprefixed is True
    with_prefix = Introspection(client_id="a", client_secret="s", token_prefixes="ory_at_")
    assert with_prefix.accept_unprefixed is False
    assert with_prefix.token_prefixes == ("ory_at_",)  # one prefix, not its characters


def introspected(hosts: dict[str, Upstream]) -> dict[str, int]:
    return {name: upstream.calls for name, upstream in hosts.items()}


def assert_token_only_sent_to(hosts: dict[str, Upstream], token: str, name: str | None) -> None:
    for host, upstream in hosts.items():
        seen = [r for r in upstream.requests if token in r.content.decode("ascii", "replace")]
        assert len(seen) == (1 if host == name else 0), host
        assert all(token not in str(r.url) for r in upstream.requests)


@pytest.mark.parametrize(
    ("token", "owner"),
    [
        pytest.param(new_token("alpha_at_"), "alpha", id="alpha-prefix"),
        pytest.param(new_token("beta_at_"), "beta", id="beta-prefix"),
        pytest.param(new_token("b2_"), "beta", id="beta-second-prefix"),
        pytest.param(new_token("gamma_"), "gamma", id="prefix-of-provider-without-unprefixed"),
        pytest.param(new_token("Z"), "alpha", id="unprefixed-to-first-accepting"),
        pytest.param(new_token("beta_Z"), "alpha", id="near-miss-prefix-is-unprefixed"),
        pytest.param(new_token("alpha_at_") + ".x.y", "alpha", id="prefix-beats-dots"),
        pytest.param(new_token("ALPHA_AT_"), "alpha", id="prefix-is-case-sensitive"),
    ],
)
async def test_opaque_token_goes_to_exactly_one_provider(
    hosts: dict[str, Upstream], clock: FakeClock, token: str, owner: str
) -> None:
    server, network = routing_server(hosts, clock)
    async with running(server, "jwks-loaded"):
        principal = await server.verify(token)
    assert principal.provider == owner
    assert principal.subject == f"{owner}-user"
    assert introspected(hosts) == {name: int(name == owner) for name in hosts}
    assert_token_only_sent_to(hosts, token, owner)
    assert network.unknown == []


async def test_jwts_are_never_introspected(hosts: dict[str, Upstream], clock: FakeClock) -> None:
    server, network = routing_server(hosts, clock)
    plain_jwt = hosts["plain"].fake.token(scopes=["items:read"])
    alpha_jwt = hosts["alpha"].fake.token(subject="jwt-user")  # issuer that also introspects
    unknown_jwt = FakeIssuer("https://unknown.example.test", key=hosts["alpha"].fake.key).token()
    garbage_jws = "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"
    jwe = "a.b.c.d.e"
    async with running(server, "jwks-loaded"):
        before = len(network.requests)  # discovery + JWKS of every provider
        assert (await server.verify(plain_jwt)).provider == "plain"
        assert (await server.verify(alpha_jwt)).subject == "jwt-user"
        assert (await refused(server, unknown_jwt)).reason == "unknown_issuer"
        await refused(server, garbage_jws)
        assert (await refused(server, jwe)).reason == "jwe_not_accepted"
        assert len(network.requests) == before  # keys were already loaded: no request at all
    assert introspected(hosts) == dict.fromkeys(hosts, 0)
    assert network.unknown == []


async def test_no_opaque_token_reaches_a_provider_without_introspection(
    hosts: dict[str, Upstream], clock: FakeClock
) -> None:
    plain, gamma = hosts["plain"], hosts["gamma"]
    providers = [
        OIDCProvider("plain", issuer=plain.fake.issuer, audience=plain.fake.audience),
        idp(gamma, "gamma", token_prefixes=("gamma_",), accept_unprefixed=False),
    ]
    network = Network(*hosts.values())
    server = server_for(*providers, network=network, clock=clock)
    tokens = [new_token("Z"), new_token("alpha_at_"), "plain-looking-token", new_token("Z") + ".x"]
    async with running(server):
        for token in tokens:
            assert (await refused(server, token)).reason == "unknown_token_format"
    assert network.requests == []  # cold start: nothing at all was sent anywhere


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("ory_at_",), ("ory_",), id="second-is-prefix-of-first"),
        pytest.param(("ory_",), ("ory_at_",), id="first-is-prefix-of-second"),
        pytest.param(("tok_",), ("tok_",), id="identical"),
        pytest.param(("a_", "tok_"), ("b_", "tok_x"), id="one-of-several"),
    ],
)
def test_overlapping_prefixes_are_a_configuration_error(
    hosts: dict[str, Upstream], first: tuple[str, ...], second: tuple[str, ...]
) -> None:
    providers = [
        idp(hosts["alpha"], "alpha", token_prefixes=first),
        idp(hosts["beta"], "beta", token_prefixes=second),
    ]
    with pytest.raises(ConfigurationError) as caught:
        ResourceServer(providers)
    assert caught.value.reason == "overlapping_token_prefixes"


def test_overlapping_prefixes_within_one_provider_are_a_configuration_error(
    hosts: dict[str, Upstream],
) -> None:
    with pytest.raises(ConfigurationError):
        ResourceServer([idp(hosts["alpha"], "alpha", token_prefixes=("at_", "at_x"))])
    ResourceServer([idp(hosts["alpha"], "alpha", token_prefixes=("at_", "rt_"))])  # disjoint: ok
