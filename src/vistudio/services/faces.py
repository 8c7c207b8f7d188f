"""Faces: the face job (find, align and describe every face of a project's photos) and reading faces.

A photo is processed once per face model (``face_scans`` remembers it, also when it has no face):
running the job again processes only new photos, and a new model version (``faces.detector``,
``faces.embedder``, or a new file at the embedder's path) processes them all again. Photos are read
in a pool of processes (``faces.workers``), each loading the models once; faces are written per
batch, one transaction each, so a crash or a cancel keeps what is done and the next run goes on
from there.

A photo has the faces of one model only: processing it again replaces its faces of any other model
(and forgets that it was read with one, so that going back reads it again). Who each face is
carries over by place: a new face whose box overlaps an old face's by IoU ≥ 0.5 (each old face
matched once, best overlap first) takes the old face's person and ``assigned`` (manual stays
manual), its "not this person" answers, and its place as a person's cover. So changing the
embedder re-detects every photo while named people keep their faces; faces of two models are never
compared (every reader of descriptors asks for the current model's), so 128-d dlib descriptors and
an ONNX model's 512-d embeddings never meet in a distance or a grouping.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from vistudio.config import FaceSettings
from vistudio.db import Sample
from vistudio.db.faces import Face, FaceRejection, FaceScan, Person
from vistudio.errors import Conflict, InvalidInput, NotFound, VistudioError
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.services.projects import find_project
from vistudio.studio import Studio

KIND = "faces"
BATCH = 32  # photos per transaction
POOL_MIN_PHOTOS = 8  # fewer photos are read in this process: starting processes costs more
DECODE_LIMIT = 200_000_000  # pixels: a bigger "photo" is refused before decoding
SAME_FACE_IOU = 0.5  # a re-detected face this close to an old one's box is that face


def face_options(cfg: FaceSettings) -> dict[str, Any]:
    """What ``ml.faces.provider_from`` builds the provider from (sent to each pool process)."""
    return {"detector": cfg.detector, "max_side": cfg.max_side, "embedder": cfg.embedder}


def model_name(studio: Studio) -> str:
    """The face model version in use, e.g. ``dlib-hog-resnet128`` or ``onnx-<sha256[:12]>-hog``."""
    from vistudio.ml.faces import provider_from

    return str(provider_from(face_options(studio.settings.faces)).name)


def max_distance(cfg: FaceSettings) -> float:
    """The same-person distance in effect: ``faces.max_distance``, or when it is not set the
    embedder's own (dlib 0.5, an ONNX ArcFace model 1.0: its vectors are unit length)."""
    from vistudio.ml.faces import default_max_distance

    return float(cfg.max_distance) if cfg.max_distance is not None else default_max_distance(cfg.embedder)


def _check_enabled(studio: Studio) -> None:
    if not studio.settings.faces.enabled:
        raise Conflict(
            "face recognition is turned off in this workspace (setting faces.enabled)",
            details={"setting": "faces.enabled"},
        )


def start_faces(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Queue a face job for the project's photos not yet processed with the current face model."""
    from vistudio.jobs.queue import job_dict
    from vistudio.ml.faces import check_embedder, models_dir

    _check_enabled(studio)
    models_dir()  # the models are missing: say so now, not in a failed job
    check_embedder(studio.settings.faces.embedder)  # so is an ONNX embedder missing or unfit
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
    options = face_options(cfg)
    if cfg.workers <= 1 or len(paths) < POOL_MIN_PHOTOS:
        # the models stay loaded between jobs, freed when idle (embed.idle_ttl_seconds), as CLIP's;
        # keyed by the model's name too: a new file at the embedder's path is a new provider
        fresh = ml_faces.provider_from(options)
        key = ("faces", cfg.detector, cfg.max_side, fresh.name)
        with studio.cache.hold(key, lambda: fresh) as provider:
            for path in paths:
                yield ml_faces.read_faces(provider, path, max_pixels=DECODE_LIMIT)
        return
    # one process per core: an ONNX embedder runs on one CPU thread in each (no GPU per process)
    options = {**options, "threads": 1, "cuda": False}
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


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _same_faces(
    old: list[tuple[float, float, float, float]], new: list[tuple[float, float, float, float]]
) -> dict[int, int]:
    """new index → old index for the boxes that are one face (IoU ≥ ``SAME_FACE_IOU``), each old
    and each new box matched once, best overlap first."""
    pairs = sorted(
        ((_iou(o, n), i, j) for i, o in enumerate(old) for j, n in enumerate(new)), key=lambda t: -t[0]
    )
    matched: dict[int, int] = {}
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou < SAME_FACE_IOU:
            break
        if i not in used and j not in matched:
            matched[j] = i
            used.add(i)
    return matched


def _replace_faces(
    s: Session, project_id: int, sample_id: int, model: str, found: list[dict[str, Any]]
) -> None:
    """Write a photo's faces found with ``model`` in place of the faces it had (of any model),
    carrying who each is over to the new face at its place (see the module docstring)."""
    old = s.execute(
        select(Face.id, Face.x, Face.y, Face.w, Face.h, Face.person_id, Face.assigned).where(
            Face.sample_id == sample_id
        )
    ).all()
    matched = _same_faces([(o.x, o.y, o.w, o.h) for o in old], [tuple(f["box"]) for f in found])
    new = []
    for j, f in enumerate(found):
        x, y, w, h = f["box"]
        was = old[matched[j]] if j in matched else None
        new.append(
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
                person_id=None if was is None else was.person_id,
                assigned=None if was is None or was.person_id is None else was.assigned,
            )
        )
    s.add_all(new)
    if not old:
        return
    s.flush()  # the new faces' ids
    moved = {old[i].id: new[j].id for j, i in matched.items()}
    gone = [o.id for o in old]
    for old_id, new_id in moved.items():
        s.execute(update(FaceRejection).where(FaceRejection.face_id == old_id).values(face_id=new_id))
        s.execute(update(Person).where(Person.cover_face_id == old_id).values(cover_face_id=new_id))
    s.execute(delete(FaceRejection).where(FaceRejection.face_id.in_(gone)))
    s.execute(delete(Face).where(Face.id.in_(gone)))
    # a person whose cover was an old face that found no new one: their largest, surest face
    for person in s.scalars(select(Person).where(Person.cover_face_id.in_(gone))):
        person.cover_face_id = s.scalar(
            select(Face.id)
            .where(Face.person_id == person.id)
            .order_by((Face.w * Face.h).desc(), Face.score.desc(), Face.id)
            .limit(1)
        )
    # read with another model no longer: going back to it reads the photo again
    s.execute(delete(FaceScan).where(FaceScan.sample_id == sample_id, FaceScan.model != model))
    from vistudio.services import text_index

    text_index.sync(s, [sample_id])  # a face that found no new one took its person's name along


