"""The store contract for delegations, once per backend (SQLite file, PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from authbridge.store import (
    ClientRecord,
    Conflict,
    DelegationRecord,
    DelegationStore,
    SQLStore,
    UserRecord,
)

NOW = 1_900_000_000.5
CALLS = 30


def delegation(
    delegation_id: str = "dlg_1", user_id: str = "u1", **changes: object
) -> DelegationRecord:
    fields: dict[str, object] = {
        "id": delegation_id,
        "user_id": user_id,
        "actor": "robot",
        "scopes": frozenset({"items:read", "items:write"}),
        "audiences": ("https://api.example.test", "https://reports.example.test"),
        "created_at": NOW,
        "expires_at": NOW + 3600,
    }
    fields.update(changes)
    return DelegationRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def users(store: SQLStore) -> SQLStore:
    for number in (1, 2):
        await store.users.add(UserRecord(id=f"u{number}", username=f"user{number}"))
    return store


@pytest.fixture
async def second(store_url: str, store: SQLStore) -> AsyncIterator[SQLStore]:
    """Another instance on the same database."""
    other = SQLStore(store_url, migrate=False, pool_size=20)
    await other.start()
    try:
        yield other
    finally:
        await other.aclose()


def test_the_sql_store_implements_the_protocol(sqlite_store_url: str) -> None:
    store = SQLStore(sqlite_store_url)
    checked: DelegationStore = store.delegations  # mypy checks the protocol
    assert hasattr(checked, "count_active")


async def test_create_and_get_every_field(users: SQLStore) -> None:
    full = delegation(
        label="garage robot <b>&",
        may_delegate=True,
        parent="dlg_0",
        audiences=("https://b.example.test", "https://a.example.test"),
    )
    await users.delegations.create(full)
    assert await users.delegations.get("dlg_1") == full  # audience order kept
    minimal = delegation("dlg_2", scopes=frozenset())
    await users.delegations.create(minimal)
    got = await users.delegations.get("dlg_2")
    assert got == minimal
    assert got is not None
    assert (got.label, got.may_delegate, got.revoked_at, got.parent) == ("", False, None, None)
    assert await users.delegations.get("dlg_missing") is None


async def test_create_refuses_a_known_id_and_an_unknown_user(users: SQLStore) -> None:
    await users.delegations.create(delegation())
    with pytest.raises(Conflict):
        await users.delegations.create(delegation(user_id="u2", actor="other"))
    assert (await users.delegations.get("dlg_1")) == delegation()
    with pytest.raises(KeyError):
        await users.delegations.create(delegation("dlg_2", user_id="nobody"))
    assert await users.delegations.get("dlg_2") is None


async def test_for_user_newest_first_active_by_default(users: SQLStore) -> None:
    await users.delegations.create(delegation("old", created_at=NOW - 50))
    await users.delegations.create(delegation("new", created_at=NOW - 10))
    await users.delegations.create(delegation("ended", created_at=NOW - 30, expires_at=NOW))
    await users.delegations.create(delegation("revoked", created_at=NOW - 20))
    await users.delegations.create(delegation("bobs", user_id="u2"))
    assert await users.delegations.revoke("revoked", user_id="u1", now=NOW - 5)
    active = await users.delegations.for_user("u1", now=NOW)
    assert [d.id for d in active] == ["new", "old"]  # "ended": expiry is exclusive
    everything = await users.delegations.for_user("u1", now=NOW, include_inactive=True)
    assert [d.id for d in everything] == ["new", "revoked", "ended", "old"]
    assert everything[1].revoked_at == NOW - 5
    limited = await users.delegations.for_user("u1", now=NOW, include_inactive=True, limit=2)
    assert [d.id for d in limited] == ["new", "revoked"]
    assert await users.delegations.for_user("u1", now=NOW, limit=0) == []
    assert [d.id for d in await users.delegations.for_user("u2", now=NOW)] == ["bobs"]
    assert await users.delegations.for_user("nobody", now=NOW) == []
    # the same time: ties broken by id, still newest first in a stable order
    await users.delegations.create(delegation("tie-a", user_id="u2", created_at=NOW))
    await users.delegations.create(delegation("tie-b", user_id="u2", created_at=NOW))
    assert [d.id for d in await users.delegations.for_user("u2", now=NOW)] == [
        "tie-b",
        "tie-a",
        "bobs",
    ]


async def test_count_active(users: SQLStore) -> None:
    assert await users.delegations.count_active("u1", now=NOW) == 0
    for number in range(3):
        await users.delegations.create(delegation(f"d{number}"))
    await users.delegations.create(delegation("short", expires_at=NOW + 10))
    await users.delegations.create(delegation("bobs", user_id="u2"))
    assert await users.delegations.count_active("u1", now=NOW) == 4
    assert await users.delegations.revoke("d0", user_id="u1", now=NOW)
    assert await users.delegations.count_active("u1", now=NOW) == 3
    assert await users.delegations.count_active("u1", now=NOW + 10) == 2
    assert await users.delegations.count_active("u1", now=NOW + 3600) == 0
    assert await users.delegations.count_active("u2", now=NOW) == 1


async def test_children_by_parent_whatever_else_the_account_has(users: SQLStore) -> None:
    store = users.delegations
    await store.create(delegation("root"))
    await store.create(delegation("old-child", parent="root", created_at=NOW - 5))
    # Many later delegations of the same account: a bounded listing would miss the child.
    for number in range(150):
        await store.create(delegation(f"later{number}", created_at=NOW + number))
    await store.create(delegation("new-child", parent="root", expires_at=NOW + 10))
    await store.create(delegation("grandchild", parent="new-child"))
    await store.create(delegation("bobs-child", user_id="u2", parent="root-of-bob"))
    assert await store.revoke("new-child", user_id="u1", now=NOW)
    # Active or not (revoked, ended), newest first; only direct children.
    assert [d.id for d in await store.children("root")] == ["new-child", "old-child"]
    assert [d.id for d in await store.children("new-child")] == ["grandchild"]
    assert await store.children("later3") == []
    assert await store.children("unknown") == []
    assert [d.user_id for d in await store.children("root-of-bob")] == ["u2"]


async def test_removing_a_client_revokes_its_delegations_and_those_under_them(
    users: SQLStore,
) -> None:
    store = users.delegations
    await users.clients.add(ClientRecord("robot", secret_hash="x"))
    await store.create(delegation("mine"))
    await store.create(delegation("bobs", user_id="u2"))
    await store.create(delegation("under", actor="hub", parent="mine"))
    await store.create(delegation("deeper", actor="other", parent="under"))
    await store.create(delegation("hubs", actor="hub"))
    await store.create(delegation("earlier", revoked_at=NOW - 1))
    before = time.time()
    assert await users.clients.delete("robot")
    for name in ("mine", "bobs", "under", "deeper"):
        got = await store.get(name)
        assert got is not None
        assert got.revoked_at is not None
        assert got.revoked_at >= before
        # Their tokens are refused from the next request on (active_principal).
        assert await users.replay.seen("dg:" + name, now=NOW + 3600 + 299)
        assert not await users.replay.seen("dg:" + name, now=NOW + 3600 + 300)
    hubs = await store.get("hubs")
    assert hubs is not None
    assert hubs.revoked_at is None
    assert not await users.replay.seen("dg:hubs", now=NOW)
    earlier = await store.get("earlier")
    assert earlier is not None
    assert earlier.revoked_at == NOW - 1  # kept as it was
    assert not await users.clients.delete("robot")
    assert not await users.clients.delete("nobody")  # no delegation: nothing else changes


async def test_revoke_only_the_owners_and_once(users: SQLStore) -> None:
    await users.delegations.create(delegation())
    assert await users.delegations.revoke("dlg_1", user_id="u2", now=NOW) is False
    assert (await users.delegations.get("dlg_1")) == delegation()  # untouched
    assert await users.delegations.revoke("dlg_1", user_id="u1", now=NOW + 1) is True
    assert await users.delegations.revoke("dlg_1", user_id="u1", now=NOW + 2) is False
    got = await users.delegations.get("dlg_1")
    assert got is not None
    assert got.revoked_at == NOW + 1
    assert not got.active(NOW + 1)
    assert await users.delegations.revoke("dlg_missing", user_id="u1", now=NOW) is False


async def test_concurrent_revokes_have_one_winner(users: SQLStore, second: SQLStore) -> None:
    await users.delegations.create(delegation())
    results = await asyncio.gather(
        *(
            (users if i % 2 else second).delegations.revoke("dlg_1", user_id="u1", now=NOW + i)
            for i in range(CALLS)
        )
    )
    assert results.count(True) == 1


async def test_purge_ended_and_revoked(users: SQLStore) -> None:
    await users.delegations.create(delegation("live"))
    await users.delegations.create(delegation("ended", expires_at=NOW + 10))
    await users.delegations.create(delegation("revoked"))
    await users.delegations.revoke("revoked", user_id="u1", now=NOW + 20)
    assert await users.delegations.purge(NOW) == 0
    assert await users.delegations.purge(NOW + 15) == 1  # "ended"
    assert await users.delegations.purge(NOW + 20) == 1  # "revoked"
    assert await users.delegations.purge(NOW + 20) == 0
    assert [
        d.id for d in await users.delegations.for_user("u1", now=NOW, include_inactive=True)
    ] == ["live"]
    # the store's purge covers delegations too
    assert await users.purge(NOW + 3600) >= 1
    assert await users.delegations.get("live") is None


async def test_deleting_the_user_deletes_their_delegations(users: SQLStore) -> None:
    await users.delegations.create(delegation("mine"))
    await users.delegations.create(delegation("bobs", user_id="u2"))
    assert await users.users.delete("u1")
    assert await users.delegations.get("mine") is None
    assert await users.delegations.get("bobs") is not None


async def test_another_instance_sees_a_delegation_at_once(
    users: SQLStore, second: SQLStore
) -> None:
    await users.delegations.create(delegation())
    assert await second.delegations.get("dlg_1") == delegation()
    assert await second.delegations.revoke("dlg_1", user_id="u1", now=NOW)
    got = await users.delegations.get("dlg_1")
    assert got is not None
    assert got.revoked_at == NOW
