"""Short-lived shared state in Redis: one-time values, rate limits, replay records.

[RedisEphemeral][authbridge.store.RedisEphemeral] implements the three
ephemeral aggregates of the store with redis-py's asyncio client; a
[CompositeStore][authbridge.store.CompositeStore] puts it next to a SQL store
for everything durable.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, StoreUnavailable
from . import _redis_scripts as scripts
from ._protocols import OneTimeStore, RateLimitStore, ReplayStore
from ._records import Conflict

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

MAX_KEY_BYTES = 512
"""Longest key accepted (UTF-8 bytes): callers pass hashes and short labelled ids."""

_KIND = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""A one-time value's kind: a short label of the caller's (``code``, ``login``...)."""

_PREFIX_BYTES = 128

_ERROR_CODE = re.compile(r"[A-Z]{2,20}")
"""A Redis error reply's code (``READONLY``, ``OOM``, ``NOPERM``...): safe to log."""

MAX_TTL_MS = 10 * 365 * 86_400 * 1000
"""Longest garbage-collection TTL set on a key (10 years): the expiry itself is logical,
so a longer life is kept as stored, only collected earlier (Redis refuses huge TTLs)."""

MAX_COST = 2**53
"""Largest ``|cost|`` of a rate-limit hit: counts stay exact integers in Lua's doubles."""


class _Connection:
    """The client and scripts shared by the three aggregates of one RedisEphemeral."""

    def __init__(
        self, url: str, *, max_connections: int, socket_timeout: float, gc_grace: float
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401, PLC0415 - an optional extra
        except ImportError:
            raise ConfigurationError(
                "store_needs_redis_extra",
                message="a Redis store needs redis-py: pip install 'authbridge[redis]'",
            ) from None
        self._url = url  # never shown: it may hold the password
        self._max_connections = max_connections
        self._socket_timeout = socket_timeout
        self.gc_grace = gc_grace
        self._open()
        kwargs = self.pool.connection_kwargs
        self.where = (
            f"path={kwargs['path']!r}"
            if "path" in kwargs
            else f"host={kwargs.get('host', 'localhost')!r}, port={kwargs.get('port', 6379)}"
        ) + f", db={kwargs.get('db', 0)}"

    def _open(self) -> None:
        """A new pool, client and scripts (nothing connects yet; bound to no event loop)."""
        import redis.asyncio as aioredis  # noqa: PLC0415
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.exceptions import ReadOnlyError  # noqa: PLC0415

        timeout = self._socket_timeout
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url,
                max_connections=self._max_connections,
                timeout=timeout,  # waiting for a free connection
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                socket_keepalive=True,
                # A command is sent once: a lost reply is an error, never a resend
                # (a resent take, hit or put would not be the same call).
                retry=Retry(NoBackoff(), 0),
                # READONLY: a primary demoted to a replica by a failover. That connection
                # is dropped (zero retries: the command is not resent), so the next one
                # opened reaches whatever the address now leads to.
                retry_on_error=[ReadOnlyError],
                protocol=2,
                health_check_interval=0,
                decode_responses=False,
            )
        except (ValueError, TypeError):
            # The exception's text may hold the URL: not kept.
            raise ConfigurationError(
                "unsupported_redis_url",
                message="use redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS) "
                "or unix:///PATH",
            ) from None
        self.pool = pool
        self.client: Redis = aioredis.Redis(connection_pool=pool)
        self.take: AsyncScript = self.client.register_script(scripts.TAKE)
        self.hit: AsyncScript = self.client.register_script(scripts.HIT)
        self.first_use: AsyncScript = self.client.register_script(scripts.FIRST_USE)

    async def reopen(self) -> None:
        """Close every connection and start a new pool (usable from another event loop)."""
        pool = self.pool
        self._open()
        await pool.disconnect()

    def ttl_ms(self, seconds: float) -> int:
        """A garbage-collection TTL for a value living ``seconds`` more.

        At least 1 ms and at most [MAX_TTL_MS][authbridge.store._redis.MAX_TTL_MS]; the
        callers have checked ``seconds`` is finite (a NaN is refused here too).
        """
        total = max(float(seconds), 0.0) + self.gc_grace
        if not math.isfinite(total):
            raise ValueError("a lifetime must be a finite number of seconds")
        if total * 1000 >= MAX_TTL_MS:
            return MAX_TTL_MS
        return max(1, math.ceil(total * 1000))


