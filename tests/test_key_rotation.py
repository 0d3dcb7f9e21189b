"""Key rotation and JWKS outages (SECURITY-CASES §4): real latency, exact cooldowns.

The concurrency tests run against a real HTTP server on 127.0.0.1 whose JWKS
answer takes real time, with many requests in flight while it is fetched. The
timing tests use an injected clock (and an in-process transport), so cooldowns
and ``retry_after`` values are checked exactly, whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient
from tests.conftest import FakeClock

from authbridge import (
    AuthBridge,
    AuthBridgeError,
    InvalidToken,
    Principal,
    ProviderUnavailable,
    ResourceServer,
)
from authbridge.testing import FakeIssuer, sign_jwt

COOLDOWN = 30.0  # the production default of jwks_cooldown
LATENCY = 1.0  # seconds the loopback JWKS answer takes (a wide window under load)
DISCOVERY = "/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server"
JWKS = "/jwks"
T = TypeVar("T")
R = TypeVar("R")


@pytest.fixture(scope="module")
def stranger_key() -> rsa.RSAPrivateKey:
    """A key no issuer ever publishes."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _results(values: list[Principal | BaseException]) -> list[str]:
    return [v.reason if isinstance(v, AuthBridgeError) else type(v).__name__ for v in values]


async def _outcome(server: ResourceServer, token: str) -> Principal | AuthBridgeError:
    try:
        return await server.verify(token)
    except AuthBridgeError as exc:
        return exc


def _forged(fake: FakeIssuer, key: rsa.RSAPrivateKey, kid: str) -> str:
    """Valid claims of ``fake``, signed by ``key`` under a ``kid`` nobody published."""
    return sign_jwt({"alg": "RS256", "typ": "at+jwt", "kid": kid}, fake.claims(), key)


# -- a real loopback issuer whose JWKS answer takes real time ------------------------------


