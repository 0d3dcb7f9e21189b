"""Schema migrations of the SQL store: Alembic, configured in code (no ``alembic.ini``).

The migrations ship in the package (``authbridge/store/migrations``) and record
their revision in their own table, ``authbridge_alembic_version``, so they
coexist with the app's own Alembic migrations in one database.

Several instances may start at once: an upgrade runs in one transaction that
excludes the others (``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN
EXCLUSIVE`` on SQLite); the instances after the first find the schema current.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, text

from ..errors import ConfigurationError
from ._models import VERSION_TABLE
from ._sql_db import Database

MIGRATIONS = Path(__file__).with_name("migrations")
"""Where the migrations are (inside the installed package)."""

_LOCK_KEY = 0x61757468_62726467  # "authbrdg": one advisory lock for every authbridge migrator


def config() -> Config:
    """The Alembic configuration of the store's migrations."""
    alembic_config = Config()
    alembic_config.set_main_option("script_location", str(MIGRATIONS))
    alembic_config.set_main_option("path_separator", "os")
    return alembic_config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision of the schema shipped with this version of authbridge."""
    revision = _script().get_current_head()
    if revision is None:  # pragma: no cover - the package ships its migrations
        raise RuntimeError("the store's migrations are missing from the package")
    return revision


def _newer_schema() -> ConfigurationError:
    return ConfigurationError(
        "store_schema_newer",
        message="the store's schema was written by a newer version of authbridge; "
        "upgrade authbridge",
    )


def _current_sync(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _upgrade_sync(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends: concurrent migrators wait, then find the
        # schema current.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    alembic_config = config()
    alembic_config.attributes["connection"] = connection
    command.upgrade(alembic_config, revision)


async def upgrade_database(db: Database, revision: str = "head") -> None:
    """Upgrade the schema of an open database to ``revision``, in one transaction.

    Raises:
        StoreUnavailable: the database cannot be reached.
        ConfigurationError: the database's revision is unknown to this version
            (a newer authbridge migrated it), or ``revision`` is unknown.
    """
    try:
        async with db.exclusive() as connection:
            await connection.run_sync(_upgrade_sync, revision)
    except CommandError:
        raise _newer_schema() from None


async def current_database(db: Database) -> str | None:
    """The schema revision of an open database (``None``: no schema yet)."""
    async with db.read() as connection:
        return await connection.run_sync(_current_sync)


def check_current(revision: str | None) -> None:
    """Refuse a schema other than this version's head.

    Raises:
        ConfigurationError: ``store_schema_outdated`` (run ``authbridge db
            upgrade``) or ``store_schema_newer``.
    """
    if revision == head():
        return
    if revision is not None:
        try:
            known = _script().get_revision(revision) is not None
        except CommandError:
            known = False
        if not known:
            raise _newer_schema()
    raise ConfigurationError("store_schema_outdated", message="run `authbridge db upgrade`")


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the store at ``url`` to ``revision`` (the newest by default).

    Safe to run from several processes at once.

    Raises:
        StoreUnavailable: the database cannot be reached.
        ConfigurationError: an unsupported URL, or a schema from a newer authbridge.
    """
    db = Database(url, pool_size=1)
    try:
        await upgrade_database(db, revision)
    finally:
        await db.dispose()


async def current(url: str) -> str | None:
    """The schema revision of the store at ``url`` (``None`` before the first upgrade).

    Raises:
        StoreUnavailable: the database cannot be reached.
        ConfigurationError: an unsupported URL.
    """
    db = Database(url, pool_size=1)
    if db.missing_file():  # not created just to be asked about
        return None
    try:
        return await current_database(db)
    finally:
        await db.dispose()
