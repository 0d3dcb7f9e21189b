"""The wall clock steps backwards (NTP, a resumed VM, an operator): cooldowns and key ages.

authbridge takes one injectable clock, the wall clock by default. When it goes back before
the moment a cooldown started from, the cooldown is over; every wait and ``retry_after``
is at most one cooldown; cached keys are fresh only between their fetch and their expiry,
so never longer than their max age ahead. A backward step must never hold back a genuine
key rotation (401 ``unknown_key``, or 503 with an hour-long ``Retry-After``).
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
from authbridge._shared import FailureClock, within
from authbridge.jose.remote import RemoteJWKS
from authbridge.metadata import MetadataCache
from authbridge.testing import FakeIssuer

COOLDOWN = 30.0
MAX_AGE = 600.0  # the key set's age without Cache-Control (default_age)
DISCOVERY = "/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server"
T0 = 1_700_000_000.0


async def _outcome(server: ResourceServer, token: str) -> Principal | AuthBridgeError:
    try:
        return await server.verify(token)
    except AuthBridgeError as exc:
        return exc


def _token(fake: FakeIssuer, clock: FakeClock) -> str:
    now = int(clock())
    return fake.token(iat=now, exp=now + 300)


class JWKSEndpoint:
    """An issuer's JWKS that can be taken down; counts every request (by fake time)."""

    def __init__(self, fake: FakeIssuer, clock: FakeClock) -> None:
        self.fake = fake
        self.clock = clock
        self.up = True
        self.requests: list[float] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(self.clock())
        if not self.up:
            return httpx.Response(503)
        return self.fake.transport.handle_request(request)

    def jwks(self, clock: FakeClock) -> RemoteJWKS:
        return RemoteJWKS(
            self.fake.jwks_uri,
            client=lambda: httpx.AsyncClient(transport=self.transport),
            clock=clock,
            cooldown=COOLDOWN,
        )


# -- the bookkeeping itself ------------------------------------------------------------------


def test_a_period_is_over_once_the_clock_goes_back_before_its_start() -> None:
    assert within(100.0, 100.0, 30.0)
    assert within(129.9, 100.0, 30.0)
    assert not within(130.0, 100.0, 30.0)
    assert not within(99.9, 100.0, 30.0)  # went back: over, not "130.1 s to go"
    assert not within(100.0, float("-inf"), 30.0)


@settings(deadline=None)  # timing on a shared, loaded machine is no property
@given(
    cooldown=st.integers(2, 7200).map(lambda n: n / 2),  # exact in floats
    moves=st.lists(st.integers(-172_800, 172_800).map(lambda n: n / 2), max_size=8),
)
def test_a_failure_cooldown_never_asks_to_wait_longer_than_itself(
    cooldown: float, moves: list[float]
) -> None:
    clock = FakeClock(T0)
    failures = FailureClock(clock, cooldown)
    assert failures.failed(ProviderUnavailable("timeout", provider="p")) == cooldown
    failed_at = clock()
    for move in moves:
        clock.advance(move)
        wait = failures.wait(clock())
        assert 0.0 <= wait <= cooldown
        assert (wait > 0) is (failed_at <= clock() < failed_at + cooldown)
        if wait > 0:
            assert wait == failed_at + cooldown - clock()
            retry_after = failures.refusal("x", provider="p", wait=wait).retry_after
            assert retry_after is not None
            assert 1.0 <= retry_after <= cooldown


# -- the JWKS cache ----------------------------------------------------------------------------


async def test_a_rotation_after_a_backward_step_is_picked_up(fake_issuer: FakeIssuer) -> None:
    clock = FakeClock(T0)
    endpoint = JWKSEndpoint(fake_issuer, clock)
    jwks = endpoint.jwks(clock)
    old_kid = fake_issuer.kid
    keys, found = await jwks.lookup(old_kid, "RS256")  # success at T0
    assert found
    clock.advance(-600)  # the clock steps back
    fake_issuer.rotate_key()  # the issuer rotates
    clock.advance(120)
    keys, found = await jwks.lookup(fake_issuer.kid, "RS256")
    assert found, "a genuine new key refused for the size of the clock's step"
    assert len(endpoint.requests) == 2
    assert not keys.has_kid(old_kid)


