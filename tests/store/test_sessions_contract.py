"""The store contract for sessions, accounts by email, and identity steps that decide races.

Once per backend (a SQLite file; PostgreSQL on 127.0.0.1:5432), real databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from authbridge.store import (
    Conflict,
    IdentityRecord,
    SessionRecord,
    SQLStore,
    UserRecord,
)

NOW = 1_900_000_000.5
CALLS = 30


def session(id_hash: str = "h1", user_id: str = "u1", **changes: object) -> SessionRecord:
    fields: dict[str, object] = {
        "id_hash": id_hash,
        "user_id": user_id,
        "created_at": NOW,
        "last_seen_at": NOW,
        "expires_at": NOW + 8 * 3600,
        "idle_expires_at": NOW + 3600,
        "provider": "google",
        "id_token": b"\x00sealed\xff",
        "extra": {"amr": ["ext"], "n": 1},
    }
    fields.update(changes)
    return SessionRecord(**fields)  # type: ignore[arg-type]


async def add_user(store: SQLStore, number: int = 1, **changes: object) -> UserRecord:
    fields: dict[str, object] = {"id": f"u{number}", "username": f"user{number}"}
    fields.update(changes)
    return await store.users.add(UserRecord(**fields))  # type: ignore[arg-type]


@pytest.fixture
async def second(store_url: str, store: SQLStore) -> AsyncIterator[SQLStore]:
    """Another instance on the same database."""
    other = SQLStore(store_url, migrate=False, pool_size=20)
    await other.start()
    try:
        yield other
    finally:
        await other.aclose()


# --- sessions ---------------------------------------------------------------------------------


async def test_session_create_get_round_trip(store: SQLStore) -> None:
    await add_user(store)
    record = session()
    await store.sessions.create(record)
    assert await store.sessions.get("h1", now=NOW) == record
    assert await store.sessions.get("h2", now=NOW) is None
    bare = session("h2", provider=None, id_token=None, extra={})
    await store.sessions.create(bare)
    assert await store.sessions.get("h2", now=NOW) == bare


async def test_session_hash_is_unique_and_needs_an_account(store: SQLStore) -> None:
    await add_user(store)
    await store.sessions.create(session())
    with pytest.raises(Conflict):
        await store.sessions.create(session(user_id="u1", provider="other"))
    with pytest.raises(KeyError):
        await store.sessions.create(session("h9", user_id="ghost"))
    found = await store.sessions.get("h1", now=NOW)
    assert found is not None
    assert found.provider == "google"


async def test_session_absolute_and_idle_expiry(store: SQLStore) -> None:
    await add_user(store)
    await store.sessions.create(session("abs", expires_at=NOW + 100, idle_expires_at=NOW + 50))
    assert await store.sessions.get("abs", now=NOW + 49.9) is not None
    assert await store.sessions.get("abs", now=NOW + 50) is None  # idle
    # the idle expiry is capped by the absolute one at creation
    await store.sessions.create(session("cap", expires_at=NOW + 10, idle_expires_at=NOW + 99))
    capped = await store.sessions.get("cap", now=NOW)
    assert capped is not None
    assert capped.idle_expires_at == NOW + 10
    assert await store.sessions.get("cap", now=NOW + 10) is None


async def test_touch_moves_idle_expiry_at_most_once_per_interval(store: SQLStore) -> None:
    await add_user(store)
    await store.sessions.create(session(expires_at=NOW + 1000, idle_expires_at=NOW + 100))
    # too soon after the last use: nothing is written
    assert not await store.sessions.touch(
        "h1", now=NOW + 30, idle_expires_at=NOW + 130, min_interval=60
    )
    unchanged = await store.sessions.get("h1", now=NOW + 30)
    assert unchanged is not None
    assert (unchanged.last_seen_at, unchanged.idle_expires_at) == (NOW, NOW + 100)
    assert await store.sessions.touch(
        "h1", now=NOW + 60, idle_expires_at=NOW + 160, min_interval=60
    )
    touched = await store.sessions.get("h1", now=NOW + 150)
    assert touched is not None
    assert (touched.last_seen_at, touched.idle_expires_at) == (NOW + 60, NOW + 160)
    # never past the absolute expiry
    assert (
        await store.sessions.touch("h1", now=NOW + 900, idle_expires_at=NOW + 5000, min_interval=60)
        is False
    )  # idle since NOW + 160: over
    await store.sessions.create(session("h2", expires_at=NOW + 200, idle_expires_at=NOW + 100))
    assert await store.sessions.touch(
        "h2", now=NOW + 90, idle_expires_at=NOW + 190 + 500, min_interval=60
    )
    long = await store.sessions.get("h2", now=NOW + 150)
    assert long is not None
    assert long.idle_expires_at == NOW + 200
    assert await store.sessions.get("h2", now=NOW + 200) is None
    # an unknown or ended session is never touched into life
    assert not await store.sessions.touch("nope", now=NOW, idle_expires_at=NOW + 9, min_interval=0)
    assert not await store.sessions.touch(
        "h2", now=NOW + 201, idle_expires_at=NOW + 999, min_interval=0
    )


async def test_delete_returns_the_record_once(store: SQLStore) -> None:
    await add_user(store)
    record = session()
    await store.sessions.create(record)
    assert await store.sessions.delete("h1") == record
    assert await store.sessions.delete("h1") is None
    assert await store.sessions.get("h1", now=NOW) is None


async def test_delete_for_user_and_account_removal(store: SQLStore) -> None:
    await add_user(store, 1)
    await add_user(store, 2)
    for index in range(3):
        await store.sessions.create(session(f"a{index}", "u1"))
    await store.sessions.create(session("b", "u2"))
    assert await store.sessions.delete_for_user("u1") == 3
    assert await store.sessions.delete_for_user("u1") == 0
    assert await store.sessions.get("b", now=NOW) is not None
    assert await store.users.delete("u2")
    assert await store.sessions.get("b", now=NOW) is None


async def test_purge_removes_ended_sessions_only(store: SQLStore) -> None:
    await add_user(store)
    await store.sessions.create(session("idle", idle_expires_at=NOW + 5))
    await store.sessions.create(session("absolute", expires_at=NOW + 5, idle_expires_at=NOW + 9))
    await store.sessions.create(session("live"))
    assert await store.sessions.purge(NOW) == 0
    assert await store.sessions.purge(NOW + 5) == 2
    assert await store.sessions.get("live", now=NOW + 5) is not None
    assert await store.purge(NOW + 8 * 3600) == 1  # the whole store's purge includes sessions


async def test_concurrent_touches_write_once(store: SQLStore, second: SQLStore) -> None:
    await add_user(store)
    await store.sessions.create(session(expires_at=NOW + 10_000, idle_expires_at=NOW + 100))
    for round_ in range(1, 4):
        now = NOW + 60 * round_
        results = await asyncio.gather(
            *(
                (store if i % 2 else second).sessions.touch(
                    "h1", now=now, idle_expires_at=now + 100, min_interval=60
                )
                for i in range(CALLS)
            )
        )
        assert results.count(True) == 1
        found = await second.sessions.get("h1", now=now)
        assert found is not None
        assert found.last_seen_at == now


async def test_concurrent_deletes_return_the_record_once(store: SQLStore, second: SQLStore) -> None:
    await add_user(store)
    await store.sessions.create(session())
    results = await asyncio.gather(
        *((store if i % 2 else second).sessions.delete("h1") for i in range(CALLS))
    )
    assert sum(result is not None for result in results) == 1


# --- accounts by email ------------------------------------------------------------------------


async def test_by_email_finds_verified_accounts_by_exact_address(store: SQLStore) -> None:
    await add_user(store, 1, email="ann@example.test", email_verified=True)
    await add_user(store, 2, email="ann@example.test", email_verified=False)
    await add_user(store, 3, email="bob@example.test", email_verified=True)
    await add_user(store, 4)
    verified = await store.users.by_email("ann@example.test")
    assert [user.id for user in verified] == ["u1"]
    everyone = await store.users.by_email("ann@example.test", verified=False)
    assert [user.id for user in everyone] == ["u1", "u2"]
    assert await store.users.by_email("ANN@example.test") == []
    assert await store.users.by_email("nobody@example.test") == []
    await add_user(store, 5, email="bob@example.test", email_verified=True)
    assert len(await store.users.by_email("bob@example.test", limit=1)) == 1
    assert len(await store.users.by_email("bob@example.test", limit=2)) == 2


# --- identities -------------------------------------------------------------------------------


async def test_link_new_user_writes_both_or_neither(store: SQLStore) -> None:
    alice = UserRecord(id="a", username="alice", email="a@example.test", email_verified=True)
    link = IdentityRecord("https://accounts.google.com", "sub-1", "a", "a@example.test", True, NOW)
    await store.identities.link_new_user(alice, link)
    assert await store.users.get("a") == alice
    assert await store.identities.find("https://accounts.google.com", "sub-1") == link
    # the identity is taken: the second account is not created
    with pytest.raises(Conflict):
        await store.identities.link_new_user(
            UserRecord(id="b", username="bob"),
            IdentityRecord("https://accounts.google.com", "sub-1", "b"),
        )
    assert await store.users.get("b") is None
    # the username is taken: the identity is not linked
    with pytest.raises(Conflict):
        await store.identities.link_new_user(
            UserRecord(id="c", username="alice"), IdentityRecord("https://github.com", "7", "c")
        )
    assert await store.identities.find("https://github.com", "7") is None
    with pytest.raises(ValueError, match="linked to the account"):
        await store.identities.link_new_user(
            UserRecord(id="d", username="dan"), IdentityRecord("https://github.com", "8", "x")
        )


async def test_concurrent_first_logins_create_one_account(
    store: SQLStore, second: SQLStore
) -> None:
    results = await asyncio.gather(
        *(
            (store if i % 2 else second).identities.link_new_user(
                UserRecord(id=f"id-{i}", username=f"name-{i}"),
                IdentityRecord("https://github.com", "42", f"id-{i}"),
            )
            for i in range(CALLS)
        ),
        return_exceptions=True,
    )
    assert sum(result is None for result in results) == 1
    assert all(isinstance(result, Conflict) for result in results if result is not None)
    assert len(await store.users.list(limit=1000)) == 1
    linked = await store.identities.find("https://github.com", "42")
    assert linked is not None
    assert linked.user_id == f"id-{results.index(None)}"


async def test_unlink_from_keeps_the_last_way_in(store: SQLStore) -> None:
    await add_user(store, 1)  # no password
    await store.identities.link(IdentityRecord("https://github.com", "1", "u1"))
    await store.identities.link(IdentityRecord("https://accounts.google.com", "1", "u1"))
    await add_user(store, 2)
    await store.identities.link(IdentityRecord("https://github.com", "2", "u2"))
    # another account's identity, or none: not linked
    assert await store.identities.unlink_from("u1", "https://github.com", "2") == "not_linked"
    assert await store.identities.unlink_from("u9", "https://github.com", "2") == "not_linked"
    assert await store.identities.unlink_from("u1", "https://gitlab.com", "1") == "not_linked"
    assert await store.identities.unlink_from("u1", "https://github.com", "1") == "unlinked"
    last = await store.identities.unlink_from("u1", "https://accounts.google.com", "1")
    assert last == "last_login_method"
    assert await store.identities.find("https://accounts.google.com", "1") is not None
    # with a password there is another way in
    await store.users.set_password_hash("u1", "$argon2id$x")
    assert await store.identities.unlink_from("u1", "https://accounts.google.com", "1") == (
        "unlinked"
    )
    assert await store.identities.for_user("u1") == []
    assert await store.identities.find("https://github.com", "2") is not None


async def test_concurrent_unlinks_of_the_last_two_keep_one(
    store: SQLStore, second: SQLStore
) -> None:
    for round_ in range(3):
        user_id = f"r{round_}"
        await store.users.add(UserRecord(id=user_id, username=user_id))
        issuers = [f"https://idp{n}.example.test" for n in range(2)]
        for issuer in issuers:
            await store.identities.link(IdentityRecord(issuer, user_id, user_id))
        results = await asyncio.gather(
            *(
                (store if i % 2 else second).identities.unlink_from(
                    user_id, issuers[i % 2], user_id
                )
                for i in range(CALLS)
            )
        )
        assert results.count("unlinked") == 1
        assert len(await store.identities.for_user(user_id)) == 1
