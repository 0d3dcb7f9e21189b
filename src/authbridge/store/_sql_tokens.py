"""Refresh-token families and signing keys in SQL.

The refresh steps that decide races are single conditional ``UPDATE``
statements whose row count decides (on SQLite inside ``BEGIN IMMEDIATE``, the
new token inserted in the same transaction; on PostgreSQL the new token's
``INSERT`` is the same statement, ``WITH moved AS (UPDATE ... RETURNING)``):
of two concurrent calls with the same expectation, one changes the row and
the other finds it changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select, update

from . import _models as m
from ._records import RefreshFamily, RefreshTokenRecord, SigningKeyRecord
from ._sql_codec import from_json, json_object, to_json, word_set, words
from ._sql_db import Database

_families = m.refresh_families
_tokens = m.refresh_tokens

# Built once: executing the same statement object reuses its cache key and compiled form.
_FIND = (
    select(
        _tokens.c.token_hash,
        _tokens.c.generation.label("token_generation"),
        _tokens.c.issued_at,
        _tokens.c.expires_at.label("token_expires_at"),
        *_families.c,
    )
    .join(_families, _families.c.id == _tokens.c.family_id)
    .where(_tokens.c.token_hash == bindparam("hash"))
)
_ADVANCE = (
    update(_families)
    .where(
        _families.c.id == bindparam("fid"),
        _families.c.generation == bindparam("from_generation"),
        _families.c.revoked_at.is_(None),
    )
    .values(generation=bindparam("to_generation"), rotated_at=bindparam("now"), siblings=0)
)
_ADD_SIBLING = (
    update(_families)
    .where(
        _families.c.id == bindparam("fid"),
        _families.c.generation == bindparam("at_generation"),
        _families.c.revoked_at.is_(None),
        _families.c.siblings < bindparam("max_siblings"),
    )
    .values(siblings=_families.c.siblings + 1)
)
_REVOKE = (
    update(_families)
    .where(_families.c.id == bindparam("fid"), _families.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoked_reason=bindparam("reason"))
)
_INSERT_TOKEN = _tokens.insert()


def _and_insert_token(step: Any) -> Any:
    """One PostgreSQL statement: the family's conditional ``UPDATE``, and the token if it hit.

    ``WITH moved AS (UPDATE ... RETURNING) INSERT ... SELECT ... FROM moved``: the
    token is inserted exactly when the update changed the row (the row count
    decides, as in the two-statement transaction), and nothing is written
    otherwise. One statement is atomic: no ``BEGIN``/``COMMIT`` round trips.
    """
    moved = step.returning(_families.c.id, _families.c.generation).cte("moved")
    return _tokens.insert().from_select(
        ["token_hash", "family_id", "generation", "issued_at", "expires_at"],
        select(
            bindparam("tok_hash", type_=_tokens.c.token_hash.type),
            moved.c.id,
            moved.c.generation,
            bindparam("tok_issued", type_=_tokens.c.issued_at.type),
            bindparam("tok_expires", type_=_tokens.c.expires_at.type),
        ),
    )


_ADVANCE_PG = _and_insert_token(_ADVANCE)
_ADD_SIBLING_PG = _and_insert_token(_ADD_SIBLING)


def _token_row(token: RefreshTokenRecord) -> dict[str, Any]:
    return {
        "token_hash": token.token_hash,
        "family_id": token.family_id,
        "generation": token.generation,
        "issued_at": token.issued_at,
        "expires_at": token.expires_at,
    }


def _token_params(token: RefreshTokenRecord) -> dict[str, Any]:
    return {
        "tok_hash": token.token_hash,
        "tok_issued": token.issued_at,
        "tok_expires": token.expires_at,
    }


def _family(row: Any) -> RefreshFamily:
    return RefreshFamily(
        id=row.id,
        client_id=row.client_id,
        subject=row.subject,
        scopes=word_set(row.scopes),
        audiences=tuple(str(aud) for aud in from_json(row.audiences)),
        created_at=float(row.created_at),
        expires_at=float(row.expires_at),
        generation=int(row.generation),
        rotated_at=None if row.rotated_at is None else float(row.rotated_at),
        siblings=int(row.siblings),
        revoked_at=None if row.revoked_at is None else float(row.revoked_at),
        revoked_reason=row.revoked_reason,
        auth_time=None if row.auth_time is None else float(row.auth_time),
        extra=json_object(row.extra) or {},
    )


def _check_token(token: RefreshTokenRecord, family_id: str, generation: int) -> None:
    if token.family_id != family_id or token.generation != generation:
        raise ValueError("the token must belong to the family, at the generation it is issued at")


class SQLRefresh:
    """Refresh families and their tokens ([RefreshStore][authbridge.store.RefreshStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, family: RefreshFamily, first: RefreshTokenRecord) -> None:
        """Store a new family with its first token; `Conflict` if either exists."""
        _check_token(first, family.id, family.generation)
        row = {
            "id": family.id,
            "client_id": family.client_id,
            "subject": family.subject,
            "scopes": words(family.scopes),
            "audiences": to_json(list(family.audiences)),
            "created_at": family.created_at,
            "expires_at": family.expires_at,
            "generation": family.generation,
            "rotated_at": family.rotated_at,
            "siblings": family.siblings,
            "revoked_at": family.revoked_at,
            "revoked_reason": family.revoked_reason,
            "auth_time": family.auth_time,
            "extra": to_json(dict(family.extra)),
        }
        async with self._db.write() as conn:
            await conn.execute(_families.insert().values(**row))
            await conn.execute(_INSERT_TOKEN, _token_row(first))

    async def find(self, token_hash: str) -> tuple[RefreshTokenRecord, RefreshFamily] | None:
        """The token with this hash and its family, or ``None``."""
        row = await self._db.first(_FIND, {"hash": token_hash})
        if row is None:
            return None
        token = RefreshTokenRecord(
            token_hash=row.token_hash,
            family_id=row.id,
            generation=int(row.token_generation),
            issued_at=float(row.issued_at),
            expires_at=float(row.token_expires_at),
        )
        return token, _family(row)

    async def advance(
        self, family_id: str, *, from_generation: int, now: float, token: RefreshTokenRecord
    ) -> bool:
        """Rotate if the family is live at ``from_generation``; whether this call did it."""
        _check_token(token, family_id, from_generation + 1)
        params = {
            "fid": family_id,
            "from_generation": from_generation,
            "to_generation": from_generation + 1,
            "now": now,
        }
        if self._db.dialect == "postgresql":
            both = await self._db.change(_ADVANCE_PG, {**params, **_token_params(token)})
            return both.rowcount == 1
        async with self._db.write() as conn:
            result = await conn.execute(_ADVANCE, params)
            if result.rowcount != 1:
                return False
            await conn.execute(_INSERT_TOKEN, _token_row(token))
        return True

    async def add_sibling(
        self, family_id: str, *, generation: int, max_siblings: int, token: RefreshTokenRecord
    ) -> bool:
        """Issue one more token at ``generation`` if fewer than ``max_siblings`` were."""
        _check_token(token, family_id, generation)
        params = {"fid": family_id, "at_generation": generation, "max_siblings": max_siblings}
        if self._db.dialect == "postgresql":
            both = await self._db.change(_ADD_SIBLING_PG, {**params, **_token_params(token)})
            return both.rowcount == 1
        async with self._db.write() as conn:
            result = await conn.execute(_ADD_SIBLING, params)
            if result.rowcount != 1:
                return False
            await conn.execute(_INSERT_TOKEN, _token_row(token))
        return True

    async def revoke(self, family_id: str, *, now: float, reason: str) -> bool:
        """Revoke a family; whether this call revoked it."""
        result = await self._db.change(_REVOKE, {"fid": family_id, "now": now, "reason": reason})
        return bool(result.rowcount)

    async def revoke_for(
        self, *, now: float, reason: str, subject: str | None = None, client_id: str | None = None
    ) -> int:
        """Revoke every live family of a subject and/or a client; how many.

        Raises:
            ValueError: neither ``subject`` nor ``client_id`` given.
        """
        if subject is None and client_id is None:
            raise ValueError("revoke_for needs a subject, a client_id or both")
        conditions = [_families.c.revoked_at.is_(None), _families.c.expires_at > now]
        if subject is not None:
            conditions.append(_families.c.subject == subject)
        if client_id is not None:
            conditions.append(_families.c.client_id == client_id)
        result = await self._db.change(
            update(_families).where(*conditions).values(revoked_at=now, revoked_reason=reason)
        )
        return int(result.rowcount)

    async def purge(self, now: float) -> int:
        """Delete tokens and families expired (or revoked) before ``now``; how many rows."""
        ended = or_(
            _families.c.expires_at <= now,
            and_(_families.c.revoked_at.is_not(None), _families.c.revoked_at <= now),
        )
        async with self._db.write() as conn:
            tokens = await conn.execute(
                delete(_tokens).where(
                    or_(
                        _tokens.c.expires_at <= now,
                        _tokens.c.family_id.in_(select(_families.c.id).where(ended)),
                    )
                )
            )
            families = await conn.execute(delete(_families).where(ended))
        return int(tokens.rowcount) + int(families.rowcount)


def _key(row: Any) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=row.kid,
        alg=row.alg,
        public_jwk=json_object(row.public_jwk) or {},
        private_key=bytes(row.private_key),
        kek_id=row.kek_id,
        created_at=float(row.created_at),
        active_from=float(row.active_from),
        retired_at=None if row.retired_at is None else float(row.retired_at),
        revoked_at=None if row.revoked_at is None else float(row.revoked_at),
    )


