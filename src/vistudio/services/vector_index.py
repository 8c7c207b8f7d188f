"""The per-project vector indexes that CLIP searches use, kept in step with the ``embeddings``
table (the source of truth; an index is a cache of it).

Two backends (``VISTUDIO_EMBED__INDEX_BACKEND``):

- ``faiss`` (the default): an index per (project, model) in the process's memory, with its file
  in ``<workspace>/indexes/<model>/project-<id>.npz`` carrying a fingerprint of the rows it
  holds (count, sum of ids, newest row); a stale or damaged file is rebuilt from the stored
  vectors, and in memory an index is brought up to date with the rows added or removed since it
  was loaded. HNSW graphs are built in the background (``FaissVectorIndex(background=True)``):
  searches keep the previous state and the new graph swaps in when built, then its file is saved
  from the builder thread. The embed job waits for a build its rows started before it completes
  the set, so a finished job leaves a current file.
- ``pgvector``: the index is a table in the workspace's PostgreSQL (``ml/embed/pgvector_index``),
  shared by every server and worker; a sync compares the table with the ``embeddings`` rows in
  the database (anti-joins: only the differences travel) whenever this process's fingerprint of
  those rows changed. No file.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from vistudio.db.embeddings import Embedding, EmbeddingModel
from vistudio.errors import BadRequest, NotFound
from vistudio.ml.embed.faiss_index import FaissVectorIndex, IndexFileError, load_or_rebuild
from vistudio.studio import Studio

log = logging.getLogger(__name__)

FETCH = 2_000  # ids per IN (...) when reading vectors
INDEX_SAVE_INTERVAL = 60.0  # seconds between index file saves from searches (the job always saves)
SearchIndex = Any  # FaissVectorIndex | PgVectorIndex: the VectorIndex protocol plus their extras


def model_slug(m: EmbeddingModel) -> str:
    """The model's index folder name: readable, and unique through the row id."""
    version = m.version[:16] if re.fullmatch(r"[0-9a-f]{64}", m.version) else m.version
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{m.name}-{version}")[:80].strip("._") or "model"
    return f"{safe}-m{m.id}"



@dataclass
class _LiveIndex:
    """An index in memory with the database state it reflects."""

    index: SearchIndex
    fingerprint: str
    newest: datetime | None
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    saved_at: float = field(default_factory=time.monotonic)
    dirty: bool = False


def index_path(studio: Studio, model: EmbeddingModel, project_id: int) -> Path:
    return studio.home / "indexes" / model_slug(model) / f"project-{project_id}.npz"


def drop_project_indexes(studio: Studio, project_id: int) -> int:
    """Forget a deleted project's indexes: out of memory and off the disk (or out of PostgreSQL).
    Returns files (tables) removed."""
    with studio.sessions() as s:
        for m in s.scalars(select(EmbeddingModel)):
            studio.cache.evict(("index", project_id, m.id, m.version))
    if _pgvector(studio):
        with studio.sessions.begin() as s:
            tables = s.scalars(
                text("SELECT tablename FROM pg_tables WHERE tablename LIKE :like"),
                {"like": f"vectors_p{project_id}\\_m%"},
            ).all()
            for t in tables:
                s.execute(text(f'DROP TABLE IF EXISTS "{t}"'))
        return len(tables)
    removed = 0
    for f in (studio.home / "indexes").glob(f"*/project-{project_id}.npz"):
        f.unlink(missing_ok=True)
        removed += 1
    return removed


def _fingerprint(s: Session, model: EmbeddingModel, project_id: int) -> tuple[str, datetime | None]:
    count, total, newest = s.execute(
        select(
            func.count(), func.coalesce(func.sum(Embedding.sample_id), 0), func.max(Embedding.created_at)
        ).where(Embedding.model_id == model.id, Embedding.project_id == project_id)
    ).one()
    stamp = newest.isoformat() if newest else "-"
    return f"{model.name}@{model.version}:{count}:{total}:{stamp}", newest


