"""A Redis of the test's own (a private redis-server on a free port) killed, stalled and
restarted under one RedisEphemeral: bounded failures, recovery without a new object,
what a restart without persistence loses, memory collected by the TTLs.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from authbridge.errors import StoreUnavailable
from authbridge.store._redis import RedisEphemeral
from store_support import PrivateRedis

from ._support import PASSWORD

NOW = 1_900_000_000.0
TIMEOUT = 0.5


@pytest.fixture
async def ephemeral(private_redis: PrivateRedis) -> AsyncIterator[RedisEphemeral]:
    ephemeral = RedisEphemeral(private_redis.url, prefix="app:", socket_timeout=TIMEOUT)
    await ephemeral.start()
    try:
        yield ephemeral
    finally:
        await ephemeral.aclose()


async def timed_failure(call: object) -> tuple[StoreUnavailable, float]:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as failed:
        await call  # type: ignore[misc]
    return failed.value, time.monotonic() - started


async def test_killed_then_restarted_on_the_same_port(
    private_redis: PrivateRedis, ephemeral: RedisEphemeral
) -> None:
    # connections open in the pool, and the scripts loaded in the server
    await asyncio.gather(*(ephemeral.rate_limits.hit("r", window=60, now=NOW) for _ in range(8)))
    await ephemeral.one_time.put("login", "in-flight", b"tx", expires_at=NOW + 600)
    await ephemeral.replay.first_use("jti:c:1", expires_at=NOW + 60, now=NOW)

    private_redis.kill()
    elapsed = []
    for call in (
        ephemeral.one_time.take("login", "in-flight", now=NOW),
        ephemeral.rate_limits.hit("r", window=60, now=NOW),
        ephemeral.replay.first_use("jti:c:2", expires_at=NOW + 60, now=NOW),
        ephemeral.replay.seen("jti:c:1", now=NOW),
        ephemeral.ping(),
    ):
        error, seconds = await timed_failure(call)
        assert error.reason.startswith("redis:unreachable:"), error.reason
        elapsed.append(seconds)
    assert max(elapsed) < TIMEOUT  # refused at once: no retries, no waiting
    print(f"\nkilled server: StoreUnavailable after at most {max(elapsed) * 1000:.1f} ms")

    private_redis.start()  # same port, empty (no persistence)
    started = time.monotonic()
    await ephemeral.ping()  # the same object: stale connections are replaced
    print(f"restarted server: first answer after {(time.monotonic() - started) * 1000:.1f} ms")
    # what a restart without persistence loses: in-flight logins and codes, windows, jti records
    assert await ephemeral.one_time.take("login", "in-flight", now=NOW) is None
    assert await ephemeral.rate_limits.peek("r", now=NOW) == (0, NOW)
    assert await ephemeral.replay.seen("jti:c:1", now=NOW) is False
    # the scripts are loaded again on first use (the server forgot them)
    await ephemeral.one_time.put("login", "new", b"tx2", expires_at=NOW + 600)
    assert await ephemeral.one_time.take("login", "new", now=NOW) == b"tx2"
    assert await ephemeral.rate_limits.hit("r", window=60, now=NOW) == (1, NOW + 60)
    assert await ephemeral.replay.first_use("jti:c:1", expires_at=NOW + 60, now=NOW) is True
    assert await ephemeral.replay.first_use("jti:c:1", expires_at=NOW + 60, now=NOW) is False


async def test_a_stalled_server_fails_within_the_timeout_and_nothing_is_sent_twice(
    private_redis: PrivateRedis, ephemeral: RedisEphemeral
) -> None:
    await ephemeral.rate_limits.hit("warm", window=60, now=NOW)  # the script is loaded
    private_redis.stall()
    try:
        error, seconds = await timed_failure(ephemeral.rate_limits.hit("r", window=60, now=NOW))
        assert error.reason == "redis:timeout:TimeoutError"
        assert TIMEOUT * 0.9 < seconds < TIMEOUT + 0.4
        print(f"\nstalled server: StoreUnavailable after {seconds * 1000:.0f} ms")
        # a call that must open a connection: bounded by the connect timeout
        calls = [ephemeral.replay.seen("x", now=NOW) for _ in range(3)]
        started = time.monotonic()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(result, StoreUnavailable) for result in results)
        assert time.monotonic() - started < 3 * TIMEOUT + 0.4
    finally:
        private_redis.resume()
    # the hit reached the server before it stalled: it counted once, and was never resent
    assert await ephemeral.rate_limits.peek("r", now=NOW) == (1, NOW + 60)
    assert await ephemeral.rate_limits.hit("r", window=60, now=NOW) == (2, NOW + 60)


async def test_a_wrong_or_missing_password_is_refused_without_showing_it(
    tmp_path: Path,
) -> None:
    server = PrivateRedis(tmp_path / "redis", password=PASSWORD)
    server.start()
    try:
        right = RedisEphemeral(server.url)
        await right.start()
        await right.aclose()
        for url in (
            server.url.replace(PASSWORD, PASSWORD[::-1]),
            server.url.replace(f":{PASSWORD}@", ""),
        ):
            wrong = RedisEphemeral(url)
            for call in (wrong.start(), wrong.replay.seen("k", now=NOW)):
                error, _ = await timed_failure(call)
                assert error.reason == "redis:refused:AuthenticationError", error.reason
                text = "".join(traceback.format_exception(error))
                assert PASSWORD not in text
                assert PASSWORD[::-1] not in text
            await wrong.aclose()
    finally:
        server.kill()


async def stored_bytes(client: Any) -> int:
    """The server's memory less its clients' buffers (the pool's connections hold some)."""
    memory = await client.info("memory")
    return int(memory["used_memory"]) - int(memory["mem_clients_normal"])


async def test_memory_is_collected_by_the_ttls_without_any_purge(
    private_redis: PrivateRedis,
) -> None:
    ephemeral = RedisEphemeral(private_redis.url, prefix="app:", gc_grace=0.2)
    client = ephemeral._c.client
    try:
        await ephemeral.start()
        baseline = await stored_bytes(client)
        count = 1000
        expires_at = time.time() + 2.0
        value = b"x" * 512
        for start in range(0, count, 200):
            await asyncio.gather(
                *(
                    ephemeral.one_time.put("login", f"k{i}", value, expires_at=expires_at)
                    for i in range(start, start + 200)
                )
            )
        await ephemeral.replay.first_use("j", expires_at=NOW + 2.0, now=NOW)
        await ephemeral.rate_limits.hit("r", window=2.0, now=NOW)
        assert await client.dbsize() == count + 2
        grown = await stored_bytes(client) - baseline
        assert grown > count * 512
        ttls = [await client.pttl(f"app:ot:login:k{i}") for i in range(0, count, 100)]
        assert all(0 < ttl <= 2200 for ttl in ttls)  # expiry + gc_grace
        for _ in range(300):  # Redis expires the keys on its own: nobody reads them
            if not await client.dbsize():
                break
            await asyncio.sleep(0.05)
        assert await client.dbsize() == 0
        left = await stored_bytes(client) - baseline
        print(
            f"\n{count} one-time values of 512 bytes: +{grown / 1024:.0f} KiB, gone "
            f"{time.time() - expires_at:.2f} s after their expiry "
            f"(+{left / 1024:.0f} KiB left)"
        )
        assert left < grown / 4  # (the keyspace tables shrink later)
        assert await ephemeral.purge(time.time()) == 0  # nothing for purge to do
    finally:
        await ephemeral.aclose()
