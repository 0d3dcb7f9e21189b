"""JWKS and discovery outages (SECURITY-CASES §4): exact cooldowns and retry times.

An injected clock and an in-process upstream whose endpoints can be taken down:
cooldowns, recovery times and ``retry_after`` values are checked exactly. One
outage must cost at most one cooldown, a ``kid`` unknown while the endpoint
fails is a 503 (never a 401), and every 503 says when the next attempt is allowed.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import FakeClock
from tests.key_model_support import KeyServer, make_signers

from authbridge import (
    AuthBridgeError,
    Introspection,
    InvalidToken,
    Principal,
    ProviderUnavailable,
    ResourceServer,
)
from authbridge.testing import FakeIssuer, sign_jwt

COOLDOWN = 30.0  # the production default of jwks_cooldown
DISCOVERY = "/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server"
JWKS = "/jwks"


async def _outcome(server: ResourceServer, token: str) -> Principal | AuthBridgeError:
    try:
        return await server.verify(token)
    except AuthBridgeError as exc:
        return exc


class Switchboard:
    """An in-process upstream for one FakeIssuer whose endpoints can be taken down."""

    def __init__(self, fake: FakeIssuer, clock: FakeClock) -> None:
        self.fake = fake
        self.clock = clock
        self.down: set[str] = set()
        self.calls: list[tuple[float, str, int]] = []  # (fake time, path, status)
        self.introspected: list[str] = []
        self.transport = httpx.MockTransport(self._handle)

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.calls if p == path)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in self.down or "*" in self.down:
            self.calls.append((self.clock(), path, 0))
            raise httpx.ConnectError("refused")
        if path == "/introspect":
            self.calls.append((self.clock(), path, 200))
            return httpx.Response(
                200,
                json={
                    "active": True,
                    "sub": "bob",
                    "iss": self.fake.issuer,
                    "aud": self.fake.audience,
                    "token_type": "Bearer",
                    "client_id": "test-client",
                    "exp": int(self.clock()) + 300,
                },
            )
        if path == DISCOVERY:
            doc = {**self.fake.discovery_document()}
            doc["introspection_endpoint"] = self.fake.issuer + "/introspect"
            self.calls.append((self.clock(), path, 200))
            return httpx.Response(200, json=doc)
        response = self.fake.transport.handle_request(request)
        self.calls.append((self.clock(), path, response.status_code))
        return response


def _token_now(fake: FakeIssuer, clock: FakeClock, **header: Any) -> str:
    now = int(clock())
    return fake.token(header=header or None, iat=now, exp=now + 300)


async def test_unknown_kid_while_serving_stale_keys_is_503_then_recovers_in_one_cooldown(
    fake_issuer: FakeIssuer, clock: FakeClock
) -> None:
    board = Switchboard(fake_issuer, clock)
    provider = fake_issuer.provider(jwks_cooldown=COOLDOWN)
    async with ResourceServer([provider], transport=board.transport, clock=clock) as server:
        old_key, old_kid = fake_issuer.key, fake_issuer.kid
        fake_issuer.rotate_key(keep_old=True)  # the new key is published, not yet fetched

        def old_token() -> str:
            now = int(clock())
            claims = fake_issuer.claims(iat=now, exp=now + 300)
            return sign_jwt({"alg": "RS256", "typ": "at+jwt", "kid": old_kid}, claims, old_key)

        board.down.add(JWKS)
        clock.advance(601)  # past the key set's default age: the refresh fails
        assert isinstance(await _outcome(server, old_token()), Principal)  # last known good
        failed_at = clock()
        assert board.count(JWKS) == 2

        # Stale keys are being served and the endpoint fails: a new kid is a 503, never a 401.
        for offset in (0, 1, 12.5, 29, 29.5):
            clock.now = failed_at + offset
            new = await _outcome(server, _token_now(fake_issuer, clock))
            assert isinstance(new, ProviderUnavailable), new
            assert new.reason == "jwks_recently_failed"
            assert new.retry_after == max(1.0, COOLDOWN - offset)
            assert new.detail == {
                "document": "jwks",
                "last_failure": "transport_error:ConnectError",
            }
            assert isinstance(await _outcome(server, old_token()), Principal)
        assert board.count(JWKS) == 2  # not hammered

        board.down.clear()  # recovered at failed_at + 29.5
        clock.now = failed_at + COOLDOWN  # exactly one cooldown after the last failure
        assert isinstance(await _outcome(server, _token_now(fake_issuer, clock)), Principal)
        assert board.count(JWKS) == 3


async def test_unknown_kid_with_fresh_keys_and_a_failing_refetch(
    fake_issuer: FakeIssuer, clock: FakeClock
) -> None:
    board = Switchboard(fake_issuer, clock)
    provider = fake_issuer.provider(jwks_cooldown=COOLDOWN)
    async with ResourceServer([provider], transport=board.transport, clock=clock) as server:
        before = _token_now(fake_issuer, clock)
        clock.advance(COOLDOWN + 1)
        fake_issuer.rotate_key()
        board.down.add(JWKS)
        new = _token_now(fake_issuer, clock)
        first = await _outcome(server, new)
        assert isinstance(first, ProviderUnavailable)
        assert first.retry_after == COOLDOWN
        assert isinstance(await _outcome(server, before), Principal)  # fresh keys still serve
        clock.advance(20)
        within = await _outcome(server, new)
        assert isinstance(within, ProviderUnavailable)  # not unknown_key: the endpoint fails
        assert within.retry_after == COOLDOWN - 20
        clock.advance(10)  # still down at the next allowed attempt: one more try, 503 again
        again = await _outcome(server, new)
        assert isinstance(again, ProviderUnavailable)
        assert again.retry_after == COOLDOWN
        assert board.count(JWKS) == 3
        board.down.clear()
        clock.advance(COOLDOWN)
        assert isinstance(await _outcome(server, new), Principal)
        assert board.count(JWKS) == 4


async def test_one_outage_costs_one_cooldown_across_discovery_and_jwks(
    fake_issuer: FakeIssuer, clock: FakeClock
) -> None:
    """A JWKS attempt is never held back by a discovery cooldown of the same outage."""
    board = Switchboard(fake_issuer, clock)
    provider = fake_issuer.provider(
        jwks_cooldown=COOLDOWN, introspection=Introspection(client_id="api", client_secret="s")
    )
    board.down.add("*")
    server = ResourceServer([provider], transport=board.transport, clock=clock)
    await server.start(warm_up=False)
    try:
        t0 = clock()
        # An opaque token needs discovery first: it fails (both metadata URLs tried).
        opaque = await _outcome(server, "opaque-token-" + "a" * 30)
        assert isinstance(opaque, ProviderUnavailable)
        assert opaque.retry_after == COOLDOWN
        assert [p for _, p, _ in board.calls] == [DISCOVERY, RFC8414]
        clock.now = t0 + 10
        again = await _outcome(server, "opaque-token-" + "b" * 30)
        assert isinstance(again, ProviderUnavailable)
        assert (again.reason, again.retry_after) == ("discovery_recently_failed", COOLDOWN - 10)

        # A JWT 10 s into the discovery cooldown: its JWKS attempt discovers anyway.
        jwt = await _outcome(server, _token_now(fake_issuer, clock))
        assert isinstance(jwt, ProviderUnavailable)
        assert jwt.retry_after == COOLDOWN  # from this attempt, the last failed one
        assert board.count(DISCOVERY) == 2
        # The discovery it drove failed too: the discovery cooldown restarts from it.
        opaque = await _outcome(server, "opaque-token-" + "c" * 30)
        assert isinstance(opaque, ProviderUnavailable)
        assert opaque.retry_after == COOLDOWN

        board.down.clear()  # recovered at t0 + 11
        clock.now = t0 + 10 + COOLDOWN - 1
        refused = await _outcome(server, _token_now(fake_issuer, clock))
        assert isinstance(refused, ProviderUnavailable)
        assert refused.retry_after == 1
        clock.now = t0 + 10 + COOLDOWN  # one cooldown after the outage's last failed attempt
        assert isinstance(await _outcome(server, _token_now(fake_issuer, clock)), Principal)
        # Discovery came back with that attempt: opaque tokens are served at once too.
        assert isinstance(await _outcome(server, "opaque-token-" + "d" * 30), Principal)
    finally:
        await server.aclose()


async def test_recovery_when_the_outage_ends_inside_a_discovery_cooldown(
    fake_issuer: FakeIssuer, clock: FakeClock
) -> None:
    """Discovery failed for an opaque token; a JWT right after recovery succeeds at once."""
    board = Switchboard(fake_issuer, clock)
    provider = fake_issuer.provider(
        jwks_cooldown=COOLDOWN, introspection=Introspection(client_id="api", client_secret="s")
    )
    board.down.add("*")
    server = ResourceServer([provider], transport=board.transport, clock=clock)
    await server.start(warm_up=False)
    try:
        assert isinstance(await _outcome(server, "opaque-" + "a" * 30), ProviderUnavailable)
        board.down.clear()
        clock.advance(5)  # within the discovery cooldown; the JWKS has never failed
        assert isinstance(await _outcome(server, _token_now(fake_issuer, clock)), Principal)
    finally:
        await server.aclose()


async def test_start_up_outage_recovers_one_cooldown_after_the_failure(
    fake_issuer: FakeIssuer, clock: FakeClock
) -> None:
    board = Switchboard(fake_issuer, clock)
    board.down.add("*")
    provider = fake_issuer.provider(jwks_cooldown=COOLDOWN)
    async with ResourceServer([provider], transport=board.transport, clock=clock) as server:
        t0 = clock()
        board.down.clear()  # back one second later
        for offset, expected in ((1, 29), (12, 18), (29.5, 1)):
            clock.now = t0 + offset
            refused = await _outcome(server, _token_now(fake_issuer, clock))
            assert isinstance(refused, ProviderUnavailable)
            assert refused.retry_after == expected
        clock.now = t0 + COOLDOWN
        assert isinstance(await _outcome(server, _token_now(fake_issuer, clock)), Principal)
        assert board.count(DISCOVERY) == 2  # start-up (OIDC URL), then the JWKS attempt's
        assert board.count(JWKS) == 1


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cooldown=st.integers(min_value=0, max_value=120),
    offset=st.integers(min_value=0, max_value=260).map(lambda n: n / 2),  # exact in floats
)
def test_retry_after_is_the_time_until_the_next_attempt(
    fake_issuer: FakeIssuer, cooldown: int, offset: float
) -> None:
    clock = FakeClock(1_700_000_000.0)
    board = Switchboard(fake_issuer, clock)
    board.down.add(JWKS)
    provider = fake_issuer.provider(jwks_cooldown=float(cooldown))

    async def scenario() -> tuple[Principal | AuthBridgeError, int]:
        async with ResourceServer([provider], transport=board.transport, clock=clock) as server:
            board.down.clear()
            clock.advance(offset)
            before = board.count(JWKS)
            result = await _outcome(server, _token_now(fake_issuer, clock))
            return result, board.count(JWKS) - before

    result, fetched = asyncio.run(scenario())
    if offset < cooldown:
        assert isinstance(result, ProviderUnavailable)
        assert fetched == 0
        assert result.retry_after == max(1.0, cooldown - offset)
    else:
        assert isinstance(result, Principal)
        assert fetched == 1


# -- a model of the key cache, checked against random schedules ---------------------------


@pytest.fixture(scope="module")
def signers() -> list[FakeIssuer]:
    """Three keys of one issuer (kids k0, k1, k2); k0 is published from the start."""
    return make_signers()


Step = tuple[str, Any]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1, 10, 29, 29.5, 30, 31, 61, 601])),
        st.tuples(st.sampled_from(["publish", "unpublish"]), st.integers(0, 2)),
        st.tuples(st.sampled_from(["down", "up"]), st.none()),
        st.tuples(st.just("tokens"), st.lists(st.integers(0, 3), min_size=1, max_size=4)),
    ),
    max_size=30,
)


@settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_key_cache_model(signers: list[FakeIssuer], steps: list[Step]) -> None:
    """Random rotations, outages and clock moves; after each request burst:

    - a key never published (or index 3: an unpublished kid) never validates;
    - a refusal as invalid (``unknown_key``) only when the last fetch succeeded;
    - every 503 says exactly when the next attempt is allowed;
    - JWKS attempts are at least one cooldown apart;
    - with the endpoint up and an attempt allowed, a published key validates.
    """
    clock = FakeClock(1_700_000_000.0)
    server_side = KeyServer(signers, clock)
    stranger = FakeIssuer(key=signers[1].key, kid="never-published")
    provider = signers[0].provider(jwks_cooldown=COOLDOWN)

    def token(index: int) -> str:
        now = int(clock())
        issuer = stranger if index == 3 else signers[index]
        return issuer.token(iat=now, exp=now + 300)

    async def scenario() -> None:
        rs = ResourceServer([provider], transport=server_side.transport, clock=clock)
        async with rs:
            for action, arg in steps:
                if action == "advance":
                    clock.advance(arg)
                elif action == "publish":
                    server_side.publish(arg)
                elif action == "unpublish":
                    server_side.published.discard(arg)
                elif action in ("down", "up"):
                    server_side.up = action == "up"
                else:
                    await check_burst(rs, arg)

    async def check_burst(rs: ResourceServer, indexes: list[int]) -> None:
        now = clock()
        attempts = server_side.attempts
        allowed = not attempts or now - attempts[-1][0] >= COOLDOWN
        results = await asyncio.gather(*(_outcome(rs, token(i)) for i in indexes))
        for index, result in zip(indexes, results, strict=True):
            if isinstance(result, Principal):
                assert index in server_side.ever_published
                continue
            if isinstance(result, InvalidToken):
                assert result.reason == "unknown_key"
                assert attempts[-1][1], "unknown_key while the JWKS endpoint is failing"
                continue
            assert isinstance(result, ProviderUnavailable)
            last_failure = max(t for t, usable, _ in attempts if not usable)
            assert not attempts[-1][1]
            assert result.retry_after == max(1.0, last_failure + COOLDOWN - now)
            if server_side.up and index in server_side.published:  # hence usable
                assert not allowed, "a published key refused while an attempt was allowed"
        times = [t for t, _, _ in attempts]
        assert all(b - a >= COOLDOWN for a, b in itertools.pairwise(times))

    asyncio.run(scenario())
