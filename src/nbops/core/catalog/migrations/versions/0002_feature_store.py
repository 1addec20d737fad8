"""Feature store: groups, schema versions, data commits, the online table, lineage.

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
    """Create the feature group, version, commit and commit-column tables, ``online_features`` and ``lineage_edges``."""
    op.create_table(
        "feature_groups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_table(
        "feature_group_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("feature_groups.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("keys", sa.Text, nullable=False),
        sa.Column("event_time", sa.String(256), nullable=False),
        sa.Column("arrow_schema", sa.LargeBinary, nullable=False),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("expectations", sa.Text),
        sa.Column("author", sa.String(256)),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("group_id", "version", name="uq_feature_group_versions"),
    )
    op.create_table(
        "feature_commits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("group_version_id", sa.Integer, sa.ForeignKey("feature_group_versions.id"), nullable=False),
        sa.Column("commit_no", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("arrow_schema", sa.LargeBinary, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("inserted", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
        sa.Column("total_rows", sa.BigInteger, nullable=False),
        sa.Column("statistics", sa.Text),
        sa.Column("validation", sa.Text),
        sa.Column("lineage", sa.Text),
        sa.Column("bytes_written", sa.BigInteger, nullable=False),
        sa.Column("author", sa.String(256)),
        sa.Column("host", sa.String(256)),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("group_version_id", "commit_no", name="uq_feature_commits"),
    )
    op.create_table(
        "feature_commit_columns",
        sa.Column("commit_id", sa.Integer, sa.ForeignKey("feature_commits.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("object_digest", sa.String(32), sa.ForeignKey("objects.digest"), nullable=False),
    )
    op.create_index("ix_feature_commit_columns_object", "feature_commit_columns", ["object_digest"])
    op.create_table(
        "online_features",
        sa.Column("group_version_id", sa.Integer, sa.ForeignKey("feature_group_versions.id"), primary_key=True),
        sa.Column("entity_key", sa.Text, primary_key=True),
        sa.Column("event_time_us", sa.BigInteger, nullable=False),
        sa.Column("commit_no", sa.Integer, nullable=False),
        sa.Column("feature_values", sa.Text, nullable=False),
    )
    op.create_table(
        "lineage_edges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("parent_kind", sa.String(32), nullable=False),
        sa.Column("parent_ref", sa.String(512), nullable=False),
        sa.Column("child_kind", sa.String(32), nullable=False),
        sa.Column("child_ref", sa.String(512), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.UniqueConstraint("parent_kind", "parent_ref", "child_kind", "child_ref", name="uq_lineage_edges"),
    )
    op.create_index("ix_lineage_child", "lineage_edges", ["child_kind", "child_ref"])


def downgrade() -> None:
    """Drop the tables of revision 0002, and every feature group, online row and lineage edge with them."""
    op.drop_table("lineage_edges")
    op.drop_table("online_features")
    op.drop_table("feature_commit_columns")
    op.drop_table("feature_commits")
    op.drop_table("feature_group_versions")
    op.drop_table("feature_groups")
