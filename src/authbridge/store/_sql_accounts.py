"""Users, identities and clients in SQL."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Text, bindparam, delete, exists, literal, or_, select, union, update

from . import _models as m
from ._protocols import UnlinkOutcome
from ._records import ClientRecord, IdentityRecord, UserRecord
from ._sql_codec import from_json, json_object, mapping_or_none, to_json, word_set, words
from ._sql_db import Database

# Built once: executing the same statement object reuses its cache key and compiled form.
_USER_BY_NAME = select(m.users).where(m.users.c.username == bindparam("username"))
_USER_BY_ID = select(m.users).where(m.users.c.id == bindparam("user_id"))
_USERS_BY_EMAIL = (
    select(m.users)
    .where(m.users.c.email == bindparam("email"))
    .order_by(m.users.c.id)
    .limit(bindparam("limit"))
)
_VERIFIED_USERS_BY_EMAIL = (
    select(m.users)
    .where(m.users.c.email == bindparam("email"), m.users.c.email_verified.is_(True))
    .order_by(m.users.c.id)
    .limit(bindparam("limit"))
)
_CLIENT_BY_ID = select(m.clients).where(m.clients.c.client_id == bindparam("client_id"))

# How long a revoked delegation's "dg:" replay record outlives its end (the longest
# leeway a verifier allows, ``jose._jwt.MAX_LEEWAY``), and how many delegations deep
# a chain goes at most (``issuer._delegation_rules.MAX_ACT_DEPTH``).
_DELEGATION_LEEWAY = 300.0
_CHAIN_DEPTH = 4


def _user_row(user: UserRecord) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "password_hash": user.password_hash,
        "scopes": words(user.scopes),
        "disabled": user.disabled,
        "email": user.email,
        "email_verified": user.email_verified,
        "created_at": user.created_at,
    }


def _user(row: Any) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        scopes=word_set(row.scopes),
        disabled=bool(row.disabled),
        email=row.email,
        email_verified=bool(row.email_verified),
        created_at=float(row.created_at),
    )


class SQLUsers:
    """The built-in user table ([UserStore][authbridge.store.UserStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def by_username(self, username: str) -> UserRecord | None:
        """The account with this login name, or ``None``."""
        row = await self._db.first(_USER_BY_NAME, {"username": username})
        return None if row is None else _user(row)

    async def get(self, user_id: str) -> UserRecord | None:
        """The account with this id, or ``None``."""
        row = await self._db.first(_USER_BY_ID, {"user_id": user_id})
        return None if row is None else _user(row)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replace the stored hash (nothing happens for an unknown id)."""
        await self._db.change(
            update(m.users).where(m.users.c.id == user_id).values(password_hash=password_hash)
        )

    async def add(self, user: UserRecord) -> UserRecord:
        """Create an account; `Conflict` if the id or username exists."""
        row = _user_row(user)
        await self._db.change(m.users.insert().values(**row))
        return user

    async def update(self, user: UserRecord) -> UserRecord:
        """Replace an account's fields; `KeyError` if absent, `Conflict` for a taken username."""
        row = _user_row(user)
        del row["id"]
        result = await self._db.change(update(m.users).where(m.users.c.id == user.id).values(**row))
        if result.rowcount != 1:
            raise KeyError(user.id)
        return user

    async def delete(self, user_id: str) -> bool:
        """Delete an account, its identities and its sessions; whether it existed."""
        async with self._db.write() as conn:
            await conn.execute(delete(m.identities).where(m.identities.c.user_id == user_id))
            await conn.execute(delete(m.sessions).where(m.sessions.c.user_id == user_id))
            result = await conn.execute(delete(m.users).where(m.users.c.id == user_id))
        return bool(result.rowcount)

    async def list(self, *, limit: int = 100, after: str | None = None) -> Sequence[UserRecord]:
        """Accounts ordered by username, at most ``limit``, after username ``after``."""
        query = select(m.users).order_by(m.users.c.username).limit(max(limit, 0))
        if after is not None:
            query = query.where(m.users.c.username > after)
        return [_user(row) for row in await self._db.all(query)]

    async def by_email(
        self, email: str, *, verified: bool = True, limit: int = 10
    ) -> Sequence[UserRecord]:
        """Accounts with exactly this address (only verified ones by default), by id."""
        query = _VERIFIED_USERS_BY_EMAIL if verified else _USERS_BY_EMAIL
        rows = await self._db.all(query, {"email": email, "limit": max(limit, 0)})
        return [_user(row) for row in rows]


def _identity_row(identity: IdentityRecord) -> dict[str, Any]:
    return {
        "issuer": identity.issuer,
        "subject": identity.subject,
        "user_id": identity.user_id,
        "email": identity.email,
        "email_verified": identity.email_verified,
        "created_at": identity.created_at,
    }


def _identity(row: Any) -> IdentityRecord:
    return IdentityRecord(
        issuer=row.issuer,
        subject=row.subject,
        user_id=row.user_id,
        email=row.email,
        email_verified=bool(row.email_verified),
        created_at=float(row.created_at),
    )


class SQLIdentities:
    """External identities linked to accounts ([IdentityStore][authbridge.store.IdentityStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, issuer: str, subject: str) -> IdentityRecord | None:
        """The identity, or ``None``."""
        query = select(m.identities).where(
            m.identities.c.issuer == issuer, m.identities.c.subject == subject
        )
        row = await self._db.first(query)
        return None if row is None else _identity(row)

    async def link(self, identity: IdentityRecord) -> IdentityRecord:
        """Record a link.

        Raises:
            Conflict: (issuer, subject) is already linked.
            KeyError: no account has ``identity.user_id``.
        """
        await self._db.change(m.identities.insert().values(**_identity_row(identity)))
        return identity

    async def for_user(self, user_id: str) -> Sequence[IdentityRecord]:
        """Every identity of one account, by issuer and subject."""
        query = (
            select(m.identities)
            .where(m.identities.c.user_id == user_id)
            .order_by(m.identities.c.issuer, m.identities.c.subject)
        )
        return [_identity(row) for row in await self._db.all(query)]

    async def unlink(self, issuer: str, subject: str) -> bool:
        """Remove a link; whether it existed."""
        result = await self._db.change(
            delete(m.identities).where(
                m.identities.c.issuer == issuer, m.identities.c.subject == subject
            )
        )
        return bool(result.rowcount)

    async def link_new_user(self, user: UserRecord, identity: IdentityRecord) -> None:
        """Create an account and its first identity in one transaction.

        Raises:
            Conflict: the account's id or username exists, or (issuer, subject)
                is linked; nothing is written.
            ValueError: ``identity.user_id`` is not ``user.id``.
        """
        if identity.user_id != user.id:
            raise ValueError("the identity must be linked to the account created with it")
        async with self._db.write() as conn:
            await conn.execute(m.users.insert().values(**_user_row(user)))
            await conn.execute(m.identities.insert().values(**_identity_row(identity)))

    async def unlink_from(self, user_id: str, issuer: str, subject: str) -> UnlinkOutcome:
        """Remove the link unless it is the account's last way in (see the protocol).

        The account's row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite's
        ``BEGIN IMMEDIATE`` already serialises writers), so of two concurrent
        unlinks of its last two identities the second sees the first's result.
        """
        ids = m.identities.c
        this = (ids.issuer == issuer, ids.subject == subject, ids.user_id == user_id)
        other = ~((ids.issuer == issuer) & (ids.subject == subject))
        another_way = or_(
            m.users.c.password_hash.is_not(None), exists().where(ids.user_id == user_id, other)
        )
        async with self._db.write() as conn:
            locked = select(m.users.c.id).where(m.users.c.id == user_id).with_for_update()
            if (await conn.execute(locked)).first() is None:
                return "not_linked"
            if (await conn.execute(select(ids.user_id).where(*this))).first() is None:
                return "not_linked"
            allowed = select(m.users.c.id).where(m.users.c.id == user_id, another_way)
            if (await conn.execute(allowed)).first() is None:
                return "last_login_method"
            await conn.execute(delete(m.identities).where(*this))
        return "unlinked"


def _client_row(client: ClientRecord) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "auth_method": client.auth_method,
        "secret_hash": client.secret_hash,
        "jwks": mapping_or_none(client.jwks),
        "grant_types": words(client.grant_types),
        "scopes": words(client.scopes),
        "redirect_uris": to_json(list(client.redirect_uris)),
        "disabled": client.disabled,
        "created_at": client.created_at,
    }


def _client(row: Any) -> ClientRecord:
    return ClientRecord(
        client_id=row.client_id,
        name=row.name,
        auth_method=row.auth_method,
        secret_hash=row.secret_hash,
        jwks=json_object(row.jwks),
        grant_types=word_set(row.grant_types),
        scopes=word_set(row.scopes),
        redirect_uris=tuple(str(uri) for uri in from_json(row.redirect_uris)),
        disabled=bool(row.disabled),
        created_at=float(row.created_at),
    )


class SQLClients:
    """Registered OAuth clients ([ClientStore][authbridge.store.ClientStore])."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, client_id: str) -> ClientRecord | None:
        """The client, or ``None``."""
        row = await self._db.first(_CLIENT_BY_ID, {"client_id": client_id})
        return None if row is None else _client(row)

    async def add(self, client: ClientRecord) -> ClientRecord:
        """Register a client; `Conflict` if the id exists."""
        row = _client_row(client)
        await self._db.change(m.clients.insert().values(**row))
        return client

    async def update(self, client: ClientRecord) -> ClientRecord:
        """Replace a client's fields; `KeyError` if absent."""
        row = _client_row(client)
        del row["client_id"]
        result = await self._db.change(
            update(m.clients).where(m.clients.c.client_id == client.client_id).values(**row)
        )
        if result.rowcount != 1:
            raise KeyError(client.client_id)
        return client

    async def delete(self, client_id: str) -> bool:
        """Remove a client and its refresh families (with their tokens); whether it existed.

        In the same transaction, the delegations naming it as their actor, and
        those made under them, are revoked (``revoked_at``, and their ``"dg:"``
        replay records until their end): a client registered later under the
        same id inherits none of them.
        """
        families = select(m.refresh_families.c.id).where(
            m.refresh_families.c.client_id == client_id
        )
        d = m.delegations.c
        level = select(d.id).where(d.actor == client_id)
        levels = [level]
        for _ in range(_CHAIN_DEPTH):
            level = select(d.id).where(d.parent.in_(level))
            levels.append(level)
        ended = select(union(*levels).subquery().c.id)
        unrevoked = (d.id.in_(ended), d.revoked_at.is_(None))
        records = self._db.insert(m.replay).from_select(
            ["key", "expires_at"],
            select(literal("dg:", Text) + d.id, d.expires_at + _DELEGATION_LEEWAY).where(
                *unrevoked
            ),
        )
        async with self._db.write() as conn:
            await conn.execute(records.on_conflict_do_nothing(index_elements=["key"]))
            await conn.execute(
                update(m.delegations).where(*unrevoked).values(revoked_at=time.time())
            )
            await conn.execute(
                delete(m.refresh_tokens).where(m.refresh_tokens.c.family_id.in_(families))
            )
            await conn.execute(
                delete(m.refresh_families).where(m.refresh_families.c.client_id == client_id)
            )
            result = await conn.execute(delete(m.clients).where(m.clients.c.client_id == client_id))
        return bool(result.rowcount)

    async def list(self) -> Sequence[ClientRecord]:
        """Every client, ordered by id."""
        rows = await self._db.all(select(m.clients).order_by(m.clients.c.client_id))
        return [_client(row) for row in rows]