def _unavailable(exc: BaseException) -> StoreUnavailable:
    """The store error for a redis-py failure: its kind and class, no text of it."""
    from redis import exceptions as e  # noqa: PLC0415 - the extra is installed (it raised)

    name = type(exc).__name__
    if isinstance(exc, e.TimeoutError | TimeoutError):
        kind = "timeout"
    elif isinstance(exc, e.AuthenticationError | e.AuthorizationError):
        kind = "refused"
    elif isinstance(exc, e.BusyLoadingError):
        kind = "loading"
    elif isinstance(exc, e.ConnectionError) and isinstance(exc.__cause__, TimeoutError):
        kind = "busy"  # every pooled connection stayed in use for the whole timeout
    elif isinstance(exc, e.ConnectionError | OSError):
        kind = "unreachable"
    elif isinstance(exc, e.ResponseError):
        words = str(exc).split(maxsplit=1)
        code = words[0] if words else ""
        kind = "redis_error"
        name = code if _ERROR_CODE.fullmatch(code) else name
    else:
        kind = "redis_error"
    return StoreUnavailable(f"redis:{kind}:{name}")


@contextmanager
def _mapped() -> Iterator[None]:
    """Turn every Redis or socket failure into `StoreUnavailable` (no URL, no password)."""
    from redis.exceptions import RedisError  # noqa: PLC0415

    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise _unavailable(exc) from None


def _key_bytes(key: str) -> bytes:
    if not isinstance(key, str):
        raise TypeError("store keys are strings")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("store keys must be valid Unicode text") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise ValueError(f"store keys are at most {MAX_KEY_BYTES} bytes (callers pass hashes)")
    return encoded


def _time(value: float, name: str) -> str:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number of seconds")
    return repr(number)


class RedisOneTime:
    """Single-use values in Redis ([OneTimeStore][authbridge.store.OneTimeStore])."""

    def __init__(self, connection: _Connection, prefix: bytes) -> None:
        self._c = connection
        self._prefix = prefix + b"ot:"

    def _name(self, kind: str, key: str) -> bytes:
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise ValueError("a one-time kind is 1 to 64 letters, digits or '_.-'")
        return self._prefix + kind.encode("ascii") + b":" + _key_bytes(key)

    async def put(self, kind: str, key: str, value: bytes, *, expires_at: float) -> None:
        """Store a value; `Conflict` if (kind, key) exists (even expired, as in SQL)."""
        name = self._name(kind, key)
        stored = _time(expires_at, "expires_at").encode("ascii") + b"|" + bytes(value)
        ttl = self._c.ttl_ms(float(expires_at) - time.time())
        with _mapped():
            written = await self._c.client.set(name, stored, nx=True, px=ttl)
        if not written:
            raise Conflict("a record with this key exists")

    async def take(self, kind: str, key: str, *, now: float) -> bytes | None:
        """Remove and return the value if present and unexpired; one taker at most gets it."""
        name = self._name(kind, key)
        with _mapped():
            value = await self._c.take(keys=[name], args=[_time(now, "now")])
        return None if value is None else bytes(value)

    async def purge(self, now: float) -> int:
        """Nothing to do: Redis deletes each value at the end of its TTL. Returns 0."""
        return 0


