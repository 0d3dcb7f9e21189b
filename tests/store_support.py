"""Real stores for tests: a SQLite file, and a PostgreSQL database on 127.0.0.1:5432.

Any test module (or conftest) can use these fixtures by importing them; pytest
registers fixtures found in a module's namespace::

    from store_support import (  # noqa: F401 - fixtures
        postgres_database, postgres_store_url, sqlite_store, store, store_url,
    )

Fixtures:

- ``store_url``: parametrized ``sqlite`` / ``postgres``: the URL of a fresh,
  empty store (its schema may exist; no rows). Tests using it run once per
  backend;
- ``store``: the same, as a started [SQLStore] (schema at head), closed after
  the test;
- ``sqlite_store_url`` / ``sqlite_store``: the SQLite file only;
- ``postgres_store_url`` / ``postgres_store``: PostgreSQL only;
- ``postgres_database``: (session) the URL of the test session's PostgreSQL
  database, created on first use and dropped at the end of the session.

PostgreSQL (``postgres`` user, trust authentication; override the server with
``AUTHBRIDGE_TEST_POSTGRES_URL``) that cannot be reached skips the
``postgres`` parameters with a message saying so, unless
``AUTHBRIDGE_REQUIRE_POSTGRES=1`` (set by ``scripts/test`` under CI), which
fails them instead.

Plain functions: `postgres_available`, `fresh_postgres_database` (a context
manager: a new empty database of your own, dropped after), `truncate_postgres`,
and `run_async` (run a coroutine to completion from synchronous code, in a
thread of its own).
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import make_url

from authbridge.store import SQLStore

T = TypeVar("T")

POSTGRES_URL = os.environ.get(
    "AUTHBRIDGE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
"""The PostgreSQL server's maintenance database (where test databases are created)."""

REQUIRE_POSTGRES = os.environ.get("AUTHBRIDGE_REQUIRE_POSTGRES") == "1"
"""Fail, instead of skipping, when PostgreSQL cannot be reached."""

BACKENDS = ("sqlite", "postgres")
"""The parameters of ``store_url`` and ``store``."""


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``factory()`` to completion in a new event loop in a new thread.

    Works from synchronous fixtures whether or not an event loop is running
    in the calling thread.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        async def main() -> T:
            return await factory()

        try:
            result.append(asyncio.run(main()))
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    thread = threading.Thread(target=target, name="store-support")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _connect_args(url: str, database: str | None = None) -> dict[str, Any]:
    parsed = make_url(url)
    return {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username or "postgres",
        "password": parsed.password,
        "database": database or parsed.database or "postgres",
        "timeout": 3,
    }


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@functools.cache
def postgres_available() -> str | None:
    """``None`` when the PostgreSQL server answers, else why not (for the skip message)."""
    import asyncpg  # noqa: PLC0415 - the test extra has it; imported only when needed

    async def probe() -> None:
        connection = await asyncpg.connect(**_connect_args(POSTGRES_URL))
        await connection.close()

    try:
        run_async(probe)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def require_postgres() -> None:
    """Skip (or, with AUTHBRIDGE_REQUIRE_POSTGRES=1, fail) unless PostgreSQL answers."""
    problem = postgres_available()
    if problem is None:
        return
    message = (
        f"PostgreSQL is not reachable at {make_url(POSTGRES_URL).host}:"
        f"{make_url(POSTGRES_URL).port or 5432} ({problem}); start it, e.g. with scripts/test"
    )
    if REQUIRE_POSTGRES:
        pytest.fail(f"{message} (AUTHBRIDGE_REQUIRE_POSTGRES=1)")
    pytest.skip(message)


def _create_database(name: str) -> None:
    import asyncpg  # noqa: PLC0415

    async def create() -> None:
        connection = await asyncpg.connect(**_connect_args(POSTGRES_URL))
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    run_async(create)


def _drop_database(name: str) -> None:
    import asyncpg  # noqa: PLC0415

    async def drop() -> None:
        connection = await asyncpg.connect(**_connect_args(POSTGRES_URL))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    run_async(drop)


@contextmanager
def fresh_postgres_database(prefix: str = "authbridge_test") -> Iterator[str]:
    """A new, empty PostgreSQL database (no schema); its asyncpg URL. Dropped afterwards.

    Skips (or fails) like the fixtures when PostgreSQL is not reachable.
    """
    require_postgres()
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    _create_database(name)
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        _drop_database(name)


def truncate_postgres(url: str) -> None:
    """Delete every row of the store's tables (``authbridge_*``) in the database at ``url``."""
    import asyncpg  # noqa: PLC0415

    database = make_url(url).database

    async def truncate() -> None:
        connection = await asyncpg.connect(**_connect_args(url, database))
        try:
            names = [
                row["tablename"]
                for row in await connection.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename LIKE 'authbridge\\_%' AND tablename <> "
                    "'authbridge_alembic_version'"
                )
            ]
            if names:
                await connection.execute(
                    "TRUNCATE TABLE " + ", ".join(f'"{name}"' for name in names) + " CASCADE"
                )
        finally:
            await connection.close()

    run_async(truncate)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The test session's PostgreSQL database (created on first use, dropped at the end)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_store_url(postgres_database: str) -> str:
    """The session's PostgreSQL database with every store table emptied."""
    truncate_postgres(postgres_database)
    return postgres_database


@pytest.fixture
def sqlite_store_url(tmp_path: Path) -> str:
    """A SQLite file of this test's own (created on first start)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'authbridge.db'}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty store's URL, once per backend (sqlite, postgres)."""
    name = "sqlite_store_url" if request.param == "sqlite" else "postgres_store_url"
    url: str = request.getfixturevalue(name)
    return url


async def _started(url: str) -> AsyncIterator[SQLStore]:
    store = SQLStore(url)
    await store.start()
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SQLStore]:
    """A started, empty store, once per backend (sqlite, postgres)."""
    async for started in _started(store_url):
        yield started


@pytest.fixture
async def sqlite_store(sqlite_store_url: str) -> AsyncIterator[SQLStore]:
    """A started, empty store in a SQLite file."""
    async for started in _started(sqlite_store_url):
        yield started


@pytest.fixture
async def postgres_store(postgres_store_url: str) -> AsyncIterator[SQLStore]:
    """A started, empty store in the session's PostgreSQL database."""
    async for started in _started(postgres_store_url):
        yield started
