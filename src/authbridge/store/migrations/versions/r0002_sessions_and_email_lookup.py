"""Browser sessions, and accounts looked up by email (for linking by verified email).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authbridge_sessions",
        sa.Column("id_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_seen_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("idle_expires_at", sa.Double(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("id_token", sa.LargeBinary(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["authbridge_users.id"],
            name=op.f("fk_authbridge_sessions_user_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_authbridge_sessions")),
    )
    op.create_index(
        op.f("ix_authbridge_sessions_idle_expires_at"),
        "authbridge_sessions",
        ["idle_expires_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_authbridge_sessions_user_id"), "authbridge_sessions", ["user_id"], unique=False
    )
    op.create_index(op.f("ix_authbridge_users_email"), "authbridge_users", ["email"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_authbridge_users_email"), table_name="authbridge_users")
    op.drop_index(op.f("ix_authbridge_sessions_user_id"), table_name="authbridge_sessions")
    op.drop_index(op.f("ix_authbridge_sessions_idle_expires_at"), table_name="authbridge_sessions")
    op.drop_table("authbridge_sessions")
