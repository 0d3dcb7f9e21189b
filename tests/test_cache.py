"""The verified-token cache: hits skip verification; entries never outlive exp or their key."""

from __future__ import annotations

import pytest
from tests.conftest import FakeClock

from authbridge import InvalidToken, ResourceServer
from authbridge.testing import FakeIssuer


class CountingVerify:
    """Wraps one provider's signature checks (on the instance) to count full verifications."""

    def __init__(self, server: ResourceServer, name: str) -> None:
        self.calls = 0
        bound = server.bound(name)
        original = bound._finish

        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return original(*args, **kwargs)

        bound._finish = counting


async def test_repeated_token_is_not_reverified(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    server = ResourceServer([fake_issuer.provider()], transport=fake_issuer.transport, clock=clock)
    counter = CountingVerify(server, "fake")
    token = fake_issuer.token(scopes=["a"])
    async with server:
        first = await server.verify(token)
        for _ in range(5):
            assert await server.verify(token) is first
    assert counter.calls == 1


async def test_cache_is_bounded(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    server = ResourceServer(
        [fake_issuer.provider()], transport=fake_issuer.transport, clock=clock, cache_size=3
    )
    async with server:
        for _ in range(10):
            await server.verify(fake_issuer.token())
            assert server.cached_tokens <= 3
    assert server.cached_tokens == 3


async def test_cache_disabled(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    server = ResourceServer(
        [fake_issuer.provider()], transport=fake_issuer.transport, clock=clock, cache_size=0
    )
    counter = CountingVerify(server, "fake")
    token = fake_issuer.token()
    async with server:
        await server.verify(token)
        await server.verify(token)
    assert counter.calls == 2
    assert server.cached_tokens == 0


async def test_entry_never_outlives_exp(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    provider = fake_issuer.provider(leeway=0)
    server = ResourceServer([provider], transport=fake_issuer.transport, clock=clock)
    token = fake_issuer.token(expires_in=60, iat=int(clock.now), exp=int(clock.now) + 60)
    async with server:
        await server.verify(token)
        clock.advance(59)
        await server.verify(token)
        clock.advance(1)
        with pytest.raises(InvalidToken) as excinfo:
            await server.verify(token)
    assert excinfo.value.reason == "expired"


async def test_entry_dropped_when_the_key_is_removed(
    fake_issuer: FakeIssuer, clock: FakeClock
) -> None:
    server = ResourceServer([fake_issuer.provider()], transport=fake_issuer.transport, clock=clock)
    old = fake_issuer.token(expires_in=7200, exp=int(clock.now) + 7200)
    async with server:
        await server.verify(old)
        fake_issuer.rotate_key()  # the old key disappears from the JWKS
        clock.advance(3601)  # past the key set's maximum age: next use refreshes it
        new = fake_issuer.token(exp=int(clock.now) + 300, iat=int(clock.now))
        assert (await server.verify(new)).subject == "alice"
        with pytest.raises(InvalidToken) as excinfo:
            await server.verify(old)
    assert excinfo.value.reason == "unknown_key"


async def test_other_spelling_is_not_a_cache_hit(fake_issuer: FakeIssuer, clock: FakeClock) -> None:
    server = ResourceServer([fake_issuer.provider()], transport=fake_issuer.transport, clock=clock)
    token = fake_issuer.token()
    head, payload, signature = token.split(".")
    async with server:
        await server.verify(token)
        for variant in (
            f"{head}.{payload}.{signature}=",
            f"{head}.{payload}.{signature} ",
            f" {token}",
            f"{head}.{payload}.{signature[:-1]}",
        ):
            with pytest.raises(InvalidToken):
                await server.verify(variant)
