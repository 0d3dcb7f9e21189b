"""Server-side sessions (SECURITY-CASES §6 session rotation, §11 nothing stored in plain text).

On real stores (a SQLite file and PostgreSQL), with a settable clock.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from sqlalchemy import text

import store_support
from authbridge.client._sessions import (
    Sessions,
    new_session_value,
    well_formed_session_value,
)
from authbridge.errors import ConfigurationError
from authbridge.store import SessionRecord, SessionStore, SQLStore, UserRecord

postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
sqlite_store_url = store_support.sqlite_store_url
store = store_support.store
store_url = store_support.store_url

KEY = b"k" * 32
TTL = 8 * 3600.0
IDLE = 3600.0
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ2aWN0aW0ifQ.c2lnbmF0dXJl"


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """A SessionStore that counts the calls reaching it."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await method(*args, **kwargs)

        return counted


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def users(store: SQLStore) -> SQLStore:
    for name in ("alice", "bob"):
        await store.users.add(UserRecord(id=name, username=name))
    return store


def sessions_of(store: SQLStore | SessionStore, clock: Clock, **options: Any) -> Sessions:
    target = store.sessions if isinstance(store, SQLStore) else store
    return Sessions(target, key=options.pop("key", KEY), clock=clock, **options)


async def stored_rows(store: SQLStore) -> list[Any]:
    async with store._db.read() as conn:
        return list((await conn.execute(text("SELECT * FROM authbridge_sessions"))).all())


# --- values and storage ------------------------------------------------------------------------


async def test_cookie_values_are_random_and_stored_only_as_keyed_hashes(
    users: SQLStore, clock: Clock
) -> None:
    sessions = sessions_of(users, clock)
    made = [await sessions.create("alice", provider="google", id_token=ID_TOKEN) for _ in range(5)]
    values = [value for value, _ in made]
    assert len(set(values)) == 5
    assert all(well_formed_session_value(value) and len(value) == 43 for value in values)
    rows = await stored_rows(users)
    dumped = repr(rows)
    for value, csrf in made:
        assert value not in dumped
        assert csrf not in dumped
    assert ID_TOKEN not in dumped
    assert ID_TOKEN.encode() not in b"".join(bytes(row.id_token) for row in rows)
    # the stored hash is keyed: another key gives another hash
    other = sessions_of(users, clock, key=b"o" * 32)
    assert sessions.id_hash(values[0]) != other.id_hash(values[0])
    assert {row.id_hash for row in rows} == {sessions.id_hash(value) for value in values}


async def test_get_returns_the_session_of_its_cookie(users: SQLStore, clock: Clock) -> None:
    sessions = sessions_of(users, clock)
    value, _ = await sessions.create("alice", provider=None, id_token=None, extra={"amr": ["pwd"]})
    record = await sessions.get(value)
    assert record is not None
    assert (record.user_id, record.provider, record.id_token) == ("alice", None, None)
    assert record.extra == {"amr": ["pwd"]}
    assert (record.expires_at, record.idle_expires_at) == (clock.now + TTL, clock.now + IDLE)


async def test_a_value_the_server_did_not_create_opens_nothing(
    users: SQLStore, clock: Clock
) -> None:
    """Session fixation: an attacker plants a cookie value of their choosing before the
    victim logs in; it never becomes a session, and the login rotates it away."""
    sessions = sessions_of(users, clock)
    planted = new_session_value()  # well formed, but made outside the server
    assert await sessions.get(planted) is None
    value, _ = await sessions.create("alice", provider="google", id_token=None, replacing=planted)
    assert value != planted
    assert await sessions.get(planted) is None
    assert await sessions.get(value) is not None
    # neither the stored hash nor made-up shapes open a session
    for made_up in (sessions.id_hash(value), "", "x" * 43 + "=", value + "A", value[:-1], "é" * 43):
        assert await sessions.get(made_up) is None
        assert await sessions.end(made_up) is None


