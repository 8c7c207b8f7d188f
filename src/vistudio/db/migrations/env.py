from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from vistudio.db import Base
from vistudio.db.text_index import include_name, include_object

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            # the text index's FTS5 tables and tsvector column are made by hand (migration 0019)
            include_name=include_name,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
