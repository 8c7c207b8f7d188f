"""Faces: the face job (find, align and describe every face of a project's photos) and reading faces.

A photo is processed once per face model (``face_scans`` remembers it, also when it has no face):
running the job again processes only new photos, and a new model version processes them all
again. Photos are read in a pool of processes (``faces.workers``), each loading dlib's models
once; faces are written per batch, one transaction each, so a crash or a cancel keeps what is
done and the next run goes on from there.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, exists, func, select

from vistudio.db import Sample
from vistudio.db.faces import Face, FaceScan
from vistudio.errors import Conflict, InvalidInput, NotFound, VistudioError
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.services.projects import find_project
from vistudio.studio import Studio

KIND = "faces"
BATCH = 32  # photos per transaction
POOL_MIN_PHOTOS = 8  # fewer photos are read in this process: starting processes costs more
DECODE_LIMIT = 200_000_000  # pixels: a bigger "photo" is refused before decoding


def model_name(studio: Studio) -> str:
    """The face model version in use, e.g. ``dlib-hog-resnet128``."""
    from vistudio.ml.faces import provider_from

    cfg = studio.settings.faces
    return str(provider_from({"detector": cfg.detector, "max_side": cfg.max_side}).name)


def _check_enabled(studio: Studio) -> None:
    if not studio.settings.faces.enabled:
        raise Conflict(
            "face recognition is turned off in this workspace (setting faces.enabled)",
            details={"setting": "faces.enabled"},
        )


def start_faces(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Queue a face job for the project's photos not yet processed with the current face model."""
    from vistudio.jobs.queue import job_dict
    from vistudio.ml.faces import models_dir

    _check_enabled(studio)
    models_dir()  # the models are missing: say so now, not in a failed job
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    # a job still queued will read every new photo: no second one (a running one chose its
    # photos when it started, so new photos need a job of their own)
    queued, _ = studio.queue.list(kind=KIND, project_id=project_id, status="queued")
    if queued:
        return job_dict(queued[0])
    job = studio.queue.enqueue(KIND, {"project": name}, project_id=project_id)
    return job_dict(job)


def faces_for_new_samples(studio: Studio, project_id: int) -> dict[str, Any] | None:
    """After an import or a scan added photos: queue a face job for them, so that people keep up
    with the library. Only for a project whose faces were asked for once with the current model
    (the first run is explicit: it may take an hour on a CPU for a large library). Returns
    ``{"job": id}``, ``{"error": message}`` when it cannot run now, or ``None``."""
    if not studio.settings.faces.enabled:
        return None
    try:
        model = model_name(studio)
        with studio.sessions() as s:
            started = s.scalar(
                select(FaceScan.sample_id)
                .join(Sample, Sample.id == FaceScan.sample_id)
                .where(Sample.project_id == project_id, FaceScan.model == model)
                .limit(1)
            )
        if started is None:
            return None
        return {"job": start_faces(studio, project=project_id)["id"]}
    except VistudioError as exc:
        return {"error": exc.message}


# --- reading photos (pool processes) ----------------------------------------------------------


