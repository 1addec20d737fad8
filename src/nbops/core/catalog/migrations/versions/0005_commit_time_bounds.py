"""Feature commits record the span of event times they wrote, so a commit reads only the history it can overlap.

Revision ID: 0005
Revises: 0004

Commits made before this revision get NULL bounds: a later commit reads
them as it did before (they may overlap anything).  Their statistics stay as
they were; from this revision on a commit's statistics may be NULL until first
asked for.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``time_min_us`` and ``time_max_us`` to ``feature_commits``."""
    op.add_column("feature_commits", sa.Column("time_min_us", sa.BigInteger))
    op.add_column("feature_commits", sa.Column("time_max_us", sa.BigInteger))


def downgrade() -> None:
    """Drop the bounds (an older nbops shows a commit whose statistics were never asked for as having none)."""
    with op.batch_alter_table("feature_commits") as batch:
        batch.drop_column("time_max_us")
        batch.drop_column("time_min_us")
