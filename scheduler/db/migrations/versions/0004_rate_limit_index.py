"""Rate-limit answers the daemons share: a partial index of the attempts a network refused
with a rate limit

Each daemon reads, at every heartbeat, the accounts a network has told to wait (an attempt
that reached the network and came back rate-limited, with a retry time still ahead), so that
a 429 answered to one daemon holds back all of them. Only those attempts are indexed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANSWERED = sa.text("outcome = 'rate_limited' AND latency_ms IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_attempts_rate_limited",
        "attempts",
        ["retry_at"],
        postgresql_where=ANSWERED,
        sqlite_where=ANSWERED,
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_rate_limited", table_name="attempts")