class Loopback:
    """A FakeIssuer's discovery and JWKS over real HTTP on 127.0.0.1.

    ``jwks_latency`` (seconds, slept in the server thread) and ``jwks_status``
    can be changed between phases; ``hits`` records every path as it arrives.
    """

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.jwks_latency = 0.0
        self.jwks_status = 200
        self.hits: list[str] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.fake = FakeIssuer(issuer=f"http://127.0.0.1:{port}", key=key)

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits.count(path)

    def _answer(self, path: str) -> tuple[int, bytes]:
        with self._lock:
            self.hits.append(path)
        if path == DISCOVERY:
            return 200, json.dumps(self.fake.discovery_document()).encode()
        if path == JWKS:
            time.sleep(self.jwks_latency)
            if self.jwks_status != 200:
                return self.jwks_status, b'{"error":"unavailable"}'
            return 200, json.dumps(self.fake.jwks()).encode()
        return 404, b'{"error":"not_found"}'

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = loopback._answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests read ``hits``."""

        return Handler


@pytest.fixture
def loopback(authbridge_signing_key: rsa.RSAPrivateKey) -> Iterator[Loopback]:
    served = Loopback(authbridge_signing_key)
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
        thread.join(timeout=10)


@asynccontextmanager
async def rotated(loopback: Loopback, clock: FakeClock, **options: Any) -> AsyncIterator[Any]:
    """A started ResourceServer for ``loopback``, its keys loaded, then a slow-JWKS rotation.

    The clock is moved past the cooldown of the start-up fetch, so the first token
    with the new ``kid`` may refetch (production cooldown).
    """
    options.setdefault("jwks_cooldown", COOLDOWN)
    server = ResourceServer([loopback.fake.provider(**options)], clock=clock)
    async with server:
        assert loopback.hits == [DISCOVERY, JWKS]
        clock.advance(COOLDOWN + 1)
        loopback.fake.rotate_key()
        loopback.jwks_latency = LATENCY
        yield server


async def burst(loopback: Loopback, call: Callable[[T], Awaitable[R]], items: list[T]) -> list[R]:
    """``call(items[0])``, then, once its JWKS request reached the server, all the others.

    So every other request arrives while that fetch is in flight (it takes ``LATENCY``).
    """
    before = loopback.count(JWKS)
    first = asyncio.create_task(call(items[0]))
    deadline = time.monotonic() + 30
    while loopback.count(JWKS) == before:
        assert time.monotonic() < deadline, "the JWKS fetch never started"
        await asyncio.sleep(0.005)
    rest = [asyncio.create_task(call(item)) for item in items[1:]]
    assert not first.done()  # the fetch is still in flight for all the others
    return [await first, *await asyncio.gather(*rest)]


# -- a rotation costs one fetch, and no request is refused meanwhile ---------------------


async def test_rotation_burst_all_succeed_with_one_fetch(
    loopback: Loopback, clock: FakeClock
) -> None:
    async with rotated(loopback, clock) as server:
        tokens = [loopback.fake.token(scopes=["items:read"]) for _ in range(100)]
        results = await burst(loopback, functools.partial(_outcome, server), tokens)
        jwks = server.bound("fake").jwks
    assert _results(results) == ["Principal"] * 100
    assert loopback.count(JWKS) == 2  # start-up, then exactly one fetch for the new kid
    assert jwks.fetch_count == 2


async def test_rotation_burst_with_staggered_arrivals(loopback: Loopback, clock: FakeClock) -> None:
    """Requests keep arriving during the fetch, and after it: none is refused."""
    async with rotated(loopback, clock) as server:
        tasks = []
        for _ in range(10):
            tasks += [
                asyncio.create_task(_outcome(server, loopback.fake.token())) for _ in range(10)
            ]
            await asyncio.sleep(LATENCY / 5)
        results = await asyncio.gather(*tasks)
    assert _results(results) == ["Principal"] * 100
    assert loopback.count(JWKS) == 2


def _app(auth: AuthBridge) -> FastAPI:
    app = FastAPI()

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {"sub": user.subject}

    return app


async def test_rotation_burst_through_the_fastapi_app(loopback: Loopback, clock: FakeClock) -> None:
    auth = AuthBridge([loopback.fake.provider(jwks_cooldown=COOLDOWN)], clock=clock)
    transport = httpx.ASGITransport(app=_app(auth))
    async with auth, httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        clock.advance(COOLDOWN + 1)
        loopback.fake.rotate_key()
        loopback.jwks_latency = LATENCY
        tokens = [loopback.fake.token(scopes=["items:read"]) for _ in range(100)]

        async def get(token: str) -> httpx.Response:
            return await client.get("/items", headers={"Authorization": f"Bearer {token}"})

        responses = await burst(loopback, get, tokens)
    assert [r.status_code for r in responses] == [200] * 100
    assert loopback.count(JWKS) == 2


async def test_unknown_kid_storm_during_the_fetch(
    loopback: Loopback, clock: FakeClock, stranger_key: rsa.RSAPrivateKey
) -> None:
    """Made-up kids arriving during a genuine rotation's fetch join it: no extra fetch."""
    async with rotated(loopback, clock) as server:
        genuine = [loopback.fake.token() for _ in range(50)]
        storm = [_forged(loopback.fake, stranger_key, f"made-up-{i}") for i in range(100)]
        mixed = genuine[:25] + storm + genuine[25:]
        results = await burst(loopback, functools.partial(_outcome, server), mixed)
        assert loopback.count(JWKS) == 2
        # Later made-up kids, within the cooldown of that fetch: refused, nothing fetched.
        later = await asyncio.gather(
            *(_outcome(server, _forged(loopback.fake, stranger_key, f"x{i}")) for i in range(50))
        )
        assert loopback.count(JWKS) == 2
    reasons = _results(results)
    assert reasons[:25] + reasons[125:] == ["Principal"] * 50
    assert reasons[25:125] == ["unknown_key"] * 100
    assert _results(later) == ["unknown_key"] * 50


async def test_fetch_fails_while_many_wait(loopback: Loopback, clock: FakeClock) -> None:
    async with rotated(loopback, clock) as server:
        loopback.jwks_status = 503
        tokens = [loopback.fake.token() for _ in range(100)]
        results = await burst(loopback, functools.partial(_outcome, server), tokens)
        assert loopback.count(JWKS) == 2  # one failed fetch, shared by all 100
        assert all(isinstance(r, ProviderUnavailable) for r in results)
        assert {r.reason for r in results} == {"http_status:503"}
        assert {r.retry_after for r in results} == {COOLDOWN}

        # Within the cooldown: refused at once, with the exact time left.
        clock.advance(12)
        early = await _outcome(server, tokens[0])
        assert isinstance(early, ProviderUnavailable)
        assert (early.reason, early.retry_after) == ("jwks_recently_failed", COOLDOWN - 12)
        assert early.detail == {"document": "jwks", "last_failure": "http_status:503"}
        assert loopback.count(JWKS) == 2

        # The endpoint recovers; the first request once the cooldown is over succeeds.
        loopback.jwks_status = 200
        loopback.jwks_latency = 0.0
        clock.advance(COOLDOWN - 12)
        assert isinstance(await _outcome(server, tokens[0]), Principal)
        assert loopback.count(JWKS) == 3


