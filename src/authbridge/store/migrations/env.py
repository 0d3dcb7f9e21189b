"""Alembic environment of the store's migrations.

Run through `authbridge.store._migrate` (``authbridge db upgrade``), never with
an ``alembic.ini``: the caller hands over a connection already inside a
transaction that excludes other migrators, in ``config.attributes``. Only the
store's own tables (``authbridge_*``) are considered, and the revision is kept
in ``authbridge_alembic_version``, so an app's own migrations in the same
database are left alone.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from authbridge.store._models import PREFIX, VERSION_TABLE, metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Only the store's tables (and everything inside them)."""
    if type_ == "table":
        return name is not None and name.startswith(PREFIX) and name != VERSION_TABLE
    return True


config = context.config
options: dict[str, Any] = {
    "target_metadata": metadata,
    "version_table": VERSION_TABLE,
    "include_name": include_name,
    "compare_type": True,
}
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes["connection"]
    context.configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()
