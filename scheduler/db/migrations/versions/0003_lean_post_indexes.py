"""Leaner post indexes: partial indexes for the few rows each lookup wants

Every index on ``posts`` is written on every insert and on every state change. The
(state, next_attempt_at) and content-type indexes served no query that ``ix_posts_due`` or
``ix_posts_account_state`` does not serve better; the lease index only ever looks at claimed
posts. Published posts (metrics, ER, reports) and posts that wait for a person
(unconfirmed, failed, missed) get small partial indexes of their own, so a queued post is
written to six B-trees instead of nine.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMED = sa.text("state = 'claimed'")
PUBLISHED = sa.text("state = 'published'")
SETTLING = sa.text("state IN ('unconfirmed', 'failed', 'missed')")


def upgrade() -> None:
    op.drop_index("ix_posts_state_next", table_name="posts")
    op.drop_index("ix_posts_content_type", table_name="posts")
    op.drop_index("ix_posts_lease", table_name="posts")
    op.create_index(
        "ix_posts_lease",
        "posts",
        ["lease_expires_at"],
        postgresql_where=CLAIMED,
        sqlite_where=CLAIMED,
    )
    op.create_index(
        "ix_posts_published",
        "posts",
        ["published_at"],
        postgresql_where=PUBLISHED,
        sqlite_where=PUBLISHED,
    )
    op.create_index(
        "ix_posts_settling",
        "posts",
        ["state", "updated_at"],
        postgresql_where=SETTLING,
        sqlite_where=SETTLING,
    )


def downgrade() -> None:
    op.drop_index("ix_posts_settling", table_name="posts")
    op.drop_index("ix_posts_published", table_name="posts")
    op.drop_index("ix_posts_lease", table_name="posts")
    op.create_index("ix_posts_lease", "posts", ["state", "lease_expires_at"])
    op.create_index("ix_posts_content_type", "posts", ["content_type"])
    op.create_index("ix_posts_state_next", "posts", ["state", "next_attempt_at"])
