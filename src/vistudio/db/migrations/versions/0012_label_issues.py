"""label issues: likely label errors per experiment (confident learning) and the user's decisions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_issues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("given", sa.Text(), nullable=False),
        sa.Column("suggested", sa.Text(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("change_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_label_issues_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_label_issues_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_issues")),
        sa.UniqueConstraint("experiment_id", "sample_id", name=op.f("uq_label_issues_experiment_id")),
    )
    op.create_index("ix_label_issues_experiment_score", "label_issues", ["experiment_id", "score"], unique=False)
    op.create_index(op.f("ix_label_issues_sample_id"), "label_issues", ["sample_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_label_issues_sample_id"), table_name="label_issues")
    op.drop_index("ix_label_issues_experiment_score", table_name="label_issues")
    op.drop_table("label_issues")