def _results(studio: Studio, paths: list[str]) -> Iterator[dict[str, Any]]:
    """Each photo's faces, in order (``ml.faces.read_faces``' answers), from a pool of processes,
    or this process for a few photos. A photo that kills its process (a decoder fault, out of
    memory) is found by going through the rest of that chunk one photo per process."""
    from vistudio.ml import faces as ml_faces

    cfg = studio.settings.faces
    options = {"detector": cfg.detector, "max_side": cfg.max_side}
    if cfg.workers <= 1 or len(paths) < POOL_MIN_PHOTOS:
        # the models stay loaded between jobs, freed when idle (embed.idle_ttl_seconds), as CLIP's
        key = ("faces", cfg.detector, cfg.max_side)
        with studio.cache.hold(key, lambda: ml_faces.provider_from(options)) as provider:
            for path in paths:
                yield ml_faces.read_faces(provider, path, max_pixels=DECODE_LIMIT)
        return
    # spawn: the parent may be a threaded server; forking it could copy held locks
    context = multiprocessing.get_context("spawn")

    def new_pool(workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=ml_faces.init_worker,
            initargs=(options, DECODE_LIMIT),
        )

    window = cfg.workers * 8
    pool = new_pool(cfg.workers)
    try:
        for lo in range(0, len(paths), window):
            chunk = paths[lo : lo + window]
            done = 0
            try:
                for result in pool.map(ml_faces.worker_task, chunk):
                    done += 1
                    yield result
            except BrokenProcessPool:
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool(1)
                for path in chunk[done:]:
                    try:
                        result = pool.submit(ml_faces.worker_task, path).result()
                    except BrokenProcessPool:
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = new_pool(1)
                        result = {"status": "error", "reason": "the photo crashed its face reader"}
                    yield result
                pool.shutdown(wait=True)
                pool = new_pool(cfg.workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- the job ------------------------------------------------------------------------------------


def _pending(studio: Studio, project_id: int, model: str) -> list[tuple[int, str]]:
    with studio.sessions() as s:
        done = exists().where(FaceScan.sample_id == Sample.id, FaceScan.model == model)
        rows = s.execute(
            select(Sample.id, Sample.storage, Sample.path)
            .where(Sample.project_id == project_id, ~done)
            .order_by(Sample.id)
        ).all()
    return [
        (sid, str(studio.home / path if storage == "copy" else Path(path))) for sid, storage, path in rows
    ]


@job_handler(KIND)
def run_faces(ctx: JobContext) -> dict[str, Any]:
    studio = ctx.studio
    if ctx.project_id is None:
        raise PermanentJobError("the project of this face job was deleted")
    if not studio.settings.faces.enabled:
        raise PermanentJobError("face recognition is turned off in this workspace (setting faces.enabled)")
    model = model_name(studio)
    project_id = ctx.project_id
    ctx.progress(0, None, "looking for photos to read", force=True)
    pending = _pending(studio, project_id, model)
    total = len(pending)
    found = 0
    failed: list[dict[str, Any]] = []
    batch: list[tuple[int, dict[str, Any]]] = []

    def write() -> None:
        nonlocal found
        with studio.sessions.begin() as s:
            for sample_id, res in batch:
                if s.get(Sample, sample_id) is None:  # deleted meanwhile
                    continue
                s.execute(delete(Face).where(Face.sample_id == sample_id, Face.model == model))
                for f in res["faces"]:
                    x, y, w, h = f["box"]
                    s.add(
                        Face(
                            project_id=project_id,
                            sample_id=sample_id,
                            model=model,
                            x=x,
                            y=y,
                            w=w,
                            h=h,
                            landmarks=f["landmarks"],
                            score=f["score"],
                            embedding=f["embedding"],
                            crop=f["crop"],
                        )
                    )
                s.merge(FaceScan(sample_id=sample_id, model=model, faces=len(res["faces"])))
                found += len(res["faces"])
        batch.clear()

    for i, res in enumerate(_results(studio, [path for _, path in pending])):
        sample_id = pending[i][0]
        if res["status"] == "ok":
            batch.append((sample_id, res))
        else:
            failed.append({"sample_id": sample_id, "path": pending[i][1], "reason": res["reason"]})
        if len(batch) >= BATCH:
            write()
        ctx.progress(i + 1, total, f"{found} faces")
        if ctx.cancel_requested.is_set():
            write()  # keep what is done: the next run goes on from here
            ctx.check_cancelled()
    write()
    from vistudio.services.people import cluster_project

    ctx.progress(total, total, f"{found} faces; grouping them into people", force=True)
    people = cluster_project(studio, project_id, full=False)
    return {
        "report": {
            "photos": total,
            "faces": found,
            "failed": failed[:1000],
            "failed_count": len(failed),
            "people": people,
            "model": model,
        }
    }


# --- reading ------------------------------------------------------------------------------------


def face_dict(f: Face) -> dict[str, Any]:
    return {
        "id": f.id,
        "sample_id": f.sample_id,
        "box": {"x": f.x, "y": f.y, "w": f.w, "h": f.h},
        "landmarks": f.landmarks,
        "score": f.score,
        "model": f.model,
        "crop_url": f"/api/v1/faces/{f.id}/crop",
    }


def list_faces(
    studio: Studio, *, project: str | int, sample_id: int | None = None, offset: int = 0, limit: int = 100
) -> dict[str, Any]:
    """A project's faces (of one photo when ``sample_id`` is given), newest model only."""
    if not 0 <= offset <= 2**62 or not 1 <= limit <= 1000:
        raise InvalidInput("offset must be >= 0 and limit between 1 and 1000")
    model = model_name(studio)
    with studio.sessions() as s:
        p = find_project(s, project)
        where = [Face.project_id == p.id, Face.model == model]
        if sample_id is not None:
            where.append(Face.sample_id == sample_id)
        total = s.scalar(select(func.count()).select_from(Face).where(*where)) or 0
        rows = s.scalars(select(Face).where(*where).order_by(Face.id).offset(offset).limit(limit)).all()
        photos = s.scalar(select(func.count(func.distinct(Face.sample_id))).where(*where)) or 0
        scanned = (
            s.scalar(
                select(func.count())
                .select_from(FaceScan)
                .join(Sample)
                .where(Sample.project_id == p.id, FaceScan.model == model)
            )
            or 0
        )
        return {
            "items": [face_dict(f) for f in rows],
            "total": total,
            "photos_with_faces": photos,
            "photos_scanned": scanned,
            "model": model,
        }


def face_crop(studio: Studio, face_id: int) -> bytes:
    """The WebP crop of one face."""
    with studio.sessions() as s:
        crop = s.scalar(select(Face.crop).where(Face.id == face_id))
    if crop is None:
        raise NotFound(f"face {face_id} not found")
    return bytes(crop)


def face_vectors(studio: Studio, project_id: int, model: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` of a project's faces made with ``model``: int64 (n,), float32 (n, 128)."""
    with studio.sessions() as s:
        rows = s.execute(
            select(Face.id, Face.embedding)
            .where(Face.project_id == project_id, Face.model == model)
            .order_by(Face.id)
        ).all()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vectors = (
        np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
        if rows
        else np.zeros((0, 128), np.float32)
    )
    return ids, vectors


def photo_faces(studio: Studio, *, project: str | int, sample_id: int) -> list[dict[str, Any]]:
    """The faces of one photo (current model) with who each is: ``face_dict`` plus ``person``
    (``{"id", "name", "hidden"}``, or ``None`` for a face in nobody)."""
    from vistudio.db.faces import Person

    model = model_name(studio)
    with studio.sessions() as s:
        p = find_project(s, project)
        rows = s.execute(
            select(Face, Person.id, Person.name, Person.hidden)
            .outerjoin(Person, Person.id == Face.person_id)
            .where(Face.project_id == p.id, Face.model == model, Face.sample_id == sample_id)
            .order_by(Face.x, Face.id)
        ).all()
        return [
            {
                **face_dict(f),
                "person": None if pid is None else {"id": pid, "name": name, "hidden": hidden},
            }
            for f, pid, name, hidden in rows
        ]
