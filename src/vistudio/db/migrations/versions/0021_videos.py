"""videos in library folders: the videos table, keyframe samples (samples.video_id, video_time)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.Double(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("container", sa.String(length=16), nullable=True),
        sa.Column("codec", sa.String(length=40), nullable=True),
        sa.Column("duration", sa.Double(), nullable=True),
        sa.Column("fps", sa.Double(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("created_source", sa.String(length=16), nullable=True),
        sa.Column("poster_sample_id", sa.Integer(), nullable=True),
        sa.Column("keyframes", sa.Integer(), nullable=False),
        sa.Column("cuts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("scanned_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_videos_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["root_id"],
            ["library_roots.id"],
            name=op.f("fk_videos_root_id_library_roots"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["poster_sample_id"],
            ["samples.id"],
            name=op.f("fk_videos_poster_sample_id_samples"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_videos")),
        sa.UniqueConstraint("root_id", "path", name=op.f("uq_videos_root_id")),
    )
    op.create_index("ix_videos_project", "videos", ["project_id", "path", "id"], unique=False)
    op.create_index(op.f("ix_videos_sha256"), "videos", ["sha256"], unique=False)
    # plain ADD COLUMNs, never a rebuild of samples (a large library's biggest table): video_id has
    # no foreign key, which SQLite could only add by rebuilding the table. services/videos.py
    # deletes a video's keyframe samples before its row, and a project's deletion takes both.
    op.add_column("samples", sa.Column("video_id", sa.Integer(), nullable=True))
    op.add_column("samples", sa.Column("video_time", sa.Double(), nullable=True))
    op.create_index(op.f("ix_samples_video_id"), "samples", ["video_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_samples_video_id"), table_name="samples")
    op.drop_column("samples", "video_time")
    op.drop_column("samples", "video_id")
    op.drop_index(op.f("ix_videos_sha256"), table_name="videos")
    op.drop_index("ix_videos_project", table_name="videos")
    op.drop_table("videos")