def _pending(studio: Studio, project_id: int, model: str) -> list[tuple[int, str]]:
    with studio.sessions() as s:
        done = exists().where(FaceScan.sample_id == Sample.id, FaceScan.model == model)
        rows = s.execute(
            select(Sample.id, Sample.storage, Sample.path)
            .where(Sample.project_id == project_id, ~done)
            .order_by(Sample.id)
        ).all()
    return [
        (sid, str(studio.photo_file(storage, path))) for sid, storage, path in rows
    ]


def store_faces(
    studio: Studio, *, project_id: int, model: str, results: list[tuple[int, dict[str, Any]]]
) -> int:
    """Write photos' faces found with ``model`` — ``(sample id, read_faces' "ok" answer)`` each —
    in one transaction, each photo's in place of the faces it had, and remember it was read with
    ``model``. Writing a photo again leaves one set of faces. → faces written."""
    found = 0
    if not results:
        return 0
    with studio.sessions.begin() as s:
        for sample_id, res in results:
            if s.get(Sample, sample_id) is None:  # deleted meanwhile
                continue
            _replace_faces(s, project_id, sample_id, model, res["faces"])
            s.merge(FaceScan(sample_id=sample_id, model=model, faces=len(res["faces"])))
            found += len(res["faces"])
    return found


def finish_faces(studio: Studio, project_id: int) -> dict[str, Any]:
    """After a face run: group the project's new faces into people → ``cluster_project``'s answer."""
    from vistudio.services.people import cluster_project

    return cluster_project(studio, project_id, full=False)


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
        found += store_faces(studio, project_id=project_id, model=model, results=batch)
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
    ctx.progress(total, total, f"{found} faces; grouping them into people", force=True)
    people = finish_faces(studio, project_id)
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
        scanned = _photos_scanned(s, p.id, model)
        return {
            "items": [face_dict(f) for f in rows],
            "total": total,
            "photos_with_faces": photos,
            "photos_scanned": scanned,
            "model": model,
        }


def face_counts(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """A project's face counts with the current model, as :func:`list_faces` gives them without
    its page of faces (what the People page's status line shows): ``faces``,
    ``photos_with_faces``, ``photos_scanned``, ``model``. Each is read from an index alone."""
    model = model_name(studio)
    with studio.sessions() as s:
        p = find_project(s, project)
        where = (Face.project_id == p.id, Face.model == model)
        return {
            "faces": s.scalar(select(func.count()).select_from(Face).where(*where)) or 0,
            "photos_with_faces": s.scalar(select(func.count(func.distinct(Face.sample_id))).where(*where))
            or 0,
            "photos_scanned": _photos_scanned(s, p.id, model),
            "model": model,
        }


def _photos_scanned(s: Session, project_id: int, model: str) -> int:
    """How many of the project's photos were read with ``model``. When no other project has a
    photo, that is every photo read with it (each ``face_scans`` row goes with its photo): the
    small (photo, model) index read once instead of a look-up in it for each of the project's
    photos (3–5× faster at 500,000 photos)."""
    others = select(
        select(Sample.id).where(Sample.project_id < project_id).limit(1).scalar_subquery(),
        select(Sample.id).where(Sample.project_id > project_id).limit(1).scalar_subquery(),
    )
    scans = select(func.count()).select_from(FaceScan).where(FaceScan.model == model)
    if s.execute(others).one() == (None, None):
        return int(s.scalar(scans) or 0)
    return int(s.scalar(scans.join(Sample).where(Sample.project_id == project_id)) or 0)


def face_crop(studio: Studio, face_id: int) -> bytes:
    """The WebP crop of one face."""
    with studio.sessions() as s:
        crop = s.scalar(select(Face.crop).where(Face.id == face_id))
    if crop is None:
        raise NotFound(f"face {face_id} not found")
    return bytes(crop)


def face_vectors(studio: Studio, project_id: int, model: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` of a project's faces made with ``model``: int64 (n,), float32 (n, D) —
    one model's vectors only (128-d for dlib's, the ONNX model's D otherwise)."""
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
