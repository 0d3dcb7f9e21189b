"""Regressions from reviewing the verifiers: odd values from providers and issuers never crash,
configuration strings are not split into characters, failing discovery is not hammered."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from tests.conftest import FakeClock

from authbridge import (
    AuthBridge,
    GitHubProvider,
    GoogleProvider,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
    ResourceServer,
    UserinfoProvider,
)
from authbridge.testing import FakeGitHub, FakeIssuer, sign_jwt

ENDPOINT = "https://op.example.test/introspect"


def answering(body: Any, status: int = 200) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )

    return httpx.MockTransport(handler)


def introspecting(
    transport: httpx.MockTransport, clock: FakeClock, **kwargs: Any
) -> ResourceServer:
    provider = OIDCProvider(
        "op",
        issuer="https://op.example.test",
        audience="api",
        jwks_uri="https://op.example.test/jwks",
        introspection=Introspection(client_id="rs", client_secret="s", endpoint=ENDPOINT),
        **kwargs,
    )
    return ResourceServer([provider], transport=transport, clock=clock)


@pytest.mark.parametrize(
    "members",
    [
        {"iss": ["https://op.example.test"]},
        {"iss": {"a": 1}},
        {"exp": 1e300},
        {"exp": 10**400},
        {"exp": 10**12},
        {"exp": -(10**12)},
        {"nbf": 10**400},
    ],
)
async def test_odd_introspection_members_are_refusals_not_crashes(
    clock: FakeClock, members: dict[str, Any]
) -> None:
    body = {"active": True, "aud": "api", **members}
    server = introspecting(answering(body), clock)
    with pytest.raises(InvalidToken):
        await server.verify("opaque-token-value")


async def test_required_claims_apply_to_introspected_tokens(clock: FakeClock) -> None:
    server = introspecting(
        answering({"active": True, "aud": "api"}), clock, required_claims=["sub"]
    )
    with pytest.raises(InvalidToken) as excinfo:
        await server.verify("opaque-token-value")
    assert (excinfo.value.reason, excinfo.value.claim) == ("missing_claim", "sub")


@pytest.mark.parametrize("value", [10**400, -(10**400), 10**12, 1e300])
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_huge_numeric_dates_in_a_signed_token_are_refused(
    fake_issuer: FakeIssuer, clock: FakeClock, claim: str, value: float
) -> None:
    server = ResourceServer([fake_issuer.provider()], transport=fake_issuer.transport, clock=clock)
    with pytest.raises(InvalidToken) as excinfo:
        await server.verify(fake_issuer.token(**{claim: value}))
    assert (excinfo.value.reason, excinfo.value.claim) == ("invalid_claim_type", claim)


@pytest.mark.parametrize(
    "info",
    [
        {"aud": ["web"], "azp": "web", "exp": "4102444800", "sub": "1"},
        {"aud": "web", "azp": "web", "exp": "999999999999", "sub": "1"},
        {"aud": "web", "azp": "web", "exp": 10**400, "sub": "1"},
    ],
)
async def test_odd_google_tokeninfo_answers_are_refusals(clock: FakeClock, info: dict) -> None:
    provider = GoogleProvider(client_ids=["web"], tokeninfo_url="https://google.test/tokeninfo")
    server = ResourceServer([provider], transport=answering(info), clock=clock)
    with pytest.raises(InvalidToken):
        await server.verify("ya29.token")


async def test_github_expiry_beyond_datetime_is_not_a_crash(clock: FakeClock) -> None:
    body = {
        "app": {"client_id": "Iv1.app"},
        "scopes": [],
        "expires_at": "9999-12-31T23:59:59-01:00",
        "user": {"id": 1, "login": "octocat"},
    }
    provider = GitHubProvider(client_id="Iv1.app", client_secret="secret")
    server = ResourceServer([provider], transport=answering(body), clock=clock)
    principal = await server.verify(FakeGitHub.well_formed_token("gho"))
    assert principal.expires_at is None  # an unusable expiry is ignored, not fatal


def test_a_single_prefix_string_is_one_prefix() -> None:
    assert GitHubProvider(token_prefixes="ghp_").token_prefixes == ("ghp_",)
    assert UserinfoProvider("u", "https://u.test", token_prefixes="u_").token_prefixes == ("u_",)
    provider = OIDCProvider(
        "p", issuer="https://p.test", audience="a", issuer_aliases="p.test", roles_claims="roles"
    )
    assert provider.policy.issuer_aliases == {"p.test"}
    assert provider.roles_claims == ("roles",)


def test_prefixed_providers_take_no_unprefixed_tokens_by_default() -> None:
    assert UserinfoProvider("u", "https://u.test").accept_unprefixed is True
    assert UserinfoProvider("u", "https://u.test", token_prefixes=["u_"]).accept_unprefixed is False


async def test_failing_discovery_is_not_hammered(clock: FakeClock) -> None:
    calls: list[str] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503)

    provider = UserinfoProvider("u", "https://u.test")
    server = ResourceServer([provider], transport=httpx.MockTransport(down), clock=clock)
    for _ in range(5):
        with pytest.raises(ProviderUnavailable):
            await server.verify("opaque-token-value")
    assert len(calls) == 2  # OIDC discovery, then RFC 8414: once per cooldown
    clock.advance(31)
    with pytest.raises(ProviderUnavailable):
        await server.verify("another-opaque-token")
    assert len(calls) == 4


async def test_hmac_provider_ignores_the_kid_it_is_sent(clock: FakeClock) -> None:
    secret = b"k" * 32
    provider = OIDCProvider(
        "local", issuer="https://local.test", audience="api", hmac_secret=secret
    )
    server = ResourceServer([provider], clock=clock)
    claims = {"iss": "https://local.test", "aud": "api", "exp": int(clock.now) + 60, "sub": "a"}
    for header in ({"alg": "HS256"}, {"alg": "HS256", "kid": "k1"}):
        assert (await server.verify(sign_jwt(header, claims, secret))).subject == "a"


def test_websocket_provider_down_closes_with_try_again_later(fake_issuer: FakeIssuer) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    auth = AuthBridge(providers=[fake_issuer.provider()], transport=httpx.MockTransport(down))
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: Principal = Security(auth.principal)) -> None:
        await websocket.accept()

    token = fake_issuer.token()
    with (
        TestClient(app) as client,
        pytest.raises(WebSocketDisconnect) as excinfo,
        client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token}"}),
    ):
        pass
    assert excinfo.value.code == 1013
