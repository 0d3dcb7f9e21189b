"""The store's fixtures (tests/store_support.py): `store` runs a test on SQLite and PostgreSQL,
`ephemeral` on SQLite, PostgreSQL and Redis."""

from __future__ import annotations

from store_support import (  # noqa: F401 - fixtures
    _ephemeral_target,
    composite_store,
    ephemeral,
    ephemeral_backend,
    postgres_database,
    postgres_store,
    postgres_store_url,
    private_redis,
    redis_ephemeral,
    redis_prefix,
    sqlite_store,
    sqlite_store_url,
    store,
    store_url,
)
