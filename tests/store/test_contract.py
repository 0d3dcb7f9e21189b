"""The store contract: every method of every aggregate, on SQLite and on PostgreSQL,
and the short-lived state's (one-time values, rate limits, replay records) on Redis too.

The ``store`` fixture runs each test once per backend on a real database
(a SQLite file; a PostgreSQL database on 127.0.0.1:5432); ``ephemeral`` once
per backend of the short-lived state (the same two, and a Redis key prefix
of the test's own on 127.0.0.1:6379).
"""

from __future__ import annotations

import pytest

from authbridge.store import (
    ClientRecord,
    Conflict,
    IdentityRecord,
    RefreshFamily,
    RefreshTokenRecord,
    SigningKeyRecord,
    SQLStore,
    Store,
    UserRecord,
)
from store_support import Ephemeral, expires_by_ttl

NOW = 1_900_000_000.25


def user(number: int = 1, **changes: object) -> UserRecord:
    fields: dict[str, object] = {
        "id": f"u{number}",
        "username": f"user{number}",
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        "scopes": frozenset({"items:read", "items:write"}),
        "email": f"user{number}@example.test",
        "email_verified": True,
        "created_at": NOW,
    }
    fields.update(changes)
    return UserRecord(**fields)  # type: ignore[arg-type]


def family(family_id: str = "f1", **changes: object) -> RefreshFamily:
    fields: dict[str, object] = {
        "id": family_id,
        "client_id": "app",
        "subject": "u1",
        "scopes": frozenset({"items:read", "offline_access"}),
        "audiences": ("https://api.example.test", "https://other.example.test"),
        "created_at": NOW,
        "expires_at": NOW + 86_400,
        "auth_time": NOW - 5,
        "extra": {"amr": ["pwd"], "nested": {"n": 1}},
    }
    fields.update(changes)
    return RefreshFamily(**fields)  # type: ignore[arg-type]


def token(
    hash_: str, family_id: str = "f1", generation: int = 0, ttl: float = 3600
) -> RefreshTokenRecord:
    return RefreshTokenRecord(hash_, family_id, generation, NOW, NOW + ttl)


