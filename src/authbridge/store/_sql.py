"""The SQL store: SQLite (embedded default) and PostgreSQL through SQLAlchemy async."""

from __future__ import annotations

from .._urls import redact_url
from . import _migrate
from ._protocols import (
    ClientStore,
    DelegationStore,
    IdentityStore,
    OneTimeStore,
    RateLimitStore,
    RefreshStore,
    ReplayStore,
    SessionStore,
    SigningKeyStore,
    Store,
    UserStore,
)
from ._sql_accounts import SQLClients, SQLIdentities, SQLUsers
from ._sql_db import Database
from ._sql_delegations import SQLDelegations
from ._sql_ephemeral import SQLOneTime, SQLRateLimits, SQLReplay
from ._sql_sessions import SQLSessions
from ._sql_tokens import SQLKeys, SQLRefresh

DEFAULT_STORE_URL = "sqlite+aiosqlite:///authbridge.db"
"""The embedded default: a SQLite file ``authbridge.db`` in the working directory."""


class SQLStore:
    """The store in a SQL database: SQLite through aiosqlite, or PostgreSQL through asyncpg.

    ``sqlite+aiosqlite:///PATH`` needs no server (``sqlite+aiosqlite:///:memory:``
    keeps everything in one in-memory connection, for tests and demos);
    ``postgresql+asyncpg://USER@HOST/DATABASE`` needs ``pip install
    'authbridge[postgres]'``. Without a driver (``sqlite:///``,
    ``postgresql://``) these two are used. Nothing connects before
    [start][authbridge.store.SQLStore.start].

    Example:
        ```python
        store = SQLStore("sqlite+aiosqlite:///authbridge.db")
        await store.start()  # creates or upgrades the schema
        user = await store.users.by_username("alice")
        await store.aclose()
        ```

    Args:
        url: The database URL (its password never appears in an error).
        migrate: Upgrade the schema in [start][authbridge.store.SQLStore.start]
            (several instances starting at once are safe). With ``False``,
            `start` refuses a schema older than this version's: run
            ``authbridge db upgrade`` as a deploy step.
        pool_size: Connections kept open (PostgreSQL allows as many again
            in bursts).
        echo: Log every SQL statement (parameters hidden), for debugging.

    Raises:
        ConfigurationError: not a SQLite or PostgreSQL URL, or asyncpg is not
            installed for a PostgreSQL URL.
    """

    def __init__(
        self, url: str, *, migrate: bool = True, pool_size: int = 10, echo: bool = False
    ) -> None:
        self._db = Database(url, pool_size=pool_size, echo=echo)
        self.migrate = migrate
        self.dialect = self._db.dialect
        self.users: UserStore = SQLUsers(self._db)
        self.identities: IdentityStore = SQLIdentities(self._db)
        self.sessions: SessionStore = SQLSessions(self._db)
        self.clients: ClientStore = SQLClients(self._db)
        self.refresh: RefreshStore = SQLRefresh(self._db)
        self.keys: SigningKeyStore = SQLKeys(self._db)
        self.delegations: DelegationStore = SQLDelegations(self._db)
        self.one_time: OneTimeStore = SQLOneTime(self._db)
        self.rate_limits: RateLimitStore = SQLRateLimits(self._db)
        self.replay: ReplayStore = SQLReplay(self._db)

    def __repr__(self) -> str:
        shown = redact_url(self._db.url.render_as_string(hide_password=True))
        return f"SQLStore({shown!r})"

    async def start(self) -> None:
        """Connect, and upgrade the schema (``migrate=True``) or check it is current.

        Raises:
            StoreUnavailable: the database cannot be reached.
            ConfigurationError: ``store_schema_outdated`` with ``migrate=False``
                (run ``authbridge db upgrade``), or ``store_schema_newer``
                (a newer authbridge migrated the database).
        """
        if self.migrate:
            await _migrate.upgrade_database(self._db)
        else:
            _migrate.check_current(await _migrate.current_database(self._db))

    async def aclose(self) -> None:
        """Close every connection (an in-memory database is gone)."""
        await self._db.dispose()

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the database answers now.

        Raises:
            StoreUnavailable: the database cannot be reached or failed.
        """
        await self._db.ping()

    async def purge(self, now: float) -> int:
        """Delete every expired row (refresh tokens and families, sessions, delegations,
        one-time values, rate-limit windows, replay records); how many."""
        return (
            await self.refresh.purge(now)
            + await self.delegations.purge(now)
            + await self.sessions.purge(now)
            + await self.one_time.purge(now)
            + await self.rate_limits.purge(now)
            + await self.replay.purge(now)
        )


def open_store(url_or_store: str | Store, *, migrate: bool = True) -> Store:
    """A store object from a URL (a [SQLStore][authbridge.store.SQLStore]), or the store given.

    Nothing connects until the store's ``start()``.

    Args:
        url_or_store: A database URL, or any object implementing
            [Store][authbridge.store.Store] (returned as it is).
        migrate: For a URL: whether ``start()`` upgrades the schema.

    Raises:
        ConfigurationError: an unsupported URL, or asyncpg missing for PostgreSQL.
    """
    if isinstance(url_or_store, str):
        return SQLStore(url_or_store, migrate=migrate)
    return url_or_store
