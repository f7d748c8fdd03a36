"""Checkpoint notes in the database: ``checkpoint_notes``

The notes adapters keep between the attempts of one post (a reply chain's parts, a resumable
upload's session) move from files on each host to this table, so that a daemon on any host
resumes what another one started. Notes written as files by earlier versions are still read
(``scheduler.checkpoints``), so nothing is copied here.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import scheduler.db.types

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checkpoint_notes",
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("platform", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("note_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("updated_at", scheduler.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_checkpoint_notes_updated_at", "checkpoint_notes", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_checkpoint_notes_updated_at", table_name="checkpoint_notes")
    op.drop_table("checkpoint_notes")
