"""The ER readings' running sums: ``er_sums``

One row: per (account, content type) and age, the decayed sums of the readings at the time
of the last recompute and the id of the last snapshot they hold, so that the next recompute
reads only the posts new snapshots (or the passing of time) touch.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import scheduler.db.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "er_sums",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("computed_at", scheduler.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.Column("post_watermark", sa.BigInteger(), nullable=False),
        sa.Column("settings_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("sums", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("er_sums")
