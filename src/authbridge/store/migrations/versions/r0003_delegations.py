"""Users' delegations to robots (RFC 8693 ``act``): the durable grant behind delegated tokens.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authbridge_delegations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("audiences", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("may_delegate", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.Column("parent", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["authbridge_users.id"],
            name=op.f("fk_authbridge_delegations_user_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authbridge_delegations")),
    )
    op.create_index(
        op.f("ix_authbridge_delegations_expires_at"),
        "authbridge_delegations",
        ["expires_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_authbridge_delegations_user_id"),
        "authbridge_delegations",
        ["user_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_authbridge_delegations_parent"),
        "authbridge_delegations",
        ["parent"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_authbridge_delegations_parent"), table_name="authbridge_delegations")
    op.drop_index(op.f("ix_authbridge_delegations_user_id"), table_name="authbridge_delegations")
    op.drop_index(op.f("ix_authbridge_delegations_expires_at"), table_name="authbridge_delegations")
    op.drop_table("authbridge_delegations")
