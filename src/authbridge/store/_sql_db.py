"""The SQL backend's engine: URLs, connection set-up, units of work, error mapping.

SQLite (aiosqlite) and PostgreSQL (asyncpg) behind one SQLAlchemy async
engine. Every unit of work is one transaction, with as few round trips as
that takes:

- a read of one statement ([first][authbridge.store._sql_db.Database.first],
  [all][authbridge.store._sql_db.Database.all]) and a write of one statement
  ([change][authbridge.store._sql_db.Database.change]) run without an
  explicit transaction (PostgreSQL ``AUTOCOMMIT``, SQLite without ``BEGIN``):
  one statement is atomic by itself, so the ``BEGIN`` and ``COMMIT`` round
  trips are saved. A read that fails because its connection was lost is run
  once more on a fresh connection; a write never is (it may have committed);
- a pooled PostgreSQL connection whose socket the driver saw close is
  replaced at checkout (no ``SELECT 1`` before every use);

- on SQLite, the driver's own transaction handling is off and authbridge
  emits ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for writes (the write lock is
  taken before the first read, so a compare-and-set never works on a stale
  snapshot), ``BEGIN EXCLUSIVE`` for migrations. Writers of one process queue
  on an `asyncio.Lock` instead of polling SQLite's lock; writers of other
  processes wait through ``busy_timeout``. An in-memory database is one
  shared connection, so every unit of work takes the lock;
- on PostgreSQL, single statements decide races (``UPDATE ... WHERE`` whose
  row count decides, ``DELETE ... RETURNING``, ``INSERT ... ON CONFLICT``),
  correct under READ COMMITTED.

Every database failure becomes [StoreUnavailable][authbridge.store.StoreUnavailable]
with a reason naming only the failure's kind (never the URL, its password,
a statement or its parameters); a uniqueness violation becomes
[Conflict][authbridge.store.Conflict].
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal, NamedTuple

from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import await_only

from ..errors import ConfigurationError, StoreUnavailable
from ._records import Conflict

Dialect = Literal["sqlite", "postgresql"]
BeginMode = Literal["DEFERRED", "IMMEDIATE", "EXCLUSIVE", "NONE"]

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another process's write lock."""

PG_CONNECT_TIMEOUT = 5.0
"""Seconds to establish a PostgreSQL connection before the store is unavailable."""

PG_COMMAND_TIMEOUT = 30.0
"""Seconds one PostgreSQL statement may take."""

POOL_TIMEOUT = 10.0
"""Seconds to wait for a free pooled connection."""

PG_STATEMENT_CACHE = 256
"""Prepared statements asyncpg keeps per PostgreSQL connection."""

_BEGIN_OPTION = "authbridge_begin"

_driver_errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError, TimeoutError)
_lost_errors: tuple[type[BaseException], ...] = ()
try:  # the postgres extra (untyped: looked up, not imported for the type checker)
    _asyncpg: Any = importlib.import_module("asyncpg")
    _driver_errors = (*_driver_errors, _asyncpg.PostgresError, _asyncpg.InterfaceError)
    _lost_errors = (
        _asyncpg.ConnectionDoesNotExistError,
        _asyncpg.InterfaceError,
    )
except ImportError:  # pragma: no cover - asyncpg is in the test extra
    pass


