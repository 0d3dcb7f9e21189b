"""The initial schema: accounts, identities, clients, refresh families, signing keys, TTL tables.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authbridge_clients",
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("auth_method", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=True),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("grant_types", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_authbridge_clients")),
    )
    op.create_table(
        "authbridge_one_time",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name=op.f("pk_authbridge_one_time")),
    )
    op.create_index(
        op.f("ix_authbridge_one_time_expires_at"),
        "authbridge_one_time",
        ["expires_at"],
        unique=False,
    )
    op.create_table(
        "authbridge_rate_limits",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_end", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_authbridge_rate_limits")),
    )
    op.create_index(
        op.f("ix_authbridge_rate_limits_window_end"),
        "authbridge_rate_limits",
        ["window_end"],
        unique=False,
    )
    op.create_table(
        "authbridge_refresh_families",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("audiences", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("rotated_at", sa.Double(), nullable=True),
        sa.Column("siblings", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.Column("auth_time", sa.Double(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authbridge_refresh_families")),
    )
    op.create_index(
        op.f("ix_authbridge_refresh_families_client_id"),
        "authbridge_refresh_families",
        ["client_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_authbridge_refresh_families_expires_at"),
        "authbridge_refresh_families",
        ["expires_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_authbridge_refresh_families_revoked_at"),
        "authbridge_refresh_families",
        ["revoked_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_authbridge_refresh_families_subject"),
        "authbridge_refresh_families",
        ["subject"],
        unique=False,
    )
    op.create_table(
        "authbridge_replay",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_authbridge_replay")),
    )
    op.create_index(
        op.f("ix_authbridge_replay_expires_at"), "authbridge_replay", ["expires_at"], unique=False
    )
    op.create_table(
        "authbridge_signing_keys",
        sa.Column("kid", sa.Text(), nullable=False),
        sa.Column("alg", sa.Text(), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("active_from", sa.Double(), nullable=False),
        sa.Column("retired_at", sa.Double(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_authbridge_signing_keys")),
    )
    op.create_index(
        op.f("ix_authbridge_signing_keys_active_from"),
        "authbridge_signing_keys",
        ["active_from"],
        unique=False,
    )
    op.create_table(
        "authbridge_users",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authbridge_users")),
        sa.UniqueConstraint("username", name=op.f("uq_authbridge_users_username")),
    )
    op.create_table(
        "authbridge_identities",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["authbridge_users.id"],
            name=op.f("fk_authbridge_identities_user_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("issuer", "subject", name=op.f("pk_authbridge_identities")),
    )
    op.create_index(
        op.f("ix_authbridge_identities_user_id"), "authbridge_identities", ["user_id"], unique=False
    )
    op.create_table(
        "authbridge_refresh_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("family_id", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["authbridge_refresh_families.id"],
            name=op.f("fk_authbridge_refresh_tokens_family_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_authbridge_refresh_tokens")),
    )
    op.create_index(
        op.f("ix_authbridge_refresh_tokens_expires_at"),
        "authbridge_refresh_tokens",
        ["expires_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_authbridge_refresh_tokens_family_id"),
        "authbridge_refresh_tokens",
        ["family_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_authbridge_refresh_tokens_family_id"), table_name="authbridge_refresh_tokens"
    )
    op.drop_index(
        op.f("ix_authbridge_refresh_tokens_expires_at"), table_name="authbridge_refresh_tokens"
    )
    op.drop_table("authbridge_refresh_tokens")
    op.drop_index(op.f("ix_authbridge_identities_user_id"), table_name="authbridge_identities")
    op.drop_table("authbridge_identities")
    op.drop_table("authbridge_users")
    op.drop_index(
        op.f("ix_authbridge_signing_keys_active_from"), table_name="authbridge_signing_keys"
    )
    op.drop_table("authbridge_signing_keys")
    op.drop_index(op.f("ix_authbridge_replay_expires_at"), table_name="authbridge_replay")
    op.drop_table("authbridge_replay")
    op.drop_index(
        op.f("ix_authbridge_refresh_families_subject"), table_name="authbridge_refresh_families"
    )
    op.drop_index(
        op.f("ix_authbridge_refresh_families_revoked_at"), table_name="authbridge_refresh_families"
    )
    op.drop_index(
        op.f("ix_authbridge_refresh_families_expires_at"), table_name="authbridge_refresh_families"
    )
    op.drop_index(
        op.f("ix_authbridge_refresh_families_client_id"), table_name="authbridge_refresh_families"
    )
    op.drop_table("authbridge_refresh_families")
    op.drop_index(op.f("ix_authbridge_rate_limits_window_end"), table_name="authbridge_rate_limits")
    op.drop_table("authbridge_rate_limits")
    op.drop_index(op.f("ix_authbridge_one_time_expires_at"), table_name="authbridge_one_time")
    op.drop_table("authbridge_one_time")
    op.drop_table("authbridge_clients")
