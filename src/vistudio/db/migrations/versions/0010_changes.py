"""changes: the append-only edit history of tags and labels, one entry per changed sample

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reverts", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_changes_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reverts"], ["changes.id"], name=op.f("fk_changes_reverts_changes"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
    )
    op.create_index("ix_changes_project_id_id", "changes", ["project_id", "id"], unique=False)
    op.create_index(op.f("ix_changes_reverts"), "changes", ["reverts"], unique=False)
    op.create_table(
        "change_entries",
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["change_id"], ["changes.id"], name=op.f("fk_change_entries_change_id_changes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_change_entries_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("change_id", "sample_id", name=op.f("pk_change_entries")),
    )
    op.create_index(op.f("ix_change_entries_sample_id"), "change_entries", ["sample_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_change_entries_sample_id"), table_name="change_entries")
    op.drop_table("change_entries")
    op.drop_index(op.f("ix_changes_reverts"), table_name="changes")
    op.drop_index("ix_changes_project_id_id", table_name="changes")
    op.drop_table("changes")