def _read_vectors(
    s: Session, model: EmbeddingModel, project_id: int, ids: npt.NDArray[np.int64] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Stored vectors of the project (or of just ``ids``): (n,) int64 ids and (n, d) float32."""
    base = select(Embedding.sample_id, Embedding.vector).where(
        Embedding.model_id == model.id, Embedding.project_id == project_id
    )
    rows: list[tuple[int, bytes]] = []
    if ids is None:
        rows = [(int(i), v) for i, v in s.execute(base.order_by(Embedding.sample_id))]
    else:
        for lo in range(0, ids.size, FETCH):
            chunk = ids[lo : lo + FETCH].tolist()
            rows += [(int(i), v) for i, v in s.execute(base.where(Embedding.sample_id.in_(chunk)))]
    out_ids = np.fromiter((i for i, _ in rows), dtype=np.int64, count=len(rows))
    vecs = np.empty((len(rows), model.dim), dtype=np.float32)
    for j, (_, blob) in enumerate(rows):
        vecs[j] = np.frombuffer(blob, dtype="<f4", count=model.dim)
    return out_ids, vecs


def _stored_file(path: Path, model: EmbeddingModel) -> tuple[FaissVectorIndex, datetime | None] | None:
    """The index file of ``model`` (current or behind the database) with the newest row time it
    had seen; None when it is missing, damaged or not this model's."""
    prefix = f"{model.name}@{model.version}:"
    try:
        stored = FaissVectorIndex.load(path)
    except IndexFileError:
        return None
    if stored.dim != model.dim or not stored.fingerprint.startswith(prefix):
        return None
    stamp = stored.fingerprint[len(prefix) :].split(":", 2)[-1]
    try:
        return stored, (None if stamp == "-" else datetime.fromisoformat(stamp))
    except ValueError:
        return None


def _pgvector(studio: Studio) -> bool:
    if studio.settings.embed.index_backend != "pgvector":
        return False
    if studio.engine.dialect.name != "postgresql":
        raise BadRequest(
            "VISTUDIO_EMBED__INDEX_BACKEND=pgvector keeps the vector indexes in PostgreSQL: "
            "set VISTUDIO_DATABASE_URL to a PostgreSQL server with the pgvector extension"
        )
    return True


def _pg_name(model: EmbeddingModel, project_id: int) -> str:
    """The index's table suffix: project, model row and version (a re-made model is a new table)."""
    version = hashlib.sha1(model.version.encode()).hexdigest()[:8]
    return f"p{project_id}_m{model.id}_{version}"


def _load_pg(studio: Studio, model: EmbeddingModel, project_id: int) -> _LiveIndex:
    from vistudio.ml.embed.pgvector_index import PgVectorIndex, PgVectorUnavailable

    try:
        index = PgVectorIndex(studio.engine, name=_pg_name(model, project_id), dim=model.dim)
    except PgVectorUnavailable as exc:
        raise BadRequest(str(exc)) from exc
    return _LiveIndex(index=index, fingerprint="", newest=None, path=Path())


def _sync_pg(studio: Studio, live: _LiveIndex, model: EmbeddingModel, project_id: int) -> bool:
    """Bring the shared table to the database's rows, in PostgreSQL: rows of deleted samples go,
    missing rows come (most often another server added them already: nothing travels)."""
    table = live.index.table
    scope = {"m": model.id, "p": project_id}
    with studio.sessions.begin() as s:
        fp, newest = _fingerprint(s, model, project_id)
        if fp == live.fingerprint:
            return False
        gone: int = s.execute(  # type: ignore[attr-defined]  # a DELETE's CursorResult
            text(
                f"DELETE FROM {table} v WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
                "WHERE e.sample_id = v.id AND e.model_id = :m AND e.project_id = :p)"
            ),
            scope,
        ).rowcount
        missing = np.fromiter(
            s.scalars(
                text(
                    "SELECT e.sample_id FROM embeddings e WHERE e.model_id = :m AND e.project_id = :p "
                    f"AND NOT EXISTS (SELECT 1 FROM {table} v WHERE v.id = e.sample_id)"
                ),
                scope,
            ),
            dtype=np.int64,
        )
        ids, vecs = _read_vectors(s, model, project_id, missing) if missing.size else (missing, None)
    if ids.size and vecs is not None:
        live.index.add(ids, vecs)
    live.fingerprint, live.newest = fp, newest
    return bool(gone or ids.size)


def _load_live(studio: Studio, model: EmbeddingModel, project_id: int) -> _LiveIndex:
    if _pgvector(studio):
        return _load_pg(studio, model, project_id)
    path = index_path(studio, model, project_id)
    with studio.sessions() as s:
        fp, newest = _fingerprint(s, model, project_id)
    holder: list[_LiveIndex] = []

    def swapped(_: FaissVectorIndex) -> None:
        if holder:
            _save_after_swap(holder[0])

    stored = _stored_file(path, model)
    if stored is not None:
        # current, or behind the database (changes since its last save): the first sync compares
        # ids in full and re-reads rows newer than the file's (a deleted sample's id may have been
        # reused) — a large index is never rebuilt from scratch for a few changes
        index, saved_newest = stored
        index.background, index.on_swap = True, swapped
        holder.append(_LiveIndex(index=index, fingerprint="", newest=saved_newest, path=path))
        index.build_if_due()  # saved while its graph was being built
        return holder[0]

    def provider() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        with studio.sessions() as s:
            return _read_vectors(s, model, project_id)

    # a large set is stored flat at once (searched exactly) and its graph built in the background
    index = load_or_rebuild(
        path, fingerprint=fp, vectors_provider=provider, dim=model.dim, background=True, on_swap=swapped
    )
    # the fingerprint and the vectors were read apart: rows written and deleted in between would
    # leave the fingerprint equal and the index wrong, so the first sync compares ids in full
    holder.append(_LiveIndex(index=index, fingerprint="", newest=newest, path=path))
    return holder[0]


def _save_after_swap(live: _LiveIndex) -> None:
    """Save the index after a background build swapped in (runs in the builder thread).

    The file is written outside ``live.lock`` so that searches go on; the fingerprint is the one
    of a state the index holds or has gone past (a later load re-reads newer rows, so a file
    holding more than its fingerprint says is safe).
    """
    with live.lock:
        fp = live.fingerprint
        if not fp:  # not synced since loaded: the next save from a search writes it
            live.dirty = True
            return
        if not live.path.exists():  # removed meanwhile (its project was deleted): not written back
            return
    try:
        live.index.save(live.path, fingerprint=fp)
    except OSError as exc:
        log.warning("could not save the vector index %s after its rebuild: %s", live.path, exc)
        with live.lock:
            live.dirty = True
        return
    with live.lock:
        if live.fingerprint == fp:
            live.saved_at, live.dirty = time.monotonic(), False


def _sync(studio: Studio, live: _LiveIndex, model: EmbeddingModel, project_id: int) -> bool:
    """Bring ``live`` to the database's rows; returns whether anything changed."""
    if not isinstance(live.index, FaissVectorIndex):
        return _sync_pg(studio, live, model, project_id)
    with studio.sessions() as s:
        fp, newest = _fingerprint(s, model, project_id)
        if fp == live.fingerprint:
            return False
        db_ids = np.fromiter(
            s.scalars(
                select(Embedding.sample_id).where(
                    Embedding.model_id == model.id, Embedding.project_id == project_id
                )
            ),
            dtype=np.int64,
        )
        # a row newer than the last sync may reuse the id of a deleted sample: re-read those too
        recent = (
            np.fromiter(
                s.scalars(
                    select(Embedding.sample_id).where(
                        Embedding.model_id == model.id,
                        Embedding.project_id == project_id,
                        Embedding.created_at > live.newest,
                    )
                ),
                dtype=np.int64,
            )
            if live.newest is not None
            else np.empty(0, dtype=np.int64)
        )
        have = live.index.ids()
        gone = np.setdiff1d(have, db_ids, assume_unique=True)
        wanted = np.union1d(np.setdiff1d(db_ids, have, assume_unique=True), recent)
        ids, vecs = _read_vectors(s, model, project_id, wanted) if wanted.size else (wanted, None)
    if gone.size:
        live.index.remove(gone)
    if ids.size and vecs is not None:
        live.index.add(ids, vecs)
    # after a load ("" fingerprint) an index that needed no change matches its file already
    changed = bool(gone.size or ids.size) or live.fingerprint != ""
    live.fingerprint, live.newest, live.dirty = fp, newest, live.dirty or changed
    return changed


def project_index(studio: Studio, project_id: int, model: EmbeddingModel) -> SearchIndex:
    """The project's index for ``model``, in step with the database (loaded or rebuilt on first use)."""
    live = _live(studio, project_id, model)
    with live.lock:
        _sync(studio, live, model, project_id)
        if not isinstance(live.index, FaissVectorIndex):  # pgvector: nothing to save
            return live.index
        stale = live.dirty or live.index.rebuilt_since_save
        if stale and not live.index.building and time.monotonic() - live.saved_at > INDEX_SAVE_INTERVAL:
            _save(live)
    return live.index


def _live(studio: Studio, project_id: int, model: EmbeddingModel) -> _LiveIndex:
    key = ("index", project_id, model.id, model.version)
    live: _LiveIndex = studio.cache.get(key, lambda: _load_live(studio, model, project_id))
    return live


def _save(live: _LiveIndex) -> None:
    live.index.save(live.path, fingerprint=live.fingerprint)
    live.saved_at, live.dirty = time.monotonic(), False


def sync_index(studio: Studio, project_id: int, model_id: int, *, save: bool = False) -> SearchIndex:
    """Bring the project's index for ``model_id`` up to date; ``save`` writes its file too."""
    with studio.sessions() as s:
        model = s.get(EmbeddingModel, model_id)
        if model is None:
            raise NotFound(f"embedding model {model_id} not found")
    live = _live(studio, project_id, model)
    with live.lock:
        _sync(studio, live, model, project_id)
    if save and isinstance(live.index, FaissVectorIndex):
        # a background build under way is waited for here (a job, not a request), outside
        # live.lock so that searches go on with the current state; its swap saves the file
        live.index.wait_build()
        with live.lock:
            if live.dirty or live.index.rebuilt_since_save or not live.path.exists():
                _save(live)
    return live.index
