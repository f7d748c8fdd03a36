"""Each post's ER readings kept: ``er_readings``, and ``er_sums.rebuilt_at``

One row per published post (its latest reading) and one per earlier age it was read at, kept
up to date with the running sums, so that a full ER pass sums rows per post instead of
seeking every snapshot. The kept sums are dropped: the next recompute reads every snapshot
and fills the new table.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import scheduler.db.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The full pass reads the rows in this order, from the index alone.
SUMS_INDEX = (
    "latest", "account_id", "content_type", "band", "published", "er", "log_er", "fallback",
    "er_last",
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "er_readings",
        sa.Column("post_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("band", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("latest", sa.Boolean(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("published", sa.Float(), nullable=False),
        sa.Column("er", sa.Float(), nullable=True),
        sa.Column("log_er", sa.Float(), nullable=True),
        sa.Column("fallback", sa.Integer(), nullable=False),
        sa.Column("er_last", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("post_id", "band"),
    )
    op.create_index("ix_er_readings_sums", "er_readings", list(SUMS_INDEX))
    op.add_column(
        "er_sums",
        sa.Column("rebuilt_at", scheduler.db.types.UTCDateTime(timezone=True), nullable=True),
    )
    # Sums without kept readings: the next recompute reads everything and keeps both.
    op.execute("DELETE FROM er_sums")


def downgrade() -> None:
    with op.batch_alter_table("er_sums") as batch:
        batch.drop_column("rebuilt_at")
    op.drop_index("ix_er_readings_sums", table_name="er_readings")
    op.drop_table("er_readings")