def key(kid: str, active_from: float, **changes: object) -> SigningKeyRecord:
    fields: dict[str, object] = {
        "kid": kid,
        "alg": "ES256",
        "public_jwk": {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ", "kid": kid},
        "private_key": b"\x00encrypted\xffbytes" + kid.encode(),
        "kek_id": "kek1",
        "created_at": active_from - 10,
        "active_from": active_from,
    }
    fields.update(changes)
    return SigningKeyRecord(**fields)  # type: ignore[arg-type]


def test_sqlstore_is_a_store(store: SQLStore) -> None:
    assert isinstance(store, SQLStore)
    typed: Store = store
    assert typed.users is store.users


# --- users ------------------------------------------------------------------------------------


async def test_users_add_get_by_username_round_trip(store: SQLStore) -> None:
    alice = user(1, username="alice", disabled=True, email=None, email_verified=False)
    assert await store.users.add(alice) == alice
    assert await store.users.get("u1") == alice
    assert await store.users.by_username("alice") == alice
    assert await store.users.get("u2") is None
    assert await store.users.by_username("ALICE") is None  # normalised by the caller


async def test_user_without_password_or_scopes(store: SQLStore) -> None:
    bare = UserRecord(id="x", username="x")
    await store.users.add(bare)
    assert await store.users.get("x") == bare


async def test_users_unique_id_and_username(store: SQLStore) -> None:
    await store.users.add(user(1))
    with pytest.raises(Conflict):
        await store.users.add(user(2, username="user1"))
    with pytest.raises(Conflict):
        await store.users.add(user(1, username="someone-else"))
    # the store still works after a refused write
    assert [u.id for u in await store.users.list()] == ["u1"]


async def test_users_update_and_set_password_hash(store: SQLStore) -> None:
    await store.users.add(user(1))
    await store.users.add(user(2))
    changed = user(1, username="renamed", scopes=frozenset({"a"}), disabled=True)
    assert await store.users.update(changed) == changed
    assert await store.users.get("u1") == changed
    assert await store.users.by_username("user1") is None
    with pytest.raises(Conflict):
        await store.users.update(user(1, username="user2"))
    with pytest.raises(KeyError):
        await store.users.update(user(9))
    await store.users.set_password_hash("u1", "$argon2id$new")
    found = await store.users.get("u1")
    assert found is not None
    assert found.password_hash == "$argon2id$new"
    await store.users.set_password_hash("nobody", "$argon2id$x")  # nothing to change
    assert await store.users.get("nobody") is None


async def test_users_list_orders_and_pages_by_username(store: SQLStore) -> None:
    for number, name in enumerate(["carol", "alice", "bob", "dave"], start=1):
        await store.users.add(user(number, username=name))
    assert [u.username for u in await store.users.list()] == ["alice", "bob", "carol", "dave"]
    assert [u.username for u in await store.users.list(limit=2)] == ["alice", "bob"]
    assert [u.username for u in await store.users.list(limit=2, after="bob")] == [
        "carol",
        "dave",
    ]
    assert await store.users.list(after="dave") == []


async def test_users_delete_removes_identities(store: SQLStore) -> None:
    await store.users.add(user(1))
    await store.identities.link(IdentityRecord("https://idp", "s1", "u1"))
    assert await store.users.delete("u1") is True
    assert await store.users.delete("u1") is False
    assert await store.users.get("u1") is None
    assert await store.identities.find("https://idp", "s1") is None


async def test_scopes_with_whitespace_are_refused(store: SQLStore) -> None:
    with pytest.raises(ValueError, match="whitespace"):
        await store.users.add(user(1, scopes=frozenset({"two words"})))
    assert await store.users.get("u1") is None


# --- identities -------------------------------------------------------------------------------


async def test_identities_link_find_for_user_unlink(store: SQLStore) -> None:
    await store.users.add(user(1))
    await store.users.add(user(2))
    github = IdentityRecord("https://github.com", "123", "u1", "a@example.test", True, NOW)
    google = IdentityRecord("https://accounts.google.com", "abc", "u1")
    other = IdentityRecord("https://github.com", "456", "u2")
    for identity in (github, google, other):
        assert await store.identities.link(identity) == identity
    assert await store.identities.find("https://github.com", "123") == github
    assert await store.identities.find("https://github.com", "789") is None
    assert await store.identities.find("https://gitlab.com", "123") is None
    assert list(await store.identities.for_user("u1")) == [google, github]
    assert await store.identities.for_user("u3") == []
    assert await store.identities.unlink("https://github.com", "123") is True
    assert await store.identities.unlink("https://github.com", "123") is False
    assert list(await store.identities.for_user("u1")) == [google]


async def test_identity_issuer_subject_is_unique(store: SQLStore) -> None:
    await store.users.add(user(1))
    await store.users.add(user(2))
    await store.identities.link(IdentityRecord("https://idp", "s", "u1"))
    with pytest.raises(Conflict):
        await store.identities.link(IdentityRecord("https://idp", "s", "u2"))
    # the same subject at another issuer is another identity
    await store.identities.link(IdentityRecord("https://other-idp", "s", "u2"))


async def test_identity_needs_an_existing_user(store: SQLStore) -> None:
    with pytest.raises(KeyError):
        await store.identities.link(IdentityRecord("https://idp", "s", "ghost"))


# --- clients ----------------------------------------------------------------------------------


async def test_clients_round_trip_and_list(store: SQLStore) -> None:
    robot = ClientRecord(
        client_id="robot",
        name="Nightly job",
        auth_method="private_key_jwt",
        jwks={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]},
        grant_types=frozenset({"client_credentials"}),
        scopes=frozenset({"items:read"}),
        created_at=NOW,
    )
    spa = ClientRecord(
        client_id="app",
        auth_method="none",
        grant_types=frozenset({"authorization_code", "refresh_token"}),
        redirect_uris=("https://app.example.test/cb", "http://127.0.0.1:8000/cb"),
    )
    web = ClientRecord(client_id="web", secret_hash="h:abc")
    for client in (robot, spa, web):
        assert await store.clients.add(client) == client
    assert await store.clients.get("robot") == robot
    assert await store.clients.get("app") == spa
    assert await store.clients.get("nobody") is None
    assert [c.client_id for c in await store.clients.list()] == ["app", "robot", "web"]
    with pytest.raises(Conflict):
        await store.clients.add(ClientRecord(client_id="robot"))