async def test_another_server_key_opens_nothing(users: SQLStore, clock: Clock) -> None:
    value, _ = await sessions_of(users, clock).create("alice", provider=None, id_token=None)
    assert await sessions_of(users, clock, key=secrets.token_bytes(32)).get(value) is None


async def test_a_second_instance_with_the_same_key_shares_sessions(
    store_url: str, users: SQLStore, clock: Clock
) -> None:
    value, csrf = await sessions_of(users, clock).create("alice", provider=None, id_token=None)
    other = SQLStore(store_url, migrate=False)
    await other.start()
    try:
        elsewhere = sessions_of(other, clock)
        assert await elsewhere.get(value) is not None
        assert elsewhere.check_csrf(value, csrf)
    finally:
        await other.aclose()


# --- expiry and touches ------------------------------------------------------------------------


async def test_idle_session_ends(users: SQLStore, clock: Clock) -> None:
    sessions = sessions_of(users, clock)
    value, _ = await sessions.create("alice", provider=None, id_token=None)
    clock.now += IDLE - 1
    assert await sessions.get(value) is not None  # used: the idle end moves
    clock.now += IDLE - 1
    assert await sessions.get(value) is not None
    clock.now += IDLE
    assert await sessions.get(value) is None


async def test_absolute_expiry_ends_a_busy_session(users: SQLStore, clock: Clock) -> None:
    sessions = sessions_of(users, clock)
    value, _ = await sessions.create("alice", provider=None, id_token=None)
    start = clock.now
    while clock.now < start + TTL - 600:
        clock.now += 600
        record = await sessions.get(value)
        assert record is not None
        assert record.idle_expires_at <= start + TTL
    clock.now = start + TTL
    assert await sessions.get(value) is None


async def test_touches_are_bounded_per_interval(users: SQLStore, clock: Clock) -> None:
    counting = CountingStore(users.sessions)
    sessions = sessions_of(counting, clock, touch_interval=60.0)
    value, _ = await sessions.create("alice", provider=None, id_token=None)
    for _ in range(10):
        clock.now += 5
        assert await sessions.get(value) is not None
    assert counting.calls.count("touch") == 0
    clock.now += 20  # 70 s since the last write
    record = await sessions.get(value)
    assert record is not None
    assert counting.calls.count("touch") == 1
    assert (record.last_seen_at, record.idle_expires_at) == (clock.now, clock.now + IDLE)
    stored = await users.sessions.get(sessions.id_hash(value), now=clock.now)
    assert stored == record
    # many requests at once: each is answered, the use is recorded (the store writes once:
    # tests/store/test_sessions_contract.py)
    clock.now += 61
    counting.calls.clear()
    results = await asyncio.gather(*(sessions.get(value) for _ in range(20)))
    assert all(result is not None for result in results)
    assert counting.calls.count("get") == 20
    written = await users.sessions.get(sessions.id_hash(value), now=clock.now)
    assert written is not None
    assert written.last_seen_at == clock.now


def test_touch_interval_is_at_most_half_the_idle_lifetime() -> None:
    sessions = Sessions(
        CountingStore(None),  # type: ignore[arg-type]
        key=KEY,
        clock=Clock(),
        ttl=100,
        idle_ttl=10,
        touch_interval=60,
    )
    assert sessions.touch_interval == 5


# --- rotation and end --------------------------------------------------------------------------


async def test_login_rotates_the_session(users: SQLStore, clock: Clock) -> None:
    sessions = sessions_of(users, clock)
    old, old_csrf = await sessions.create("alice", provider=None, id_token=None)
    new, new_csrf = await sessions.create("bob", provider="github", id_token=None, replacing=old)
    assert await sessions.get(old) is None
    record = await sessions.get(new)
    assert record is not None
    assert record.user_id == "bob"
    assert new_csrf != old_csrf


