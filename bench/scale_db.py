"""PostgreSQL for the scale benchmarks: bulk-loaded refresh families, fresh chains, plans.

* `prepare`: migrate a fresh database with the store's own migrations, add the first-party
  client (``refresh_token`` grant) and the accounts, then load ``families`` refresh families,
  each with one live token, straight into ``authbridge_refresh_families`` and
  ``authbridge_refresh_tokens`` with one ``INSERT ... SELECT generate_series`` per table (the
  shapes the store writes: 22-character url-safe family ids, hex SHA-256 token hashes, the
  store's scope and JSON encodings, times in POSIX seconds), then ``ANALYZE``;
* `chains`: fresh families created through the store's own ``refresh.create`` whose first
  token values are known, one per chain a load generator rotates;
* `explain`: ``EXPLAIN (ANALYZE, BUFFERS)`` of the statements a refresh runs, compiled by
  SQLAlchemy exactly as the store sends them, inside a transaction that is rolled back;
* `row_counts`: rows per store table (and per ``one_time`` kind).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from bench.token_servers import PASSWORD_CLIENT_ID, RESOURCE, SCOPE

USERS = 1_000
"""Accounts in every scale database; families belong to them round-robin."""


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL's asyncpg DSN (``postgresql+asyncpg://`` → ``postgresql://``)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def user_id(index: int) -> str:
    return f"user-{index % USERS:04d}"


async def prepare(url: str, *, families: int, client_secret: str) -> dict[str, Any]:
    """Migrate, seed the client and `USERS` accounts, bulk-load ``families``; timings."""
    import asyncpg  # noqa: PLC0415

    from authbridge.issuer._secrets import hash_secret  # noqa: PLC0415
    from authbridge.store import ClientRecord, open_store  # noqa: PLC0415

    store = open_store(url)
    await store.start()  # runs the migrations
    try:
        await store.clients.add(
            ClientRecord(
                client_id=PASSWORD_CLIENT_ID,
                name="benchmark first-party app",
                auth_method="client_secret_basic",
                secret_hash=hash_secret(client_secret, "client_secret"),
                grant_types=frozenset({"password", "refresh_token"}),
                scopes=frozenset(SCOPE.split()),
                created_at=time.time(),
            )
        )
    finally:
        await store.aclose()

    now = time.time()
    salt = secrets.token_hex(8)  # distinct ids and hashes in every database
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        started = time.perf_counter()
        async with connection.transaction():
            # Every token row names a family inserted just before, in this transaction: the
            # foreign key's per-row check trigger is skipped for the bulk load only.
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute("SET LOCAL maintenance_work_mem = '256MB'")
            # The secondary indexes are dropped and built again after the rows (a sorted
            # build beats a million B-tree inserts), with their own definitions.
            indexes = await connection.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY($1) "
                "AND indexname NOT LIKE 'pk\\_%'",
                ["authbridge_refresh_families", "authbridge_refresh_tokens"],
            )
            for index in indexes:
                await connection.execute(f'DROP INDEX "{index["indexname"]}"')
            await connection.execute(
                """
                INSERT INTO authbridge_users
                    (id, username, password_hash, scopes, disabled, email, email_verified,
                     created_at)
                SELECT 'user-' || lpad(g::text, 4, '0'), 'user' || lpad(g::text, 4, '0'),
                       NULL, $2, false, NULL, false, $3
                FROM generate_series(0, $1 - 1) AS g
                """,
                USERS,
                " ".join(sorted(SCOPE.split())),
                now,
            )
            users_s = time.perf_counter() - started
            # Family ids: 22 url-safe characters (secrets.token_urlsafe(16)); token hashes:
            # 64 hex digits (hash_secret). Both pseudo-random, so the B-trees grow as they
            # do in service (inserts all over the key space), not in key order.
            await connection.execute(
                """
                INSERT INTO authbridge_refresh_families
                    (id, client_id, subject, scopes, audiences, created_at, expires_at,
                     generation, rotated_at, siblings, revoked_at, revoked_reason, auth_time,
                     extra)
                SELECT translate(substr(encode(sha256(convert_to($7 || 'f' || g, 'UTF8')),
                                               'base64'), 1, 22), '+/', '-_'),
                       $2, 'user-' || lpad((g % $3)::text, 4, '0'), 'items:read', $4,
                       $5 - g % 86400, $5 - g % 86400 + $6, 0, NULL, 0, NULL, NULL,
                       $5 - g % 86400, '{}'
                FROM generate_series(1, $1) AS g
                """,
                families,
                PASSWORD_CLIENT_ID,
                USERS,
                f'["{RESOURCE}"]',
                now,
                90 * 86400.0,
                salt,
            )
            families_s = time.perf_counter() - started - users_s
            await connection.execute(
                """
                INSERT INTO authbridge_refresh_tokens
                    (token_hash, family_id, generation, issued_at, expires_at)
                SELECT encode(sha256(convert_to($3 || 't' || g, 'UTF8')), 'hex'),
                       translate(substr(encode(sha256(convert_to($3 || 'f' || g, 'UTF8')),
                                               'base64'), 1, 22), '+/', '-_'),
                       0, $2 - g % 86400, $2 - g % 86400 + 14 * 86400.0
                FROM generate_series(1, $1) AS g
                """,
                families,
                now,
                salt,
            )
            for index in indexes:
                await connection.execute(index["indexdef"])
        load_s = time.perf_counter() - started
        await connection.execute("ANALYZE")
        total_s = time.perf_counter() - started
        size = await connection.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await connection.close()
    return {
        "families": families,
        "users": USERS,
        "load_s": round(load_s, 2),
        "indexes_rebuilt": sorted(str(index["indexname"]) for index in indexes),
        "families_insert_s": round(families_s, 2),
        "load_and_analyze_s": round(total_s, 2),
        "database_mib": round(size / 2**20, 1),
    }


async def chains(url: str, count: int, *, first_user: int = 0) -> list[str]:
    """``count`` new families through the store, one live refresh token each (returned)."""
    from authbridge.issuer._refresh import token_hash  # noqa: PLC0415
    from authbridge.issuer._secrets import REFRESH_TOKEN_PREFIX, new_secret  # noqa: PLC0415
    from authbridge.store import RefreshFamily, RefreshTokenRecord, open_store  # noqa: PLC0415

    store = open_store(url, migrate=False)
    await store.start()
    tokens: list[str] = []
    try:
        now = time.time()
        for i in range(count):
            family = RefreshFamily(
                id=secrets.token_urlsafe(16),
                client_id=PASSWORD_CLIENT_ID,
                subject=user_id(first_user + i),
                scopes=frozenset({"items:read"}),
                audiences=(RESOURCE,),
                created_at=now,
                expires_at=now + 90 * 86400.0,
                auth_time=now,
            )
            token = new_secret(REFRESH_TOKEN_PREFIX)
            first = RefreshTokenRecord(
                token_hash=token_hash(token),
                family_id=family.id,
                generation=0,
                issued_at=now,
                expires_at=now + 14 * 86400.0,
            )
            await store.refresh.create(family, first)
            tokens.append(token)
    finally:
        await store.aclose()
    return tokens


# The statements of one rotation, in the order the refresh grant runs them.
_PLAN_NAMES = ("find_token", "user", "client", "advance_and_insert")


def _statements() -> dict[str, Any]:
    from sqlalchemy import bindparam, select  # noqa: PLC0415

    from authbridge.store import _models as m  # noqa: PLC0415
    from authbridge.store._sql_tokens import _ADVANCE_PG, _FIND  # noqa: PLC0415

    return {
        "find_token": _FIND,
        "user": select(m.users).where(m.users.c.id == bindparam("uid")),
        "client": select(m.clients).where(m.clients.c.client_id == bindparam("cid")),
        "advance_and_insert": _ADVANCE_PG,
    }


async def explain(url: str, token: str) -> dict[str, list[str]]:
    """The plans of a rotation of ``token`` (live, generation 0), rolled back after."""
    import asyncpg  # noqa: PLC0415
    from sqlalchemy.dialects import postgresql  # noqa: PLC0415

    from authbridge.issuer._refresh import token_hash  # noqa: PLC0415
    from authbridge.issuer._secrets import REFRESH_TOKEN_PREFIX, new_secret  # noqa: PLC0415

    hashed = token_hash(token)
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        family_id = await connection.fetchval(
            "SELECT family_id FROM authbridge_refresh_tokens WHERE token_hash = $1", hashed
        )
        now = time.time()
        params: dict[str, dict[str, Any]] = {
            "find_token": {"hash": hashed},
            "user": {"uid": user_id(0)},
            "client": {"cid": PASSWORD_CLIENT_ID},
            "advance_and_insert": {
                "fid": family_id,
                "from_generation": 0,
                "to_generation": 1,
                "now": now,
                "tok_hash": token_hash(new_secret(REFRESH_TOKEN_PREFIX)),
                "tok_issued": now,
                "tok_expires": now + 14 * 86400.0,
            },
        }
        plans: dict[str, list[str]] = {}
        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
        statements = _statements()
        transaction = connection.transaction()
        await transaction.start()
        try:
            for name in _PLAN_NAMES:
                compiled = statements[name].compile(
                    dialect=dialect, compile_kwargs={"literal_binds": False}
                )
                sql, values = _positional(str(compiled), compiled.params | params[name])
                rows = await connection.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *values
                )
                plans[name] = [row[0] for row in rows]
        finally:
            await transaction.rollback()
    finally:
        await connection.close()
    return plans


def _positional(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """``%(name)s`` placeholders (SQLAlchemy's pyformat) as asyncpg's ``$n``."""
    import re  # noqa: PLC0415

    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    text = re.sub(r"%\(([^)]+)\)s", number, sql)
    return text, [params[name] for name in order]


def key_lines(plan: Sequence[str]) -> list[str]:
    """The lines of a plan that say how rows are found (scans, joins, inserts)."""
    words = ("Scan", "Join", "Nested Loop", "Insert", "Update", "CTE", "Execution Time")
    return [line.strip() for line in plan if any(word in line for word in words)]


async def row_counts(url: str) -> dict[str, int]:
    """Rows per store table; ``one_time`` also per kind (``one_time:<kind>``)."""
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        counts: dict[str, int] = {}
        for table in (
            "authbridge_one_time",
            "authbridge_rate_limits",
            "authbridge_replay",
            "authbridge_sessions",
            "authbridge_refresh_families",
            "authbridge_refresh_tokens",
            "authbridge_users",
        ):
            counts[table.removeprefix("authbridge_")] = int(
                await connection.fetchval(f"SELECT count(*) FROM {table}")
            )
        for kind, rows in await connection.fetch(
            "SELECT kind, count(*) FROM authbridge_one_time GROUP BY kind ORDER BY kind"
        ):
            counts[f"one_time:{kind}"] = int(rows)
    finally:
        await connection.close()
    return counts


async def snapshot(url: str) -> dict[str, Any]:
    """In one connection: the PIDs of this database's other backends (the instances' pools)
    and of the server's own processes (WAL writer, checkpointer, ...), and this database's
    ``pg_stat_database`` counters (sessions opened, transactions, ``active_time`` in ms)."""
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        backends = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        server = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'"
        )
        row = await connection.fetchrow(
            "SELECT sessions, xact_commit, xact_rollback, active_time FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    assert row is not None
    return {
        "backends": [int(r[0]) for r in backends],
        "server": [int(r[0]) for r in server],
        "stats": {key: float(row[key]) for key in ("sessions", "xact_commit", "active_time")},
    }