async def test_clients_update_and_delete_with_families(store: SQLStore) -> None:
    await store.clients.add(ClientRecord(client_id="app", name="App"))
    renamed = ClientRecord(client_id="app", name="Renamed", disabled=True)
    assert await store.clients.update(renamed) == renamed
    assert await store.clients.get("app") == renamed
    with pytest.raises(KeyError):
        await store.clients.update(ClientRecord(client_id="ghost"))
    await store.refresh.create(family("f1"), token("t1"))
    await store.refresh.create(family("f2", client_id="other"), token("t2", "f2"))
    assert await store.clients.delete("app") is True
    assert await store.clients.delete("app") is False
    assert await store.clients.get("app") is None
    assert await store.refresh.find("t1") is None
    assert await store.refresh.find("t2") is not None


# --- refresh families -------------------------------------------------------------------------


async def test_refresh_create_and_find(store: SQLStore) -> None:
    created = family()
    first = token("hash0")
    await store.refresh.create(created, first)
    found = await store.refresh.find("hash0")
    assert found == (first, created)
    assert await store.refresh.find("unknown") is None
    with pytest.raises(Conflict):
        await store.refresh.create(family(), token("hash-other"))
    with pytest.raises(Conflict):
        await store.refresh.create(family("f2"), token("hash0", "f2"))
    assert await store.refresh.find("hash-other") is None


async def test_refresh_advance_rotates_once(store: SQLStore) -> None:
    await store.refresh.create(family(), token("g0"))
    assert await store.refresh.advance(
        "f1", from_generation=0, now=NOW + 60, token=token("g1", generation=1)
    )
    assert not await store.refresh.advance(
        "f1", from_generation=0, now=NOW + 61, token=token("g1-bis", generation=1)
    )
    assert await store.refresh.find("g1-bis") is None
    found = await store.refresh.find("g1")
    assert found is not None
    new, current = found
    assert new.generation == 1
    assert (current.generation, current.rotated_at, current.siblings) == (1, NOW + 60, 0)
    # the old token stays findable (reuse detection), with the family's new generation
    old = await store.refresh.find("g0")
    assert old is not None
    assert old[0].generation == 0
    assert old[1].generation == 1
    assert not await store.refresh.advance(
        "missing", from_generation=0, now=NOW, token=token("x", "missing", 1)
    )


async def test_refresh_siblings_are_bounded_and_reset_by_advance(store: SQLStore) -> None:
    await store.refresh.create(family(), token("g0"))
    await store.refresh.advance("f1", from_generation=0, now=NOW, token=token("g1", generation=1))
    results = [
        await store.refresh.add_sibling(
            "f1", generation=1, max_siblings=2, token=token(f"s{i}", generation=1)
        )
        for i in range(3)
    ]
    assert results == [True, True, False]
    assert await store.refresh.find("s2") is None
    found = await store.refresh.find("s1")
    assert found is not None
    assert found[1].siblings == 2
    # a sibling of a generation that is not current is refused
    assert not await store.refresh.add_sibling(
        "f1", generation=0, max_siblings=5, token=token("late", generation=0)
    )
    await store.refresh.advance("f1", from_generation=1, now=NOW, token=token("g2", generation=2))
    found = await store.refresh.find("g2")
    assert found is not None
    assert found[1].siblings == 0


async def test_refresh_token_must_match_the_step(store: SQLStore) -> None:
    await store.refresh.create(family(), token("g0"))
    with pytest.raises(ValueError, match="generation"):
        await store.refresh.advance("f1", from_generation=0, now=NOW, token=token("x"))
    with pytest.raises(ValueError, match="family"):
        await store.refresh.add_sibling(
            "f1", generation=0, max_siblings=1, token=token("x", "f2", 0)
        )


