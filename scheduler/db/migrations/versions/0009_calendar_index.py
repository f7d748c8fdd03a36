"""The web calendar reads the posts the daemon will take through the daemon's own index, and
every other post through a partial index that leaves out the states new posts start in

0006's full index of due times cost a 100,000-post plan import a fifth more time; this one
is written only when a post leaves the queue (claimed, published, cancelled...) or waits for
approval.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every state but the due ones (queued, retry_wait): scheduler.states.CALENDAR_STATES.
CALENDAR = sa.text(
    "state IN ('claimed', 'published', 'failed', 'unconfirmed', 'missed', 'cancelled', "
    "'paused', 'pending_approval', 'changes_requested')"
)


def upgrade() -> None:
    op.drop_index("ix_posts_due_at", table_name="posts")
    op.create_index(
        "ix_posts_calendar",
        "posts",
        ["due_at", "id"],
        postgresql_where=CALENDAR,
        sqlite_where=CALENDAR,
    )


def downgrade() -> None:
    op.drop_index("ix_posts_calendar", table_name="posts")
    op.create_index("ix_posts_due_at", "posts", ["due_at", "id"])
