"""Races decided by the store, with real concurrency: many calls in flight on one database.

Every call of a race runs on its own connection (each store has a pool), on
SQLite and PostgreSQL, and, for the short-lived state (takes, first uses,
hits, puts), on Redis too; a second store object on the same database (or
Redis prefix), with a pool of its own, stands for a second instance. Several
processes on one SQLite file are in test_processes.py, on one Redis in
test_redis_processes.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from authbridge.store import RefreshFamily, RefreshTokenRecord, SQLStore
from store_support import Ephemeral, EphemeralBackend

NOW = 1_900_000_000.0
CALLS = 40


@pytest.fixture
async def second(store_url: str, store: SQLStore) -> AsyncIterator[SQLStore]:
    """Another instance on the same database (the schema exists: ``store`` started first)."""
    other = SQLStore(store_url, migrate=False, pool_size=20)
    await other.start()
    try:
        yield other
    finally:
        await other.aclose()


@pytest.fixture
async def second_ephemeral(ephemeral_backend: EphemeralBackend, ephemeral: Ephemeral) -> Ephemeral:
    """Another instance of the short-lived state (``ephemeral`` opened first: the schema exists).

    Both pools are filled first: the calls of a race then go out at once, each
    on its own open connection (a take that read, then deleted, would be given
    to every caller here).
    """
    if ephemeral_backend.name == "redis":
        other = await ephemeral_backend.open()
    else:
        other = await ephemeral_backend.open(pool_size=20)
    await asyncio.gather(*(state.ping() for state in (ephemeral, other) for _ in range(CALLS // 2)))
    return other


def both(store: Any, second: Any, index: int) -> Any:
    return store if index % 2 else second


async def new_family(store: SQLStore, family_id: str = "f") -> None:
    await store.refresh.create(
        RefreshFamily(
            id=family_id,
            client_id="app",
            subject="u1",
            scopes=frozenset({"a"}),
            audiences=("https://api",),
            created_at=NOW,
            expires_at=NOW + 3600,
        ),
        RefreshTokenRecord(
            "g0" if family_id == "f" else f"{family_id}-g0", family_id, 0, NOW, NOW + 600
        ),
    )


async def test_concurrent_take_gives_the_value_once(
    ephemeral: Ephemeral, second_ephemeral: Ephemeral
) -> None:
    for round_ in range(3):
        await ephemeral.one_time.put("code", f"c{round_}", b"secret value", expires_at=NOW + 60)
        results = await asyncio.gather(
            *(
                both(ephemeral, second_ephemeral, i).one_time.take("code", f"c{round_}", now=NOW)
                for i in range(CALLS)
            )
        )
        assert results.count(b"secret value") == 1
        assert results.count(None) == CALLS - 1


async def test_concurrent_advance_has_one_winner(store: SQLStore, second: SQLStore) -> None:
    await new_family(store)
    for generation in range(3):
        results = await asyncio.gather(
            *(
                both(store, second, i).refresh.advance(
                    "f",
                    from_generation=generation,
                    now=NOW + generation,
                    token=RefreshTokenRecord(
                        f"g{generation + 1}-{i}", "f", generation + 1, NOW, NOW + 600
                    ),
                )
                for i in range(CALLS)
            )
        )
        assert results.count(True) == 1
        winner = results.index(True)
        assert await store.refresh.find(f"g{generation + 1}-{winner}") is not None
        losers = [i for i, won in enumerate(results) if not won]
        for loser in losers[:5]:
            assert await store.refresh.find(f"g{generation + 1}-{loser}") is None
    found = await store.refresh.find("g0")
    assert found is not None
    assert found[1].generation == 3


async def test_concurrent_siblings_never_exceed_the_bound(
    store: SQLStore, second: SQLStore
) -> None:
    for max_siblings in (1, 3):
        family_id = f"fam{max_siblings}"
        await new_family(store, family_id)
        results = await asyncio.gather(
            *(
                both(store, second, i).refresh.add_sibling(
                    family_id,
                    generation=0,
                    max_siblings=max_siblings,
                    token=RefreshTokenRecord(f"{family_id}-s{i}", family_id, 0, NOW, NOW + 600),
                )
                for i in range(CALLS)
            )
        )
        assert results.count(True) == max_siblings
        found = await store.refresh.find(f"{family_id}-s{results.index(True)}")
        assert found is not None
        assert found[1].siblings == max_siblings


async def test_advance_and_revoke_race(store: SQLStore, second: SQLStore) -> None:
    """A revocation racing rotations: afterwards the family is revoked and rotates no more."""
    await new_family(store)
    calls = [
        both(store, second, i).refresh.advance(
            "f",
            from_generation=0,
            now=NOW,
            token=RefreshTokenRecord(f"g1-{i}", "f", 1, NOW, NOW + 600),
        )
        for i in range(CALLS // 2)
    ]
    revokes = [
        both(store, second, i).refresh.revoke("f", now=NOW, reason="reuse") for i in range(10)
    ]
    results = await asyncio.gather(*calls, *revokes)
    assert results[: len(calls)].count(True) <= 1
    assert results[len(calls) :].count(True) == 1
    assert not await store.refresh.advance(
        "f", from_generation=1, now=NOW, token=RefreshTokenRecord("late", "f", 2, NOW, NOW + 1)
    )


async def test_concurrent_first_use_has_one_winner(
    ephemeral: Ephemeral, second_ephemeral: Ephemeral
) -> None:
    results = await asyncio.gather(
        *(
            both(ephemeral, second_ephemeral, i).replay.first_use(
                "jti", expires_at=NOW + 60, now=NOW
            )
            for i in range(CALLS)
        )
    )
    assert results.count(True) == 1
    # an expired record replaced by many at once: still one winner
    results = await asyncio.gather(
        *(
            both(ephemeral, second_ephemeral, i).replay.first_use(
                "jti", expires_at=NOW + 600, now=NOW + 61
            )
            for i in range(CALLS)
        )
    )
    assert results.count(True) == 1


async def test_concurrent_hits_count_exactly(
    ephemeral: Ephemeral, second_ephemeral: Ephemeral
) -> None:
    results = await asyncio.gather(
        *(
            both(ephemeral, second_ephemeral, i).rate_limits.hit(
                "login:alice", window=60, now=NOW, cost=1 + i % 2
            )
            for i in range(CALLS)
        )
    )
    total = sum(1 + i % 2 for i in range(CALLS))
    counts = sorted(count for count, _ in results)
    assert counts[-1] == total
    assert len(set(counts)) == CALLS  # every hit saw its own count
    assert {end for _, end in results} == {NOW + 60}
    assert await ephemeral.rate_limits.peek("login:alice", now=NOW) == (total, NOW + 60)


async def test_concurrent_puts_of_one_key_one_succeeds(
    ephemeral: Ephemeral, second_ephemeral: Ephemeral
) -> None:
    results = await asyncio.gather(
        *(
            both(ephemeral, second_ephemeral, i).one_time.put(
                "code", "same", b"%d" % i, expires_at=NOW + 9
            )
            for i in range(20)
        ),
        return_exceptions=True,
    )
    assert sum(1 for result in results if result is None) == 1
    assert all(type(r).__name__ == "Conflict" for r in results if r is not None)


async def test_in_memory_store_serialises_concurrent_calls() -> None:
    store = SQLStore("sqlite+aiosqlite:///:memory:")
    await store.start()
    try:
        await store.one_time.put("code", "k", b"v", expires_at=NOW + 60)
        results = await asyncio.gather(
            *(store.one_time.take("code", "k", now=NOW) for _ in range(CALLS)),
            *(store.rate_limits.hit("k", window=9, now=NOW) for _ in range(CALLS)),
        )
        assert results[:CALLS].count(b"v") == 1
        assert await store.rate_limits.peek("k", now=NOW) == (CALLS, NOW + 9)
    finally:
        await store.aclose()
