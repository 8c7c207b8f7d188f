"""Embeddings: embed a project's images with a CLIP model (a job), track each project's embedding
sets, and keep the per-model vector indexes in step with the database.

- ``start_embedding`` checks that the model's weights can be had (``model_unavailable`` otherwise)
  and queues an ``embed`` job; the job embeds every sample that has no vector for that model yet,
  a batch per transaction (a rerun after a crash or a cancel does only what is left, and the
  ``(sample, model)`` key leaves exactly one vector each).
- A project searches with its *active* model. The active model changes only when a job completes
  a set with a new model, in the same transaction that marks the set complete: a re-embed with
  another model never shows a half-embedded set. A project that has no complete set yet searches
  the set being built, so images appear as soon as their batch is stored.
- The vector indexes searches use are kept in step with the stored vectors by
  ``services/vector_index`` (FAISS in memory with a file, or pgvector in PostgreSQL).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vistudio.config import Settings
from vistudio.db import Job, Sample, utcnow
from vistudio.db.embeddings import ActiveEmbedding, Embedding, EmbeddingModel, EmbeddingSet
from vistudio.errors import BadRequest, Conflict, VistudioError
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.ml.embed.clip import Described, OpenClipEncoder, describe, load_open_clip, resolve_device
from vistudio.ml.embed.encoder import ModelInfo, ModelSpec
from vistudio.ml.weights import WeightsPolicy
from vistudio.services.projects import find_project
from vistudio.services.vector_index import project_index, sync_index
from vistudio.studio import Studio

log = logging.getLogger(__name__)

KIND = "embed"
MAX_REPORTED = 1000  # failed items listed in a report; the count stays exact
CHUNK = 50_000  # samples handed to one DataLoader (bounds memory: workers get a copy)


# --- models ------------------------------------------------------------------------------------


def spec_from(
    settings: Settings,
    *,
    model: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
) -> ModelSpec:
    """The model a request names; what it leaves out comes from the ``embed`` settings.

    ``--checkpoint`` or ``--pretrained`` name the weights (not both); ``--model`` alone takes the
    configured pretrained tag; nothing at all is the configured model.
    """
    cfg = settings.embed
    if pretrained and checkpoint:
        raise BadRequest("give a pretrained tag or a checkpoint, not both")
    if checkpoint:
        return ModelSpec(name=model or cfg.model, checkpoint=Path(checkpoint).expanduser())
    if pretrained:
        return ModelSpec(name=model or cfg.model, pretrained=pretrained)
    if model:
        return ModelSpec(name=model, pretrained=cfg.pretrained)
    if cfg.checkpoint:
        return ModelSpec(name=cfg.model, checkpoint=Path(cfg.checkpoint).expanduser())
    return ModelSpec(name=cfg.model, pretrained=cfg.pretrained)


def configured_spec(settings: Settings) -> ModelSpec:
    return spec_from(settings)


DESCRIBE_WINDOW_S = 30.0  # how long a pretrained tag's status is remembered


def describe_spec(studio: Studio, spec: ModelSpec) -> Described:
    """``describe``, remembered for a checkpoint per (path, size, mtime): a search does not read
    and hash the checkpoint file again."""

    def load() -> Described:
        return describe(spec, weights=WeightsPolicy.from_settings(studio.settings, embed=True))

    if spec.checkpoint is not None:
        try:
            path = Path(spec.checkpoint).expanduser().resolve()
            st = path.stat()
        except (OSError, RuntimeError):
            pass  # describe names the missing file
        else:
            key = ("described", str(path), st.st_size, st.st_mtime_ns, spec.name)
            return studio.cache.get(key, load, ttl=86_400)
        return load()
    # A pretrained tag: the answer (weights cached, downloadable, or why not) is remembered for a
    # short window, failures included, so that pages polling the model's status do not each wait
    # for the network check (up to its timeout when packets are dropped).
    policy = WeightsPolicy.from_settings(studio.settings, embed=True)
    window = int(time.monotonic() // DESCRIBE_WINDOW_S)
    tag_key = ("described-tag", spec.name, spec.pretrained, policy.offline, str(policy.cache_dir), window)

    def attempt() -> tuple[Described | None, VistudioError | None]:
        try:
            return describe(spec, weights=policy), None
        except VistudioError as exc:
            return None, exc

    described, error = studio.cache.get(tag_key, attempt, ttl=2 * DESCRIBE_WINDOW_S)
    if error is not None:
        raise type(error)(error.message, details=dict(error.details))
    assert described is not None
    return described


def encoder_for(studio: Studio, spec: ModelSpec, *, described: Described | None = None) -> OpenClipEncoder:
    """The loaded encoder for ``spec`` on the configured device (cached, freed when idle)."""
    return studio.cache.get(*_encoder_entry(studio, spec, described))


@contextlib.contextmanager
def held_encoder(studio: Studio, spec: ModelSpec, *, described: Described) -> Iterator[OpenClipEncoder]:
    """``encoder_for`` for a long task: the cache does not free the model while the block runs."""
    with studio.cache.hold(*_encoder_entry(studio, spec, described)) as encoder:
        yield encoder


def _encoder_entry(
    studio: Studio, spec: ModelSpec, described: Described | None
) -> tuple[tuple[str, ...], Callable[[], OpenClipEncoder]]:
    cfg = studio.settings.embed
    d = described or describe_spec(studio, spec)
    device = resolve_device(cfg.device)

    def load() -> OpenClipEncoder:
        t = time.monotonic()
        enc = load_open_clip(
            spec, device=device, weights=WeightsPolicy.from_settings(studio.settings, embed=True), described=d
        )
        log.info("loaded %s@%s on %s in %.1f s", d.name, d.version[:16], device, time.monotonic() - t)
        return enc

    return ("encoder", d.name, d.version, device), load


def model_dict(m: EmbeddingModel, *, device: str | None = None) -> dict[str, Any]:
    untrained = m.version == "untrained-seed0"
    d: dict[str, Any] = {
        "id": m.id,
        "name": m.name,
        "pretrained": m.pretrained,
        "version": m.version,
        "checkpoint": m.checkpoint,
        "dim": m.dim,
        "device": device or m.device,
        "untrained": untrained,
        "created_at": m.created_at.isoformat() + "Z",
    }
    if untrained:
        d["warning"] = (
            "untrained weights (random, seeded): similarities are meaningless except for benchmarks"
        )
    return d


def model_spec(m: EmbeddingModel) -> ModelSpec:
    return ModelSpec(
        name=m.name, pretrained=m.pretrained, checkpoint=Path(m.checkpoint) if m.checkpoint else None
    )


def _ensure_model(s: Session, info: ModelInfo) -> EmbeddingModel:
    stmt = select(EmbeddingModel).where(
        EmbeddingModel.name == info.name, EmbeddingModel.version == info.version
    )
    row = s.scalar(stmt)
    if row is not None:
        return row
    try:
        with s.begin_nested():
            row = EmbeddingModel(
                name=info.name,
                pretrained=info.pretrained,
                version=info.version,
                checkpoint=info.checkpoint,
                dim=info.dim,
                device=info.device,
            )
            s.add(row)
    except IntegrityError:  # another worker registered it first
        row = s.scalar(stmt)
        assert row is not None
    return row


# --- starting and running the job --------------------------------------------------------------


def _open_jobs(s: Session, project_id: int) -> list[Job]:
    return list(
        s.scalars(
            select(Job)
            .where(Job.project_id == project_id, Job.kind == KIND, Job.status.in_(("queued", "running")))
            .order_by(Job.id)
        )
    )


def start_embedding(
    studio: Studio,
    *,
    project: str | int,
    model: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
) -> dict[str, Any]:
    """Check the model can be had and queue an ``embed`` job for ``project``. Returns the job.

    An embed job of the same model already queued or running for the project is returned
    instead of a second one; one of another model is a ``Conflict``.
    """
    spec = spec_from(studio.settings, model=model, pretrained=pretrained, checkpoint=checkpoint)
    with studio.sessions() as s:
        project_id = find_project(s, project).id  # an unknown project is a 404 before anything else
    d = describe_spec(studio, spec)
    existing = _running_embedding(studio, project_id, d)
    if existing is not None:
        return existing
    spec_d = spec.to_dict()
    spec_d["name"] = d.name
    if d.checkpoint:
        spec_d["checkpoint"] = str(d.checkpoint)
    explicit = spec != configured_spec(studio.settings)
    job = studio.queue.enqueue(
        KIND,
        {"model": spec_d, "name": d.name, "version": d.version, "explicit": explicit},
        project_id=project_id,
    )
    # two requests (searches right after a configuration change, two servers) may both have
    # found no job and queued one: the first queued stays, the others withdraw
    try:
        earlier = _running_embedding(studio, project_id, d, before=job.id)
    except Conflict:
        with contextlib.suppress(Conflict):
            studio.queue.cancel(job.id)
        raise
    if earlier is not None:
        with contextlib.suppress(Conflict):
            studio.queue.cancel(job.id)
        return earlier
    return job_dict(job)


def _running_embedding(
    studio: Studio, project_id: int, d: Described, *, before: int | None = None
) -> dict[str, Any] | None:
    """The project's open embed job (queued before job ``before``, if given): returned when it
    embeds with ``d``'s model, a ``Conflict`` when with another one; None when there is none."""
    with studio.sessions() as s:
        p = find_project(s, project_id)
        for job in _open_jobs(s, project_id):
            if before is not None and job.id >= before:
                break
            if (job.params or {}).get("version") == d.version and (job.params or {}).get("name") == d.name:
                return job_dict(job)
            other = (job.params or {}).get("name")
            raise Conflict(
                f"project {p.name!r} is already being embedded with {other} (job {job.id}); "
                "cancel it or wait for it to finish",
                details={"job": job.id},
            )
    return None