class SQLKeys:
    """The issuer's signing keys ([SigningKeyStore][authbridge.store.SigningKeyStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(self) -> Sequence[SigningKeyRecord]:
        """Every key, oldest ``active_from`` first."""
        query = select(m.signing_keys).order_by(
            m.signing_keys.c.active_from, m.signing_keys.c.created_at, m.signing_keys.c.kid
        )
        return [_key(row) for row in await self._db.all(query)]

    async def add(self, key: SigningKeyRecord) -> None:
        """Store a new key; `Conflict` if the kid exists."""
        await self._db.change(
            m.signing_keys.insert().values(
                kid=key.kid,
                alg=key.alg,
                public_jwk=to_json(dict(key.public_jwk)),
                private_key=bytes(key.private_key),
                kek_id=key.kek_id,
                created_at=key.created_at,
                active_from=key.active_from,
                retired_at=key.retired_at,
                revoked_at=key.revoked_at,
            )
        )

    async def retire(self, kid: str, *, at: float) -> bool:
        """Set ``retired_at`` if unset; whether this call set it."""
        return await self._stamp(kid, m.signing_keys.c.retired_at, at)

    async def revoke(self, kid: str, *, at: float) -> bool:
        """Set ``revoked_at`` if unset; whether this call set it."""
        return await self._stamp(kid, m.signing_keys.c.revoked_at, at)

    async def _stamp(self, kid: str, column: Any, at: float) -> bool:
        result = await self._db.change(
            update(m.signing_keys)
            .where(m.signing_keys.c.kid == kid, column.is_(None))
            .values({column: at})
        )
        return bool(result.rowcount)

    async def delete(self, kid: str) -> bool:
        """Remove a key; whether it existed."""
        result = await self._db.change(delete(m.signing_keys).where(m.signing_keys.c.kid == kid))
        return bool(result.rowcount)
