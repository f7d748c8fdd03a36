"""When an attempt's request could first leave: ``attempts.sent_at``

An attempt row is opened when its post is claimed, but its request may leave much later (a
rate-limit wait) or never (the daemon stopped or was killed first). ``sent_at`` is written
right before the publish call; an attempt without it never reached the network, so a rescued
lease gives it back. Attempts recorded before this column existed count as sent.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import scheduler.db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(
            sa.Column("sent_at", scheduler.db.types.UTCDateTime(timezone=True), nullable=True)
        )
    # Older attempts may all have reached the network: never give one of them back.
    op.execute("UPDATE attempts SET sent_at = started_at")


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("sent_at")