def embed_new_samples(studio: Studio, project_id: int) -> dict[str, Any] | None:
    """After an import or a scan added samples: queue embedding them with the model the project
    searches with, so that search keeps up with the library. Only for a project that has
    embeddings (its first embedding is asked for explicitly: it may take hours on a CPU) and only
    with the same kind of choice its set was made with (a set made with the configured model of
    the time waits for the re-embedding a configuration change starts instead). Returns
    ``{"job": id}``, ``{"error": message}`` when the model cannot be had now, or ``None``."""
    with studio.sessions() as s:
        found = search_model(s, project_id)
        if found is None:
            return None
        model = found[0]
        es = s.get(EmbeddingSet, (project_id, model.id))
        explicit = bool(es is not None and es.explicit)
    spec = model_spec(model)
    if (spec.to_dict() != configured_spec(studio.settings).to_dict()) != explicit:
        return None
    try:
        job = start_embedding(
            studio,
            project=project_id,
            model=spec.name,
            pretrained=None if spec.checkpoint else spec.pretrained,
            checkpoint=spec.checkpoint,
        )
    except VistudioError as exc:
        return {"error": exc.message}
    return {"job": job["id"]}


def _vector_bytes(v: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def _insert_ignore(s: Session) -> Any:
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(Embedding).on_conflict_do_nothing()
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(Embedding).on_conflict_do_nothing()
    return insert(Embedding)  # pragma: no cover - other databases are not supported




@job_handler(KIND)
def run_embed(ctx: JobContext) -> dict[str, Any]:
    studio = ctx.studio
    if ctx.project_id is None:
        raise PermanentJobError("the project of this embedding job was deleted")
    project_id = ctx.project_id
    spec = ModelSpec.from_dict(ctx.params["model"])
    d = describe_spec(studio, spec)  # ModelUnavailable fails the job for good: retrying cannot help
    if d.version != ctx.params.get("version"):
        raise PermanentJobError(
            f"the checkpoint {spec.checkpoint} changed since this job was queued; start a new one"
        )
    ctx.progress(0, None, f"loading {d.name}", force=True)
    with held_encoder(studio, spec, described=d) as encoder:
        return _embed_project(ctx, encoder, project_id)


def _embed_project(ctx: JobContext, encoder: OpenClipEncoder, project_id: int) -> dict[str, Any]:
    from vistudio.ml.embed.batch import ImageItem, embed_images

    studio = ctx.studio
    info = encoder.info
    cfg = studio.settings.embed
    run = begin_set(
        studio,
        project_id=project_id,
        info=info,
        job_id=ctx.job_id,
        explicit=bool(ctx.params.get("explicit", False)),
    )
    todo_total = max(0, run.total - run.done_before)
    done = 0
    last_id = 0
    ctx.progress(0, todo_total, f"embedding with {info.name}", force=True)
    while True:
        rows = pending_samples(studio, project_id=project_id, model_id=run.model_id, after_id=last_id)
        if not rows:
            break
        last_id = rows[-1][0]
        items = [ImageItem(sid, path) for sid, path in rows]
        for batch in embed_images(encoder, items, batch_size=cfg.batch_size, workers=cfg.workers):
            ctx.check_cancelled()
            done += run.store(studio, batch.ids, batch.vectors, batch.failures)
            ctx.progress(done, todo_total, f"embedding with {info.name}")
    # the index first: searches switch to this model below, and must find it built
    ctx.progress(todo_total, todo_total, "indexing", force=True)
    return {"report": complete_set(studio, run, attempt=ctx.attempt)}


@dataclass
class SetRun:
    """An embedding set a job builds (``begin_set``): what its start found, and what it stored
    so far (``store``); ``complete_set`` ends it."""

    project_id: int
    model_id: int
    device: str
    total: int
    done_before: int
    previous_id: int | None
    embedded: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def store(
        self,
        studio: Studio,
        ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        failures: list[tuple[int, str]],
    ) -> int:
        """Write one batch of vectors (ids (n,), vectors (n, d)) and count its failures; → the
        photos the batch settled (stored + failed)."""
        store_vectors(studio, project_id=self.project_id, model_id=self.model_id, ids=ids, vectors=vectors)
        self.embedded += int(ids.size)
        self.failed += len(failures)
        for sid, reason in failures:
            if len(self.failures) < MAX_REPORTED:
                self.failures.append({"sample_id": int(sid), "reason": reason})
        return int(ids.size) + len(failures)


def begin_set(studio: Studio, *, project_id: int, info: ModelInfo, job_id: int, explicit: bool) -> SetRun:
    """Register ``info``'s model and mark the project's set of it as being built by ``job_id``."""
    with studio.sessions.begin() as s:
        model = _ensure_model(s, info)
        model_id = model.id
        total = s.scalar(select(func.count()).where(Sample.project_id == project_id)) or 0
        done_before = _count_embedded(s, project_id, model_id)
        es = s.get(EmbeddingSet, (project_id, model_id))
        if es is None:
            es = EmbeddingSet(project_id=project_id, model_id=model_id, status="building")
            s.add(es)
        if done_before < total or es.status != "complete":
            es.status = "building"
        es.job_id, es.device, es.total = job_id, info.device, total
        es.explicit = explicit
        previous = s.get(ActiveEmbedding, project_id)
        previous_id = previous.model_id if previous else None
    return SetRun(project_id, model_id, info.device, total, done_before, previous_id)


def pending_samples(
    studio: Studio, *, project_id: int, model_id: int | None, after_id: int = 0, limit: int = CHUNK
) -> list[tuple[int, Path]]:
    """Up to ``limit`` of the project's samples after ``after_id`` that have no vector of
    ``model_id`` (every sample when the model has no row yet): ``(sample id, file)`` by id."""
    with studio.sessions() as s:
        q = select(Sample.id, Sample.storage, Sample.path).where(
            Sample.project_id == project_id, Sample.id > after_id
        )
        if model_id is not None:
            # NOT EXISTS (an anti-join), not NOT IN: PostgreSQL rescans a large NOT IN subquery
            q = q.where(~exists().where(Embedding.sample_id == Sample.id, Embedding.model_id == model_id))
        rows = s.execute(q.order_by(Sample.id).limit(limit)).all()
    return [(sid, studio.photo_file(storage, path)) for sid, storage, path in rows]


def store_vectors(
    studio: Studio,
    *,
    project_id: int,
    model_id: int,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
) -> None:
    """Insert one batch of vectors (ids (n,), vectors (n, d) float32), one transaction; a
    ``(sample, model)`` already stored is left as it is, so a rerun writes nothing twice."""
    if not ids.size:
        return
    now = utcnow()
    values = [
        {
            "sample_id": int(sid),
            "model_id": model_id,
            "project_id": project_id,
            "vector": _vector_bytes(vec),
            "created_at": now,
        }
        for sid, vec in zip(ids.tolist(), vectors, strict=True)
    ]
    with studio.sessions.begin() as s:
        s.execute(_insert_ignore(s), values)


def complete_set(studio: Studio, run: SetRun, *, attempt: int) -> dict[str, Any]:
    """Index the set's vectors, mark the set complete and make its model the project's active
    one (one transaction) → the job's report."""
    project_id, model_id = run.project_id, run.model_id
    sync_index(studio, project_id, model_id, save=True)
    with studio.sessions.begin() as s:
        model = s.get_one(EmbeddingModel, model_id)
        count = _count_embedded(s, project_id, model_id)
        total = s.scalar(select(func.count()).where(Sample.project_id == project_id)) or 0
        es = s.get_one(EmbeddingSet, (project_id, model_id))
        es.status, es.embedded, es.failed, es.total = "complete", count, run.failed, total
        es.completed_at = utcnow()
        active = s.get(ActiveEmbedding, project_id)
        if active is None:
            s.add(ActiveEmbedding(project_id=project_id, model_id=model_id))
        elif active.model_id != model_id:  # the switch: one row, in the transaction that completes the set
            active.model_id, active.switched_at = model_id, utcnow()
        previous_id = run.previous_id
        previous_model = (
            s.get(EmbeddingModel, previous_id) if previous_id and previous_id != model_id else None
        )
        model_info = model_dict(model, device=run.device)
        previous_info = model_dict(previous_model) if previous_model else None
    return {
        "embedded": run.embedded,
        "skipped": run.done_before,
        "failed": run.failed,
        "failed_items": run.failures,
        "total": total,
        "pending": max(0, total - count),
        "model": model_info,
        "active": True,
        "replaced": previous_info,
        "attempt": attempt,
    }


def _count_embedded(s: Session, project_id: int, model_id: int) -> int:
    return int(
        s.scalar(
            select(func.count()).where(Embedding.model_id == model_id, Embedding.project_id == project_id)
        )
        or 0
    )


# --- queries -------------------------------------------------------------------------------------


def search_model(s: Session, project_id: int) -> tuple[EmbeddingModel, bool] | None:
    """The model a project searches with and whether its set is the complete active one.

    The active model when there is one; before any set completed, the set being built most
    recently (so that images appear as soon as they are embedded); ``None`` without any set.
    """
    active = s.get(ActiveEmbedding, project_id)
    if active is not None:
        return s.get_one(EmbeddingModel, active.model_id), True
    es = s.scalar(
        select(EmbeddingSet)
        .where(EmbeddingSet.project_id == project_id)
        .order_by(EmbeddingSet.started_at.desc(), EmbeddingSet.model_id.desc())
        .limit(1)
    )
    if es is None:
        return None
    return s.get_one(EmbeddingModel, es.model_id), False


def project_vectors(
    studio: Studio, project_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, Any]] | None:
    """The project's vectors of its complete active embedding set, for other features.

    Returns ``(sample_ids (n,) int64 ascending, vectors (n, d) float32 L2-normalised, model_info)``,
    or ``None`` when the project has no complete active set (never embedded, or only partly).
    It opens its own sessions: call it before a session of yours has run a statement (on SQLite
    every transaction takes the write lock, so a nested one would wait for it).
    """
    with studio.sessions() as s:
        active = s.get(ActiveEmbedding, project_id)
        if active is None:
            return None
        model = s.get_one(EmbeddingModel, active.model_id)
    index = project_index(studio, project_id, model)
    ids = np.sort(index.ids())
    vectors = index.get(ids) if ids.size else np.empty((0, model.dim), dtype=np.float32)
    return ids.astype(np.int64), np.ascontiguousarray(vectors, dtype=np.float32), model_dict(model)


