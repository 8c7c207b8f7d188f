"""albums: manual albums (photos in the user's order) and smart albums (a query)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "albums",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("cover_sample_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_albums_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["cover_sample_id"],
            ["samples.id"],
            name=op.f("fk_albums_cover_sample_id_samples"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_albums")),
    )
    # a name is unique among the albums that are not deleted (a deleted one waits for its undo)
    op.create_index(
        "ux_albums_project_name",
        "albums",
        ["project_id", "name"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "album_photos",
        sa.Column("album_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["album_id"], ["albums.id"], name=op.f("fk_album_photos_album_id_albums"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_album_photos_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("album_id", "sample_id", name=op.f("pk_album_photos")),
    )
    op.create_index(
        "ix_album_photos_order", "album_photos", ["album_id", "position", "sample_id"], unique=False
    )
    op.create_index(op.f("ix_album_photos_sample_id"), "album_photos", ["sample_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_album_photos_sample_id"), table_name="album_photos")
    op.drop_index("ix_album_photos_order", table_name="album_photos")
    op.drop_table("album_photos")
    op.drop_index("ux_albums_project_name", table_name="albums")
    op.drop_table("albums")
