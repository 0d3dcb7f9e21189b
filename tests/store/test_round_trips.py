"""Statements per unit of work: a read is its one statement (no BEGIN/COMMIT on PostgreSQL).

Counted with SQLAlchemy's ``before_cursor_execute`` event, and on PostgreSQL
also with asyncpg's query logger (what reaches the server), a property of
the code rather than a timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text

import store_support
from authbridge.store import ClientRecord, RefreshFamily, RefreshTokenRecord, SQLStore, UserRecord
from authbridge.store import _sql_db as sql_db

# The store fixtures this module uses (pytest finds them in its namespace).
postgres_database = store_support.postgres_database
postgres_store = store_support.postgres_store
postgres_store_url = store_support.postgres_store_url
sqlite_store_url = store_support.sqlite_store_url
store = store_support.store
store_url = store_support.store_url


@contextmanager
def statements(store: SQLStore) -> Iterator[list[str]]:
    """Every statement SQLAlchemy sends while the block runs (BEGIN included on SQLite)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    engine = store._db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _seed(store: SQLStore) -> tuple[str, float]:
    now = time.time()
    await store.users.add(UserRecord(id="u", username="alice"))
    await store.clients.add(ClientRecord("robot"))
    family = RefreshFamily(
        id="f",
        client_id="robot",
        subject="u",
        scopes=frozenset({"read"}),
        audiences=("api",),
        created_at=now,
        expires_at=now + 600,
    )
    await store.refresh.create(
        family, RefreshTokenRecord("h0", "f", 0, issued_at=now, expires_at=now + 60)
    )
    return "h0", now


async def test_each_read_is_one_statement(store: SQLStore) -> None:
    hashed, now = await _seed(store)
    reads = {
        "clients.get": lambda: store.clients.get("robot"),
        "users.get": lambda: store.users.get("u"),
        "users.by_username": lambda: store.users.by_username("alice"),
        "refresh.find": lambda: store.refresh.find(hashed),
        "replay.seen": lambda: store.replay.seen("k", now=now),
        "rate_limits.peek": lambda: store.rate_limits.peek("k", now=now),
        "ping": store.ping,
    }
    for name, read in reads.items():
        for _ in range(3):  # the first call may prepare; every call is one statement
            with statements(store) as seen:
                await read()
            assert seen == ["SELECT"], name


async def test_single_statement_writes_need_no_begin(store: SQLStore) -> None:
    _, now = await _seed(store)
    writes = {
        "replay.first_use": lambda: store.replay.first_use("k", expires_at=now + 60, now=now),
        "rate_limits.hit": lambda: store.rate_limits.hit("k", window=60, now=now),
        "one_time.take": lambda: store.one_time.take("code", "k", now=now),
        "refresh.revoke": lambda: store.refresh.revoke("f", now=now, reason="test"),
    }
    for name, write in writes.items():
        with statements(store) as seen:
            await write()
        assert len(seen) == 1, name
        assert seen[0] in ("INSERT", "DELETE", "UPDATE"), name


async def test_a_rotation_is_one_transaction(store: SQLStore) -> None:
    _, now = await _seed(store)
    token = RefreshTokenRecord("h1", "f", 1, issued_at=now, expires_at=now + 60)
    with statements(store) as seen:
        assert await store.refresh.advance("f", from_generation=0, now=now, token=token)
    if store.dialect == "sqlite":  # BEGIN IMMEDIATE, issued by hand, then both steps
        assert seen == ["BEGIN", "UPDATE", "INSERT"]
    else:  # WITH moved AS (UPDATE ... RETURNING) INSERT ...: one statement, no BEGIN
        assert seen == ["WITH"]
    assert (await store.refresh.find("h1")) is not None
    # a second rotation from the same generation changes nothing, inserts nothing
    late = RefreshTokenRecord("h2", "f", 1, issued_at=now, expires_at=now + 60)
    assert not await store.refresh.advance("f", from_generation=0, now=now, token=late)
    assert await store.refresh.find("h2") is None
    sibling = RefreshTokenRecord("h3", "f", 1, issued_at=now, expires_at=now + 60)
    assert await store.refresh.add_sibling("f", generation=1, max_siblings=1, token=sibling)
    extra = RefreshTokenRecord("h4", "f", 1, issued_at=now, expires_at=now + 60)
    assert not await store.refresh.add_sibling("f", generation=1, max_siblings=1, token=extra)
    assert await store.refresh.find("h3") is not None
    assert await store.refresh.find("h4") is None


async def test_postgres_reads_send_no_begin_or_commit(postgres_store_url: str) -> None:
    """What asyncpg sends outside prepared statements: nothing for a read, BEGIN/COMMIT for a write.

    (asyncpg's query logger sees ``BEGIN``, ``COMMIT``, ``ROLLBACK`` and a
    pre-ping, not the prepared ``SELECT``; one pooled connection serves every call.)
    """
    one = SQLStore(postgres_store_url, pool_size=1)
    await one.start()
    try:
        await _seed(one)
        sent: list[str] = []
        used: list[Any] = []

        def log(record: Any) -> None:
            sent.append(record.query.split(None, 1)[0].rstrip(";").upper())

        def checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
            used.append(record.driver_connection)

        async with one._db.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
        driver.add_query_logger(log)
        event.listen(one._db.engine.sync_engine, "checkout", checkout)
        try:
            for _ in range(5):
                assert await one.clients.get("robot") is not None
                assert await one.users.get("u") is not None
                assert await one.refresh.find("h0") is not None
            reads = list(sent)
            sent.clear()
            for _ in range(3):  # the logger does see transactions: a write unit has one
                async with one._db.write() as conn:
                    await conn.execute(text("SELECT 1"))
        finally:
            driver.remove_query_logger(log)
            event.remove(one._db.engine.sync_engine, "checkout", checkout)
        assert used
        assert all(connection is driver for connection in used)
        assert reads == []
        assert sent.count("BEGIN") == 3
        assert sent.count("COMMIT") == 3
    finally:
        await one.aclose()


async def test_postgres_connection_killed_under_a_read_is_retried_once(
    postgres_store: SQLStore,
) -> None:
    await _seed(postgres_store)
    killer = sql_db.Database(postgres_store._db.url.render_as_string(hide_password=False))
    try:
        await postgres_store.users.get("u")
        async with killer.write() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await killer.dispose()
    for _ in range(3):
        assert await postgres_store.users.get("u") is not None
        assert await postgres_store.clients.get("robot") is not None
