"""``vistudio doctor``: database integrity, blob hashes, orphan files, reference counts.

Blobs no row names are orphans only once older than the store's ``stale_seconds`` (the S3 store's
``stale_upload_seconds``): an import uploads its blobs before its batch commits their rows, so a
younger one may be a photo in flight, and ``--fix`` must not delete it."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from vistudio.db import Artifact, Job, Sample
from vistudio.ingest.pool import EXTENSIONS
from vistudio.storage.blobs import DEFAULT_DIR, KIND_DIRS, BlobProblem
from vistudio.studio import Studio


def _expected_refs(s: Any) -> Counter[tuple[str, str]]:
    """References the samples table implies: one thumbnail per sample, one original per copy."""
    refs: Counter[tuple[str, str]] = Counter()
    for sha, storage in s.execute(select(Sample.sha256, Sample.storage)):
        refs[("thumbnail", sha)] += 1
        if storage == "copy":
            refs[("original", sha)] += 1
    return refs


def run_doctor(studio: Studio, *, fix: bool = False, check_hashes: bool = True) -> dict[str, Any]:
    problems: list[dict[str, Any]] = []
    fixed: list[str] = []
    with studio.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check")]
            if rows != ["ok"]:
                problems.extend({"kind": "db_integrity", "detail": r} for r in rows)
            for r in conn.exec_driver_sql("PRAGMA foreign_key_check"):
                problems.append({"kind": "dangling_reference", "detail": f"{r[0]} row {r[1]} → {r[2]}"})
        else:
            conn.execute(text("SELECT 1"))

    with studio.sessions() as s:
        blob_problems = studio.store.scan(s, check_hashes=check_hashes)
        expected = _expected_refs(s)
        blobs = {(a.kind, a.sha256): a for a in s.scalars(select(Artifact))}
        active = list(s.execute(select(Job.id, Job.params).where(Job.status.in_(("queued", "running")))))
        running = {j for j, _ in active}
        active_sources = {str((params or {}).get("source")) for _, params in active}
        missing_refs = [(kind, sha, n) for (kind, sha), n in expected.items() if (kind, sha) not in blobs]
        wrong_counts = [
            (a, expected.get(key, 0))
            for key, a in blobs.items()
            if a.kind in ("original", "thumbnail") and a.ref_count != expected.get(key, 0)
        ]
        missing_refs_files = {
            (kind, sha) for kind, sha, _ in missing_refs if studio.store.exists(kind, sha, _ext(s, sha, kind))
        }
        reference_missing: list[dict[str, Any]] = [
            {"sample": sid, "path": p}
            for sid, p in s.execute(select(Sample.id, Sample.path).where(Sample.storage == "reference"))
            if not Path(p).is_file()
        ]

    for b in blob_problems:
        problems.append(
            {"kind": f"blob_{b.problem}", "blob_kind": b.kind, "sha256": b.sha256, "path": b.path}
        )
    for kind, sha, n in missing_refs:
        problems.append({"kind": "unregistered_blob", "blob_kind": kind, "sha256": sha, "expected_refs": n})
    for a, n in wrong_counts:
        problems.append(
            {
                "kind": "ref_count",
                "blob_kind": a.kind,
                "sha256": a.sha256,
                "ref_count": a.ref_count,
                "expected": n,
            }
        )
    for missing in reference_missing:
        problems.append({"kind": "reference_missing", **missing})
    job_tmp = sorted([*studio.tmp.glob("import-*"), *studio.tmp.glob("train-*")])
    stale_tmp = [p for p in job_tmp if _job_of(p.name) not in running] + [
        p for p in sorted(studio.tmp.glob("upload-*")) if str(p) not in active_sources
    ]
    for p in stale_tmp:
        problems.append({"kind": "stale_temp", "path": str(p)})

    if fix:
        with studio.sessions.begin() as s:
            for a, n in wrong_counts:
                row = s.get(Artifact, a.id)
                if row is not None:
                    row.ref_count = n
            for kind, sha, n in missing_refs:
                if (kind, sha) in missing_refs_files:
                    ext = _ext(s, sha, kind)
                    size = studio.store.size(kind, sha, ext)
                    s.add(Artifact(kind=kind, sha256=sha, ext=ext, size=size, ref_count=n))
            fixed.append(f"reference counts corrected: {len(wrong_counts) + len(missing_refs_files)}")
        with studio.sessions() as s:
            # the scan may have taken hours (hashing a bucket): an orphan an import has reused and
            # referenced since is no orphan any more
            orphans = _unclaimed(s, [b for b in blob_problems if b.problem in ("orphan", "temp")])
        for b in orphans:
            studio.store.remove_file(b.path)
        fixed.append(f"orphan or temporary files removed: {len(orphans)}")
        with studio.sessions.begin() as s:
            broken = [b for b in blob_problems if b.problem in ("missing", "corrupt")]
            for b in broken:
                # a corrupt blob is worse than a missing one: drop it so a re-import restores it
                if b.problem == "corrupt":
                    studio.store.remove_file(b.path)
            removed = studio.store.gc(s)
        fixed.append(f"unreferenced blobs collected: {removed}")
        for p in stale_tmp:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        fixed.append(f"stale temporary folders removed: {len(stale_tmp)}")
    return {"ok": not problems, "problems": problems, "fixed": fixed}


def _unclaimed(s: Any, found: list[BlobProblem]) -> list[BlobProblem]:
    """``found`` less the orphans that a row names by now (in the same folder: artifacts' kinds share
    theirs)."""
    shas = sorted({b.sha256 for b in found if b.problem == "orphan"})
    claimed: set[tuple[str, str]] = set()
    for start in range(0, len(shas), 500):
        rows = s.execute(
            select(Artifact.kind, Artifact.sha256).where(Artifact.sha256.in_(shas[start : start + 500]))
        )
        claimed.update((KIND_DIRS.get(kind, DEFAULT_DIR), sha) for kind, sha in rows)
    return [
        b
        for b in found
        if b.problem != "orphan" or (KIND_DIRS.get(b.kind, DEFAULT_DIR), b.sha256) not in claimed
    ]


def _ext(s: Any, sha: str, kind: str) -> str:
    if kind != "original":
        return ""
    fmt = s.scalar(select(Sample.format).where(Sample.sha256 == sha).limit(1))
    return EXTENSIONS.get(fmt or "", "bin")


JOB_TMP = re.compile(r"^(?:import-(\d+)|train-\d+-job(\d+)-a\d+)$")


def _job_of(name: str) -> int:
    """The job that owns a temporary folder (``import-<job>``, ``train-<exp>-job<job>-a<n>``), or -1."""
    m = JOB_TMP.match(name)
    return int(m.group(1) or m.group(2)) if m else -1
