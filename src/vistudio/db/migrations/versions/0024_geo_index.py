"""geo: an index on the photos' GPS positions, for the map's clusters and areas

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-09
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the map's queries (services/geo.py) read a latitude range of one project and filter the
    # longitudes in the index itself: (project, lat, lon, id) covers them, the table is not read
    op.create_index(
        "ix_samples_project_gps", "samples", ["project_id", "gps_lat", "gps_lon", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_samples_project_gps", table_name="samples")
