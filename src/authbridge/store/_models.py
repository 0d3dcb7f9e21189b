"""The SQL tables of the store (SQLAlchemy Core), in their own `MetaData`.

Every table is prefixed ``authbridge_`` so the store can share a database with
the app's own tables. Times are POSIX seconds in double-precision columns, sets
of scopes or grant types space-separated text, JSON members JSON text, and
encrypted keys or one-time values binary.

The migrations under ``store/migrations`` create exactly these tables; a test
compares the two (Alembic's autogenerate finds no difference).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

PREFIX = "authbridge_"
"""Prefix of every table of the store (and of its Alembic version table)."""

VERSION_TABLE = "authbridge_alembic_version"
"""Alembic's version table for the store's migrations (the app's own migrations keep theirs)."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "authbridge_users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("username", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),
    Column("scopes", Text, nullable=False),
    Column("disabled", Boolean, nullable=False),
    # Linking by email looks accounts up by address (revision 0002).
    Column("email", Text, nullable=True, index=True),
    Column("email_verified", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
)

identities = Table(
    "authbridge_identities",
    metadata,
    Column("issuer", Text, primary_key=True),
    Column("subject", Text, primary_key=True),
    Column(
        "user_id",
        Text,
        ForeignKey("authbridge_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("email", Text, nullable=True),
    Column("email_verified", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
)

# Browser sessions (revision 0002). ``idle_expires_at`` never passes ``expires_at``
# (the store caps it), so it alone says when a session is over: one index serves reads
# and purges.
sessions = Table(
    "authbridge_sessions",
    metadata,
    Column("id_hash", Text, primary_key=True),
    Column(
        "user_id",
        Text,
        ForeignKey("authbridge_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", Double, nullable=False),
    Column("last_seen_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("idle_expires_at", Double, nullable=False, index=True),
    Column("provider", Text, nullable=True),
    Column("id_token", LargeBinary, nullable=True),
    Column("extra", Text, nullable=False),
)

clients = Table(
    "authbridge_clients",
    metadata,
    Column("client_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("auth_method", Text, nullable=False),
    Column("secret_hash", Text, nullable=True),
    Column("jwks", Text, nullable=True),
    Column("grant_types", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("redirect_uris", Text, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
)

# No foreign key to clients: built-in clients (Swagger UI's) live in memory only.
refresh_families = Table(
    "authbridge_refresh_families",
    metadata,
    Column("id", Text, primary_key=True),
    Column("client_id", Text, nullable=False, index=True),
    Column("subject", Text, nullable=False, index=True),
    Column("scopes", Text, nullable=False),
    Column("audiences", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False, index=True),
    Column("generation", Integer, nullable=False),
    Column("rotated_at", Double, nullable=True),
    Column("siblings", Integer, nullable=False),
    Column("revoked_at", Double, nullable=True, index=True),
    Column("revoked_reason", Text, nullable=True),
    Column("auth_time", Double, nullable=True),
    Column("extra", Text, nullable=False),
)

refresh_tokens = Table(
    "authbridge_refresh_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column(
        "family_id",
        Text,
        ForeignKey("authbridge_refresh_families.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("generation", Integer, nullable=False),
    Column("issued_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False, index=True),
)

signing_keys = Table(
    "authbridge_signing_keys",
    metadata,
    Column("kid", Text, primary_key=True),
    Column("alg", Text, nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("private_key", LargeBinary, nullable=False),
    Column("kek_id", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("active_from", Double, nullable=False, index=True),
    Column("retired_at", Double, nullable=True),
    Column("revoked_at", Double, nullable=True),
)

# Users' delegations to robots (revision 0003). Durable facts: SQL only, never Redis.
# No foreign key on ``actor`` (built-in clients live in memory) or ``parent`` (a
# purged parent leaves its children to end by themselves, no later than it did).
delegations = Table(
    "authbridge_delegations",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "user_id",
        Text,
        ForeignKey("authbridge_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("actor", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("audiences", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False, index=True),
    Column("label", Text, nullable=False),
    Column("may_delegate", Boolean, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Column("parent", Text, nullable=True, index=True),
)

one_time = Table(
    "authbridge_one_time",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("expires_at", Double, nullable=False, index=True),
)

rate_limits = Table(
    "authbridge_rate_limits",
    metadata,
    Column("key", Text, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("window_end", Double, nullable=False, index=True),
)

replay = Table(
    "authbridge_replay",
    metadata,
    Column("key", Text, primary_key=True),
    Column("expires_at", Double, nullable=False, index=True),
)

__all__ = [
    "PREFIX",
    "VERSION_TABLE",
    "clients",
    "delegations",
    "identities",
    "metadata",
    "one_time",
    "rate_limits",
    "refresh_families",
    "refresh_tokens",
    "replay",
    "sessions",
    "signing_keys",
    "users",
]