async def test_refresh_revoke_stops_every_step(store: SQLStore) -> None:
    await store.refresh.create(family(), token("g0"))
    assert await store.refresh.revoke("f1", now=NOW + 1, reason="reuse") is True
    assert await store.refresh.revoke("f1", now=NOW + 2, reason="revoked") is False
    assert await store.refresh.revoke("ghost", now=NOW, reason="revoked") is False
    found = await store.refresh.find("g0")
    assert found is not None
    assert (found[1].revoked_at, found[1].revoked_reason) == (NOW + 1, "reuse")
    assert not await store.refresh.advance(
        "f1", from_generation=0, now=NOW, token=token("g1", generation=1)
    )
    assert not await store.refresh.add_sibling(
        "f1", generation=0, max_siblings=3, token=token("s", generation=0)
    )


async def test_refresh_revoke_for_subject_and_client(store: SQLStore) -> None:
    await store.refresh.create(family("a"), token("ta", "a"))
    await store.refresh.create(family("b", client_id="other"), token("tb", "b"))
    await store.refresh.create(family("c", subject="u2"), token("tc", "c"))
    await store.refresh.create(family("d", expires_at=NOW - 1), token("td", "d"))
    await store.refresh.create(family("e"), token("te", "e"))
    await store.refresh.revoke("e", now=NOW, reason="revoked")
    assert await store.refresh.revoke_for(now=NOW, reason="x", subject="u1", client_id="app") == 1
    assert await store.refresh.revoke_for(now=NOW, reason="user_disabled", subject="u1") == 1
    assert await store.refresh.revoke_for(now=NOW, reason="client_gone", client_id="app") == 1
    assert await store.refresh.revoke_for(now=NOW, reason="again", subject="u1") == 0
    reasons = {}
    for name in "abcde":
        found = await store.refresh.find(f"t{name}")
        assert found is not None
        reasons[name] = found[1].revoked_reason
    assert reasons == {
        "a": "x",
        "b": "user_disabled",
        "c": "client_gone",
        "d": None,
        "e": "revoked",
    }
    with pytest.raises(ValueError, match="subject"):
        await store.refresh.revoke_for(now=NOW, reason="all")


async def test_refresh_purge(store: SQLStore) -> None:
    await store.refresh.create(family("live"), token("live0", "live", ttl=10))
    await store.refresh.advance(
        "live", from_generation=0, now=NOW, token=token("live1", "live", 1, ttl=1000)
    )
    await store.refresh.create(family("old", expires_at=NOW + 50), token("old0", "old", ttl=50))
    await store.refresh.create(family("gone"), token("gone0", "gone"))
    await store.refresh.revoke("gone", now=NOW + 20, reason="revoked")
    assert await store.refresh.purge(NOW) == 0
    # at NOW + 100: live0 idle-expired, "old" (family + token) ended, "gone" revoked
    assert await store.refresh.purge(NOW + 100) == 5
    assert await store.refresh.find("live0") is None
    assert await store.refresh.find("live1") is not None
    for gone in ("old0", "gone0"):
        assert await store.refresh.find(gone) is None
    assert await store.refresh.purge(NOW + 100) == 0


# --- signing keys -----------------------------------------------------------------------------


async def test_keys_list_in_activation_order_and_unique_kid(store: SQLStore) -> None:
    later = key("k2", NOW + 100)
    first = key("k1", NOW)
    await store.keys.add(later)
    await store.keys.add(first)
    assert list(await store.keys.list()) == [first, later]
    with pytest.raises(Conflict):
        await store.keys.add(key("k1", NOW + 5))
    assert (await store.keys.list())[0].private_key == first.private_key


async def test_keys_retire_revoke_delete_once(store: SQLStore) -> None:
    await store.keys.add(key("k1", NOW))
    assert await store.keys.retire("k1", at=NOW + 1) is True
    assert await store.keys.retire("k1", at=NOW + 2) is False
    assert await store.keys.revoke("k1", at=NOW + 3) is True
    assert await store.keys.revoke("k1", at=NOW + 4) is False
    assert await store.keys.retire("ghost", at=NOW) is False
    (stored,) = await store.keys.list()
    assert (stored.retired_at, stored.revoked_at) == (NOW + 1, NOW + 3)
    assert await store.keys.delete("k1") is True
    assert await store.keys.delete("k1") is False
    assert await store.keys.list() == []


