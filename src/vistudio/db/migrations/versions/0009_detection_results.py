"""detection results: per-image predictions, ground truth and their matching of box-task evaluations

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "detection_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("subset", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("predictions", sa.JSON(), nullable=False),
        sa.Column("truths", sa.JSON(), nullable=False),
        sa.Column("tp", sa.Integer(), nullable=False),
        sa.Column("fp", sa.Integer(), nullable=False),
        sa.Column("fn", sa.Integer(), nullable=False),
        sa.Column("ap", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_detection_results_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["samples.id"],
            name=op.f("fk_detection_results_sample_id_samples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_results")),
        sa.UniqueConstraint("evaluation_id", "sample_id", name=op.f("uq_detection_results_evaluation_id")),
    )
    op.create_index(
        "ix_detection_results_eval_fn", "detection_results", ["evaluation_id", "fn"], unique=False
    )
    op.create_index(
        "ix_detection_results_eval_fp", "detection_results", ["evaluation_id", "fp"], unique=False
    )
    op.create_index(
        "ix_detection_results_eval_ap", "detection_results", ["evaluation_id", "ap"], unique=False
    )
    op.create_index(op.f("ix_detection_results_sample_id"), "detection_results", ["sample_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_detection_results_sample_id"), table_name="detection_results")
    op.drop_index("ix_detection_results_eval_ap", table_name="detection_results")
    op.drop_index("ix_detection_results_eval_fp", table_name="detection_results")
    op.drop_index("ix_detection_results_eval_fn", table_name="detection_results")
    op.drop_table("detection_results")
