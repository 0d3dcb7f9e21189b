"""CompositeStore: durable records and revocations in SQL (PostgreSQL), the short-lived
state in Redis; start, ping, purge and close over both; open_store(..., redis=...).

The issuer runs on it end to end here for the replay split (a revocation survives a
Redis flush; a client assertion's jti never reaches SQL); test_composite_integration.py
runs the code-grant and login-transaction suites on it.
"""

from __future__ import annotations

import base64
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authbridge.errors import StoreUnavailable
from authbridge.issuer import AppIssuer, IssuerRuntime, OAuthError, TokenRequest
from authbridge.issuer._client_auth import ASSERTION_TYPE, assertion_replay_key
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.store import ClientRecord, RefreshFamily, RefreshTokenRecord, SQLStore, UserRecord
from authbridge.store._composite import CompositeStore, SplitReplay, open_store
from authbridge.store._redis import RedisEphemeral
from authbridge.testing import sign_jwt
from authbridge.testing._jwt import _public_jwk
from store_support import REDIS_URL, delete_redis_prefix

from ._support import PASSWORD, closed_port, run_sql

ISSUER = "http://127.0.0.1:8000"
NOW = 1_900_000_000.0
SECRET = new_secret(CLIENT_SECRET_PREFIX)


async def rows(url: str, table: str) -> int:
    (result,) = await run_sql(url, f"SELECT count(*) FROM {table}")
    return int(result[0][0])


async def redis_names(store: CompositeStore) -> set[bytes]:
    client = store.ephemeral._c.client
    pattern = store.ephemeral.prefix.encode() + b"*"
    return {name async for name in client.scan_iter(match=pattern, count=1000)}


def assert_no_password(error: BaseException) -> None:
    assert PASSWORD not in "".join(traceback.format_exception(error))


# --- wiring --------------------------------------------------------------------------------


async def test_each_aggregate_comes_from_its_backend(composite_store: CompositeStore) -> None:
    durable, ephemeral = composite_store.durable, composite_store.ephemeral
    assert isinstance(durable, SQLStore)
    for name in ("users", "identities", "sessions", "clients", "refresh", "keys", "delegations"):
        assert getattr(composite_store, name) is getattr(durable, name), name
    assert composite_store.one_time is ephemeral.one_time
    assert composite_store.rate_limits is ephemeral.rate_limits
    assert isinstance(composite_store.replay, SplitReplay)
    assert PASSWORD not in repr(composite_store)


async def test_one_time_values_and_rate_limits_never_reach_sql(
    composite_store: CompositeStore, postgres_store_url: str
) -> None:
    await composite_store.one_time.put("code", "k", b"v", expires_at=NOW + 60)
    await composite_store.rate_limits.hit("ip:1", window=60, now=NOW)
    assert await rows(postgres_store_url, "authbridge_one_time") == 0
    assert await rows(postgres_store_url, "authbridge_rate_limits") == 0
    assert len(await redis_names(composite_store)) == 2
    assert await composite_store.one_time.take("code", "k", now=NOW) == b"v"


async def test_replay_keys_of_revocations_go_to_sql_the_others_to_redis(
    composite_store: CompositeStore, postgres_store_url: str
) -> None:
    replay = composite_store.replay
    for key in ("at:jti-1", "dg:dlg_1", "jti:robot:abc", "code-issued:h", "a:t:", "AT:x"):
        assert await replay.first_use(key, expires_at=NOW + 60, now=NOW) is True
        assert await replay.first_use(key, expires_at=NOW + 60, now=NOW) is False
        assert await replay.seen(key, now=NOW) is True
    (stored,) = await run_sql(postgres_store_url, "SELECT key FROM authbridge_replay ORDER BY key")
    assert [row[0] for row in stored] == ["at:jti-1", "dg:dlg_1"]
    prefix = composite_store.ephemeral.prefix.encode() + b"rp:"
    assert await redis_names(composite_store) == {
        prefix + name for name in (b"jti:robot:abc", b"code-issued:h", b"a:t:", b"AT:x")
    }