async def test_fetch_fails_while_many_wait_over_http(loopback: Loopback, clock: FakeClock) -> None:
    auth = AuthBridge([loopback.fake.provider(jwks_cooldown=COOLDOWN)], clock=clock)
    transport = httpx.ASGITransport(app=_app(auth))
    async with auth, httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        clock.advance(COOLDOWN + 1)
        loopback.fake.rotate_key()
        loopback.jwks_latency = LATENCY
        loopback.jwks_status = 500
        tokens = [loopback.fake.token(scopes=["items:read"]) for _ in range(50)]

        async def get(token: str) -> httpx.Response:
            return await client.get("/items", headers={"Authorization": f"Bearer {token}"})

        responses = await burst(loopback, get, tokens)
        clock.advance(12.5)
        later = await get(tokens[0])
    assert [r.status_code for r in responses] == [503] * 50
    assert (later.status_code, later.headers["retry-after"]) == (503, "18")  # 17.5 s, rounded up
    assert {r.headers["retry-after"] for r in responses} == {"30"}  # the cooldown, exactly
    assert all("www-authenticate" not in r.headers for r in responses)
    assert loopback.count(JWKS) == 2


async def test_fetch_succeeds_but_the_kid_is_still_unknown(
    loopback: Loopback, clock: FakeClock, stranger_key: rsa.RSAPrivateKey
) -> None:
    async with rotated(loopback, clock) as server:
        # Genuine-looking: right issuer, audience and claims, an unpublished key.
        looks_genuine = [_forged(loopback.fake, stranger_key, "next-key") for _ in range(100)]
        results = await burst(loopback, functools.partial(_outcome, server), looks_genuine)
        assert _results(results) == ["unknown_key"] * 100
        assert loopback.count(JWKS) == 2
        clock.advance(COOLDOWN - 1)
        assert _results([await _outcome(server, looks_genuine[0])]) == ["unknown_key"]
        assert loopback.count(JWKS) == 2  # no second fetch within the cooldown
        clock.advance(1)
        assert _results([await _outcome(server, looks_genuine[0])]) == ["unknown_key"]
        assert loopback.count(JWKS) == 3  # one per cooldown


# -- the test kit rotates without waiting -------------------------------------------------


async def test_test_kit_rotation_validates_at_once(
    fake_issuer: FakeIssuer, clock: FakeClock
) -> None:
    server = ResourceServer([fake_issuer.provider()], transport=fake_issuer.transport, clock=clock)
    async with server:
        old = fake_issuer.token()
        assert (await server.verify(old)).subject == "alice"
        for _ in range(3):
            fake_issuer.rotate_key()
            assert (await server.verify(fake_issuer.token(subject="bob"))).subject == "bob"
        # The old key is no longer published: refused once the key set was refetched.
        with pytest.raises(InvalidToken) as caught:
            await server.verify(fake_issuer.token(header={"kid": "test-key-1"}))
        assert caught.value.reason == "unknown_key"
    assert fake_issuer.requests.count("/jwks") == 5  # start-up, 3 rotations, the old kid


def test_test_kit_rotation_over_http(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge([fake_issuer.provider()], transport=fake_issuer.transport)
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/me")
    async def me(user: Principal = Security(auth.principal)) -> dict:
        return {"sub": user.subject}

    with TestClient(app) as client:
        assert client.get("/me", headers={"Authorization": f"Bearer {fake_issuer.token()}"}).json()
        fake_issuer.rotate_key(keep_old=True)
        old_kid = fake_issuer.bad.unknown_kid()  # never published: still refused
        new = client.get("/me", headers={"Authorization": f"Bearer {fake_issuer.token('carol')}"})
        assert new.status_code == 200
        assert new.json() == {"sub": "carol"}
        refused = client.get("/me", headers={"Authorization": f"Bearer {old_kid}"})
        assert refused.status_code == 401


def test_test_kit_keeps_the_production_cooldown_when_asked(fake_issuer: FakeIssuer) -> None:
    assert fake_issuer.provider().jwks_cooldown == 0.0
    assert fake_issuer.provider(jwks_cooldown=30).jwks_cooldown == 30.0