class _NoDriverArguments(logging.Filter):
    """Drop the arguments of aiosqlite's DEBUG records.

    aiosqlite logs every call it runs at DEBUG, with the statement's parameters
    (password hashes, token hashes, usernames) in the record's arguments: with
    DEBUG logging on, they would reach the app's logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG and record.args:
            record.msg = f"{str(record.msg).split(' %', 1)[0]} (arguments not logged)"
            record.args = None
        return True


if not any(isinstance(f, _NoDriverArguments) for f in logging.getLogger("aiosqlite").filters):
    logging.getLogger("aiosqlite").addFilter(_NoDriverArguments())


_failures: tuple[type[BaseException], ...] = (sa_exc.SQLAlchemyError, *_driver_errors)
"""What a database failure raises: SQLAlchemy's errors, and the drivers' own."""


def parse_url(url: str) -> tuple[URL, Dialect]:
    """The SQLAlchemy URL with its async driver, and its dialect.

    ``sqlite://`` and ``postgresql://`` (or ``postgres://``) without a
    driver get aiosqlite and asyncpg.

    Raises:
        ConfigurationError: not a SQLite or PostgreSQL URL, a synchronous
            driver, or asyncpg missing for PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise ConfigurationError(
            "invalid_store_url",
            message="the store URL must look like sqlite+aiosqlite:///authbridge.db or "
            "postgresql+asyncpg://user@host/database",
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite"), "sqlite"
    if backend == "postgresql" and driver in ("", "asyncpg"):
        if importlib.util.find_spec("asyncpg") is None:
            raise ConfigurationError(
                "store_needs_postgres_extra",
                message="a PostgreSQL store needs asyncpg: pip install 'authbridge[postgres]'",
            )
        return parsed.set(drivername="postgresql+asyncpg"), "postgresql"
    raise ConfigurationError(
        "unsupported_store_url",
        message=f"unsupported store URL scheme {parsed.drivername!r}: use sqlite+aiosqlite:///"
        "PATH or postgresql+asyncpg://USER@HOST/DATABASE",
    )


def _is_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


def _is_unique_violation(exc: sa_exc.IntegrityError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23505":  # asyncpg
        return True
    cause = getattr(orig, "__cause__", None)
    if getattr(cause, "sqlstate", None) == "23505":
        return True
    text = str(orig)
    return "UNIQUE constraint failed" in text or "PRIMARY KEY" in text


def _is_foreign_key_violation(exc: sa_exc.IntegrityError) -> bool:
    orig = exc.orig
    for candidate in (orig, getattr(orig, "__cause__", None)):
        if getattr(candidate, "sqlstate", None) == "23503":
            return True
    return "FOREIGN KEY constraint failed" in str(orig)


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The store error for a driver or pool failure (its kind only, no text of it)."""
    inner: BaseException = exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        inner = exc.orig
        cause = getattr(inner, "__cause__", None)  # aiosqlite / asyncpg adapters wrap
        if isinstance(cause, BaseException):
            inner = cause
    name = type(inner).__name__
    if isinstance(exc, sa_exc.TimeoutError) or isinstance(inner, TimeoutError):
        reason = "timeout"
    elif isinstance(inner, OSError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        reason = "unreachable"
    elif isinstance(inner, sqlite3.OperationalError) and "locked" in str(inner):
        reason = "busy"
    elif isinstance(exc, sa_exc.InterfaceError) or "Interface" in name or "Connection" in name:
        reason = "unreachable"
    else:
        reason = "database_error"
    return StoreUnavailable(f"{reason}:{name}")


class Changed(NamedTuple):
    """What one writing statement did."""

    row: Any | None
    """Its first returned row (``RETURNING``), if any."""
    rowcount: int
    """How many rows it changed."""


class _Lost(StoreUnavailable):
    """The unit's connection was lost (a read may run again on a fresh one)."""

    def __init__(self, error: StoreUnavailable) -> None:
        super().__init__(error.reason)
        self.error = error


def _is_lost(exc: BaseException) -> bool:
    """Whether the failure is a lost connection (not an error of the statement)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        inner: BaseException | None = exc.orig
        cause = getattr(inner, "__cause__", None)
        if isinstance(cause, BaseException):
            inner = cause
    else:
        inner = exc
    return _lost_errors != () and isinstance(inner, _lost_errors)


_PING = text("SELECT 1")


class Database:
    """One async engine and its units of work (see the module docstring).

    Nothing connects before the first unit of work.
    """

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        parsed, dialect = parse_url(url)
        self.url = parsed
        self.dialect: Dialect = dialect
        self.memory = dialect == "sqlite" and _is_memory(parsed)
        options: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if dialect == "sqlite":
            if self.memory:
                options["poolclass"] = StaticPool
            else:
                options.update(pool_size=pool_size, pool_timeout=POOL_TIMEOUT)
            options["connect_args"] = {"check_same_thread": False}
        else:
            options.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=POOL_TIMEOUT,
                connect_args={
                    "timeout": PG_CONNECT_TIMEOUT,
                    "command_timeout": PG_COMMAND_TIMEOUT,
                    "prepared_statement_cache_size": PG_STATEMENT_CACHE,
                },
            )
        self.engine: AsyncEngine = create_async_engine(parsed, **options)
        if dialect == "sqlite":
            _sqlite_events(self.engine)
            modes: tuple[BeginMode, ...] = ("NONE", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")
            self._engines = {
                mode: self.engine.execution_options(**{_BEGIN_OPTION: mode}) for mode in modes
            }
        else:
            _postgres_events(self.engine)
            autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self._engines = {
                "NONE": autocommit,
                "DEFERRED": self.engine,
                "IMMEDIATE": self.engine,
                "EXCLUSIVE": self.engine,
            }
        # SQLite takes one writer at a time: this process's writers queue here (and
        # every unit of work of the single in-memory connection).
        self._lock: asyncio.Lock | None = asyncio.Lock() if dialect == "sqlite" else None
        # A SQLite file whose directory is missing is refused before aiosqlite tries
        # it: a failed aiosqlite connect can leave its worker thread posting to a
        # closed event loop.
        self._directory: Path | None = None
        if dialect == "sqlite" and not self.memory:
            self._directory = Path(parsed.database or "").expanduser().absolute().parent

    def missing_file(self) -> bool:
        """Whether this is a SQLite file that does not exist yet."""
        if self.dialect != "sqlite" or self.memory:
            return False
        return not Path(self.url.database or "").expanduser().exists()

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT (with ``on_conflict_do_update``)."""
        if self.dialect == "sqlite":
            return sqlite.insert(table)
        return postgresql.insert(table)

    def _guard(self, *, write: bool) -> AbstractAsyncContextManager[Any]:
        if self._lock is not None and (write or self.memory):
            return self._lock
        return nullcontext()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work: each statement sees the data committed before it.

        Without an explicit transaction (a single-statement read needs none);
        prefer [first][authbridge.store._sql_db.Database.first] and
        [all][authbridge.store._sql_db.Database.all], which also survive a
        lost connection.
        """
        async with self._unit(write=False, mode="NONE", transaction=False) as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A writing unit of work: one transaction, committed at the end."""
        async with self._unit(write=True, mode="IMMEDIATE", transaction=True) as conn:
            yield conn

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[AsyncConnection]:
        """A unit of work that excludes every other writer and reader (migrations).

        On SQLite ``BEGIN EXCLUSIVE``; PostgreSQL callers take an advisory lock.
        """
        async with self._unit(write=True, mode="EXCLUSIVE", transaction=True) as conn:
            yield conn

    async def first(self, statement: Any, params: Any = None) -> Any | None:
        """Run one reading statement; its first row (``None`` without rows)."""
        for attempt in (1, 2):
            try:
                async with self._unit(
                    write=False, mode="NONE", transaction=False, retryable=True
                ) as conn:
                    return (await conn.execute(statement, params)).first()
            except _Lost:
                if attempt == 2:
                    raise StoreUnavailable("unreachable:connection_lost") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def all(self, statement: Any, params: Any = None) -> list[Any]:
        """Run one reading statement; every row."""
        for attempt in (1, 2):
            try:
                async with self._unit(
                    write=False, mode="NONE", transaction=False, retryable=True
                ) as conn:
                    return list((await conn.execute(statement, params)).all())
            except _Lost:
                if attempt == 2:
                    raise StoreUnavailable("unreachable:connection_lost") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def change(self, statement: Any, params: Any = None) -> Changed:
        """Run one writing statement as its own transaction (never retried).

        Returns:
            Its first returned row (``RETURNING``) and its row count.
        """
        async with self._unit(write=True, mode="NONE", transaction=False) as conn:
            result = await conn.execute(statement, params)
            row = result.first() if result.returns_rows else None
            return Changed(row, int(result.rowcount))

    @asynccontextmanager
    async def _unit(
        self, *, write: bool, mode: BeginMode, transaction: bool, retryable: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        if self._directory is not None:
            if not self._directory.is_dir():
                raise StoreUnavailable("unreachable:no_such_directory")
            self._directory = None  # checked once: the file exists from now on
        try:
            async with self._guard(write=write), self._engines[mode].connect() as conn:
                if transaction:
                    async with conn.begin():
                        yield conn
                else:
                    yield conn
        except sa_exc.IntegrityError as exc:
            if _is_unique_violation(exc):
                raise Conflict("a record with this key exists") from None
            if _is_foreign_key_violation(exc):
                raise KeyError("the referenced record does not exist") from None
            raise unavailable(exc) from None
        except _failures as exc:
            if retryable and _is_lost(exc):
                raise _Lost(unavailable(exc)) from None
            raise unavailable(exc) from None

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the database answers now."""
        await self.first(_PING)

    async def dispose(self) -> None:
        """Close every pooled connection (an in-memory database is gone)."""
        await self.engine.dispose()


def _sqlite_events(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # authbridge emits BEGIN itself (below): the driver would start transactions
        # late (not before DDL) and always DEFERRED.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        _wal(cursor)  # readers never block the writer
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        if mode == "NONE":  # one statement, its own transaction
            return
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):  # pragma: no cover
            mode = "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")

    # A ROLLBACK outside a transaction changes nothing, but costs a hop to
    # aiosqlite's thread (after every statement run without BEGIN, and when a
    # connection returns to the pool): skipped when SQLite is in no transaction.
    dialect = engine.sync_engine.dialect
    rollback = dialect.do_rollback

    def _do_rollback(dbapi_connection: Any) -> None:
        if _sqlite_in_transaction(dbapi_connection) is False:
            return
        rollback(dbapi_connection)

    dialect.do_rollback = _do_rollback  # type: ignore[method-assign]


def _wal(cursor: Any) -> None:
    """Switch the file to WAL, once; wait while another connection holds it.

    Changing the journal mode needs the file to itself, and SQLite answers
    ``database is locked`` at once, without its busy handler, while another
    connection (another instance starting, migrating) is using it. Runs in
    SQLAlchemy's greenlet on the event loop, so it waits with the loop's sleep.
    """
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is not None and str(row[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await_only(asyncio.sleep(0.02))  # the event loop's, not a blocking sleep


def _sqlite_in_transaction(dbapi_connection: Any) -> bool | None:
    """Whether the sqlite3 connection under the adapters is in a transaction (``None``: unknown)."""
    connection = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)  # pool proxy
    driver = getattr(connection, "_connection", None)  # aiosqlite.Connection
    raw = getattr(driver, "_connection", None)  # sqlite3.Connection (None once closed)
    if isinstance(raw, sqlite3.Connection):
        return raw.in_transaction
    return None


def _postgres_events(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # asyncpg notices a closed socket (a restarted server, a terminated
        # backend) without a round trip: such a connection is replaced here.
        driver = getattr(dbapi_connection, "_connection", None)
        if driver is not None and driver.is_closed():
            raise sa_exc.DisconnectionError("the pooled connection is closed")
