"""The Studio: the one object that owns settings, the database, the stores and the job queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from vistudio.config import Settings, apply_overrides
from vistudio.db.session import make_engine, make_session_factory, upgrade
from vistudio.db.settings import WorkspaceSetting
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
log = logging.getLogger(__name__)


@dataclass
class Studio:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ArtifactStore
    queue: JobQueue
    # lazily loaded models and vector indexes, freed when idle (see ml/inference/cache.py)
    cache: ModelCache = field(default_factory=ModelCache)
    # the settings before the workspace's overrides (env and start-up values): an override that is
    # removed falls back to these (see services/settings.py)
    base_settings: Settings | None = None

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
    base = settings
    # env > workspace > default: overrides saved from the Settings page apply under the environment
    settings, skipped = apply_overrides(base, workspace_overrides(sessions))
    for key, why in skipped.items():
        log.info("workspace setting %s not applied: %s", key, why)
    return Studio(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=ArtifactStore(home, thumb_size=settings.imports.thumb_size),
        queue=JobQueue(sessions, settings.jobs),
        cache=ModelCache(idle_ttl=settings.embed.idle_ttl_seconds),
        base_settings=base,
    )


def workspace_overrides(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """The settings saved in the workspace, key → value."""
    with sessions() as s:
        return {k: v for k, v in s.execute(select(WorkspaceSetting.key, WorkspaceSetting.value)).all()}