def embedding_status(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """A project's embedding sets, the model searches use, open jobs and the configured model."""
    with studio.sessions() as s:
        p = find_project(s, project)
        samples = s.scalar(select(func.count()).where(Sample.project_id == p.id)) or 0
        active = s.get(ActiveEmbedding, p.id)
        sets: list[dict[str, Any]] = []
        for es, m in s.execute(
            select(EmbeddingSet, EmbeddingModel)
            .join(EmbeddingModel, EmbeddingModel.id == EmbeddingSet.model_id)
            .where(EmbeddingSet.project_id == p.id)
            .order_by(EmbeddingSet.started_at.desc())
        ):
            embedded = _count_embedded(s, p.id, m.id)
            sets.append(
                {
                    "model": model_dict(m, device=es.device),
                    "status": es.status,
                    "active": active is not None and active.model_id == m.id,
                    "embedded": embedded,
                    "failed": es.failed,
                    "pending": max(0, samples - embedded),
                    "started_at": es.started_at.isoformat() + "Z",
                    "completed_at": es.completed_at.isoformat() + "Z" if es.completed_at else None,
                    "job_id": es.job_id,
                }
            )
        chosen = search_model(s, p.id)
        jobs = [job_dict(j) for j in _open_jobs(s, p.id)]
        last = s.scalar(
            select(Job).where(Job.project_id == p.id, Job.kind == KIND).order_by(Job.id.desc()).limit(1)
        )
        name = p.name
    searching = next((x for x in sets if chosen and x["model"]["id"] == chosen[0].id), None)
    return {
        "project": name,
        "samples": samples,
        "searching": searching,
        "complete": bool(chosen and chosen[1]),
        "embedded": searching["embedded"] if searching else 0,
        "pending": searching["pending"] if searching else samples,
        "sets": sets,
        "jobs": jobs,
        "last_job": job_dict(last) if last is not None else None,
        "configured": configured_model(studio),
    }


def configured_model(studio: Studio) -> dict[str, Any]:
    """The configured model, and whether its weights can be had (with the reason if not)."""
    from vistudio.errors import VistudioError

    spec = configured_spec(studio.settings)
    out: dict[str, Any] = {**spec.to_dict(), "untrained": spec.untrained}
    try:
        d = describe_spec(studio, spec)
    except VistudioError as exc:
        out.update(available=False, error={"code": exc.code, "message": exc.message, "details": exc.details})
    else:
        out.update(available=True, name=d.name, version=d.version)
    return out
