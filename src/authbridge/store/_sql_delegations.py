"""Users' delegations to robots in SQL (see `DelegationRecord`).

Every step is one statement, run as its own transaction: a creation is one
``INSERT`` (the account's foreign key refuses an unknown user), a revocation a
conditional ``UPDATE`` whose row count says whether this call revoked, and
reads check "active" (not revoked, not ended) in their ``WHERE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Double, Integer, bindparam, delete, func, or_, select, update

from . import _models as m
from ._records import DelegationRecord
from ._sql_codec import from_json, to_json, word_set, words
from ._sql_db import Database

_delegations = m.delegations
_c = _delegations.c

# Built once: executing the same statement object reuses its cache key and compiled form.
_NOW: Any = bindparam("now", type_=Double())
_ACTIVE = (_c.revoked_at.is_(None), _c.expires_at > _NOW)
_NEWEST_FIRST = (_c.created_at.desc(), _c.id.desc())
_LIMIT = bindparam("limit", type_=Integer())
_GET = select(_delegations).where(_c.id == bindparam("id_"))
_FOR_USER = (
    select(_delegations)
    .where(_c.user_id == bindparam("user_id"))
    .order_by(*_NEWEST_FIRST)
    .limit(_LIMIT)
)
_ACTIVE_FOR_USER = (
    select(_delegations)
    .where(_c.user_id == bindparam("user_id"), *_ACTIVE)
    .order_by(*_NEWEST_FIRST)
    .limit(_LIMIT)
)
_CHILDREN = select(_delegations).where(_c.parent == bindparam("parent")).order_by(*_NEWEST_FIRST)
_COUNT_ACTIVE = (
    select(func.count())
    .select_from(_delegations)
    .where(_c.user_id == bindparam("user_id"), *_ACTIVE)
)
_REVOKE = (
    update(_delegations)
    .where(_c.id == bindparam("id_"), _c.user_id == bindparam("owner"), _c.revoked_at.is_(None))
    .values(revoked_at=_NOW)
)
_PURGE = delete(_delegations).where(
    or_(_c.expires_at <= _NOW, _c.revoked_at <= _NOW)  # NULL revoked_at: not revoked
)


def _delegation(row: Any) -> DelegationRecord:
    return DelegationRecord(
        id=row.id,
        user_id=row.user_id,
        actor=row.actor,
        scopes=word_set(row.scopes),
        audiences=tuple(str(aud) for aud in from_json(row.audiences)),
        created_at=float(row.created_at),
        expires_at=float(row.expires_at),
        label=row.label,
        may_delegate=bool(row.may_delegate),
        revoked_at=None if row.revoked_at is None else float(row.revoked_at),
        parent=row.parent,
    )


class SQLDelegations:
    """Users' delegations ([DelegationStore][authbridge.store.DelegationStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, record: DelegationRecord) -> None:
        """Store a new delegation.

        Raises:
            Conflict: the id exists.
            KeyError: no account has ``user_id``.
        """
        await self._db.change(
            _delegations.insert().values(
                id=record.id,
                user_id=record.user_id,
                actor=record.actor,
                scopes=words(record.scopes),
                audiences=to_json(list(record.audiences)),
                created_at=record.created_at,
                expires_at=record.expires_at,
                label=record.label,
                may_delegate=record.may_delegate,
                revoked_at=record.revoked_at,
                parent=record.parent,
            )
        )

    async def get(self, delegation_id: str) -> DelegationRecord | None:
        """The delegation, active or not, or ``None``."""
        row = await self._db.first(_GET, {"id_": delegation_id})
        return None if row is None else _delegation(row)

    async def for_user(
        self, user_id: str, *, now: float, include_inactive: bool = False, limit: int = 100
    ) -> Sequence[DelegationRecord]:
        """An account's delegations, newest first, at most ``limit`` (active only by default)."""
        statement = _FOR_USER if include_inactive else _ACTIVE_FOR_USER
        params = {"user_id": user_id, "now": now, "limit": max(int(limit), 0)}
        return [_delegation(row) for row in await self._db.all(statement, params)]

    async def children(self, parent_id: str) -> Sequence[DelegationRecord]:
        """The delegations made under ``parent_id`` (active or not), newest first."""
        return [_delegation(row) for row in await self._db.all(_CHILDREN, {"parent": parent_id})]

    async def count_active(self, user_id: str, *, now: float) -> int:
        """How many active delegations an account has."""
        row = await self._db.first(_COUNT_ACTIVE, {"user_id": user_id, "now": now})
        return 0 if row is None else int(row[0])

    async def revoke(self, delegation_id: str, *, user_id: str, now: float) -> bool:
        """Revoke ``user_id``'s delegation if not yet revoked; whether this call did."""
        params = {"id_": delegation_id, "owner": user_id, "now": now}
        return (await self._db.change(_REVOKE, params)).rowcount == 1

    async def purge(self, now: float) -> int:
        """Delete delegations ended or revoked before ``now``; how many."""
        return (await self._db.change(_PURGE, {"now": now})).rowcount
