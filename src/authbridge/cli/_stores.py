"""What the store commands (``db``, ``users``, ``clients``, ``keys``) share.

Every one of them takes ``--store URL`` (default: the environment variable
``AUTHBRIDGE_STORE``, then ``sqlite+aiosqlite:///authbridge.db``, the file
the app uses by default), opens the store for one operation and closes it.
A URL's password is never printed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from .._urls import redact_url
from ..errors import ConfigurationError, StoreUnavailable
from ..store import DEFAULT_STORE_URL, Store, open_store
from ._app import UNAVAILABLE, fail

STORE_ENV = "AUTHBRIDGE_STORE"

T = TypeVar("T")

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help="The store: sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB "
        f"(default: ${STORE_ENV}, then {DEFAULT_STORE_URL}).",
        show_default=False,
    ),
]


def store_url(option: str | None) -> str:
    """The store URL: the option, the environment, or the default."""
    return option or os.environ.get(STORE_ENV) or DEFAULT_STORE_URL


def redacted(url: str) -> str:
    """``url`` with any password (userinfo or ``?password=``) replaced by ``***``."""
    return redact_url(url, unparsable="<unparsable store URL>")


def with_store(option: str | None, action: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store (migrating it to the current schema), run ``action``, close it.

    Exits with 2 and a message without the URL's password when the store
    cannot be reached or is misconfigured.
    """
    url = store_url(option)

    async def run() -> T:
        store = open_store(url)
        await store.start()
        try:
            return await action(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(run())
    except StoreUnavailable as exc:
        fail(f"error: the store at {redacted(url)} is unavailable ({exc.reason})", UNAVAILABLE)
    except ConfigurationError as exc:
        fail(f"error: {exc}", UNAVAILABLE)
