"""Browser sessions in SQL.

Every step is one statement, run as its own transaction: a read checks both
expiries in its ``WHERE``; a touch is a conditional ``UPDATE`` (live, and last
seen at least the interval ago) whose row count says whether it wrote, so a
busy session is written at most once per interval whatever the instances; an
end is ``DELETE ... RETURNING`` (the record, for the provider's logout).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Double, bindparam, case, delete, select, update

from . import _models as m
from ._records import SessionRecord
from ._sql_codec import json_object, to_json
from ._sql_db import Database

_sessions = m.sessions

# Built once: executing the same statement object reuses its cache key and compiled form.
_NOW: Any = bindparam("now", type_=Double())
_LIVE = (_sessions.c.idle_expires_at > _NOW, _sessions.c.expires_at > _NOW)
_GET = select(_sessions).where(_sessions.c.id_hash == bindparam("h"), *_LIVE)
_IDLE: Any = bindparam("idle", type_=Double())
_TOUCH = (
    update(_sessions)
    .where(
        _sessions.c.id_hash == bindparam("h"),
        *_LIVE,
        _sessions.c.last_seen_at <= bindparam("seen_before", type_=Double()),
    )
    .values(
        last_seen_at=_NOW,
        idle_expires_at=case((_sessions.c.expires_at > _IDLE, _IDLE), else_=_sessions.c.expires_at),
    )
)
_DELETE = delete(_sessions).where(_sessions.c.id_hash == bindparam("h")).returning(*_sessions.c)
_DELETE_FOR_USER = delete(_sessions).where(_sessions.c.user_id == bindparam("user_id"))
# idle_expires_at never passes expires_at: it alone says when a session is over.
_PURGE = delete(_sessions).where(_sessions.c.idle_expires_at <= _NOW)


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        id_hash=row.id_hash,
        user_id=row.user_id,
        created_at=float(row.created_at),
        last_seen_at=float(row.last_seen_at),
        expires_at=float(row.expires_at),
        idle_expires_at=float(row.idle_expires_at),
        provider=row.provider,
        id_token=None if row.id_token is None else bytes(row.id_token),
        extra=json_object(row.extra) or {},
    )


class SQLSessions:
    """Browser sessions ([SessionStore][authbridge.store.SessionStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, session: SessionRecord) -> None:
        """Store a new session (its idle expiry capped by its absolute one).

        Raises:
            Conflict: ``id_hash`` exists.
            KeyError: no account has ``user_id``.
        """
        await self._db.change(
            _sessions.insert().values(
                id_hash=session.id_hash,
                user_id=session.user_id,
                created_at=session.created_at,
                last_seen_at=session.last_seen_at,
                expires_at=session.expires_at,
                idle_expires_at=min(session.idle_expires_at, session.expires_at),
                provider=session.provider,
                id_token=None if session.id_token is None else bytes(session.id_token),
                extra=to_json(dict(session.extra)),
            )
        )

    async def get(self, id_hash: str, *, now: float) -> SessionRecord | None:
        """The live session with this hash, or ``None`` (absent, expired or idle too long)."""
        row = await self._db.first(_GET, {"h": id_hash, "now": now})
        return None if row is None else _session(row)

    async def touch(
        self, id_hash: str, *, now: float, idle_expires_at: float, min_interval: float
    ) -> bool:
        """Record a use if the session is live and was last seen ``min_interval`` ago or more."""
        params = {
            "h": id_hash,
            "now": now,
            "idle": idle_expires_at,
            "seen_before": now - min_interval,
        }
        return (await self._db.change(_TOUCH, params)).rowcount == 1

    async def delete(self, id_hash: str) -> SessionRecord | None:
        """Remove a session; the record removed, or ``None``."""
        row = (await self._db.change(_DELETE, {"h": id_hash})).row
        return None if row is None else _session(row)

    async def delete_for_user(self, user_id: str) -> int:
        """Remove every session of an account; how many."""
        return (await self._db.change(_DELETE_FOR_USER, {"user_id": user_id})).rowcount

    async def purge(self, now: float) -> int:
        """Delete sessions expired or idle before ``now``; how many."""
        return (await self._db.change(_PURGE, {"now": now})).rowcount
