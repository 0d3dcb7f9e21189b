"""The store's schema: shipped Alembic migrations, their own version table, models that match.

Each test gets a database of its own with no schema: a new SQLite file, or a
new PostgreSQL database (dropped afterwards).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

import authbridge.store
from authbridge.errors import ConfigurationError, StoreUnavailable
from authbridge.store import DelegationRecord, SQLStore, UserRecord, _migrate
from authbridge.store._models import VERSION_TABLE, metadata
from authbridge.store._sql_db import Database
from store_support import fresh_postgres_database

from ._support import run_sql


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database without any table."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    with fresh_postgres_database("authbridge_migration") as url:
        yield url


def test_migrations_ship_in_the_package_and_need_no_ini() -> None:
    package = Path(authbridge.store.__file__).parent
    assert (package / "migrations" / "env.py").is_file()
    assert list((package / "migrations" / "versions").glob("r*.py"))
    assert not list(package.rglob("alembic.ini"))
    assert _migrate.head() == "0003"


async def test_models_and_migrations_agree(empty_url: str) -> None:
    await _migrate.upgrade(empty_url)
    db = Database(empty_url)

    def compare(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "version_table": VERSION_TABLE,
                "include_name": lambda name, type_, _parents: (
                    type_ != "table" or name != VERSION_TABLE
                ),
            },
        )
        return list(compare_metadata(context, metadata))

    try:
        async with db.read() as conn:
            differences = await conn.run_sync(compare)
    finally:
        await db.dispose()
    assert differences == []


async def test_upgrade_records_its_revision_in_its_own_table(empty_url: str) -> None:
    # an app's own Alembic history and tables in the same database are left alone
    await run_sql(
        empty_url,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "INSERT INTO alembic_version VALUES ('app_rev_42')",
        "CREATE TABLE items (id INTEGER PRIMARY KEY)",
    )
    assert await _migrate.current(empty_url) is None
    await _migrate.upgrade(empty_url)
    assert await _migrate.current(empty_url) == _migrate.head()
    await _migrate.upgrade(empty_url)  # idempotent
    (app_rows, ours, items) = await run_sql(
        empty_url,
        "SELECT version_num FROM alembic_version",
        f"SELECT version_num FROM {VERSION_TABLE}",
        "SELECT count(*) FROM items",
    )
    assert app_rows == [("app_rev_42",)]
    assert ours == [(_migrate.head(),)]
    assert items == [(0,)]


async def test_start_without_migrate_refuses_an_outdated_schema(empty_url: str) -> None:
    store = SQLStore(empty_url, migrate=False)
    with pytest.raises(ConfigurationError) as refused:
        await store.start()
    await store.aclose()
    assert refused.value.reason == "store_schema_outdated"
    assert "run `authbridge db upgrade`" in str(refused.value)
    await _migrate.upgrade(empty_url)
    store = SQLStore(empty_url, migrate=False)
    await store.start()
    try:
        await store.users.add(UserRecord(id="u", username="u"))
    finally:
        await store.aclose()


@pytest.mark.parametrize("migrate", [True, False])
async def test_a_schema_from_a_newer_version_is_refused(empty_url: str, migrate: bool) -> None:
    await _migrate.upgrade(empty_url)
    await run_sql(empty_url, f"UPDATE {VERSION_TABLE} SET version_num = '9999_future'")
    store = SQLStore(empty_url, migrate=migrate)
    with pytest.raises(ConfigurationError) as refused:
        await store.start()
    await store.aclose()
    assert refused.value.reason == "store_schema_newer"


async def test_concurrent_first_starts_create_the_schema_once(empty_url: str) -> None:
    stores = [SQLStore(empty_url, pool_size=2) for _ in range(6)]
    try:
        await asyncio.gather(*(store.start() for store in stores))
        await stores[0].users.add(UserRecord(id="u", username="u"))
        assert await stores[-1].users.get("u") is not None
    finally:
        for store in stores:
            await store.aclose()
    (versions,) = await run_sql(empty_url, f"SELECT version_num FROM {VERSION_TABLE}")
    assert versions == [(_migrate.head(),)]


async def test_in_memory_store_migrates_its_single_connection() -> None:
    store = SQLStore("sqlite+aiosqlite:///:memory:")
    await store.start()
    try:
        await store.users.add(UserRecord(id="u", username="u"))
        assert await store.users.by_username("u") is not None
    finally:
        await store.aclose()


async def test_sqlite_file_settings(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = SQLStore(f"sqlite:///{path}")  # no driver named: aiosqlite
    await store.start()
    await store.aclose()
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.read() as conn:
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() >= 1000
    finally:
        await db.dispose()


async def test_revision_0003_upgrades_a_0002_store_and_downgrades(empty_url: str) -> None:
    """Delegations arrive in 0003: a store at 0002 with data upgrades in place, and back."""
    db = Database(empty_url)
    try:
        await _migrate.upgrade_database(db, "0002")
        assert await _migrate.current_database(db) == "0002"
        await run_sql(
            empty_url,
            "INSERT INTO authbridge_users (id, username, scopes, disabled, email_verified, "
            "created_at) VALUES ('u1', 'alice', 'items:read', false, false, 1.0)",
        )
        with pytest.raises(StoreUnavailable):  # no such table yet
            await run_sql(empty_url, "SELECT count(*) FROM authbridge_delegations")
        await _migrate.upgrade_database(db)
        assert await _migrate.current_database(db) == "0003"
    finally:
        await db.dispose()
    store = SQLStore(empty_url, migrate=False)  # the schema is current
    await store.start()
    try:
        user = await store.users.get("u1")
        assert user is not None
        assert user.username == "alice"
        record = DelegationRecord(
            id="dlg_1",
            user_id="u1",
            actor="robot",
            scopes=frozenset({"items:read"}),
            audiences=("https://api.example.test",),
            created_at=10.0,
            expires_at=20.0,
        )
        await store.delegations.create(record)
        assert await store.delegations.get("dlg_1") == record
    finally:
        await store.aclose()

    def downgrade(connection: Any) -> None:
        config = _migrate.config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")

    db = Database(empty_url)
    try:
        async with db.exclusive() as connection:
            await connection.run_sync(downgrade)
        assert await _migrate.current_database(db) == "0002"
        (users,) = await run_sql(empty_url, "SELECT id FROM authbridge_users")
        assert users == [("u1",)]
        with pytest.raises(StoreUnavailable):
            await run_sql(empty_url, "SELECT count(*) FROM authbridge_delegations")
        await _migrate.upgrade_database(db)  # and up again, empty
        (count,) = await run_sql(empty_url, "SELECT count(*) FROM authbridge_delegations")
        assert count == [(0,)]
    finally:
        await db.dispose()