async def test_end_and_end_for_user(users: SQLStore, clock: Clock) -> None:
    sessions = sessions_of(users, clock)
    value, _ = await sessions.create("alice", provider="google", id_token=ID_TOKEN)
    others = [await sessions.create("alice", provider=None, id_token=None) for _ in range(2)]
    bobs, _ = await sessions.create("bob", provider=None, id_token=None)
    ended = await sessions.end(value)
    assert isinstance(ended, SessionRecord)
    assert ended.user_id == "alice"
    assert await sessions.end(value) is None
    assert await sessions.get(value) is None
    assert await sessions.end_for_user("alice") == 2
    assert all([await sessions.get(v) is None for v, _ in others])
    assert await sessions.get(bobs) is not None


async def test_id_token_is_kept_encrypted_for_logout(users: SQLStore, clock: Clock) -> None:
    sessions = sessions_of(users, clock)
    value, _ = await sessions.create("alice", provider="google", id_token=ID_TOKEN)
    other, _ = await sessions.create("alice", provider="google", id_token=ID_TOKEN)
    record = await sessions.get(value)
    assert record is not None
    assert record.id_token is not None
    assert ID_TOKEN.encode() not in record.id_token
    assert sessions.id_token_hint(value, record) == ID_TOKEN
    # only its own cookie value (with the server key) decrypts it
    assert sessions.id_token_hint(other, record) is None
    assert sessions_of(users, clock, key=b"z" * 32).id_token_hint(value, record) is None
    assert sessions.id_token_hint("not a cookie", record) is None
    ended = await sessions.end(value)
    assert ended is not None
    assert sessions.id_token_hint(value, ended) == ID_TOKEN
    # an oversized token is not kept (logout then goes without a hint)
    big, _ = await sessions.create("alice", provider="google", id_token="e" * 20_000)
    kept = await sessions.get(big)
    assert kept is not None
    assert kept.id_token is None
    assert sessions.id_token_hint(big, kept) is None


async def test_unknown_account_is_refused(users: SQLStore, clock: Clock) -> None:
    with pytest.raises(KeyError):
        await sessions_of(users, clock).create("ghost", provider=None, id_token=None)


# --- CSRF --------------------------------------------------------------------------------------


async def test_csrf_token_belongs_to_its_session(users: SQLStore, clock: Clock) -> None:
    sessions = sessions_of(users, clock)
    alice, alice_csrf = await sessions.create("alice", provider=None, id_token=None)
    bob, bob_csrf = await sessions.create("bob", provider=None, id_token=None)
    assert sessions.csrf_token(alice) == alice_csrf
    assert sessions.check_csrf(alice, alice_csrf)
    assert not sessions.check_csrf(alice, bob_csrf)
    assert not sessions.check_csrf(bob, alice_csrf)
    for wrong in (None, "", alice, alice_csrf[:-1], alice_csrf + "A", "é" * 43):
        assert not sessions.check_csrf(alice, wrong)
    assert not sessions.check_csrf("made-up", sessions.csrf_token("made-up"))
    # derived with the server key: another key gives another token
    assert sessions_of(users, clock, key=b"q" * 32).csrf_token(alice) != alice_csrf


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"key": b"short"}, "session_key_too_short"),
        ({"key": "k" * 40}, "session_key_too_short"),
        ({"ttl": 0}, "non_positive_duration"),
        ({"idle_ttl": -1}, "non_positive_duration"),
        ({"ttl": 10, "idle_ttl": 20}, "idle_ttl_beyond_session_ttl"),
    ],
)
def test_configuration_is_checked(options: dict[str, Any], reason: str) -> None:
    arguments: dict[str, Any] = {"key": KEY, "clock": Clock(), **options}
    with pytest.raises(ConfigurationError) as refused:
        Sessions(CountingStore(None), **arguments)  # type: ignore[arg-type]
    assert refused.value.reason == reason
    assert "k" * 40 not in str(refused.value)