async def test_after_a_backward_step_a_failure_waits_one_cooldown_at_most(
    fake_issuer: FakeIssuer,
) -> None:
    clock = FakeClock(T0)
    endpoint = JWKSEndpoint(fake_issuer, clock)
    endpoint.up = False
    jwks = endpoint.jwks(clock)
    with pytest.raises(ProviderUnavailable) as first:
        await jwks.lookup(fake_issuer.kid, "RS256")
    assert first.value.retry_after == COOLDOWN
    clock.advance(-3600)
    # Back before the failure: its cooldown is over (not 3,570 s to go). Still down: one
    # attempt, and the next one announced one cooldown from now.
    with pytest.raises(ProviderUnavailable) as second:
        await jwks.lookup(fake_issuer.kid, "RS256")
    assert second.value.retry_after == COOLDOWN
    assert len(endpoint.requests) == 2
    clock.advance(10)
    with pytest.raises(ProviderUnavailable) as within_cooldown:
        await jwks.lookup(fake_issuer.kid, "RS256")
    assert within_cooldown.value.reason == "jwks_recently_failed"
    assert within_cooldown.value.retry_after == COOLDOWN - 10
    assert len(endpoint.requests) == 2
    endpoint.up = True
    clock.advance(COOLDOWN - 10)
    assert (await jwks.lookup(fake_issuer.kid, "RS256"))[1]
    assert len(endpoint.requests) == 3


@pytest.mark.parametrize("back", [1, 300, 599, 3600, 30 * 86_400])
async def test_keys_are_never_fresh_for_longer_than_their_max_age(
    fake_issuer: FakeIssuer, back: float
) -> None:
    """Forward then back by as much: the keys' expiry is never pushed further away."""
    clock = FakeClock(T0)
    endpoint = JWKSEndpoint(fake_issuer, clock)
    jwks = endpoint.jwks(clock)
    await jwks.lookup(fake_issuer.kid, "RS256")
    clock.advance(MAX_AGE - 1)
    clock.advance(-back)  # still at or after the fetch only when back <= MAX_AGE - 1
    assert jwks.lookup_cached(fake_issuer.kid, "RS256") is not None or back > MAX_AGE - 1
    await jwks.lookup(fake_issuer.kid, "RS256")
    fetches = len(endpoint.requests)
    assert fetches == (1 if back <= MAX_AGE - 1 else 2)
    # From whatever the clock reads now, the keys are fresh for at most MAX_AGE more.
    clock.advance(MAX_AGE)
    assert jwks.lookup_cached(fake_issuer.kid, "RS256") is None
    await jwks.lookup(fake_issuer.kid, "RS256")
    assert len(endpoint.requests) == fetches + 1


async def test_a_backward_step_keeps_last_known_good_keys_for_max_stale_only(
    fake_issuer: FakeIssuer,
) -> None:
    clock = FakeClock(T0)
    endpoint = JWKSEndpoint(fake_issuer, clock)
    jwks = RemoteJWKS(
        fake_issuer.jwks_uri,
        client=lambda: httpx.AsyncClient(transport=endpoint.transport),
        clock=clock,
        cooldown=COOLDOWN,
        max_stale=3600.0,
    )
    await jwks.lookup(fake_issuer.kid, "RS256")
    endpoint.up = False
    clock.advance(-86_400)  # a day back, during an outage
    assert (await jwks.lookup(fake_issuer.kid, "RS256"))[1]  # last known good, refetch failed
    assert len(endpoint.requests) == 2
    clock.advance(3600 - 1)
    assert (await jwks.lookup(fake_issuer.kid, "RS256"))[1]
    clock.advance(1)  # max_stale after the step, not a day and max_stale
    with pytest.raises(ProviderUnavailable):
        await jwks.lookup(fake_issuer.kid, "RS256")


# -- discovery and RFC 8414 metadata ---------------------------------------------------------


