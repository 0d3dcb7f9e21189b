"""Revoking a delegation while its robot refreshes: PostgreSQL behind real latency, two instances.

Every connection of both issuer instances goes through a TCP proxy on
127.0.0.1 that holds each chunk a little in each direction, so that refreshes
(four round trips each) are in flight when the revocation runs on the other
instance. Once ``Delegations.revoke`` has returned, no refresh of that family
succeeds, and every token it issued before is dead.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from authbridge.errors import InvalidToken
from authbridge.issuer import IssuerRuntime, OAuthError
from tcp_support import link_to

from .code_support import BOB, Clock, clock, postgres_database, postgres_store_url
from .test_delegation_support import delegation_runtime, principal_of, refresh, user_token

__all__ = ["clock", "postgres_database", "postgres_store_url"]

DELAY = 0.0015
"""Seconds each chunk waits in the proxy, each way."""

FAMILIES = 6


@pytest.fixture
async def instances(
    postgres_store_url: str, clock: Clock
) -> AsyncIterator[tuple[IssuerRuntime, IssuerRuntime]]:
    direct = make_url(postgres_store_url)
    async with link_to(direct.port or 5432, delay=DELAY) as proxy:
        url = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        first = await delegation_runtime(url, clock)
        second = await delegation_runtime(url, clock)
        try:
            yield first, second
        finally:
            await first.aclose()
            await second.aclose()


async def timed(call: Any) -> tuple[float, Any]:
    """Await ``call``; when it returned (monotonic) and its result or its OAuthError."""
    try:
        result: Any = await call
    except OAuthError as exc:
        result = exc
    return time.monotonic(), result


async def keep_refreshing(
    runtime: IssuerRuntime, token: str, refreshed: asyncio.Event
) -> list[tuple[float, Any]]:
    """Refresh until refused, twice at once each round (a rotation and a benign sibling);
    ``refreshed`` is set after the first round that got a token."""
    answers: list[tuple[float, Any]] = []
    while True:
        pair = await asyncio.gather(timed(refresh(runtime, token)), timed(refresh(runtime, token)))
        answers.extend(pair)
        fresh = [result for _, result in pair if isinstance(result, dict)]
        if not fresh:
            return answers
        refreshed.set()
        token = fresh[0]["refresh_token"]


async def revoke_later(
    runtime: IssuerRuntime, delegation_id: str, refreshed: asyncio.Event, delay: float
) -> tuple[float, float]:
    """Revoke ``delay`` after the family's first refresh; when the revocation started and
    when it returned."""
    await refreshed.wait()
    await asyncio.sleep(delay)
    started = time.monotonic()
    assert await runtime.delegations.revoke(BOB.id, delegation_id)
    return started, time.monotonic()


async def test_no_refresh_succeeds_once_the_revocation_returned(
    instances: tuple[IssuerRuntime, IssuerRuntime],
) -> None:
    refresher, revoker = instances
    user = await principal_of(refresher, user_token(refresher))
    created = [
        await refresher.delegations.create(
            user, actor="robot", scopes=None, audience=None, expires_in=3600
        )
        for _ in range(FAMILIES)
    ]
    rng = random.Random(9)
    events = [asyncio.Event() for _ in created]
    loops = [
        keep_refreshing(refresher, body["refresh_token"], event)
        for (_, body), event in zip(created, events, strict=True)
    ]
    revocations = [
        revoke_later(revoker, record.id, event, rng.uniform(0.0, 0.3))
        for (record, _), event in zip(created, events, strict=True)
    ]
    results = await asyncio.wait_for(asyncio.gather(*loops, *revocations), timeout=60)
    answers: list[list[tuple[float, Any]]] = results[:FAMILIES]
    revocations_timed: list[tuple[float, float]] = results[FAMILIES:]
    for (record, _), family, (started, revoked) in zip(
        created, answers, revocations_timed, strict=True
    ):
        successes = [(at, body) for at, body in family if isinstance(body, dict)]
        refusals = [(at, error) for at, error in family if isinstance(error, OAuthError)]
        assert successes  # the family was refreshed before its revocation
        # Not one success returned after the revocation did.
        assert max(at for at, _ in successes) < revoked
        final = refusals[-1][1]
        assert (final.error, final.status) == ("invalid_grant", 400)
        assert final.reason in {"family_revoked", "delegation_inactive", "sibling_refused"}
        # The race was real: refreshes were in flight while the revocation ran.
        assert any(at > started for at, _ in family)
        # Everything issued before is dead: its access tokens are refused, its refresh
        # tokens refresh nothing.
        for _, body in successes[-2:]:
            access = body["access_token"]
            principal = await principal_of(refresher, access)
            assert principal.claims["did"] == record.id
            with pytest.raises(InvalidToken):
                await refresher.source.check_active(access, principal)
            with pytest.raises(OAuthError) as caught:
                await refresh(refresher, body["refresh_token"])
            assert caught.value.error == "invalid_grant"
