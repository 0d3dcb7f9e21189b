"""A store of two backends: durable records in SQL, short-lived shared state in Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import StoreUnavailable
from . import _sql
from ._protocols import (
    ClientStore,
    IdentityStore,
    OneTimeStore,
    RateLimitStore,
    RefreshStore,
    ReplayStore,
    SessionStore,
    SigningKeyStore,
    Store,
    UserStore,
)
from ._redis import RedisEphemeral

DURABLE_REPLAY_PREFIXES = ("at:", "dg:")
"""Replay keys that record revocations (of an access token by ``jti``, of a delegation
by id): durable facts, kept in the durable store's replay table, never in Redis."""


class SplitReplay:
    """A [ReplayStore][authbridge.store.ReplayStore] over two: revocations
    (keys starting with ``at:`` or ``dg:``) in the durable one, every other key
    (client-assertion ``jti``, code markers...) in the ephemeral one."""

    def __init__(self, durable: ReplayStore, ephemeral: ReplayStore) -> None:
        self.durable = durable
        self.ephemeral = ephemeral

    def _for(self, key: str) -> ReplayStore:
        return self.durable if key.startswith(DURABLE_REPLAY_PREFIXES) else self.ephemeral

    async def first_use(self, key: str, *, expires_at: float, now: float) -> bool:
        """Record ``key`` until ``expires_at`` where it belongs; ``True`` only for the first use."""
        return await self._for(key).first_use(key, expires_at=expires_at, now=now)

    async def seen(self, key: str, *, now: float) -> bool:
        """Whether ``key`` is recorded and not expired (asked where it belongs)."""
        return await self._for(key).seen(key, now=now)

    async def purge(self, now: float) -> int:
        """Delete expired records of both; how many."""
        return await self.durable.purge(now) + await self.ephemeral.purge(now)


class CompositeStore:
    """A [Store][authbridge.store.Store] for several instances: SQL for what must last,
    Redis for what is short-lived and hot.

    From ``durable`` (a [SQLStore][authbridge.store.SQLStore] on PostgreSQL, or any
    store): users, identities, sessions, clients, refresh families (rotation is a
    compare-and-set there, so no lock is needed), signing keys, delegations,
    and the revocations recorded in ``replay`` (keys ``at:``/``dg:``). From
    ``ephemeral`` ([RedisEphemeral][authbridge.store.RedisEphemeral]): one-time
    values (login transactions, codes), rate-limit windows, and every other
    replay record (client-assertion ``jti``...). A Redis restart without
    persistence loses in-flight logins and unredeemed codes, the current
    rate-limit windows and those replay records, never an account, a grant or
    a revocation.

    [open_store][authbridge.store.open_store] builds one from two URLs:
    ``open_store("postgresql+asyncpg://...", redis="redis://...")``.

    Attributes:
        durable: The durable store.
        ephemeral: The Redis side.

    Args:
        durable: Where durable records live (started, closed and purged with this store).
        ephemeral: Where short-lived shared state lives (the same).
    """

    delegations: Any
    """The durable store's delegations (present when it has them)."""

    def __init__(self, durable: Store, ephemeral: RedisEphemeral) -> None:
        self.durable = durable
        self.ephemeral = ephemeral
        self.users: UserStore = durable.users
        self.identities: IdentityStore = durable.identities
        self.sessions: SessionStore = durable.sessions
        self.clients: ClientStore = durable.clients
        self.refresh: RefreshStore = durable.refresh
        self.keys: SigningKeyStore = durable.keys
        delegations = getattr(durable, "delegations", None)
        if delegations is not None:
            self.delegations = delegations
        self.one_time: OneTimeStore = ephemeral.one_time
        self.rate_limits: RateLimitStore = ephemeral.rate_limits
        self.replay: ReplayStore = SplitReplay(durable.replay, ephemeral.replay)

    def __repr__(self) -> str:
        return f"CompositeStore({self.durable!r}, {self.ephemeral!r})"

    async def start(self) -> None:
        """Start the durable store (migrating it when configured), then check Redis answers.

        Raises:
            StoreUnavailable: either cannot be reached (the reason names Redis
                as ``redis:...``).
            ConfigurationError: the durable store's schema is outdated and
                migration is off.
        """
        await self.durable.start()
        try:
            await self.ephemeral.start()
        except BaseException:
            await self.durable.aclose()  # no pool left open behind a refused start
            raise

    async def aclose(self) -> None:
        """Close the connections of both."""
        try:
            await self.ephemeral.aclose()
        finally:
            await self.durable.aclose()

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless both answer now (asked at once).

        Raises:
            StoreUnavailable: its reason says which failed:
                ``database:<reason>``, ``redis:<reason>``, or both, comma-separated.
        """
        results = await asyncio.gather(
            self.durable.ping(), self.ephemeral.ping(), return_exceptions=True
        )
        failed: list[str] = []
        for side, result in zip(("database", "redis"), results, strict=True):
            if isinstance(result, StoreUnavailable):
                reason = result.reason
                failed.append(reason if reason.startswith(side + ":") else f"{side}:{reason}")
            elif isinstance(result, BaseException):
                raise result
        if failed:
            raise StoreUnavailable(",".join(failed))

    async def purge(self, now: float) -> int:
        """Delete every expired row of the durable store (Redis expires its keys itself);
        how many."""
        return await self.durable.purge(now) + await self.ephemeral.purge(now)


def open_store(
    url_or_store: str | Store,
    *,
    migrate: bool = True,
    redis: str | None = None,
    redis_prefix: str = "authbridge:",
) -> Store:
    """A store from a database URL (and a Redis URL), or the store given.

    Without ``redis``: a [SQLStore][authbridge.store.SQLStore] for a URL, or the
    store given, as it is. With ``redis``: a
    [CompositeStore][authbridge.store.CompositeStore] of that and a
    [RedisEphemeral][authbridge.store.RedisEphemeral] on ``redis``. Nothing
    connects until the store's ``start()``.

    Example:
        ```python
        store = open_store(
            "postgresql+asyncpg://app@db/app", redis="redis://:PASSWORD@redis:6379/0"
        )
        ```

    Args:
        url_or_store: A database URL, or any object implementing
            [Store][authbridge.store.Store].
        migrate: For a database URL: whether ``start()`` upgrades the schema.
        redis: A Redis URL (``redis://``, ``rediss://``, ``unix://``) for the
            short-lived shared state.
        redis_prefix: Put before every Redis key name (apps sharing one Redis
            database need distinct ones).

    Raises:
        ConfigurationError: an unsupported URL, or the driver's extra missing
            (``authbridge[postgres]``, ``authbridge[redis]``).
    """
    durable = _sql.open_store(url_or_store, migrate=migrate)
    if redis is None:
        return durable
    return CompositeStore(durable, RedisEphemeral(redis, prefix=redis_prefix))
