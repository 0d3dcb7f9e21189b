"""A first start on a SQLite file another connection holds waits for it, not fails.

Two instances starting at once on a new file: the second waits (busy timeout,
and a retried switch to WAL) while the loop keeps running.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from authbridge.store import SQLStore


async def test_the_first_start_waits_for_a_connection_holding_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a rollback journal file, held by another connection
    store = SQLStore(f"sqlite+aiosqlite:///{path}")
    starting = asyncio.ensure_future(store.start())
    await asyncio.sleep(0.5)
    assert not starting.done()  # waiting, and the event loop still runs this test
    holder.execute("ROLLBACK")
    holder.close()
    await asyncio.wait_for(starting, 15)
    try:
        await store.ping()
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        raw.close()
    finally:
        await store.aclose()
