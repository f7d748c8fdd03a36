"""Posts of one plan item on several accounts: ``posts.group_key``

An item that names several accounts makes one post per account, each with the id
``ITEM@ACCOUNT``; ``group_key`` holds the item's id on each of them (NULL for a post of an
item with one account, whose id stays the item's). A partial index finds a group's posts
and leaves out every other post.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUPED = sa.text("group_key IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.add_column(sa.Column("group_key", sa.String(length=200), nullable=True))
    op.create_index(
        "ix_posts_group",
        "posts",
        ["group_key"],
        postgresql_where=GROUPED,
        sqlite_where=GROUPED,
    )


def downgrade() -> None:
    op.drop_index("ix_posts_group", table_name="posts")
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("group_key")
