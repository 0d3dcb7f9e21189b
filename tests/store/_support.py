"""Helpers shared by the store's tests."""

from __future__ import annotations

import socket
from typing import Any

from sqlalchemy import text

from authbridge.store._sql_db import Database

PASSWORD = "s3cr3t-Pa55word"
"""A password put in store URLs: it must never appear in an error or output."""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_sql(url: str, *statements: str) -> list[Any]:
    """Run ``statements`` in one transaction; the rows of each (``None`` for no rows)."""
    db = Database(url)
    try:
        async with db.write() as conn:
            results = [await conn.execute(text(statement)) for statement in statements]
            return [r.all() if r.returns_rows else None for r in results]
    finally:
        await db.dispose()
