"""RedisEphemeral on a real Redis: key names and their bounds, garbage-collection TTLs,
logical time, errors (never the URL's password), the bounded pool.

The contract shared with the SQL backend (and its races) is in test_contract.py
and test_races.py; a server that is killed, stalled and restarted in
test_redis_restart.py.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from authbridge.errors import ConfigurationError, StoreUnavailable
from authbridge.store import Conflict
from authbridge.store._redis import MAX_KEY_BYTES, MAX_TTL_MS, RedisEphemeral
from store_support import REDIS_URL, run_async

from ._support import PASSWORD, closed_port

NOW = 1_900_000_000.25


def raw(ephemeral: RedisEphemeral) -> Any:
    """The redis-py client under ``ephemeral`` (to look at what is stored)."""
    return ephemeral._c.client


async def names(ephemeral: RedisEphemeral) -> set[bytes]:
    pattern = ephemeral.prefix.encode() + b"*"
    return {name async for name in raw(ephemeral).scan_iter(match=pattern, count=1000)}


def assert_no_password(error: BaseException) -> None:
    text = "".join(traceback.format_exception(error))
    assert PASSWORD not in text
    assert PASSWORD not in repr(error)


@pytest.fixture
async def other_prefix(redis_prefix: str) -> AsyncIterator[RedisEphemeral]:
    """A second RedisEphemeral on another prefix (under this test's own)."""
    other = RedisEphemeral(REDIS_URL, prefix=redis_prefix + "other:")
    try:
        yield other
    finally:
        await other.aclose()


# --- what is stored, and where -----------------------------------------------------------------


async def test_key_names_are_the_prefix_the_aggregate_and_the_callers_key(
    redis_ephemeral: RedisEphemeral,
) -> None:
    await redis_ephemeral.one_time.put("code", "k1", b"v", expires_at=NOW + 60)
    await redis_ephemeral.rate_limits.hit("ip:1", window=60, now=NOW)
    await redis_ephemeral.replay.first_use("jti:c:1", expires_at=NOW + 60, now=NOW)
    prefix = redis_ephemeral.prefix.encode()
    assert await names(redis_ephemeral) == {
        prefix + b"ot:code:k1",
        prefix + b"rl:ip:1",
        prefix + b"rp:jti:c:1",
    }
    # the stored forms: the expiry is kept with the value, as the caller's time
    assert await raw(redis_ephemeral).get(prefix + b"ot:code:k1") == repr(NOW + 60).encode() + b"|v"
    assert await raw(redis_ephemeral).hgetall(prefix + b"rl:ip:1") == {
        b"c": b"1",
        b"e": repr(NOW + 60).encode(),
    }


async def test_prefixes_keep_apps_apart(
    redis_ephemeral: RedisEphemeral, other_prefix: RedisEphemeral
) -> None:
    await redis_ephemeral.one_time.put("code", "k", b"mine", expires_at=NOW + 60)
    await other_prefix.one_time.put("code", "k", b"theirs", expires_at=NOW + 60)
    assert await redis_ephemeral.replay.first_use("j", expires_at=NOW + 9, now=NOW)
    assert await other_prefix.replay.first_use("j", expires_at=NOW + 9, now=NOW)
    assert await other_prefix.rate_limits.hit("r", window=9, now=NOW) == (1, NOW + 9)
    assert await redis_ephemeral.rate_limits.peek("r", now=NOW) == (0, NOW)
    assert await redis_ephemeral.one_time.take("code", "k", now=NOW) == b"mine"
    assert await other_prefix.one_time.take("code", "k", now=NOW) == b"theirs"


async def test_every_key_gets_a_relative_ttl_a_grace_longer_than_its_life(
    redis_prefix: str,
) -> None:
    ephemeral = RedisEphemeral(REDIS_URL, prefix=redis_prefix, gc_grace=20.0)
    try:
        wall = time.time()
        await ephemeral.one_time.put("code", "wall", b"v", expires_at=wall + 30)
        await ephemeral.one_time.put("code", "past", b"v", expires_at=1000.0)  # a clock long ago
        await ephemeral.rate_limits.hit("r", window=10, now=NOW)  # a clock far ahead
        await ephemeral.replay.first_use("j", expires_at=NOW + 5, now=NOW)
        await ephemeral.replay.first_use("gone", expires_at=NOW - 5, now=NOW)
        client, prefix = raw(ephemeral), redis_prefix.encode()
        ttl = {
            name: await client.pttl(prefix + name) / 1000
            for name in (b"ot:code:wall", b"ot:code:past", b"rl:r", b"rp:j", b"rp:gone")
        }
        assert 49 < ttl[b"ot:code:wall"] <= 50  # 30 s to its expiry, from the wall clock
        assert 19 < ttl[b"ot:code:past"] <= 20  # already expired: the grace only
        assert 29 < ttl[b"rl:r"] <= 30  # the window, whatever the clock
        assert 24 < ttl[b"rp:j"] <= 25  # expires_at - now: the caller's clock
        assert 19 < ttl[b"rp:gone"] <= 20
        # a hit in the same window keeps the TTL; a new window sets it again
        await client.pexpire(prefix + b"rl:r", 5000)
        await ephemeral.rate_limits.hit("r", window=10, now=NOW + 1)
        assert await client.pttl(prefix + b"rl:r") <= 5000
        await ephemeral.rate_limits.hit("r", window=10, now=NOW + 10)
        assert await client.pttl(prefix + b"rl:r") > 29_000
    finally:
        await ephemeral.aclose()


async def test_the_callers_time_decides_expiry_not_redis(
    redis_ephemeral: RedisEphemeral,
) -> None:
    past = 1000.0  # a fake clock decades behind the wall clock
    await redis_ephemeral.one_time.put("code", "k", b"v", expires_at=past + 10)
    await redis_ephemeral.replay.first_use("j", expires_at=past + 10, now=past)
    assert await redis_ephemeral.rate_limits.hit("r", window=10, now=past) == (1, past + 10)
    later = past + 10
    assert await redis_ephemeral.one_time.take("code", "k", now=later) is None
    assert await redis_ephemeral.replay.seen("j", now=later) is False
    assert await redis_ephemeral.rate_limits.peek("r", now=later) == (0, later)
    # still in Redis (the TTL collects them later), yet expired for the caller
    assert len(await names(redis_ephemeral)) == 3
    # and an expired one-time value still blocks its key, as a SQL row does until purged
    with pytest.raises(Conflict):
        await redis_ephemeral.one_time.put("code", "k", b"w", expires_at=later + 10)


async def test_times_keep_every_digit(redis_ephemeral: RedisEphemeral) -> None:
    now = 1_900_000_000.123456
    assert await redis_ephemeral.rate_limits.hit("r", window=0.000001, now=now) == (
        1,
        now + 0.000001,
    )
    assert await redis_ephemeral.replay.first_use("j", expires_at=math.nextafter(now, 0), now=now)
    assert await redis_ephemeral.replay.seen("j", now=math.nextafter(now, 0) - 1e-6) is True
    assert await redis_ephemeral.replay.seen("j", now=math.nextafter(now, 0)) is False
    await redis_ephemeral.one_time.put("code", "k", b"v", expires_at=math.nextafter(now, math.inf))
    assert await redis_ephemeral.one_time.take("code", "k", now=now) == b"v"


# --- bounds ------------------------------------------------------------------------------------


def calls_with_key(ephemeral: RedisEphemeral, key: str) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: ephemeral.one_time.put("code", key, b"v", expires_at=NOW + 9),
        lambda: ephemeral.one_time.take("code", key, now=NOW),
        lambda: ephemeral.rate_limits.hit(key, window=9, now=NOW),
        lambda: ephemeral.rate_limits.peek(key, now=NOW),
        lambda: ephemeral.rate_limits.reset(key),
        lambda: ephemeral.replay.first_use(key, expires_at=NOW + 9, now=NOW),
        lambda: ephemeral.replay.seen(key, now=NOW),
    ]


