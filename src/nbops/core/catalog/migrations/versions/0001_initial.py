"""Initial catalog: datasets, their snapshot versions, and column objects.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the ``datasets``, ``objects``, ``snapshots`` and ``snapshot_columns`` tables."""
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_table(
        "objects",
        sa.Column("digest", sa.String(32), primary_key=True),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("n_columns", sa.Integer, nullable=False),
        sa.Column("arrow_schema", sa.LargeBinary, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("author", sa.String(256)),
        sa.Column("host", sa.String(256)),
        sa.Column("bytes_written", sa.BigInteger, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("dataset_id", "version", name="uq_snapshots_dataset_version"),
    )
    op.create_index("ix_snapshots_digest", "snapshots", ["dataset_id", "digest"])
    op.create_table(
        "snapshot_columns",
        sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("object_digest", sa.String(32), sa.ForeignKey("objects.digest"), nullable=False),
    )
    op.create_index("ix_snapshot_columns_object", "snapshot_columns", ["object_digest"])


def downgrade() -> None:
    """Drop the tables of revision 0001, and every record of datasets and their versions with them."""
    op.drop_table("snapshot_columns")
    op.drop_table("snapshots")
    op.drop_table("objects")
    op.drop_table("datasets")
