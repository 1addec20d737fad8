"""Exports: every version of every notebook's pipeline modules.

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
    """Create the ``exports`` table: one row per version of a pipeline exported from a notebook."""
    op.create_table(
        "exports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("notebook", sa.Text, nullable=False),
        sa.Column("notebook_sha256", sa.String(64), nullable=False),
        sa.Column("out_dir", sa.Text, nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("pipeline", "version", name="uq_exports"),
    )


def downgrade() -> None:
    """Drop the ``exports`` table and every export record with it."""
    op.drop_table("exports")
