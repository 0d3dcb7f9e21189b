"""The runtime's in-memory client records: served within the TTL, re-read after, bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FakeClock

from authbridge import AppIssuer
from authbridge.issuer import _runtime
from authbridge.issuer._runtime import CLIENT_CACHE_TTL, IssuerRuntime
from authbridge.store import ClientRecord, ClientStore, SQLStore


class CountingClients:
    """A client store that counts its reads."""

    def __init__(self, inner: ClientStore) -> None:
        self.inner = inner
        self.reads: list[str] = []

    async def get(self, client_id: str) -> ClientRecord | None:
        self.reads.append(client_id)
        return await self.inner.get(client_id)

    async def add(self, client: ClientRecord) -> ClientRecord:
        return await self.inner.add(client)

    async def update(self, client: ClientRecord) -> ClientRecord:
        return await self.inner.update(client)

    async def delete(self, client_id: str) -> bool:
        return await self.inner.delete(client_id)

    async def list(self) -> Sequence[ClientRecord]:
        return await self.inner.list()


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[tuple[IssuerRuntime, CountingClients, Any]]:
    clock = FakeClock()
    store = SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    counting = CountingClients(store.clients)
    store.clients = counting
    runtime = IssuerRuntime(AppIssuer("http://127.0.0.1:8000", store=store), clock)
    await store.start()
    await counting.add(ClientRecord("robot", grant_types=frozenset({"client_credentials"})))
    try:
        yield runtime, counting, clock
    finally:
        await runtime.aclose()


async def test_a_found_client_is_served_from_memory_within_the_ttl(
    started: tuple[IssuerRuntime, CountingClients, FakeClock],
) -> None:
    runtime, counting, clock = started
    first = await runtime.client("robot")
    assert first is not None
    assert counting.reads == ["robot"]
    clock.advance(CLIENT_CACHE_TTL - 0.01)
    assert await runtime.client("robot") == first
    assert counting.reads == ["robot"]


async def test_a_change_made_elsewhere_is_seen_after_the_ttl(
    started: tuple[IssuerRuntime, CountingClients, FakeClock],
) -> None:
    runtime, counting, clock = started
    record = await runtime.client("robot")
    assert record is not None
    assert not record.disabled
    # another process (the command line) disables it: straight in the store underneath
    await counting.inner.update(replace(record, disabled=True))
    assert (await runtime.client("robot")) == record  # still the cached record
    clock.advance(CLIENT_CACHE_TTL)
    again = await runtime.client("robot")
    assert again is not None
    assert again.disabled
    assert counting.reads == ["robot", "robot"]
    # removed elsewhere: gone after the TTL, and the absence is not cached
    await counting.inner.delete("robot")
    clock.advance(CLIENT_CACHE_TTL)
    assert await runtime.client("robot") is None
    assert await runtime.client("robot") is None
    assert counting.reads == ["robot"] * 4


async def test_a_change_through_the_runtimes_store_takes_effect_at_once(
    started: tuple[IssuerRuntime, CountingClients, FakeClock],
) -> None:
    runtime, _counting, _clock = started
    record = await runtime.client("robot")
    assert record is not None
    await runtime.store.clients.update(replace(record, disabled=True))
    changed = await runtime.client("robot")
    assert changed is not None
    assert changed.disabled
    await runtime.store.clients.delete("robot")
    assert await runtime.client("robot") is None


async def test_a_clock_going_back_does_not_extend_the_ttl(
    started: tuple[IssuerRuntime, CountingClients, FakeClock],
) -> None:
    runtime, counting, clock = started
    await runtime.client("robot")
    clock.advance(-60.0)
    await runtime.client("robot")
    assert counting.reads == ["robot", "robot"]


async def test_unknown_ids_are_never_cached(
    started: tuple[IssuerRuntime, CountingClients, FakeClock],
) -> None:
    runtime, counting, _clock = started
    for n in range(50):
        assert await runtime.client(f"made-up-{n}") is None
        assert await runtime.client(f"made-up-{n}") is None
    assert len(counting.reads) == 100
    assert runtime._client_cache == {}


async def test_the_cap_holds_first_in_first_out(
    started: tuple[IssuerRuntime, CountingClients, FakeClock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime, counting, _clock = started
    monkeypatch.setattr(_runtime, "CLIENT_CACHE_SIZE", 3)
    for name in ("a", "b", "c", "d"):
        await counting.add(ClientRecord(name))
        assert await runtime.client(name) is not None
    assert list(runtime._client_cache) == ["b", "c", "d"]  # "a", the first in, went out
    counting.reads.clear()
    await runtime.client("a")  # read again, and now the newest
    await runtime.client("d")  # still cached
    assert counting.reads == ["a"]
    assert list(runtime._client_cache) == ["c", "d", "a"]
    assert len(runtime._client_cache) == 3


async def test_the_real_cap_is_1024() -> None:
    assert _runtime.CLIENT_CACHE_SIZE == 1024
    assert CLIENT_CACHE_TTL == 5.0


async def test_builtin_clients_come_first_and_are_not_cached(
    started: tuple[IssuerRuntime, CountingClients, FakeClock],
) -> None:
    runtime, counting, _clock = started
    runtime.add_builtin_client(ClientRecord("robot", name="built-in", auth_method="none"))
    found = await runtime.client("robot")
    assert found is not None
    assert found.name == "built-in"
    assert counting.reads == []