async def test_a_redis_flush_loses_the_short_lived_state_never_a_revocation(
    composite_store: CompositeStore, redis_prefix: str
) -> None:
    await composite_store.replay.first_use("at:jti-1", expires_at=NOW + 60, now=NOW)
    await composite_store.replay.first_use("dg:dlg_1", expires_at=NOW + 60, now=NOW)
    await composite_store.replay.first_use("jti:robot:abc", expires_at=NOW + 60, now=NOW)
    await composite_store.one_time.put("login", "tx", b"v", expires_at=NOW + 60)
    await composite_store.rate_limits.hit("ip:1", window=60, now=NOW)
    assert delete_redis_prefix(redis_prefix) == 3  # what a Redis restart loses
    assert await composite_store.replay.seen("at:jti-1", now=NOW) is True
    assert await composite_store.replay.seen("dg:dlg_1", now=NOW) is True
    assert await composite_store.replay.seen("jti:robot:abc", now=NOW) is False
    assert await composite_store.one_time.take("login", "tx", now=NOW) is None
    assert await composite_store.rate_limits.peek("ip:1", now=NOW) == (0, NOW)


# --- the issuer on it ----------------------------------------------------------------------


@pytest.fixture
async def runtime(
    composite_store: CompositeStore, authbridge_signing_key: rsa.RSAPrivateKey
) -> AsyncIterator[IssuerRuntime]:
    config = AppIssuer(ISSUER, store=composite_store, scopes=["items:read"], development=True)
    runtime = IssuerRuntime(config, time.time)
    await runtime.start()
    cc = frozenset({"client_credentials"})
    await runtime.store.clients.add(
        ClientRecord(
            "machine",
            auth_method="private_key_jwt",
            jwks={"keys": [_public_jwk(authbridge_signing_key, "m1")]},
            grant_types=cc,
            scopes=frozenset({"items:read"}),
        )
    )
    await runtime.store.clients.add(
        ClientRecord("robot", secret_hash=hash_secret(SECRET, "client_secret"), grant_types=cc)
    )
    try:
        yield runtime
    finally:
        await runtime.aclose()


def assertion(key: rsa.RSAPrivateKey, jti: str) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "iss": "machine",
        "sub": "machine",
        "aud": f"{ISSUER}/oauth/token",
        "exp": now + 120,
        "iat": now,
        "jti": jti,
    }
    signed = sign_jwt({"alg": "RS256", "kid": "m1"}, claims, key)
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}


async def test_issuer_client_assertions_in_redis_revocations_in_sql(
    runtime: IssuerRuntime,
    composite_store: CompositeStore,
    postgres_store_url: str,
    redis_prefix: str,
    authbridge_signing_key: rsa.RSAPrivateKey,
) -> None:
    key = authbridge_signing_key
    grant = {"grant_type": "client_credentials", **assertion(key, "jti-one")}
    token = (await runtime.token(TokenRequest(grant)))["access_token"]
    # the assertion's jti: recorded in Redis, nothing in SQL
    assert await rows(postgres_store_url, "authbridge_replay") == 0
    assert composite_store.ephemeral.prefix.encode() + b"rp:" + assertion_replay_key(
        "machine", "jti-one"
    ).encode() in (await redis_names(composite_store))
    with pytest.raises(OAuthError) as refused:
        await runtime.token(TokenRequest(grant))
    assert refused.value.reason == "client_assertion_replayed"

    # a revocation: in SQL, not in Redis
    await runtime.revoke(TokenRequest({"token": token, **assertion(key, "jti-two")}))
    assert await rows(postgres_store_url, "authbridge_replay") == 1
    assert not any(b"rp:at:" in name for name in await redis_names(composite_store))

    delete_redis_prefix(redis_prefix)  # Redis restarted without persistence
    basic = "Basic " + base64.b64encode(f"robot:{SECRET}".encode()).decode()
    answer = await runtime.introspect(TokenRequest({"token": token}, authorization=basic))
    assert answer == {"active": False}  # still revoked
    # what was lost: the jti record, so the assertion is usable again within its life
    assert "access_token" in await runtime.token(TokenRequest(grant))


async def test_a_long_client_assertion_jti_is_a_fixed_length_key(
    runtime: IssuerRuntime,
    composite_store: CompositeStore,
    authbridge_signing_key: rsa.RSAPrivateKey,
) -> None:
    # 256 non-ASCII characters: over Redis's key bound if the jti were in the key as it is.
    jti = "\u00e9" * 256
    grant = {"grant_type": "client_credentials", **assertion(authbridge_signing_key, jti)}
    assert "access_token" in await runtime.token(TokenRequest(grant))
    with pytest.raises(OAuthError) as refused:
        await runtime.token(TokenRequest(grant))
    assert refused.value.reason == "client_assertion_replayed"
    names = [n for n in await redis_names(composite_store) if b"rp:jti:" in n]
    assert len(names) == 1
    assert len(names[0]) == len(composite_store.ephemeral.prefix) + len("rp:jti:") + 64