@pytest.mark.parametrize(
    "key",
    ["a" * (MAX_KEY_BYTES + 1), "\u00e9" * 257, "\U0001f600" * 129, "lone \ud800 surrogate"],
    ids=["513-ascii", "514-utf8", "516-emoji", "surrogate"],
)
async def test_keys_longer_than_512_bytes_or_not_text_are_refused(
    redis_ephemeral: RedisEphemeral, key: str
) -> None:
    for call in calls_with_key(redis_ephemeral, key):
        with pytest.raises(ValueError, match="store keys"):
            await call()
    with pytest.raises(TypeError):
        await redis_ephemeral.replay.seen(b"bytes", now=NOW)  # type: ignore[arg-type]
    assert await names(redis_ephemeral) == set()  # nothing was written


async def test_keys_of_512_bytes_are_accepted(redis_ephemeral: RedisEphemeral) -> None:
    for key in ("a" * MAX_KEY_BYTES, "\u00e9" * (MAX_KEY_BYTES // 2), "\x00:*?[]|"):
        for call in calls_with_key(redis_ephemeral, key):
            await call()
    assert await redis_ephemeral.replay.seen("a" * MAX_KEY_BYTES, now=NOW) is True


@pytest.mark.parametrize("kind", ["", "a:b", "k" * 65, "caf\u00e9", "a b", "a*"])
async def test_kinds_are_short_labels(redis_ephemeral: RedisEphemeral, kind: str) -> None:
    # ("a:b", "c") and ("a", "b:c") must never name one key
    with pytest.raises(ValueError, match="kind"):
        await redis_ephemeral.one_time.put(kind, "c", b"v", expires_at=NOW + 9)
    with pytest.raises(ValueError, match="kind"):
        await redis_ephemeral.one_time.take(kind, "c", now=NOW)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_times_must_be_finite(redis_ephemeral: RedisEphemeral, bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        await redis_ephemeral.one_time.put("code", "k", b"v", expires_at=bad)
    with pytest.raises(ValueError, match="finite"):
        await redis_ephemeral.one_time.take("code", "k", now=bad)
    with pytest.raises(ValueError, match="window"):
        await redis_ephemeral.rate_limits.hit("k", window=bad, now=NOW)
    with pytest.raises(ValueError, match="finite"):
        await redis_ephemeral.replay.first_use("k", expires_at=bad, now=NOW)
    assert await names(redis_ephemeral) == set()


async def test_the_pool_is_bounded_and_calls_wait_for_a_connection(redis_prefix: str) -> None:
    ephemeral = RedisEphemeral(REDIS_URL, prefix=redis_prefix, max_connections=3)
    try:
        results = await asyncio.gather(
            *(ephemeral.rate_limits.hit("r", window=60, now=NOW) for _ in range(60))
        )
        assert sorted(count for count, _ in results) == list(range(1, 61))
        pool = ephemeral._c.pool
        assert len(pool._available_connections) + len(pool._in_use_connections) == 3
    finally:
        await ephemeral.aclose()


async def test_a_pool_that_stays_full_is_busy(redis_prefix: str) -> None:
    ephemeral = RedisEphemeral(
        REDIS_URL, prefix=redis_prefix, max_connections=1, socket_timeout=0.3
    )
    try:
        held = await ephemeral._c.pool.get_connection()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as failed:
            await ephemeral.replay.seen("k", now=NOW)
        waited = time.monotonic() - started
        assert failed.value.reason == "redis:busy:ConnectionError"
        assert 0.25 < waited < 1.0
        await ephemeral._c.pool.release(held)
        assert await ephemeral.replay.seen("k", now=NOW) is False
    finally:
        await ephemeral.aclose()


def test_closed_then_used_from_another_event_loop(redis_prefix: str) -> None:
    ephemeral = RedisEphemeral(REDIS_URL, prefix=redis_prefix, max_connections=2)

    async def busy() -> list[int]:  # more calls than connections: they wait on the pool
        hits = await asyncio.gather(
            *(ephemeral.rate_limits.hit("r", window=60, now=NOW) for _ in range(10))
        )
        await ephemeral.aclose()
        return [count for count, _ in hits]

    first = run_async(busy)  # each in an event loop of its own
    second = run_async(busy)
    assert sorted(first + second) == list(range(1, 21))


# --- errors --------------------------------------------------------------------------------


async def test_a_closed_port_is_store_unavailable_without_the_password() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0"
    ephemeral = RedisEphemeral(url, socket_timeout=1.0)
    assert PASSWORD not in repr(ephemeral)
    calls = [ephemeral.start, ephemeral.ping, *calls_with_key(ephemeral, "k")]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as failed:
            await call()
        assert time.monotonic() - started < 1.0  # refused at once, no retries
        assert failed.value.reason == "redis:unreachable:ConnectionError"
        assert str(failed.value) == "store_unavailable: redis:unreachable:ConnectionError"
        assert failed.value.__cause__ is None
        assert failed.value.__suppress_context__
        assert_no_password(failed.value)
    await ephemeral.aclose()


async def test_a_reply_error_is_store_unavailable_naming_only_its_code(
    redis_ephemeral: RedisEphemeral,
) -> None:
    prefix = redis_ephemeral.prefix.encode()
    await raw(redis_ephemeral).set(prefix + b"rl:k", b"not a hash")
    await raw(redis_ephemeral).hset(prefix + b"rp:k", mapping={b"a": b"b"})
    with pytest.raises(StoreUnavailable) as failed:
        await redis_ephemeral.rate_limits.hit("k", window=9, now=NOW)
    assert failed.value.reason == "redis:redis_error:WRONGTYPE"
    with pytest.raises(StoreUnavailable) as failed:
        await redis_ephemeral.replay.seen("k", now=NOW)
    assert failed.value.reason == "redis:redis_error:WRONGTYPE"
    with pytest.raises(StoreUnavailable):
        await redis_ephemeral.replay.first_use("k", expires_at=NOW + 9, now=NOW)


@pytest.mark.parametrize(
    "url",
    [
        f"http://:{PASSWORD}@127.0.0.1:6379/0",
        f"redis://:{PASSWORD}@127.0.0.1:port/0",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1/db",
        "",
    ],
    ids=["http", "bad-port", "postgres", "empty"],
)
def test_urls_that_are_not_redis_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        RedisEphemeral(url)
    assert refused.value.reason == "unsupported_redis_url"
    assert "redis://" in str(refused.value)
    assert_no_password(refused.value)


@pytest.mark.parametrize(
    "options",
    [{"max_connections": 0}, {"socket_timeout": 0}, {"gc_grace": -1}, {"prefix": "p" * 129}],
)
def test_settings_out_of_range_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RedisEphemeral("redis://127.0.0.1:6379/0", **options)


def test_without_redis_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # import fails
    with pytest.raises(ConfigurationError) as refused:
        RedisEphemeral("redis://127.0.0.1:6379/0")
    assert refused.value.reason == "store_needs_redis_extra"
    assert "authbridge[redis]" in str(refused.value)


def test_repr_shows_where_not_the_password() -> None:
    shown = repr(RedisEphemeral(f"redis://user:{PASSWORD}@cache.internal:6380/2", prefix="app:"))
    assert shown == "RedisEphemeral(host='cache.internal', port=6380, db=2, prefix='app:')"
    unix = RedisEphemeral(f"unix:///run/redis.sock?db=1&password={PASSWORD}")
    assert repr(unix) == "RedisEphemeral(path='/run/redis.sock', db=1, prefix='authbridge:')"


# --- far-future lives, huge costs, the readiness probe -----------------------------------------


async def test_a_life_beyond_ten_years_is_kept_and_collected_after_ten_years(
    redis_ephemeral: RedisEphemeral,
) -> None:
    now = time.time()
    await redis_ephemeral.one_time.put("login", "far", b"v", expires_at=now + 1e300)
    await redis_ephemeral.replay.first_use("far", expires_at=now + 1e16, now=now)
    await redis_ephemeral.rate_limits.hit("far", window=1e200, now=now)
    client = raw(redis_ephemeral)
    prefix = redis_ephemeral.prefix.encode()
    for name in (b"ot:login:far", b"rp:far", b"rl:far"):
        ttl = await client.pttl(prefix + name)
        assert MAX_TTL_MS - 60_000 < ttl <= MAX_TTL_MS, name
    assert await redis_ephemeral.one_time.take("login", "far", now=now + 1e299) == b"v"


@pytest.mark.parametrize("cost", [2**53 + 1, -(2**53) - 1, 2**70])
async def test_a_cost_beyond_two_to_the_53_is_refused_before_redis(
    redis_ephemeral: RedisEphemeral, cost: int
) -> None:
    with pytest.raises(ValueError, match="cost"):
        await redis_ephemeral.rate_limits.hit("big", window=60, now=NOW, cost=cost)
    assert await names(redis_ephemeral) == set()


async def test_counts_stop_at_two_to_the_53_and_stay_exact(
    redis_ephemeral: RedisEphemeral,
) -> None:
    hits = redis_ephemeral.rate_limits
    assert (await hits.hit("big", window=60, now=NOW, cost=2**53))[0] == 2**53
    for _ in range(3):
        assert (await hits.hit("big", window=60, now=NOW, cost=2**53))[0] == 2**53
    assert (await hits.hit("big", window=60, now=NOW, cost=-1))[0] == 2**53 - 1
    assert await hits.peek("big", now=NOW) == (2**53 - 1, NOW + 60)


async def test_ping_leaves_nothing_behind(redis_ephemeral: RedisEphemeral) -> None:
    # a write command (a read-only replica refuses it: test_ephemeral_review.py), on a key
    # never stored
    await redis_ephemeral.ping()
    await redis_ephemeral.one_time.put("code", "k", b"v", expires_at=NOW + 60)
    await redis_ephemeral.ping()
    assert await names(redis_ephemeral) == {redis_ephemeral.prefix.encode() + b"ot:code:k"}
