"""The migrations build exactly the schema the models describe (no drift between the two)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import vistudio.db  # noqa: F401  (every model registered on Base.metadata)
from vistudio.db.base import Base
from vistudio.db.text_index import include_name, include_object
from vistudio.studio import Studio


def test_migrations_match_the_models(studio: Studio) -> None:
    with studio.engine.connect() as conn:
        # the text index's FTS5 tables are made by hand in migration 0019 (see vistudio.db.text_index)
        opts = {"compare_type": True, "include_name": include_name, "include_object": include_object}
        context = MigrationContext.configure(conn, opts=opts)
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_a_workspace_from_before_the_excluded_column_upgrades_and_keeps_its_files(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from vistudio.db.session import alembic_config, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0006")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO projects (id, name, task, created_at, updated_at) VALUES (1, 'p', 'library', '2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO library_roots (id, project_id, path, added_at) VALUES (1, 1, '/r', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO library_files (root_id, path, size, mtime, seen_at) "
                "VALUES (1, 'a.jpg', 10, 1.0, '2026-01-01')"
            )
        )
    command.upgrade(alembic_config(engine), "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT path, excluded FROM library_files")).all() == [("a.jpg", 0)]
    engine.dispose()
