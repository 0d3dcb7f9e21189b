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

Redis (``redis://127.0.0.1:6379/0``; override with
``AUTHBRIDGE_TEST_REDIS_URL``) for the short-lived state:

- ``redis_prefix``: a key prefix of this test's own
  (``authbridge-test:<pid>:<random>:``; every key under it is deleted after
  the test), so tests share the server safely under pytest-xdist;
- ``redis_ephemeral``: a started `RedisEphemeral` on that prefix;
- ``ephemeral_backend`` / ``ephemeral``: parametrized ``sqlite`` /
  ``postgres`` / ``redis``: an `EphemeralBackend` that opens instances (each
  with its own connections, as two app instances) sharing one state, and the
  first such instance (what the one-time, rate-limit and replay contract runs
  on; on SQL it is a whole `SQLStore`);
- ``composite_store``: a started `CompositeStore` of the PostgreSQL store and
  a `RedisEphemeral` on ``redis_prefix``;
- ``private_redis``: a `PrivateRedis`, a redis-server of the test's own on a
  free port (to kill, stall and restart; the shared server is never touched).

A Redis that cannot be reached skips these with a message saying so, unless
``AUTHBRIDGE_REQUIRE_POSTGRES=1`` (which CI sets: it means "require the
services", PostgreSQL and Redis) or ``AUTHBRIDGE_REQUIRE_REDIS=1`` is set,
which fails them instead. Plain functions: `redis_available`,
`require_redis`, `delete_redis_prefix`, `expires_by_ttl`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from sqlalchemy.engine import make_url

from authbridge.store import OneTimeStore, RateLimitStore, ReplayStore, SQLStore
from authbridge.store._composite import CompositeStore
from authbridge.store._redis import RedisEphemeral

T = TypeVar("T")

POSTGRES_URL = os.environ.get(
    "AUTHBRIDGE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
"""The PostgreSQL server's maintenance database (where test databases are created)."""

REQUIRE_POSTGRES = os.environ.get("AUTHBRIDGE_REQUIRE_POSTGRES") == "1"
"""Fail, instead of skipping, when PostgreSQL cannot be reached."""

BACKENDS = ("sqlite", "postgres")
"""The parameters of ``store_url`` and ``store``."""

REDIS_URL = os.environ.get("AUTHBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
"""The Redis server (and database) of the tests; every test keeps to its own key prefix."""

REQUIRE_REDIS = REQUIRE_POSTGRES or os.environ.get("AUTHBRIDGE_REQUIRE_REDIS") == "1"
"""Fail, instead of skipping, when Redis cannot be reached (``AUTHBRIDGE_REQUIRE_POSTGRES=1``
requires every service)."""

EPHEMERAL_BACKENDS = ("sqlite", "postgres", "redis")
"""The parameters of ``ephemeral_backend`` and ``ephemeral``."""


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


# --- Redis ------------------------------------------------------------------------------------


def _redis_where(url: str = REDIS_URL) -> str:
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


@functools.cache
def redis_available() -> str | None:
    """``None`` when the Redis server answers, else why not (for the skip message)."""
    import redis  # noqa: PLC0415 - the test extra has it

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        return type(exc).__name__  # its text may hold the URL
    finally:
        client.close()
    return None


def require_redis() -> None:
    """Skip (or, when the services are required, fail) unless Redis answers."""
    problem = redis_available()
    if problem is None:
        return
    message = (
        f"Redis is not reachable at {_redis_where()} ({problem}); start it, e.g. with "
        "scripts/test, or point AUTHBRIDGE_TEST_REDIS_URL at one"
    )
    if REQUIRE_REDIS:
        pytest.fail(f"{message} (AUTHBRIDGE_REQUIRE_POSTGRES=1 or AUTHBRIDGE_REQUIRE_REDIS=1)")
    pytest.skip(message)


def _glob_escaped(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def delete_redis_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key under ``prefix`` at ``url``; how many."""
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        names = list(client.scan_iter(match=_glob_escaped(prefix) + "*", count=1000))
        for start in range(0, len(names), 500):
            client.delete(*names[start : start + 500])
        return len(names)
    finally:
        client.close()


def new_redis_prefix() -> str:
    """A key prefix no other test uses."""
    return f"authbridge-test:{os.getpid()}:{secrets.token_hex(6)}:"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    require_redis()
    prefix = new_redis_prefix()
    try:
        yield prefix
    finally:
        delete_redis_prefix(prefix)


@pytest.fixture
async def redis_ephemeral(redis_prefix: str) -> AsyncIterator[RedisEphemeral]:
    """A started `RedisEphemeral` on this test's prefix."""
    ephemeral = RedisEphemeral(REDIS_URL, prefix=redis_prefix)
    await ephemeral.start()
    try:
        yield ephemeral
    finally:
        await ephemeral.aclose()


class Ephemeral(Protocol):
    """What the short-lived state's contract needs: a `SQLStore` or a `RedisEphemeral`."""

    one_time: OneTimeStore
    rate_limits: RateLimitStore
    replay: ReplayStore

    async def ping(self) -> None: ...

    async def purge(self, now: float) -> int: ...

    async def aclose(self) -> None: ...


def expires_by_ttl(state: object) -> bool:
    """Whether ``state`` leaves deleting expired values to Redis (its ``purge`` counts 0)."""
    return isinstance(state, RedisEphemeral)


class EphemeralBackend:
    """Opens started instances of one backend that share one state (a database, or a
    Redis prefix), each with connections of its own; closes them all at the end."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target
        self._opened: list[Ephemeral] = []

    async def open(self, **options: Any) -> Ephemeral:
        """A started instance (``options``: of `SQLStore` or `RedisEphemeral`)."""
        state: Ephemeral
        if self.name == "redis":
            state = RedisEphemeral(REDIS_URL, prefix=self.target, **options)
            await state.start()  # type: ignore[attr-defined]
        else:
            store = SQLStore(self.target, migrate=not self._opened, **options)
            await store.start()
            state = store
        self._opened.append(state)
        return state

    async def aclose(self) -> None:
        while self._opened:
            await self._opened.pop().aclose()


@pytest.fixture(params=EPHEMERAL_BACKENDS)
def _ephemeral_target(request: pytest.FixtureRequest) -> tuple[str, str]:
    name = {"sqlite": "sqlite_store_url", "postgres": "postgres_store_url"}.get(
        request.param, "redis_prefix"
    )
    target: str = request.getfixturevalue(name)
    return request.param, target


@pytest.fixture
async def ephemeral_backend(
    _ephemeral_target: tuple[str, str],
) -> AsyncIterator[EphemeralBackend]:
    """Instances of one backend sharing one state, once per backend (sqlite, postgres, redis)."""
    backend = EphemeralBackend(*_ephemeral_target)
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.fixture
async def ephemeral(ephemeral_backend: EphemeralBackend) -> Ephemeral:
    """The short-lived state, started and empty, once per backend (sqlite, postgres, redis)."""
    return await ephemeral_backend.open()


@pytest.fixture
async def composite_store(
    postgres_store_url: str, redis_prefix: str
) -> AsyncIterator[CompositeStore]:
    """A started `CompositeStore`: PostgreSQL (emptied) and Redis (this test's prefix)."""
    store = CompositeStore(
        SQLStore(postgres_store_url), RedisEphemeral(REDIS_URL, prefix=redis_prefix)
    )
    await store.start()
    try:
        yield store
    finally:
        await store.aclose()


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port (no persistence), to stop,
    stall and restart; never the shared one. Killed by its PID."""

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        import socket  # noqa: PLC0415

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.directory = directory
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL, with the password when it has one."""
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (on the same port every time) and wait until it answers."""
        import redis  # noqa: PLC0415

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        arguments = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        arguments += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        arguments += ["--logfile", str(self.directory / "redis.log")]
        if self.password:
            arguments += ["--requirepass", self.password]
        self.process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """Kill it (SIGKILL, by PID) and wait until it is gone."""
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGCONT)  # a stalled one dies too
                self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stall(self) -> None:
        """Stop it answering (SIGSTOP): connections stay open, replies never come."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a stalled server go on (SIGCONT)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A started redis-server of this test's own (killed afterwards)."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()