class RedisRateLimits:
    """Fixed-window counters in Redis ([RateLimitStore][authbridge.store.RateLimitStore])."""

    def __init__(self, connection: _Connection, prefix: bytes) -> None:
        self._c = connection
        self._prefix = prefix + b"rl:"

    async def hit(self, key: str, *, window: float, now: float, cost: int = 1) -> tuple[int, float]:
        """Add ``cost`` in the current window; the count after it and the window's end.

        A negative ``cost`` gives attempts back (the count never goes below 0).
        """
        if not window > 0 or not math.isfinite(window):
            raise ValueError("window must be a positive number of seconds")
        if not -MAX_COST <= int(cost) <= MAX_COST:
            raise ValueError(f"cost must be between -2**53 and 2**53 ({MAX_COST})")
        name = self._prefix + _key_bytes(key)
        args: list[str | int] = [_time(now, "now"), int(cost), _time(now + window, "window")]
        args.append(self._c.ttl_ms(window))
        with _mapped():
            count, ends = await self._c.hit(keys=[name], args=args)
        return int(count), float(ends)

    async def peek(self, key: str, *, now: float) -> tuple[int, float]:
        """The current count and window end (0 and ``now`` when none)."""
        name = self._prefix + _key_bytes(key)
        with _mapped():
            count, ends = await self._c.client.hmget(name, ["c", "e"])
        if ends is None or count is None or not float(ends) > now:
            return 0, now
        return int(count), float(ends)

    async def reset(self, key: str) -> None:
        """Forget the counter of ``key``."""
        name = self._prefix + _key_bytes(key)
        with _mapped():
            await self._c.client.delete(name)

    async def purge(self, now: float) -> int:
        """Nothing to do: Redis deletes each window at the end of its TTL. Returns 0."""
        return 0


class RedisReplay:
    """Values usable once until they expire, in Redis
    ([ReplayStore][authbridge.store.ReplayStore])."""

    def __init__(self, connection: _Connection, prefix: bytes) -> None:
        self._c = connection
        self._prefix = prefix + b"rp:"

    async def first_use(self, key: str, *, expires_at: float, now: float) -> bool:
        """Record ``key`` until ``expires_at``; ``True`` only for the first use."""
        name = self._prefix + _key_bytes(key)
        args = [_time(expires_at, "expires_at"), _time(now, "now")]
        ttl = self._c.ttl_ms(float(expires_at) - float(now))
        with _mapped():
            first = await self._c.first_use(keys=[name], args=[*args, ttl])
        return bool(first)

    async def seen(self, key: str, *, now: float) -> bool:
        """Whether ``key`` is recorded and not expired."""
        name = self._prefix + _key_bytes(key)
        with _mapped():
            until = await self._c.client.get(name)
        return until is not None and float(until) > now

    async def purge(self, now: float) -> int:
        """Nothing to do: Redis deletes each record at the end of its TTL. Returns 0."""
        return 0


