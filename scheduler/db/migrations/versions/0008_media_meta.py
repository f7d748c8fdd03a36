"""Alt text and focal points of a post's media: ``posts.media_meta``

A JSON list aligned with ``posts.media``, one object per file with the keys the plan gave
(``{"alt": "...", "focus": [0.2, -0.1]}``), or NULL when it gave none. Posts imported before
this column existed read as having no metadata.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.add_column(sa.Column("media_meta", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("media_meta")