# --- lifecycle -----------------------------------------------------------------------------


async def test_start_migrates_sql_and_checks_redis(tmp_path: Path, redis_prefix: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    store = open_store(url, redis=REDIS_URL, redis_prefix=redis_prefix)
    assert isinstance(store, CompositeStore)
    try:
        await store.start()  # the schema is created
        await store.users.add(UserRecord(id="u", username="u"))
        await store.one_time.put("code", "k", b"v", expires_at=NOW + 9)
        await store.ping()
        pool = store.ephemeral._c.pool
    finally:
        await store.aclose()
    # closed: no open connection left in the Redis pool (a new one opens if used again)
    assert pool._available_connections
    assert not any(connection.is_connected for connection in pool._available_connections)
    assert store.ephemeral._c.pool is not pool


async def test_ping_and_start_say_which_side_failed(tmp_path: Path, redis_prefix: str) -> None:
    sql_down = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/x"
    redis_down = f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0"
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    cases = [
        (sqlite, redis_down, ["redis:unreachable:ConnectionError"]),
        (sql_down, REDIS_URL, ["database:unreachable:"]),
        (sql_down, redis_down, ["database:unreachable:", ",redis:unreachable:ConnectionError"]),
    ]
    for durable, redis, expected in cases:
        store = CompositeStore(SQLStore(durable), RedisEphemeral(redis, prefix=redis_prefix))
        with pytest.raises(StoreUnavailable) as failed:
            await store.ping()
        for part in expected:
            assert part in failed.value.reason, failed.value.reason
        assert failed.value.reason.startswith(expected[0])
        assert_no_password(failed.value)
        with pytest.raises(StoreUnavailable) as failed:
            await store.start()
        assert_no_password(failed.value)
        await store.aclose()


async def test_purge_purges_sql_and_leaves_redis_to_its_ttls(
    composite_store: CompositeStore,
) -> None:
    family = RefreshFamily(
        id="f",
        client_id="app",
        subject="u",
        scopes=frozenset({"a"}),
        audiences=("https://api",),
        created_at=NOW,
        expires_at=NOW + 5,
    )
    await composite_store.refresh.create(family, RefreshTokenRecord("t", "f", 0, NOW, NOW + 5))
    await composite_store.replay.first_use("at:j", expires_at=NOW + 5, now=NOW)
    await composite_store.replay.first_use("jti:c:j", expires_at=NOW + 5, now=NOW)
    await composite_store.one_time.put("code", "k", b"v", expires_at=NOW + 5)
    assert await composite_store.purge(NOW) == 0
    assert await composite_store.purge(NOW + 5) == 3  # the family, its token, the revocation
    assert await composite_store.replay.seen("jti:c:j", now=NOW + 5) is False
    assert len(await redis_names(composite_store)) == 2  # left to their TTLs


def test_open_store_with_and_without_redis(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    plain = open_store(url, migrate=False)
    assert isinstance(plain, SQLStore)
    assert plain.migrate is False
    assert open_store(plain) is plain
    composite = open_store(url, redis=f"redis://:{PASSWORD}@cache:6380/1", redis_prefix="app:")
    assert isinstance(composite, CompositeStore)
    assert composite.ephemeral.prefix == "app:"
    assert PASSWORD not in repr(composite)
    around = open_store(plain, redis="redis://127.0.0.1:6379/0")
    assert isinstance(around, CompositeStore)
    assert around.durable is plain
    assert not (tmp_path / "x.db").exists()  # nothing connects before start()


async def test_a_durable_store_without_delegations_is_composed_too(
    redis_ephemeral: RedisEphemeral, tmp_path: Path
) -> None:
    class Older:  # a store written before delegations existed
        def __init__(self, inner: SQLStore) -> None:
            for name in ("users", "identities", "sessions", "clients", "refresh", "keys"):
                setattr(self, name, getattr(inner, name))
            for name in ("one_time", "rate_limits", "replay", "start", "aclose", "ping", "purge"):
                setattr(self, name, getattr(inner, name))

    inner = SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    store = CompositeStore(Older(inner), redis_ephemeral)  # type: ignore[arg-type]
    assert not hasattr(store, "delegations")
    await store.start()
    await store.replay.first_use("at:x", expires_at=NOW + 1, now=NOW)
    assert await inner.replay.seen("at:x", now=NOW)
    await store.aclose()
