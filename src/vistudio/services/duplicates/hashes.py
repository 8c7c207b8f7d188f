"""Dihedral hashes: the perceptual hash of each rotation and mirror image of a sample's thumbnail
(``duplicate_hashes``), computed by a request for a few samples or by a ``duplicate_hashes`` job."""

from __future__ import annotations

from typing import Any

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from vistudio.db import Job, Sample, utcnow
from vistudio.db.duplicates import DuplicateHash
from vistudio.ingest import dedup
from vistudio.ingest.near_dups import parse_hash
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.services.projects import find_project
from vistudio.studio import Studio

INLINE_HASHES = 1000  # samples a request hashes itself (about a second); more go to a job
HASH_JOB = "duplicate_hashes"
HASH_BATCH = 256


def count_unhashed(studio: Studio, *, project_id: int) -> int:
    with studio.sessions() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(Sample)
                .outerjoin(DuplicateHash, DuplicateHash.sample_id == Sample.id)
                .where(Sample.project_id == project_id, DuplicateHash.sample_id.is_(None))
            )
            or 0
        )


def _safe_hash(value: str | None) -> int:
    try:
        return parse_hash(value or "")
    except ValueError:
        return 0


def _variants_of(studio: Studio, sha: str, phash: str) -> tuple[bytes, bool]:
    try:
        with Image.open(studio.store.path("thumbnail", sha)) as im:
            im.load()
            return dedup.pack_variants(dedup.dihedral_hashes(im)), True
    except Exception:  # a missing or damaged thumbnail: predict from the stored hash instead
        return dedup.pack_variants([int(v) for v in dedup.derived_variants([_safe_hash(phash)])[0]]), False


def compute_hashes(studio: Studio, *, project_id: int, ctx: JobContext | None = None) -> int:
    """Hash the thumbnails of the project's samples that have no variant hashes yet (resumable:
    each batch is committed). Returns the number hashed."""
    total = count_unhashed(studio, project_id=project_id) if ctx else None
    done = 0
    while True:
        if ctx:
            ctx.check_cancelled()
        with studio.sessions() as s:
            todo = s.execute(
                select(Sample.id, Sample.sha256, Sample.phash)
                .outerjoin(DuplicateHash, DuplicateHash.sample_id == Sample.id)
                .where(Sample.project_id == project_id, DuplicateHash.sample_id.is_(None))
                .order_by(Sample.id)
                .limit(HASH_BATCH)
            ).all()
        if not todo:
            return done
        rows = []
        for sid, sha, phash in todo:
            blob, exact = _variants_of(studio, sha, phash)
            rows.append({"sample_id": sid, "variants": blob, "exact": exact, "computed_at": utcnow()})
        with studio.sessions.begin() as s:
            insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
            # a sample removed meanwhile would break the foreign key: insert only live ones
            live = set(s.scalars(select(Sample.id).where(Sample.id.in_([r["sample_id"] for r in rows]))))
            rows = [r for r in rows if r["sample_id"] in live]
            if rows:
                s.execute(insert(DuplicateHash).on_conflict_do_nothing(index_elements=["sample_id"]), rows)
        done += len(todo)
        if ctx:
            ctx.progress(done, total, "hashing rotations and mirrors")


def start_hashing(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Queue a ``duplicate_hashes`` job for the project unless one is queued or running."""
    with studio.sessions() as s:
        p = find_project(s, project)
        active = s.scalar(
            select(Job)
            .where(Job.kind == HASH_JOB, Job.project_id == p.id, Job.status.in_(("queued", "running")))
            .order_by(Job.id)
            .limit(1)
        )
        if active is not None:
            return job_dict(active)
    return job_dict(studio.queue.enqueue(HASH_JOB, {}, project_id=p.id))


@job_handler(HASH_JOB)
def run_hash_job(ctx: JobContext) -> dict[str, Any]:
    if ctx.project_id is None:
        raise PermanentJobError("the project of this job was deleted")
    return {"hashed": compute_hashes(ctx.studio, project_id=ctx.project_id, ctx=ctx)}