async def test_discovery_cooldown_after_a_backward_step(fake_issuer: FakeIssuer) -> None:
    clock = FakeClock(T0)
    calls: list[str] = []
    up = False

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return fake_issuer.transport.handle_request(request) if up else httpx.Response(503)

    cache = MetadataCache(
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(handle)),
        fake_issuer.issuer,
        clock=clock,
        cooldown=COOLDOWN,
    )
    with pytest.raises(ProviderUnavailable):
        await cache.get()
    attempts = len(calls)
    clock.advance(5)
    with pytest.raises(ProviderUnavailable) as refused:
        await cache.get()
    assert refused.value.retry_after == COOLDOWN - 5
    assert len(calls) == attempts
    clock.advance(-3600)
    up = True
    assert (await cache.get()).issuer == fake_issuer.issuer  # not refused for an hour


async def test_rfc8414_cooldowns_after_a_backward_step(fake_issuer: FakeIssuer) -> None:
    clock = FakeClock(T0)
    calls: list[str] = []
    rfc8414: list[int] = [404]

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == DISCOVERY:
            return httpx.Response(200, json=fake_issuer.discovery_document())
        if request.url.path.startswith(RFC8414):
            status = rfc8414[0]
            if status != 200:
                return httpx.Response(status)
            document = {
                **fake_issuer.discovery_document(),
                "introspection_endpoint": fake_issuer.issuer + "/introspect",
            }
            return httpx.Response(200, json=document)
        return httpx.Response(404)

    cache = MetadataCache(
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(handle)),
        fake_issuer.issuer,
        clock=clock,
        cooldown=COOLDOWN,
    )
    assert await cache.endpoint("introspection_endpoint") is None  # not published (404)
    clock.advance(10)
    assert await cache.endpoint("introspection_endpoint") is None  # within the cooldown
    assert calls.count(DISCOVERY) == 1
    assert len(calls) == 2
    rfc8414[0] = 500
    clock.advance(-3600)  # back before the 404: asked again at once
    with pytest.raises(ProviderUnavailable) as failed:
        await cache.endpoint("introspection_endpoint")
    assert failed.value.retry_after == COOLDOWN
    assert len(calls) == 3
    rfc8414[0] = 200
    clock.advance(-3600)  # back before the failure: asked again at once
    assert await cache.endpoint("introspection_endpoint") == fake_issuer.issuer + "/introspect"
    assert len(calls) == 4


# -- through the resource server -------------------------------------------------------------


async def test_a_resource_server_accepts_a_rotated_key_after_a_backward_step(
    fake_issuer: FakeIssuer,
) -> None:
    clock = FakeClock(T0)
    provider = fake_issuer.provider(jwks_cooldown=COOLDOWN)
    async with ResourceServer([provider], transport=fake_issuer.transport, clock=clock) as rs:
        assert isinstance(await _outcome(rs, _token(fake_issuer, clock)), Principal)
        clock.advance(-600)
        fake_issuer.rotate_key()
        clock.advance(120)
        assert isinstance(await _outcome(rs, _token(fake_issuer, clock)), Principal)


async def test_an_opaque_token_after_a_backward_step_in_a_discovery_outage(
    fake_issuer: FakeIssuer,
) -> None:
    clock = FakeClock(T0)
    up = False

    def handle(request: httpx.Request) -> httpx.Response:
        if not up:
            return httpx.Response(503)
        if request.url.path == "/introspect":
            answer = {
                "active": True,
                "sub": "bob",
                "iss": fake_issuer.issuer,
                "aud": fake_issuer.audience,
                "token_type": "Bearer",
                "exp": int(clock()) + 300,
            }
            return httpx.Response(200, json=answer)
        if request.url.path == DISCOVERY:
            document = {
                **fake_issuer.discovery_document(),
                "introspection_endpoint": fake_issuer.issuer + "/introspect",
            }
            return httpx.Response(200, json=document)
        return fake_issuer.transport.handle_request(request)

    provider = fake_issuer.provider(
        jwks_cooldown=COOLDOWN, introspection=Introspection(client_id="api", client_secret="s")
    )
    server = ResourceServer([provider], transport=httpx.MockTransport(handle), clock=clock)
    await server.start(warm_up=False)
    try:
        first = await _outcome(server, "opaque-token-" + "a" * 30)
        assert isinstance(first, ProviderUnavailable)
        clock.advance(-3600)
        again = await _outcome(server, "opaque-token-" + "b" * 30)
        assert isinstance(again, ProviderUnavailable)
        assert again.retry_after is not None
        assert again.retry_after <= COOLDOWN  # never the hour the clock went back
        up = True
        clock.advance(COOLDOWN)
        assert isinstance(await _outcome(server, "opaque-token-" + "c" * 30), Principal)
    finally:
        await server.aclose()


