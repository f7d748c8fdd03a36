"""Slot learning's decisions: ``slot_decisions``

One row per change of an account's learned weekly slots: the table before and after, from
when the new one holds, the moves in words and the statistics behind them. The latest row's
table is the account's slots from its ``effective_from`` on.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import scheduler.db.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slot_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", scheduler.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("effective_from", scheduler.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("old_slots", sa.JSON(), nullable=False),
        sa.Column("new_slots", sa.JSON(), nullable=False),
        sa.Column("moves", sa.JSON(), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_slot_decisions_account_time", "slot_decisions", ["account_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_slot_decisions_account_time", table_name="slot_decisions")
    op.drop_table("slot_decisions")
