"""The Studio: the one object that owns settings, the database, the stores and the job queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vistudio.config import Settings
from vistudio.db.session import make_engine, make_session_factory, upgrade
from vistudio.jobs.queue import JobQueue
from vistudio.ml.inference.cache import ModelCache
from vistudio.storage.artifacts import ArtifactStore

WORKSPACE_DIRS = (
    "media",
    "thumbs",
    "artifacts",
    "exports",
    "runs",
    "validation",
    "production",
    "indexes",
    "logs",
    "tmp",
)


@dataclass
class Studio:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ArtifactStore
    queue: JobQueue
    # lazily loaded models and vector indexes, freed when idle (see ml/inference/cache.py)
    cache: ModelCache = field(default_factory=ModelCache)

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def tmp(self) -> Path:
        return self.settings.home / "tmp"

    def close(self) -> None:
        self.cache.close()
        self.engine.dispose()


def open_studio(settings: Settings | None = None) -> Studio:
    """Create the workspace folders, upgrade the schema, and wire the stores and queue."""
    settings = settings or Settings()
    home = settings.home.expanduser().resolve()
    settings = settings.model_copy(update={"home": home})
    for sub in WORKSPACE_DIRS:
        (home / sub).mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    return Studio(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=ArtifactStore(home, thumb_size=settings.imports.thumb_size),
        queue=JobQueue(sessions, settings.jobs),
        cache=ModelCache(idle_ttl=settings.embed.idle_ttl_seconds),
    )
