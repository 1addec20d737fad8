"""Active runs: which process owns each live MLflow run, so dead ones can be ended.

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
        "active_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("tracking_uri", sa.Text, nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("process_started", sa.Float, nullable=False),
        sa.Column("started", sa.DateTime, nullable=False),
    )
    op.create_index("ix_active_runs_host", "active_runs", ["host"])


def downgrade() -> None:
    op.drop_table("active_runs")
