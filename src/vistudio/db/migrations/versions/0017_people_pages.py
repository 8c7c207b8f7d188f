"""faces: indexes for the People pages at a million faces (photos of a person, unplaced faces, photos with faces)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a person's photos from the index alone: their count (the People grid's order), the browse
    # filter "photos of these people", the person page's photos
    op.create_index("ix_faces_person_sample", "faces", ["person_id", "sample_id"], unique=False)
    # the photos with faces of a project (the People page's status), the faces of one photo
    op.create_index(
        "ix_faces_project_model_sample", "faces", ["project_id", "model", "sample_id"], unique=False
    )
    # a project's unplaced faces (the review) and placed ones, without reading the face rows
    op.create_index(
        "ix_faces_project_model_person", "faces", ["project_id", "model", "person_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_faces_project_model_person", table_name="faces")
    op.drop_index("ix_faces_project_model_sample", table_name="faces")
    op.drop_index("ix_faces_person_sample", table_name="faces")
