"""``authbridge db``: the store's schema.

``upgrade`` applies the migrations shipped with this version of authbridge
(safe while other instances start: one migrator at a time); ``current`` shows
the schema revision and whether it is this version's. Apps that start with
``AppIssuer(migrate=False)`` run ``authbridge db upgrade`` as a deploy step.

The store URL comes from ``--store``, then ``$AUTHBRIDGE_STORE``, then
``sqlite+aiosqlite:///authbridge.db``; its password is never printed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import typer

from ..errors import ConfigurationError, StoreUnavailable
from ..store import _migrate
from ._app import OK, REFUSED, UNAVAILABLE, Command, fail, group
from ._stores import StoreOption, redacted, store_url

T = TypeVar("T")

db_app = group(
    "db",
    "Create or upgrade the store's schema.\n\nThe store keeps its own tables "
    "(authbridge_*) and its own Alembic version table (authbridge_alembic_version).",
)


def _run(url: str, action: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(action())
    except StoreUnavailable as exc:
        fail(f"error: the store at {redacted(url)} is unavailable ({exc.reason})", UNAVAILABLE)
    except ConfigurationError as exc:
        fail(f"error: {exc}", UNAVAILABLE)


@db_app.command("upgrade", cls=Command, short_help="Apply the schema migrations of this version.")
def upgrade(store: StoreOption = None) -> None:
    """Create the store's tables, or upgrade them to this version's schema.

    Safe to run while other instances start or upgrade: one migrator runs at a
    time, the others find the schema current.
    """
    url = store_url(store)

    async def action() -> tuple[str | None, str | None]:
        before = await _migrate.current(url)
        await _migrate.upgrade(url)
        return before, await _migrate.current(url)

    before, after = _run(url, action)
    where = redacted(url)
    if before == after:
        typer.echo(f"{where}: schema {after} is current")
    else:
        typer.echo(f"{where}: schema upgraded from {before or '(none)'} to {after}")
    raise typer.Exit(OK)


@db_app.command(
    "current", cls=Command, short_help="Show the store's schema revision (exit 1 if outdated)."
)
def current(store: StoreOption = None) -> None:
    """Show the store's schema revision and this version's.

    Exits with 0 when the schema is this version's, 1 when it is missing or
    outdated (run ``authbridge db upgrade``) or newer, 2 when the store cannot
    be reached.
    """
    url = store_url(store)
    revision = _run(url, lambda: _migrate.current(url))
    head = _migrate.head()
    where = redacted(url)
    if revision == head:
        typer.echo(f"{where}: schema {revision} (current)")
        raise typer.Exit(OK)
    try:
        _migrate.check_current(revision)
    except ConfigurationError as exc:
        if exc.reason == "store_schema_newer":
            typer.echo(
                f"{where}: schema {revision} is newer than this authbridge's ({head}); "
                "upgrade authbridge"
            )
        else:
            typer.echo(
                f"{where}: schema {revision or '(none)'}, this version needs {head}: "
                "run `authbridge db upgrade`"
            )
    raise typer.Exit(REFUSED)
