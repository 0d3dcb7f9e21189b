"""Real stores for the delegation routes: ``store_url`` runs a test on SQLite and PostgreSQL."""

from __future__ import annotations

from store_support import (  # noqa: F401 - fixtures
    postgres_database,
    postgres_store_url,
    sqlite_store_url,
    store_url,
)