# -- a model of the key cache under arbitrary clock moves ------------------------------------


@pytest.fixture(scope="module")
def signers() -> list[FakeIssuer]:
    """Three keys of one issuer (kids k0, k1, k2); k0 is published from the start."""
    return make_signers()


MOVES = st.sampled_from([0.5, 1, 10, 29.5, 30, 31, 120, 601, 3600])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), MOVES),
        st.tuples(st.just("back"), MOVES),
        st.tuples(st.sampled_from(["publish", "unpublish"]), st.integers(0, 2)),
        st.tuples(st.sampled_from(["down", "up"]), st.none()),
        st.tuples(st.just("tokens"), st.lists(st.integers(0, 2), min_size=1, max_size=4)),
    ),
    max_size=30,
)


@settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_key_cache_under_arbitrary_clock_moves(signers: list[FakeIssuer], steps: list[Any]) -> None:
    """Random rotations, outages and clock moves either way; after each burst of requests:

    - every 503's ``retry_after`` is in [1, cooldown], exactly the time left when the
      clock is within the cooldown of the last failure;
    - a genuine (published) key is refused only while the clock reads within one
      cooldown after the last JWKS attempt: a rotation is picked up as soon as the clock
      has progressed one cooldown past it (or gone back before it);
    - a key no longer published validates only from keys fetched at most the max age
      before the clock's reading, never after it (or as last known good in an outage);
    - attempts are at least one cooldown apart, unless the clock went back in between.
    """
    clock = FakeClock(T0)
    server_side = KeyServer(signers, clock)
    provider = signers[0].provider(jwks_cooldown=COOLDOWN)

    async def scenario() -> None:
        async with ResourceServer([provider], transport=server_side.transport, clock=clock) as rs:
            for action, arg in steps:
                if action == "advance":
                    clock.advance(arg)
                elif action == "back":
                    clock.advance(-arg)
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
        before = len(attempts)
        last = attempts[-1][0] if attempts else None
        results = await asyncio.gather(*(_outcome(rs, _token(signers[i], clock)) for i in indexes))
        for index, result in zip(indexes, results, strict=True):
            if isinstance(result, Principal):
                if index not in server_side.published:
                    # From the key set cached before the burst, or fetched during it.
                    usable = [i for i, (_, ok, _) in enumerate(attempts) if ok and i < before]
                    sets = attempts[usable[-1] if usable else before :]
                    assert any(
                        ok and index in kids and (t <= now < t + MAX_AGE or not attempts[-1][1])
                        for t, ok, kids in sets
                    ), "a removed key validated from keys older than their max age"
                continue
            if isinstance(result, InvalidToken):
                assert result.reason == "unknown_key"
                assert attempts[-1][1], "unknown_key while the JWKS endpoint is failing"
                assert index not in attempts[-1][2]
            else:
                assert isinstance(result, ProviderUnavailable), result
                assert not attempts[-1][1]
                assert result.retry_after is not None
                assert 1.0 <= result.retry_after <= COOLDOWN
                failed_at = attempts[-1][0]
                if failed_at <= now < failed_at + COOLDOWN:
                    assert result.retry_after == max(1.0, failed_at + COOLDOWN - now)
            if server_side.up and index in server_side.published:
                assert last is not None
                assert last <= now < last + COOLDOWN, "a genuine key refused past the cooldown"
        assert len(attempts) - before <= 1  # one fetch in flight at a time
        times = [t for t, _, _ in attempts]
        assert all(b - a >= COOLDOWN or b < a for a, b in itertools.pairwise(times))

    asyncio.run(scenario())