def purged(ephemeral: Ephemeral, rows: int) -> int:
    """What ``purge`` counts: the rows deleted in SQL, 0 in Redis (keys expire by their TTL)."""
    return 0 if expires_by_ttl(ephemeral) else rows


# --- one-time values --------------------------------------------------------------------------


async def test_one_time_put_take_once(ephemeral: Ephemeral) -> None:
    value = bytes(range(256))
    await ephemeral.one_time.put("code", "k1", value, expires_at=NOW + 60)
    await ephemeral.one_time.put("relay", "k1", b"other kind", expires_at=NOW + 60)
    with pytest.raises(Conflict):
        await ephemeral.one_time.put("code", "k1", b"again", expires_at=NOW + 60)
    assert await ephemeral.one_time.take("code", "k1", now=NOW) == value
    assert await ephemeral.one_time.take("code", "k1", now=NOW) is None
    assert await ephemeral.one_time.take("relay", "k1", now=NOW) == b"other kind"
    assert await ephemeral.one_time.take("code", "never", now=NOW) is None


async def test_one_time_expired_is_not_taken_and_purged(ephemeral: Ephemeral) -> None:
    await ephemeral.one_time.put("code", "old", b"v", expires_at=NOW)
    await ephemeral.one_time.put("code", "new", b"w", expires_at=NOW + 10)
    assert await ephemeral.one_time.take("code", "old", now=NOW) is None  # expiry is exclusive
    assert await ephemeral.one_time.purge(NOW + 1) == purged(ephemeral, 1)
    assert await ephemeral.one_time.purge(NOW + 1) == 0
    assert await ephemeral.one_time.take("code", "new", now=NOW + 1) == b"w"


async def test_one_time_values_are_bytes_as_given(ephemeral: Ephemeral) -> None:
    values = {"empty": b"", "bars": b"|1|2|", "nul": b"\x00" * 3, "big": bytes(64 * 1024)}
    for key, value in values.items():
        await ephemeral.one_time.put("code", key, value, expires_at=NOW + 0.001)
    for key, value in values.items():
        taken = await ephemeral.one_time.take("code", key, now=NOW)
        assert type(taken) is bytes
        assert taken == value
    await ephemeral.one_time.put("code", "late", b"v", expires_at=NOW + 0.001)
    assert await ephemeral.one_time.take("code", "late", now=NOW + 0.001) is None


async def test_the_three_aggregates_keep_to_themselves(ephemeral: Ephemeral) -> None:
    await ephemeral.one_time.put("a", "same", b"one-time", expires_at=NOW + 60)
    assert await ephemeral.replay.first_use("same", expires_at=NOW + 60, now=NOW) is True
    assert await ephemeral.rate_limits.hit("same", window=60, now=NOW) == (1, NOW + 60)
    assert await ephemeral.one_time.take("b", "same", now=NOW) is None
    assert await ephemeral.one_time.take("a", "same", now=NOW) == b"one-time"
    assert await ephemeral.replay.seen("same", now=NOW) is True
    await ephemeral.rate_limits.reset("same")
    assert await ephemeral.replay.seen("same", now=NOW) is True
    await ephemeral.ping()
    assert await ephemeral.purge(NOW) == 0


# --- rate limits ------------------------------------------------------------------------------


