"""Audit trail: who wrote or read which version of what, and when.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the ``audit_events`` table and its index by name and time."""
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("version", sa.String(64)),
    )
    op.create_index("ix_audit_events_name_at", "audit_events", ["name", "at"])


def downgrade() -> None:
    """Drop the ``audit_events`` table and the audit trail with it."""
    op.drop_index("ix_audit_events_name_at", table_name="audit_events")
    op.drop_table("audit_events")
