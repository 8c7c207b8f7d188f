"""places and timeline: file dates, place names from GPS, the timeline's index

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_PLACE_COLUMNS = (
    ("place_city", 200),
    ("place_region", 200),
    ("place_country", 200),
    ("place_country_code", 2),
    ("place_lookup", 40),
)


def upgrade() -> None:
    with op.batch_alter_table("samples") as batch:
        # the file's modification time at import/scan (local wall clock, as EXIF dates are)
        batch.add_column(sa.Column("file_time", sa.DateTime(), nullable=True))
        # the timeline's date: taken_at, else file_time (services/timeline.py)
        batch.add_column(sa.Column("sort_time", sa.DateTime(), nullable=True))
        for name, length in _PLACE_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    # The timeline walks a project's photos by (date, id). Its date is a stored column rather than
    # an index on coalesce(taken_at, file_time): Alembic's batch mode rebuilds SQLite tables from
    # their reflection, which leaves expression indexes out, so a later migration of samples
    # would silently drop such an index. One UPDATE here (no file is read); file dates come later.
    op.execute("UPDATE samples SET sort_time = taken_at WHERE taken_at IS NOT NULL")
    op.create_index("ix_samples_project_time", "samples", ["project_id", "sort_time", "id"], unique=False)
    # Photos imported before this revision have no file date and no place names: a "places" job
    # fills them, queued when the project's timeline is first shown (or by `vistudio places`),
    # so that upgrading a large workspace does not stall inside the migration.
    op.create_table(
        "timeline_pending",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_timeline_pending_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_timeline_pending")),
    )
    op.execute("INSERT INTO timeline_pending (project_id) SELECT DISTINCT project_id FROM samples")


def downgrade() -> None:
    op.drop_table("timeline_pending")
    op.drop_index("ix_samples_project_time", table_name="samples")
    with op.batch_alter_table("samples") as batch:
        for name, _ in reversed(_PLACE_COLUMNS):
            batch.drop_column(name)
        batch.drop_column("sort_time")
        batch.drop_column("file_time")
