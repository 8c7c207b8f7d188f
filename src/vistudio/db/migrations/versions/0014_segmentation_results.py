"""segmentation results: per-image confusion histograms, IoU and label PNGs of semantic segmentation evaluations

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segmentation_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("subset", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("iou", sa.Double(), nullable=True),
        sa.Column("pixel_accuracy", sa.Double(), nullable=True),
        sa.Column("pixels", sa.BigInteger(), nullable=False),
        sa.Column("histogram", sa.JSON(), nullable=False),
        sa.Column("classes", sa.Text(), nullable=False),
        sa.Column("prediction_path", sa.Text(), nullable=False),
        sa.Column("truth_path", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_segmentation_results_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["samples.id"],
            name=op.f("fk_segmentation_results_sample_id_samples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segmentation_results")),
        sa.UniqueConstraint("evaluation_id", "sample_id", name=op.f("uq_segmentation_results_evaluation_id")),
    )
    op.create_index(
        "ix_segmentation_results_eval_iou", "segmentation_results", ["evaluation_id", "iou"], unique=False
    )
    op.create_index(
        "ix_segmentation_results_eval_pixel_accuracy",
        "segmentation_results",
        ["evaluation_id", "pixel_accuracy"],
        unique=False,
    )
    op.create_index(
        op.f("ix_segmentation_results_sample_id"), "segmentation_results", ["sample_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_segmentation_results_sample_id"), table_name="segmentation_results")
    op.drop_index("ix_segmentation_results_eval_pixel_accuracy", table_name="segmentation_results")
    op.drop_index("ix_segmentation_results_eval_iou", table_name="segmentation_results")
    op.drop_table("segmentation_results")
