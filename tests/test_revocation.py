"""``ResourceServer.verify_active``: JWTs checked for revocation by introspection (opt-in).

A JWT is verified locally, so a revoked one stays valid for ``verify`` until its
``exp``. ``verify_active`` also asks the provider's RFC 7662 endpoint, cached for
``Introspection.cache_ttl``, coalesced, failing closed.

The authorization server here is a real HTTP server on 127.0.0.1 that takes real
time to answer (SECURITY-CASES §10: concurrency is tested with real latency): it
serves the JWKS and an introspection endpoint that knows which tokens were
revoked. Each test runs many requests at once where it matters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import traceback
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.conftest import FakeClock

from authbridge import (
    AuthBridgeError,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
    ResourceServer,
)
from authbridge.testing import FakeIssuer

CACHE_TTL = 30.0
NEGATIVE_TTL = 5.0
CLIENT_SECRET = "rs-secret-0123456789"


class AuthorizationServer:
    """JWKS and introspection over real HTTP/1.1 on 127.0.0.1, with a settable delay.

    ``mode``: ``"normal"`` (``active`` unless revoked), ``"unsupported"`` (400
    ``unsupported_token_type``, as oidc-provider answers for its JWTs) or
    ``"error"`` (500).
    """

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key
        self.delay = 0.0
        self.mode = "normal"
        self.revoked: set[str] = set()
        self.introspected: list[str] = []
        self.requests: list[tuple[str, str, bytes]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._server: asyncio.Server | None = None
        self.issuer = ""
        self.fake: FakeIssuer

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.issuer = f"http://127.0.0.1:{port}"
        self.fake = FakeIssuer(self.issuer, "https://api.example.test", key=self.key)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def revoke(self, token: str) -> None:
        self.revoked.add(token)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ")
                headers = dict(line.split(": ", 1) for line in lines if line)
                length = int({k.lower(): v for k, v in headers.items()}.get("content-length", 0))
                body = await reader.readexactly(length)
                self.requests.append((method, target, body))
                status, payload = await self._answer(method, target, body)
                content = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(content)}\r\nCache-Control: no-store\r\n\r\n".encode()
                    + content
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        if method == "GET" and target == "/jwks":
            return 200, self.fake.jwks()
        if method != "POST" or target != "/introspect":
            return 404, {"error": "not_found"}
        token = parse_qs(body.decode("ascii"))["token"][0]
        self.introspected.append(token)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.mode == "unsupported":
            return 400, {"error": "unsupported_token_type"}
        if self.mode == "error":
            return 500, {"error": "server_error"}
        if token in self.revoked:
            return 200, {"active": False}
        return 200, {"active": True, "aud": self.fake.audience, "token_type": "Bearer"}

    def calls(self, token: str) -> int:
        return self.introspected.count(token)

    # -- configuration against this server ------------------------------------------------

    def provider(self, *, introspection: bool = True, **options: Any) -> OIDCProvider:
        return OIDCProvider(
            "as",
            issuer=self.issuer,
            audience=self.fake.audience,
            jwks_uri=f"{self.issuer}/jwks",
            introspection=Introspection(
                client_id="rs",
                client_secret=CLIENT_SECRET,
                endpoint=f"{self.issuer}/introspect",
                cache_ttl=CACHE_TTL,
                negative_cache_ttl=NEGATIVE_TTL,
            )
            if introspection
            else None,
            **options,
        )

    def token(self, **claims: Any) -> str:
        return self.fake.token(scopes=["items:read"], **claims)


@pytest.fixture
async def auth_server(
    authbridge_signing_key: rsa.RSAPrivateKey,
) -> AsyncIterator[AuthorizationServer]:
    server = AuthorizationServer(authbridge_signing_key)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def resource_server(
    auth_server: AuthorizationServer, clock: FakeClock
) -> AsyncIterator[ResourceServer]:
    async with ResourceServer([auth_server.provider()], clock=clock) as server:
        yield server


async def outcome(call: Any, token: str) -> Principal | AuthBridgeError:
    try:
        return await call(token)
    except AuthBridgeError as exc:
        return exc


def error_text(error: BaseException) -> str:
    return "".join([str(error), repr(error), *traceback.format_exception(error)])


# -- revocation is seen within cache_ttl --------------------------------------------------------


async def test_revoked_jwt_is_refused_within_cache_ttl_while_verify_accepts_it(
    auth_server: AuthorizationServer, resource_server: ResourceServer, clock: FakeClock
) -> None:
    token = auth_server.token()
    first = await resource_server.verify_active(token)
    assert first.subject == "alice"
    assert await resource_server.verify_active(token) is first
    assert auth_server.calls(token) == 1  # the answer is cached

    auth_server.revoke(token)
    clock.advance(CACHE_TTL - 1)
    assert (await resource_server.verify_active(token)).subject == "alice"  # documented window
    assert auth_server.calls(token) == 1

    clock.advance(1)
    refused = await outcome(resource_server.verify_active, token)
    assert isinstance(refused, InvalidToken)
    assert (refused.reason, refused.provider) == ("revoked", "as")
    assert auth_server.calls(token) == 2
    # verify checks JWTs locally: the revoked token is still valid there, until exp.
    assert (await resource_server.verify(token)).subject == "alice"

    # The refusal is remembered for negative_cache_ttl, then the provider is asked again.
    again = await outcome(resource_server.verify_active, token)
    assert isinstance(again, InvalidToken)
    assert again.reason == "revoked"
    assert auth_server.calls(token) == 2
    clock.advance(NEGATIVE_TTL)
    assert isinstance(await outcome(resource_server.verify_active, token), InvalidToken)
    assert auth_server.calls(token) == 3


async def test_the_answer_is_never_reused_past_exp(
    auth_server: AuthorizationServer, resource_server: ResourceServer, clock: FakeClock
) -> None:
    token = auth_server.token(expires_in=10)  # exp well inside cache_ttl
    await resource_server.verify_active(token)
    clock.advance(9)
    await resource_server.verify_active(token)
    assert auth_server.calls(token) == 1
    clock.advance(2)  # past exp, within the 30 s leeway: still valid locally ...
    await resource_server.verify_active(token)
    assert auth_server.calls(token) == 2  # ... but the cached answer ended at exp
    clock.advance(30)
    result = await outcome(resource_server.verify_active, token)
    assert isinstance(result, InvalidToken)
    assert result.reason == "expired"  # refused locally: nothing asked
    assert auth_server.calls(token) == 2


async def test_the_introspection_request_carries_the_jwt_in_the_body(
    auth_server: AuthorizationServer, resource_server: ResourceServer
) -> None:
    token = auth_server.token()
    await resource_server.verify_active(token)
    [(method, target, body)] = [r for r in auth_server.requests if r[1] == "/introspect"]
    assert (method, target) == ("POST", "/introspect")
    assert parse_qs(body.decode("ascii")) == {
        "token": [token],
        "token_type_hint": ["access_token"],
    }


# -- coalesced and bounded ----------------------------------------------------------------------


async def test_concurrent_requests_share_one_call_per_token(
    auth_server: AuthorizationServer, resource_server: ResourceServer
) -> None:
    auth_server.delay = 0.3  # real latency: every request below arrives while it runs
    tokens = [auth_server.token() for _ in range(10)]
    for token in tokens:  # signatures verified and cached first: only the check is concurrent
        await resource_server.verify(token)
    results = await asyncio.gather(
        *(resource_server.verify_active(token) for token in tokens for _ in range(20))
    )
    assert all(isinstance(r, Principal) for r in results)
    assert sorted(auth_server.introspected) == sorted(tokens)  # one call per distinct token
    assert auth_server.most_in_flight > 1  # the calls did overlap (no hidden serialisation)


async def test_checks_are_bounded_like_every_provider_call(
    auth_server: AuthorizationServer, resource_server: ResourceServer
) -> None:
    """Beyond the source's concurrency limit (32 by default) a check is refused at once
    with a 503, never queued and never skipped."""
    auth_server.delay = 0.5
    tokens = [auth_server.token() for _ in range(60)]
    for token in tokens:
        await resource_server.verify(token)
    results = await asyncio.gather(*(outcome(resource_server.verify_active, t) for t in tokens))
    accepted = [r for r in results if isinstance(r, Principal)]
    refused = [r for r in results if isinstance(r, ProviderUnavailable)]
    assert len(accepted) + len(refused) == len(tokens)
    assert refused, "no bound on concurrent checks"
    assert {r.reason for r in refused} == {"too_many_concurrent_checks"}
    assert all(r.retry_after is not None for r in refused)
    assert auth_server.most_in_flight <= 32
    assert len(auth_server.introspected) == len(accepted)


async def test_a_cancelled_caller_does_not_cancel_the_shared_call(
    auth_server: AuthorizationServer, resource_server: ResourceServer
) -> None:
    auth_server.delay = 0.3
    token = auth_server.token()
    await resource_server.verify(token)
    impatient = asyncio.create_task(resource_server.verify_active(token))
    patient = asyncio.create_task(resource_server.verify_active(token))
    await asyncio.sleep(0.1)
    impatient.cancel()
    assert (await patient).subject == "alice"
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert auth_server.calls(token) == 1


async def test_failures_are_shared_fail_closed_and_not_cached(
    auth_server: AuthorizationServer, resource_server: ResourceServer
) -> None:
    auth_server.delay = 0.2
    auth_server.mode = "error"
    token = auth_server.token()
    await resource_server.verify(token)
    results = await asyncio.gather(
        *(outcome(resource_server.verify_active, token) for _ in range(30))
    )
    assert all(isinstance(r, ProviderUnavailable) for r in results)
    assert {r.reason for r in results if isinstance(r, AuthBridgeError)} == {
        "introspection_http_status:500"
    }
    assert auth_server.calls(token) == 1
    auth_server.mode = "normal"
    assert (await resource_server.verify_active(token)).subject == "alice"  # asked again
    assert auth_server.calls(token) == 2


async def test_a_slow_endpoint_is_bounded_by_the_timeout(
    auth_server: AuthorizationServer, clock: FakeClock
) -> None:
    auth_server.delay = 5.0
    token = auth_server.token()
    server = ResourceServer([auth_server.provider()], clock=clock, http_timeout=0.3)
    async with server:
        await server.verify(token)
        result = await asyncio.wait_for(outcome(server.verify_active, token), timeout=4.0)
    assert isinstance(result, ProviderUnavailable)
    assert result.reason == "timeout"


async def test_without_the_cache_every_call_asks(
    auth_server: AuthorizationServer, clock: FakeClock
) -> None:
    token = auth_server.token()
    async with ResourceServer([auth_server.provider()], clock=clock, cache_size=0) as server:
        for _ in range(3):
            assert (await server.verify_active(token)).subject == "alice"
        auth_server.revoke(token)
        result = await outcome(server.verify_active, token)
    assert isinstance(result, InvalidToken)
    assert result.reason == "revoked"
    assert auth_server.calls(token) == 4


# -- what cannot be checked is refused ----------------------------------------------------------


async def test_a_provider_without_introspection_fails_closed(
    auth_server: AuthorizationServer, clock: FakeClock
) -> None:
    token = auth_server.token()
    provider = auth_server.provider(introspection=False)
    async with ResourceServer([provider], clock=clock) as server:
        assert (await server.verify(token)).subject == "alice"
        result = await outcome(server.verify_active, token)
    assert isinstance(result, InvalidToken)
    assert (result.reason, result.provider) == ("revocation_check_unavailable", "as")
    assert auth_server.introspected == []


async def test_a_server_that_cannot_introspect_jwts_fails_closed(
    auth_server: AuthorizationServer, resource_server: ResourceServer, clock: FakeClock
) -> None:
    auth_server.mode = "unsupported"
    token = auth_server.token()
    result = await outcome(resource_server.verify_active, token)
    assert isinstance(result, InvalidToken)
    assert result.reason == "revocation_check_unavailable"
    assert result.detail == {"introspection_error": "unsupported_token_type"}
    assert isinstance(await outcome(resource_server.verify_active, token), InvalidToken)
    assert auth_server.calls(token) == 1  # remembered for negative_cache_ttl
    clock.advance(NEGATIVE_TTL)
    await outcome(resource_server.verify_active, token)
    assert auth_server.calls(token) == 2


@pytest.mark.parametrize("kind", ["bad-signature", "expired", "wrong-audience", "unknown-issuer"])
async def test_tokens_refused_locally_are_never_sent(
    auth_server: AuthorizationServer, resource_server: ResourceServer, kind: str
) -> None:
    bad = auth_server.fake.bad
    token = {
        "bad-signature": bad.bad_signature,
        "expired": bad.expired,
        "wrong-audience": bad.wrong_audience,
        "unknown-issuer": bad.wrong_issuer,
    }[kind]()
    result = await outcome(resource_server.verify_active, token)
    assert isinstance(result, InvalidToken)
    assert auth_server.introspected == []


async def test_opaque_tokens_are_verified_as_by_verify(
    auth_server: AuthorizationServer, resource_server: ResourceServer
) -> None:
    """An opaque token was introspected by verify already: no second call."""
    token = secrets.token_urlsafe(32)
    principal = await resource_server.verify_active(token)
    assert principal.provider == "as"
    assert await resource_server.verify_active(token) is principal
    assert await resource_server.verify(token) is principal
    assert auth_server.calls(token) == 1


async def test_refusals_leak_no_token_or_secret(
    auth_server: AuthorizationServer,
    resource_server: ResourceServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = auth_server.token()
    await resource_server.verify_active(token)
    auth_server.revoke(token)
    errors: list[BaseException] = []
    for mode in ("unsupported", "error", "normal"):
        auth_server.mode = mode
        fresh = auth_server.token()
        if mode == "normal":
            auth_server.revoke(fresh)
        result = await outcome(resource_server.verify_active, fresh)
        assert isinstance(result, AuthBridgeError)
        errors.append(result)
        for text in (error_text(result), caplog.text, json.dumps(result.detail)):
            assert fresh not in text
            assert CLIENT_SECRET not in text
    assert token not in caplog.text
