"""faces: the review's suggestion kept on each unplaced face (person, distance, nearest face) and its indexes

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain columns (no foreign key, like people.cover_face_id): SQLite adds them in place, without
    # copying a million faces' table; services.people clears a deleted person's suggestions. Every
    # face starts without a suggestion worked out: the next grouping (or the review's first visit,
    # which queues the work) fills them in.
    op.add_column("faces", sa.Column("suggested_person_id", sa.Integer(), nullable=True))
    op.add_column("faces", sa.Column("suggested_distance", sa.Double(), nullable=True))
    op.add_column("faces", sa.Column("suggested_face_id", sa.Integer(), nullable=True))
    # the review's page and count, surest first, from the index alone
    op.create_index(
        "ix_faces_review",
        "faces",
        ["project_id", "model", "person_id", "suggested_distance", "id", "suggested_person_id"],
        unique=False,
    )
    # the suggestions that name a person (hidden, merged, deleted) or come from a face (moved)
    op.create_index("ix_faces_suggested_person", "faces", ["suggested_person_id"], unique=False)
    op.create_index("ix_faces_suggested_face", "faces", ["suggested_face_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_faces_suggested_face", table_name="faces")
    op.drop_index("ix_faces_suggested_person", table_name="faces")
    op.drop_index("ix_faces_review", table_name="faces")
    op.drop_column("faces", "suggested_face_id")
    op.drop_column("faces", "suggested_distance")
    op.drop_column("faces", "suggested_person_id")
