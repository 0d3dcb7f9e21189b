"""Short-lived shared state in SQL TTL tables: one-time values, rate limits, replay cache.

Each race is decided by one statement: ``DELETE ... RETURNING`` for a take,
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` for counters and first uses
(both dialects), so two concurrent calls, in one process or in two, never both
win.
"""

from __future__ import annotations

from sqlalchemy import case, delete, select

from . import _models as m
from ._sql_db import Database

_one_time = m.one_time
_limits = m.rate_limits
_replay = m.replay


class SQLOneTime:
    """Single-use values by kind and key ([OneTimeStore][authbridge.store.OneTimeStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, kind: str, key: str, value: bytes, *, expires_at: float) -> None:
        """Store a value; `Conflict` if (kind, key) exists."""
        async with self._db.write() as conn:
            await conn.execute(
                _one_time.insert().values(
                    kind=kind, key=key, value=bytes(value), expires_at=expires_at
                )
            )

    async def take(self, kind: str, key: str, *, now: float) -> bytes | None:
        """Remove and return the value if present and unexpired; one taker at most gets it."""
        async with self._db.write() as conn:
            row = (
                await conn.execute(
                    delete(_one_time)
                    .where(
                        _one_time.c.kind == kind,
                        _one_time.c.key == key,
                        _one_time.c.expires_at > now,
                    )
                    .returning(_one_time.c.value)
                )
            ).first()
        return None if row is None else bytes(row.value)

    async def purge(self, now: float) -> int:
        """Delete expired values; how many."""
        async with self._db.write() as conn:
            result = await conn.execute(delete(_one_time).where(_one_time.c.expires_at <= now))
        return int(result.rowcount)


class SQLRateLimits:
    """Fixed-window counters ([RateLimitStore][authbridge.store.RateLimitStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def hit(self, key: str, *, window: float, now: float, cost: int = 1) -> tuple[int, float]:
        """Add ``cost`` in the current window; the count after it and the window's end.

        A negative ``cost`` gives attempts back (the count never goes below 0).
        """
        if not window > 0:
            raise ValueError("window must be a positive number of seconds")
        ended = _limits.c.window_end <= now
        first = max(cost, 0)  # a negative cost gives attempts back, never below 0
        added = _limits.c.count + cost
        statement = self._db.insert(_limits).values(key=key, count=first, window_end=now + window)
        statement = statement.on_conflict_do_update(
            index_elements=[_limits.c.key],
            set_={
                "count": case((ended, first), (added < 0, 0), else_=added),
                "window_end": case((ended, now + window), else_=_limits.c.window_end),
            },
        ).returning(_limits.c.count, _limits.c.window_end)
        async with self._db.write() as conn:
            count, window_end = (await conn.execute(statement)).one()
        return int(count), float(window_end)

    async def peek(self, key: str, *, now: float) -> tuple[int, float]:
        """The current count and window end (0 and ``now`` when none)."""
        query = select(_limits.c.count, _limits.c.window_end).where(
            _limits.c.key == key, _limits.c.window_end > now
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        # (by position: a row's ``count`` is the tuple method)
        return (0, now) if row is None else (int(row[0]), float(row[1]))

    async def reset(self, key: str) -> None:
        """Forget the counter of ``key``."""
        async with self._db.write() as conn:
            await conn.execute(delete(_limits).where(_limits.c.key == key))

    async def purge(self, now: float) -> int:
        """Delete ended windows; how many."""
        async with self._db.write() as conn:
            result = await conn.execute(delete(_limits).where(_limits.c.window_end <= now))
        return int(result.rowcount)


class SQLReplay:
    """Values usable once until they expire ([ReplayStore][authbridge.store.ReplayStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def first_use(self, key: str, *, expires_at: float, now: float) -> bool:
        """Record ``key`` until ``expires_at``; ``True`` only for the first use."""
        statement = self._db.insert(_replay).values(key=key, expires_at=expires_at)
        statement = statement.on_conflict_do_update(
            index_elements=[_replay.c.key],
            set_={"expires_at": statement.excluded.expires_at},
            where=_replay.c.expires_at <= now,  # an expired record counts as absent
        ).returning(_replay.c.key)
        async with self._db.write() as conn:
            row = (await conn.execute(statement)).first()
        return row is not None

    async def seen(self, key: str, *, now: float) -> bool:
        """Whether ``key`` is recorded and not expired."""
        query = select(_replay.c.key).where(_replay.c.key == key, _replay.c.expires_at > now)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return row is not None

    async def purge(self, now: float) -> int:
        """Delete expired records; how many."""
        async with self._db.write() as conn:
            result = await conn.execute(delete(_replay).where(_replay.c.expires_at <= now))
        return int(result.rowcount)
