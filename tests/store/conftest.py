"""The store's fixtures (tests/store_support.py): `store` runs a test on SQLite and PostgreSQL."""

from __future__ import annotations

from store_support import (  # noqa: F401 - fixtures
    postgres_database,
    postgres_store,
    postgres_store_url,
    sqlite_store,
    sqlite_store_url,
    store,
    store_url,
)
