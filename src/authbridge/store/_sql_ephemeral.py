"""Short-lived shared state in SQL TTL tables: one-time values, rate limits, replay cache.

Each race is decided by one statement, run as its own transaction:
``DELETE ... RETURNING`` for a take, ``INSERT ... ON CONFLICT DO UPDATE ...
RETURNING`` for counters and first uses (both dialects), so two concurrent
calls, in one process or in two, never both win.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Double, Integer, bindparam, case, delete, select

from . import _models as m
from ._sql_db import Database

_one_time = m.one_time
_limits = m.rate_limits
_replay = m.replay

# Built once (per dialect, for the INSERTs): executing the same statement object
# reuses its cache key and compiled form.
_TAKE = (
    delete(_one_time)
    .where(
        _one_time.c.kind == bindparam("k"),
        _one_time.c.key == bindparam("key_"),
        _one_time.c.expires_at > bindparam("now"),
    )
    .returning(_one_time.c.value)
)
_PEEK = select(_limits.c.count, _limits.c.window_end).where(
    _limits.c.key == bindparam("key_"), _limits.c.window_end > bindparam("now")
)
_SEEN = select(_replay.c.key).where(
    _replay.c.key == bindparam("key_"), _replay.c.expires_at > bindparam("now")
)


def _hit_statement(db: Database) -> Any:
    now: Any = bindparam("now", type_=Double())
    first = bindparam("first", type_=Integer())  # a negative cost gives back, never below 0
    end: Any = bindparam("end", type_=Double())
    ended = _limits.c.window_end <= now
    added = _limits.c.count + bindparam("cost", type_=Integer())
    statement = db.insert(_limits).values(key=bindparam("key_"), count=first, window_end=end)
    return statement.on_conflict_do_update(
        index_elements=[_limits.c.key],
        set_={
            "count": case((ended, first), (added < 0, 0), else_=added),
            "window_end": case((ended, end), else_=_limits.c.window_end),
        },
    ).returning(_limits.c.count, _limits.c.window_end)


def _first_use_statement(db: Database) -> Any:
    statement = db.insert(_replay).values(key=bindparam("key_"), expires_at=bindparam("until"))
    return statement.on_conflict_do_update(
        index_elements=[_replay.c.key],
        set_={"expires_at": statement.excluded.expires_at},
        where=_replay.c.expires_at <= bindparam("now", type_=Double()),  # expired: absent
    ).returning(_replay.c.key)


class SQLOneTime:
    """Single-use values by kind and key ([OneTimeStore][authbridge.store.OneTimeStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, kind: str, key: str, value: bytes, *, expires_at: float) -> None:
        """Store a value; `Conflict` if (kind, key) exists."""
        await self._db.change(
            _one_time.insert().values(kind=kind, key=key, value=bytes(value), expires_at=expires_at)
        )

    async def take(self, kind: str, key: str, *, now: float) -> bytes | None:
        """Remove and return the value if present and unexpired; one taker at most gets it."""
        row = (await self._db.change(_TAKE, {"k": kind, "key_": key, "now": now})).row
        return None if row is None else bytes(row.value)

    async def purge(self, now: float) -> int:
        """Delete expired values; how many."""
        result = await self._db.change(delete(_one_time).where(_one_time.c.expires_at <= now))
        return int(result.rowcount)


class SQLRateLimits:
    """Fixed-window counters ([RateLimitStore][authbridge.store.RateLimitStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._hit = _hit_statement(db)

    async def hit(self, key: str, *, window: float, now: float, cost: int = 1) -> tuple[int, float]:
        """Add ``cost`` in the current window; the count after it and the window's end.

        A negative ``cost`` gives attempts back (the count never goes below 0).
        """
        if not window > 0:
            raise ValueError("window must be a positive number of seconds")
        params = {"key_": key, "now": now, "first": max(cost, 0), "cost": cost, "end": now + window}
        row = (await self._db.change(self._hit, params)).row
        if row is None:  # pragma: no cover - an upsert with RETURNING always returns its row
            raise AssertionError("the counter's row was not returned")
        return int(row[0]), float(row[1])

    async def peek(self, key: str, *, now: float) -> tuple[int, float]:
        """The current count and window end (0 and ``now`` when none)."""
        row = await self._db.first(_PEEK, {"key_": key, "now": now})
        # (by position: a row's ``count`` is the tuple method)
        return (0, now) if row is None else (int(row[0]), float(row[1]))

    async def reset(self, key: str) -> None:
        """Forget the counter of ``key``."""
        await self._db.change(delete(_limits).where(_limits.c.key == key))

    async def purge(self, now: float) -> int:
        """Delete ended windows; how many."""
        result = await self._db.change(delete(_limits).where(_limits.c.window_end <= now))
        return int(result.rowcount)


class SQLReplay:
    """Values usable once until they expire ([ReplayStore][authbridge.store.ReplayStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._first_use = _first_use_statement(db)

    async def first_use(self, key: str, *, expires_at: float, now: float) -> bool:
        """Record ``key`` until ``expires_at``; ``True`` only for the first use."""
        params = {"key_": key, "until": expires_at, "now": now}
        return (await self._db.change(self._first_use, params)).row is not None

    async def seen(self, key: str, *, now: float) -> bool:
        """Whether ``key`` is recorded and not expired."""
        return await self._db.first(_SEEN, {"key_": key, "now": now}) is not None

    async def purge(self, now: float) -> int:
        """Delete expired records; how many."""
        result = await self._db.change(delete(_replay).where(_replay.c.expires_at <= now))
        return int(result.rowcount)
