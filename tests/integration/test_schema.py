"""The migrations build exactly the schema the models describe (no drift between the two)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import vistudio.db  # noqa: F401  (every model registered on Base.metadata)
from vistudio.db.base import Base
from vistudio.studio import Studio


def test_migrations_match_the_models(studio: Studio) -> None:
    with studio.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
