"""regression results: per-image true and predicted values of regression evaluations

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "regression_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("subset", sa.String(length=16), nullable=False),
        sa.Column("truth", sa.JSON(), nullable=False),
        sa.Column("prediction", sa.JSON(), nullable=False),
        sa.Column("abs_error", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_regression_results_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["samples.id"],
            name=op.f("fk_regression_results_sample_id_samples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regression_results")),
        sa.UniqueConstraint("evaluation_id", "sample_id", name=op.f("uq_regression_results_evaluation_id")),
    )
    op.create_index(
        "ix_regression_results_eval_abs_error",
        "regression_results",
        ["evaluation_id", "abs_error"],
        unique=False,
    )
    op.create_index(
        op.f("ix_regression_results_sample_id"), "regression_results", ["sample_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_regression_results_sample_id"), table_name="regression_results")
    op.drop_index("ix_regression_results_eval_abs_error", table_name="regression_results")
    op.drop_table("regression_results")
