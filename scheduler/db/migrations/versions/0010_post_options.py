"""Per-post options: ``posts.post_options``

Content warning, sensitive media, visibility, language, the post replied to and a poll, as
the plan gave them (a JSON object of the given keys), or NULL when it gave none. Posts
imported before this column existed read as having none.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.add_column(sa.Column("post_options", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("post_options")
