"""The Redis backend under attack (SECURITY-CASES §10, §11): its Lua scripts, lost replies,
cancelled calls, a failover, clock skew, absurd numbers, and key names.

Each test states an attack. Where the product is wrong, the test asserts the right
behaviour and is marked ``xfail(strict=True)`` with the exact defect.

Real servers only: the shared Redis (127.0.0.1:6379) under a per-test key prefix, a
loopback TCP proxy of this module in front of it (to lose a reply after Redis ran the
command, to delay replies, or to switch servers as a failover does), and private
redis-servers on free ports for the failover (killed by PID). Never FLUSHDB.

The helpers (`Proxy`, `RedisServers`) are imported by test_ephemeral_review_app.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from authbridge.errors import StoreUnavailable
from authbridge.store import RedisEphemeral
from authbridge.store import _redis_scripts as scripts
from store_support import (
    REDIS_URL,
    delete_redis_prefix,
    new_redis_prefix,
    redis_prefix,
    require_redis,
)
from tcp_support import free_port

__all__ = ["Proxy", "RedisServers", "redis_prefix", "script_sha"]

NOW = 1_900_000_000.0


def script_sha(script: str) -> bytes:
    """The SHA-1 redis-py sends in ``EVALSHA`` for ``script`` (hex, as on the wire)."""
    return hashlib.sha1(script.encode("utf-8")).hexdigest().encode("ascii")


TAKE_SHA = script_sha(scripts.TAKE)
HIT_SHA = script_sha(scripts.HIT)
FIRST_USE_SHA = script_sha(scripts.FIRST_USE)


class Proxy:
    """A loopback TCP proxy to a Redis server, one upstream connection per client connection.

    - `lose_reply_to(marker)`: the next command containing ``marker`` reaches Redis (which
      runs it), but its reply never comes back: the client's connection is reset instead,
      as when a link or a failover cuts it at that moment;
    - `delay`: seconds each reply is held back;
    - `target`: the port new connections go to (existing ones keep theirs, as after a DNS
      switch to a promoted replica);
    - `sent(marker)`: how many commands containing ``marker`` went through.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.delay = 0.0
        self.port = 0
        self._lose: bytes | None = None
        self._sent: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._done: set[asyncio.Future[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def lose_reply_to(self, marker: bytes) -> None:
        self._lose = marker

    def sent(self, marker: bytes) -> int:
        return sum(marker in chunk for chunk in self._sent)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        self._done.add(done)
        self._writers.add(writer)
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            done.set_result(None)
            return
        self._writers.add(upstream)
        doomed = asyncio.Event()

        async def up() -> None:
            try:
                while data := await reader.read(65536):
                    self._sent.append(data)
                    if self._lose is not None and self._lose in data:
                        self._lose = None
                        doomed.set()
                    upstream.write(data)
                    await upstream.drain()
            except OSError:
                pass
            finally:
                upstream.transport.abort()

        async def down() -> None:
            try:
                while data := await upstream_reader.read(65536):
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    if doomed.is_set():
                        break  # Redis ran the command; its reply is lost with the link
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.transport.abort()
                upstream.transport.abort()

        try:
            await asyncio.gather(up(), down())
        finally:
            done.set_result(None)

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._done:
            await asyncio.wait(self._done, timeout=5)
        await self._server.wait_closed()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    """A proxy in front of the shared Redis."""
    require_redis()
    from urllib.parse import urlsplit  # noqa: PLC0415

    started = await Proxy(urlsplit(REDIS_URL).port or 6379).start()
    try:
        yield started
    finally:
        await started.aclose()


class RedisServers:
    """Private redis-servers on free loopback ports (no persistence), killed by PID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, *options: str) -> int:
        """Start one (``options``: more redis-server arguments); its port, once it answers."""
        import redis  # noqa: PLC0415

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        port = free_port()
        directory = self.directory / str(port)
        directory.mkdir(parents=True)
        arguments = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        arguments += ["--appendonly", "no", "--dir", str(directory), *options]
        arguments += ["--logfile", str(directory / "redis.log")]
        process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL)
        self.processes[port] = process
        password = (
            options[options.index("--requirepass") + 1] if "--requirepass" in options else None
        )
        client = redis.Redis(
            port=port, password=password, socket_timeout=1, socket_connect_timeout=1
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    return port
                except redis.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.wait(timeout=10)

    def kill_all(self) -> None:
        for port in list(self.processes):
            self.kill(port)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[RedisServers]:
    started = RedisServers(tmp_path / "redis")
    try:
        yield started
    finally:
        started.kill_all()


async def _warm(ephemeral: RedisEphemeral) -> None:
    """Load the three scripts on the server (a lost NOSCRIPT reply would prove nothing)."""
    await ephemeral.one_time.take("warm", "none", now=NOW)
    await ephemeral.rate_limits.hit("warm", window=1, now=NOW)
    await ephemeral.replay.first_use("warm", expires_at=NOW + 1, now=NOW)


@pytest.fixture
async def via_proxy(proxy: Proxy, redis_prefix: str) -> AsyncIterator[RedisEphemeral]:
    """A RedisEphemeral reaching the shared Redis through `proxy`, its scripts loaded."""
    ephemeral = RedisEphemeral(proxy.url, prefix=redis_prefix, socket_timeout=2.0)
    await _warm(ephemeral)
    try:
        yield ephemeral
    finally:
        await ephemeral.aclose()


async def _direct(prefix: str) -> RedisEphemeral:
    return RedisEphemeral(REDIS_URL, prefix=prefix)


# --- a reply lost after Redis ran the command: at most once, never twice ---------------------


async def test_a_take_whose_reply_is_lost_consumes_the_value_once_and_is_never_resent(
    via_proxy: RedisEphemeral, proxy: Proxy, redis_prefix: str
) -> None:
    # Attack: cut the link right after the take reached Redis, hoping the client resends it
    # (a second taker) or that the code stays redeemable although someone may have it.
    await via_proxy.one_time.put("code", "c1", b"grant", expires_at=NOW + 60)
    before = proxy.sent(TAKE_SHA)
    proxy.lose_reply_to(TAKE_SHA)
    with pytest.raises(StoreUnavailable) as lost:
        await via_proxy.one_time.take("code", "c1", now=NOW)
    assert lost.value.reason.startswith("redis:unreachable:")
    assert proxy.sent(TAKE_SHA) == before + 1  # sent once: no retry on the lost reply
    direct = await _direct(redis_prefix)
    try:
        assert await direct.one_time.take("code", "c1", now=NOW) is None  # consumed by Redis
    finally:
        await direct.aclose()
    # the same object recovers on the next call (a new connection)
    assert await via_proxy.one_time.take("code", "c1", now=NOW) is None
    await via_proxy.one_time.put("code", "c2", b"next", expires_at=NOW + 60)
    assert await via_proxy.one_time.take("code", "c2", now=NOW) == b"next"


async def test_a_hit_or_first_use_whose_reply_is_lost_counts_once(
    via_proxy: RedisEphemeral, proxy: Proxy
) -> None:
    # Attack: a link cut on every password attempt, hoping each attempt either goes
    # uncounted (unbounded guessing) or the client's resend counts it twice.
    for _ in range(3):
        proxy.lose_reply_to(HIT_SHA)
        with pytest.raises(StoreUnavailable):
            await via_proxy.rate_limits.hit("pw:acct:x", window=60, now=NOW)
    assert await via_proxy.rate_limits.peek("pw:acct:x", now=NOW) == (3, NOW + 60)
    proxy.lose_reply_to(FIRST_USE_SHA)
    with pytest.raises(StoreUnavailable):
        await via_proxy.replay.first_use("jti:x", expires_at=NOW + 60, now=NOW)
    assert await via_proxy.replay.seen("jti:x", now=NOW) is True  # recorded: a replay fails
    assert await via_proxy.replay.first_use("jti:x", expires_at=NOW + 60, now=NOW) is False


async def test_a_cancelled_call_never_hands_its_reply_to_the_next_one(
    proxy: Proxy, redis_prefix: str
) -> None:
    # Attack: make a call time out (a readiness probe's timeout cancels its ping) while its
    # reply is on the way, so that the next command on that pooled connection reads it:
    # a take answered with another code's value.
    ephemeral = RedisEphemeral(proxy.url, prefix=redis_prefix, max_connections=1)
    try:
        await _warm(ephemeral)
        await ephemeral.one_time.put("code", "a", b"value-of-a", expires_at=NOW + 60)
        await ephemeral.one_time.put("code", "b", b"value-of-b", expires_at=NOW + 60)
        proxy.delay = 0.3
        taking = asyncio.ensure_future(ephemeral.one_time.take("code", "a", now=NOW))
        await asyncio.sleep(0.1)
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking
        proxy.delay = 0.0
        assert await ephemeral.one_time.take("code", "b", now=NOW) == b"value-of-b"
        await ephemeral.ping()
        assert await ephemeral.one_time.take("code", "a", now=NOW) is None  # ran, once
    finally:
        await ephemeral.aclose()


# --- a failover: the old primary is now a read-only replica -----------------------------------


async def test_after_a_failover_writes_recover_without_a_restart(servers: RedisServers) -> None:
    # A managed Redis failover (ElastiCache, Sentinel behind a DNS name, a Kubernetes
    # Service): the name now leads to the promoted server, the old primary stays up as a
    # replica and keeps the connections it had.
    old = servers.start()
    new = servers.start()
    link = await Proxy(old).start()
    ephemeral = RedisEphemeral(link.url, prefix="p:", max_connections=3, socket_timeout=1.0)
    try:
        await asyncio.gather(
            *(ephemeral.rate_limits.hit(f"w{i}", window=60, now=NOW) for i in range(3))
        )
        import redis  # noqa: PLC0415

        demoted = redis.Redis(port=old)
        try:
            demoted.execute_command("REPLICAOF", "127.0.0.1", str(new))
        finally:
            demoted.close()
        link.target = new
        outcomes: list[str] = []
        for i in range(12):
            try:
                await ephemeral.one_time.put("login", f"t{i}", b"v", expires_at=NOW + 60)
                outcomes.append("ok")
            except StoreUnavailable as exc:
                outcomes.append(exc.reason)
        # at most one failure per pooled connection, then every write reaches the new primary
        assert outcomes[3:] == ["ok"] * 9, outcomes
    finally:
        await ephemeral.aclose()
        await link.aclose()


async def test_ping_fails_where_the_store_cannot_write(servers: RedisServers) -> None:
    primary = servers.start()
    replica = servers.start("--replicaof", "127.0.0.1", str(primary))
    ephemeral = RedisEphemeral(f"redis://127.0.0.1:{replica}/0", prefix="p:")
    try:
        with pytest.raises(StoreUnavailable):
            await ephemeral.one_time.put("login", "t", b"v", expires_at=NOW + 60)
        with pytest.raises(StoreUnavailable):
            await ephemeral.ping()
    finally:
        await ephemeral.aclose()


# --- numbers: far-future expiries, NaN, inf, huge costs ---------------------------------------


@pytest.mark.parametrize(
    ("operation", "life"),
    [("put", 1e16), ("first_use", 1e16), ("hit", 1e16), ("put", 1e307), ("hit", 1e307)],
)
async def test_a_far_future_expiry_is_stored_as_on_sql(
    redis_prefix: str, operation: str, life: float
) -> None:
    # Reachable from settings: AUTHBRIDGE_LOGIN_TRANSACTION_TTL / AUTHBRIDGE_PASSWORD_WINDOW
    # accept any finite number (see test_ephemeral_review_app.py).
    ephemeral = await _direct(redis_prefix)
    now = time.time()
    try:
        if operation == "put":
            await ephemeral.one_time.put("login", "far", b"v", expires_at=now + life)
            assert await ephemeral.one_time.take("login", "far", now=now) == b"v"
        elif operation == "first_use":
            assert await ephemeral.replay.first_use("far", expires_at=now + life, now=now)
            assert not await ephemeral.replay.first_use("far", expires_at=now + life, now=now)
        else:
            assert (await ephemeral.rate_limits.hit("far", window=life, now=now))[0] == 1
            assert (await ephemeral.rate_limits.hit("far", window=life, now=now))[0] == 2
    finally:
        await ephemeral.aclose()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
async def test_non_finite_times_are_refused_before_redis(
    proxy: Proxy, redis_prefix: str, bad: float
) -> None:
    ephemeral = RedisEphemeral(proxy.url, prefix=redis_prefix)
    try:
        sent = len(proxy._sent)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: ephemeral.one_time.put("k", "x", b"v", expires_at=bad),
            lambda: ephemeral.one_time.take("k", "x", now=bad),
            lambda: ephemeral.rate_limits.hit("x", window=60, now=bad),
            lambda: ephemeral.rate_limits.hit("x", window=bad, now=NOW),
            lambda: ephemeral.replay.first_use("x", expires_at=bad, now=NOW),
            lambda: ephemeral.replay.first_use("x", expires_at=NOW, now=bad),
        ]
        for call in calls:
            with pytest.raises(ValueError, match=r"finite|positive"):
                await call()
        assert len(proxy._sent) == sent  # nothing reached Redis
    finally:
        await ephemeral.aclose()


async def test_a_huge_cost_never_makes_a_negative_count(redis_prefix: str) -> None:
    ephemeral = await _direct(redis_prefix)
    try:
        try:
            count, _ = await ephemeral.rate_limits.hit("big", window=60, now=NOW, cost=2**70)
        except (ValueError, OverflowError):
            return  # refused before Redis: as good
        assert count >= 2**63 - 1
        assert (await ephemeral.rate_limits.hit("big", window=60, now=NOW))[0] >= 2**63 - 1
    finally:
        await ephemeral.aclose()


async def test_negative_costs_give_back_but_never_bank_credit(redis_prefix: str) -> None:
    # Attack: refunds (cost -1, as the password grant gives back a successful attempt)
    # racing attempts, or sent before any attempt, to drive the count below zero and buy
    # attempts in advance.
    ephemeral = RedisEphemeral(REDIS_URL, prefix=redis_prefix, max_connections=100)
    hits = ephemeral.rate_limits
    try:
        assert await hits.hit("fresh", window=60, now=NOW, cost=-5) == (0, NOW + 60)
        assert (await hits.hit("fresh", window=60, now=NOW))[0] == 1
        await hits.hit("k", window=60, now=NOW, cost=2)
        assert (await hits.hit("k", window=60, now=NOW, cost=-5))[0] == 0
        assert (await hits.hit("k", window=60, now=NOW))[0] == 1
        await hits.reset("k")
        counts = await asyncio.gather(
            *(hits.hit("k", window=60, now=NOW, cost=c) for c in [-1, 1] * 50)
        )
        assert all(count >= 0 for count, _ in counts)
        final = (await hits.peek("k", now=NOW))[0]
        assert 0 <= final <= 50
        # the final count is what the atomic steps say: every +1 that a -1 did not undo
        assert sorted({end for _, end in counts}) == [NOW + 60]
        # an ended window starts again at the new cost, never below 0
        assert await hits.hit("k", window=60, now=NOW + 60, cost=-1) == (0, NOW + 120)
    finally:
        await ephemeral.aclose()


# --- logical time and clock skew --------------------------------------------------------------


async def test_the_callers_time_decides_even_far_in_the_future_or_past(
    redis_prefix: str,
) -> None:
    ephemeral = await _direct(redis_prefix)
    try:
        await ephemeral.one_time.put("code", "k", b"v", expires_at=NOW + 60)
        assert await ephemeral.one_time.take("code", "k", now=NOW + 60) is None  # at expiry
        assert await ephemeral.one_time.take("code", "k", now=1e15) is None
        assert await ephemeral.one_time.take("code", "k", now=NOW + 59.999) == b"v"
        # a caller far in the past sees a record as live; far in the future, as gone
        assert await ephemeral.replay.first_use("r", expires_at=NOW + 60, now=NOW)
        assert not await ephemeral.replay.first_use("r", expires_at=NOW + 60, now=0.0)
        assert await ephemeral.replay.seen("r", now=-1e12)
        assert not await ephemeral.replay.seen("r", now=1e15)
        assert await ephemeral.replay.first_use("r", expires_at=1e15 + 1, now=1e15)
        assert not await ephemeral.replay.first_use("r", expires_at=NOW + 60, now=NOW)
    finally:
        await ephemeral.aclose()


async def test_a_writer_clock_ahead_by_less_than_the_grace_never_frees_a_replay_early(
    redis_prefix: str,
) -> None:
    # Attack: replay a client assertion on an instance whose clock is right, after it was
    # recorded by an instance whose clock runs ahead (its relative TTL is counted from its
    # own, later, "now"). The grace (gc_grace, 60 s by default) is what covers the skew;
    # here scaled down: 0.3 s of grace, a writer 0.2 s ahead.
    ahead = RedisEphemeral(REDIS_URL, prefix=redis_prefix, gc_grace=0.3)
    right = RedisEphemeral(REDIS_URL, prefix=redis_prefix, gc_grace=0.3)
    try:
        start = time.time()
        expires = start + 0.4
        assert await ahead.replay.first_use("jti:a", expires_at=expires, now=start + 0.2)
        await asyncio.sleep(max(0.0, start + 0.35 - time.time()))
        now = time.time()
        assert now < expires
        assert not await right.replay.first_use("jti:a", expires_at=expires, now=now)
    finally:
        await ahead.aclose()
        await right.aclose()


# --- key names: kinds, keys and prefixes ------------------------------------------------------


ADVERSARIAL_PAIRS = [
    (("code", "a:b"), ("code:a", "b")),
    (("co", "de:a"), ("code", "a")),
    (("login", "*"), ("login", "x")),
    (("login", "k\r\n*1\r\n$8\r\nFLUSHALL"), ("login", "k")),
    (("login", "\u00e9"), ("login", "\u0065\u0301")),
    (("a.b", "c"), ("a", ".b:c")),
]


@pytest.mark.parametrize(("first", "second"), ADVERSARIAL_PAIRS)
async def test_a_one_time_key_never_reaches_another_kinds_or_keys_value(
    redis_prefix: str, first: tuple[str, str], second: tuple[str, str]
) -> None:
    ephemeral = await _direct(redis_prefix)
    try:
        await ephemeral.one_time.put(*first, b"first", expires_at=NOW + 60)
        try:
            await ephemeral.one_time.put(*second, b"second", expires_at=NOW + 60)
        except ValueError:
            assert ":" in second[0]  # a kind is a label: no ':' to forge a boundary with
            return
        assert await ephemeral.one_time.take(*second, now=NOW) == b"second"
        assert await ephemeral.one_time.take(*first, now=NOW) == b"first"
        await ephemeral.ping()  # the protocol-looking key was one argument, nothing more
    finally:
        await ephemeral.aclose()


async def test_nested_prefixes_of_two_apps_keep_their_state_apart() -> None:
    # Two apps on one Redis database: production under "P" and staging under "P" + "staging:"
    # (one prefix extends the other). Neither sees the other's codes, counters or records,
    # whatever keys their callers pass.
    require_redis()
    base = new_redis_prefix()
    production = RedisEphemeral(REDIS_URL, prefix=base)
    staging = RedisEphemeral(REDIS_URL, prefix=base + "staging:")
    try:
        await staging.one_time.put("code", "k", b"staging", expires_at=NOW + 60)
        await staging.rate_limits.hit("ot:code:k", window=60, now=NOW)
        await staging.replay.first_use("at:j", expires_at=NOW + 60, now=NOW)
        assert await production.one_time.take("code", "k", now=NOW) is None
        assert await production.one_time.take("staging", "ot:code:k", now=NOW) is None
        assert await production.rate_limits.peek("ot:code:k", now=NOW) == (0, NOW)
        assert await production.rate_limits.peek("staging:rl:ot:code:k", now=NOW) == (0, NOW)
        assert not await production.replay.seen("at:j", now=NOW)
        assert await staging.one_time.take("code", "k", now=NOW) == b"staging"
    finally:
        await production.aclose()
        await staging.aclose()
        delete_redis_prefix(base)