class RedisEphemeral:
    """The store's short-lived shared state in Redis, for several instances of an app.

    One-time values (login transactions, authorization and relay codes), rate-limit
    windows and replay records (client-assertion ``jti``...), with the same
    contract as the SQL store's TTL tables: each race (a take, a hit, a first
    use) is one Lua script, atomic across every instance. Expiry is decided by
    the caller's ``now`` (the time stored with each value is compared with
    it); a relative Redis TTL, ``gc_grace`` seconds longer than the value's
    life, only collects the garbage, so memory stays bounded without any
    ``purge`` (so `purge` has nothing to do and counts 0). Values are bytes;
    key names are the prefix, the aggregate, the kind (a label of letters,
    digits and ``_.-``, at most 64) and the caller's key (at most 512 bytes of
    UTF-8: callers pass hashes; longer keys raise `ValueError`).

    A restart of a Redis without persistence loses what is in it: logins in
    progress and codes not yet redeemed (users start again), the current
    rate-limit windows (they restart from 0) and the replay records of
    client assertions (a client assertion can be replayed within its own
    few minutes of life). Nothing durable is lost.

    Durable facts do not belong here: use a
    [CompositeStore][authbridge.store.CompositeStore] (or
    ``open_store(url, redis=...)``), which keeps accounts, clients, refresh
    families, keys and revocations in SQL.

    Every command is sent once (never resent after a lost reply). A call fails
    with [StoreUnavailable][authbridge.store.StoreUnavailable] (reason
    ``redis:<kind>:<class>``, e.g. ``redis:unreachable:ConnectionError``; never the
    URL or its password) within about ``socket_timeout`` when Redis is down or
    stalls (at most three times that when the pool is also full and the
    connection must be opened). A pooled connection that Redis closed is
    replaced at its next use, so the same object works again once Redis is back;
    one answered ``READONLY`` (a primary demoted by a failover) is dropped, so
    the next call reaches whatever the address now leads to. A lifetime above
    10 years is kept as stored (the expiry is logical) but collected after 10
    years; a rate-limit ``cost`` is at most 2**53 either way.
    Use one event loop between the first call and
    [aclose][authbridge.store.RedisEphemeral.aclose] (after it, any).

    Example:
        ```python
        store = CompositeStore(
            SQLStore("postgresql+asyncpg://app@db/app"),
            RedisEphemeral("redis://:PASSWORD@redis:6379/0"),
        )
        ```

    Args:
        url: ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]``, ``rediss://`` (TLS)
            or ``unix:///PATH?db=0``.
        prefix: Put before every key name: instances of one app share it; apps
            sharing one Redis database need distinct ones.
        max_connections: Most connections open at once; a call waits up to
            ``socket_timeout`` for a free one.
        socket_timeout: Seconds to connect, to wait for a reply, and to wait
            for a free connection.
        gc_grace: Seconds each key outlives its logical expiry in Redis (clock
            differences between instances; the expiry itself is logical).

    Raises:
        ConfigurationError: not a Redis URL (``unsupported_redis_url``), or
            redis-py is not installed (``store_needs_redis_extra``).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "authbridge:",
        max_connections: int = 50,
        socket_timeout: float = 2.0,
        gc_grace: float = 60.0,
    ) -> None:
        if not isinstance(prefix, str) or len(prefix.encode("utf-8")) > _PREFIX_BYTES:
            raise ConfigurationError(
                "invalid_redis_prefix",
                message=f"prefix must be text of at most {_PREFIX_BYTES} bytes",
            )
        if max_connections < 1 or not socket_timeout > 0 or not gc_grace >= 0:
            raise ConfigurationError(
                "invalid_redis_settings",
                message="need max_connections >= 1, socket_timeout > 0 and gc_grace >= 0",
            )
        self.prefix = prefix
        self._c = _Connection(
            url,
            max_connections=max_connections,
            socket_timeout=float(socket_timeout),
            gc_grace=float(gc_grace),
        )
        encoded = prefix.encode("utf-8")
        self._health = encoded + b"health"
        self.one_time: OneTimeStore = RedisOneTime(self._c, encoded)
        self.rate_limits: RateLimitStore = RedisRateLimits(self._c, encoded)
        self.replay: ReplayStore = RedisReplay(self._c, encoded)

    def __repr__(self) -> str:
        return f"RedisEphemeral({self._c.where}, prefix={self.prefix!r})"

    async def start(self) -> None:
        """Check Redis answers (connections open lazily; nothing to migrate).

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        await self.ping()

    async def aclose(self) -> None:
        """Close every connection (the object reconnects if used again, in any event loop)."""
        with _mapped():
            await self._c.reopen()

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless Redis accepts a write now.

        The probe is a write command (``DEL <prefix>health``, a key never
        stored: it leaves nothing behind), so a read-only replica (a primary
        demoted by a failover) fails it as every take, hit and put would
        (``redis:redis_error:READONLY``).

        Raises:
            StoreUnavailable: Redis cannot be reached, stalls, refuses or cannot write.
        """
        with _mapped():
            await self._c.client.delete(self._health)

    async def purge(self, now: float) -> int:
        """Nothing to do: Redis deletes every key at the end of its TTL. Returns 0."""
        return 0
