"""The store's Alembic migrations (run by `authbridge.store` and ``authbridge db upgrade``)."""
