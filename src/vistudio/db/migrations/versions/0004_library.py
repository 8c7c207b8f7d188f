"""photo library: roots and scan state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "library_roots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.Column("last_scan_at", sa.DateTime(), nullable=True),
        sa.Column("last_report", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_library_roots_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_roots")),
        sa.UniqueConstraint("project_id", "path", name=op.f("uq_library_roots_project_id")),
    )
    op.create_index(op.f("ix_library_roots_project_id"), "library_roots", ["project_id"], unique=False)
    op.create_table(
        "library_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.Double(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("sample_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["root_id"],
            ["library_roots.id"],
            name=op.f("fk_library_files_root_id_library_roots"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["samples.id"],
            name=op.f("fk_library_files_sample_id_samples"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_files")),
        sa.UniqueConstraint("root_id", "path", name=op.f("uq_library_files_root_id")),
    )
    op.create_index("ix_library_files_sample", "library_files", ["sample_id"], unique=False)
    op.create_index("ix_library_files_sha256", "library_files", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_library_files_sha256", table_name="library_files")
    op.drop_index("ix_library_files_sample", table_name="library_files")
    op.drop_table("library_files")
    op.drop_index(op.f("ix_library_roots_project_id"), table_name="library_roots")
    op.drop_table("library_roots")