async def test_rate_limit_windows(ephemeral: Ephemeral) -> None:
    assert await ephemeral.rate_limits.peek("ip:1", now=NOW) == (0, NOW)
    assert await ephemeral.rate_limits.hit("ip:1", window=60, now=NOW) == (1, NOW + 60)
    assert await ephemeral.rate_limits.hit("ip:1", window=60, now=NOW + 30, cost=3) == (4, NOW + 60)
    assert await ephemeral.rate_limits.peek("ip:1", now=NOW + 59) == (4, NOW + 60)
    assert await ephemeral.rate_limits.hit("ip:2", window=10, now=NOW) == (1, NOW + 10)
    # the window ends: a new one starts at the next hit
    assert await ephemeral.rate_limits.peek("ip:1", now=NOW + 60) == (0, NOW + 60)
    assert await ephemeral.rate_limits.hit("ip:1", window=60, now=NOW + 61) == (1, NOW + 121)
    await ephemeral.rate_limits.reset("ip:1")
    assert await ephemeral.rate_limits.peek("ip:1", now=NOW + 61) == (0, NOW + 61)
    await ephemeral.rate_limits.reset("never")
    assert await ephemeral.rate_limits.purge(NOW + 10) == purged(ephemeral, 1)  # ip:2
    assert await ephemeral.rate_limits.purge(NOW + 10) == 0
    with pytest.raises(ValueError, match="window"):
        await ephemeral.rate_limits.hit("ip:1", window=0, now=NOW)


async def test_rate_limit_negative_cost_gives_attempts_back(ephemeral: Ephemeral) -> None:
    assert await ephemeral.rate_limits.hit("acct", window=60, now=NOW, cost=3) == (3, NOW + 60)
    assert await ephemeral.rate_limits.hit("acct", window=60, now=NOW, cost=-2) == (1, NOW + 60)
    assert await ephemeral.rate_limits.hit("acct", window=60, now=NOW, cost=-5) == (0, NOW + 60)
    assert await ephemeral.rate_limits.hit("acct", window=60, now=NOW, cost=1) == (1, NOW + 60)
    # a give-back as the first hit (or in a new window) starts at 0
    assert await ephemeral.rate_limits.hit("fresh", window=60, now=NOW, cost=-1) == (0, NOW + 60)
    assert await ephemeral.rate_limits.hit("acct", window=60, now=NOW + 60, cost=-1) == (
        0,
        NOW + 120,
    )


# --- replay cache -----------------------------------------------------------------------------


async def test_replay_first_use_until_expiry(ephemeral: Ephemeral) -> None:
    assert await ephemeral.replay.seen("jti-1", now=NOW) is False
    assert await ephemeral.replay.first_use("jti-1", expires_at=NOW + 60, now=NOW) is True
    assert await ephemeral.replay.first_use("jti-1", expires_at=NOW + 600, now=NOW + 1) is False
    assert await ephemeral.replay.seen("jti-1", now=NOW + 59) is True
    # an expired record counts as absent, and is replaced with the new expiry
    assert await ephemeral.replay.seen("jti-1", now=NOW + 60) is False
    assert await ephemeral.replay.first_use("jti-1", expires_at=NOW + 200, now=NOW + 60) is True
    assert await ephemeral.replay.first_use("jti-1", expires_at=NOW + 300, now=NOW + 199) is False
    assert await ephemeral.replay.first_use("jti-2", expires_at=NOW + 10, now=NOW) is True
    assert await ephemeral.replay.purge(NOW + 100) == purged(ephemeral, 1)
    assert await ephemeral.replay.seen("jti-1", now=NOW + 100) is True


# --- the whole store --------------------------------------------------------------------------


async def test_store_purge_every_aggregate_and_ping(store: SQLStore) -> None:
    await store.ping()
    await store.refresh.create(family(expires_at=NOW + 5), token("t", ttl=5))
    await store.one_time.put("code", "k", b"v", expires_at=NOW + 5)
    await store.rate_limits.hit("k", window=5, now=NOW)
    await store.replay.first_use("j", expires_at=NOW + 5, now=NOW)
    await store.users.add(user(1))
    assert await store.purge(NOW) == 0
    assert await store.purge(NOW + 5) == 5
    assert await store.users.get("u1") is not None  # accounts never expire


async def test_start_twice_and_restart_keep_data(store_url: str) -> None:
    first = SQLStore(store_url)
    await first.start()
    await first.start()
    await first.users.add(user(1))
    await first.aclose()
    again = SQLStore(store_url, migrate=False)
    await again.start()
    try:
        assert await again.users.get("u1") == user(1)
    finally:
        await again.aclose()
