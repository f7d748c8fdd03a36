"""Reactions in metric snapshots: ``metric_snapshots.reactions``

Networks that count reactions apart from likes (Telegram, LinkedIn, Facebook's reaction kinds)
report them in ``Metrics.reactions``; the ER loop counts them as engagements. NULL, as every
counter, when the network does not say.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.add_column(sa.Column("reactions", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.drop_column("reactions")
