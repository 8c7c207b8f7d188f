"""duplicate review: dihedral perceptual hashes, review decisions, hidden samples, group cache

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duplicate_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("group_key", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("keeper_id", sa.Integer(), nullable=True),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("affected", sa.JSON(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_duplicate_decisions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_decisions")),
        sa.UniqueConstraint("project_id", "group_key", name=op.f("uq_duplicate_decisions_project_id")),
    )
    op.create_index(
        op.f("ix_duplicate_decisions_project_id"), "duplicate_decisions", ["project_id"], unique=False
    )
    op.create_table(
        "duplicate_hashes",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("variants", sa.LargeBinary(length=64), nullable=False),
        sa.Column("exact", sa.Boolean(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["samples.id"],
            name=op.f("fk_duplicate_hashes_sample_id_samples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sample_id", name=op.f("pk_duplicate_hashes")),
    )
    op.create_table(
        "hidden_samples",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=True),
        sa.Column("hidden_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["duplicate_decisions.id"],
            name=op.f("fk_hidden_samples_decision_id_duplicate_decisions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_hidden_samples_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["samples.id"],
            name=op.f("fk_hidden_samples_sample_id_samples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sample_id", name=op.f("pk_hidden_samples")),
    )
    op.create_index(op.f("ix_hidden_samples_decision_id"), "hidden_samples", ["decision_id"], unique=False)
    op.create_index(op.f("ix_hidden_samples_project_id"), "hidden_samples", ["project_id"], unique=False)
    op.create_table(
        "duplicate_group_cache",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=200), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_duplicate_group_cache_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_group_cache")),
        sa.UniqueConstraint(
            "project_id", "level", "threshold", name=op.f("uq_duplicate_group_cache_project_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("duplicate_group_cache")
    op.drop_index(op.f("ix_hidden_samples_project_id"), table_name="hidden_samples")
    op.drop_index(op.f("ix_hidden_samples_decision_id"), table_name="hidden_samples")
    op.drop_table("hidden_samples")
    op.drop_table("duplicate_hashes")
    op.drop_index(op.f("ix_duplicate_decisions_project_id"), table_name="duplicate_decisions")
    op.drop_table("duplicate_decisions")
