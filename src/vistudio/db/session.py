"""Engine creation (SQLite in WAL mode, or PostgreSQL) and schema upgrades through Alembic."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

# Alembic is imported only when a migration has to run: every CLI command opens the workspace,
# and importing Alembic costs more than the command itself (docs/benchmarks.md, "CLI start-up").
if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_lock's key for schema upgrades (any constant the application uses for nothing else)
MIGRATION_LOCK = 0x76697374  # "vist"
_REVISION_RE = re.compile(r"""^(revision|down_revision)\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside the one writer; busy_timeout makes writers queue
            # instead of failing at once; foreign keys give ON DELETE CASCADE.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        # pysqlite's own transaction handling defers BEGIN until the first write, and a deferred
        # transaction that read before another connection committed cannot upgrade to a writer
        # (SQLITE_BUSY at once, busy_timeout does not help). BEGIN IMMEDIATE takes the write lock
        # up front, so writers queue on busy_timeout instead; WAL readers outside a transaction
        # are never blocked.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # configparser interpolates "%": escape it (URL-encoded hosts and passwords contain it)
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str | None:
    """The newest migration's revision, read from the migration files without importing Alembic;
    None when that reading is not certain (several heads, an unexpected file): ask Alembic then."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = {m[1]: m[2] for m in _REVISION_RE.finditer(path.read_text(encoding="utf-8"))}
        if "revision" not in found:
            return None
        revisions.add(found["revision"])
        if "down_revision" in found:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for a new database)."""
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:  # no alembic_version table yet
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the latest migration (a no-op, without Alembic, when it is there)."""
    head = head_revision()
    if head is not None and current_revision(engine) == head:
        return
    from alembic import command

    if engine.dialect.name != "postgresql":  # SQLite: BEGIN IMMEDIATE already serialises writers
        command.upgrade(alembic_config(engine), "head")
        return
    # Several servers and workers may start at once on one PostgreSQL: the first to take this
    # session lock migrates, the others wait for it and then find the schema at head.
    with engine.connect() as lock:
        lock.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        try:
            command.upgrade(alembic_config(engine), "head")
        finally:
            lock.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
            lock.commit()
