"""The Studio: the one object that owns settings, the database, the stores and the job queue."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from vistudio.config import Settings, apply_overrides
from vistudio.db.session import make_engine, make_session_factory, upgrade
from vistudio.db.settings import WorkspaceSetting
from vistudio.jobs.queue import JobQueue
from vistudio.ml.inference.cache import ModelCache
from vistudio.storage.artifacts import ArtifactStore, open_store
from vistudio.storage.s3 import S3Config

if TYPE_CHECKING:
    from vistudio.telemetry.metrics import Metrics

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
    # Prometheus counters and histograms (telemetry/metrics.py), built on first use: prometheus-client
    # is imported only then, after a worker process chose where its values go
    _metrics: Any = field(default=None, repr=False)
    _log_handler: logging.Handler | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def metrics(self) -> Metrics:
        if self._metrics is None:
            from vistudio.telemetry.metrics import Metrics

            self._metrics = Metrics()
        return self._metrics

    def start_logging(self) -> None:
        """Write this workspace's structured logs to ``logs/vistudio.log`` (servers and workers)."""
        if self._log_handler is None:
            from vistudio.telemetry import logs

            cfg = self.settings.logs
            self._log_handler = logs.attach(self.home, max_bytes=cfg.max_bytes, backups=cfg.backups, level=cfg.level)

    @property
    def tmp(self) -> Path:
        return self.settings.home / "tmp"

    def photo_file(self, storage: str, path: str) -> Path:
        """Where to read a sample's original: a copied one through the blob store (fetched into
        its cache when the blobs live in a bucket), a referenced one where the user keeps it."""
        return self.store.original(path) if storage == "copy" else Path(path)

    def stop_logging(self) -> None:
        if self._log_handler is not None:
            from vistudio.telemetry import logs

            logs.detach(self._log_handler)
            self._log_handler = None

    @contextlib.contextmanager
    def logging_to_file(self) -> Iterator[None]:
        """Logs go to the workspace's file inside the block; a CLI command that runs a job in its
        own process uses this, a server or worker process logs for its whole life instead."""
        started = self._log_handler is None
        self.start_logging()
        try:
            yield
        finally:
            if started:
                self.stop_logging()

    def close(self) -> None:
        self.stop_logging()
        self.cache.close()
        self.engine.dispose()


def open_studio(settings: Settings | None = None) -> Studio:
    """Create the workspace folders, upgrade the schema, and wire the stores and queue."""
    settings = settings or Settings()
    home = settings.home.expanduser().resolve()
    settings = settings.model_copy(update={"home": home})
    for sub in WORKSPACE_DIRS:
        (home / sub).mkdir(parents=True, exist_ok=True)
    # the blob store first: a bucket that cannot be used stops the start with a plain message
    store = open_store(home, thumb_size=settings.imports.thumb_size, s3=s3_config(settings))
    engine = make_engine(settings.db_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    base = settings
    # env > workspace > default: overrides saved from the Settings page apply under the environment
    settings, skipped = apply_overrides(base, workspace_overrides(sessions))
    for key, why in skipped.items():
        log.info("workspace setting %s not applied: %s", key, why)
    studio = Studio(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=store,
        queue=JobQueue(sessions, settings.jobs),
        cache=ModelCache(idle_ttl=settings.embed.idle_ttl_seconds),
        base_settings=base,
    )
    # model load times and cache hits reach /metrics (the cache itself knows nothing of Prometheus)
    studio.cache.observer = lambda key, event, seconds: studio.metrics.cache_event(key, event, seconds)
    return studio


def s3_config(settings: Settings) -> S3Config | None:
    """The S3 blob store the settings name (``VISTUDIO_BLOB_STORE__URL``), or None: local folders."""
    bs = settings.blob_store
    if not bs.url:
        return None
    return S3Config(**bs.model_dump())


def workspace_overrides(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """The settings saved in the workspace, key → value."""
    with sessions() as s:
        return {k: v for k, v in s.execute(select(WorkspaceSetting.key, WorkspaceSetting.value)).all()}
