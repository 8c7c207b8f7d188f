"""Forming the groups of each level, choosing their keepers, and caching the groups computed
(``duplicate_group_cache``) while what they were computed from is unchanged."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import Session

from vistudio.db import Job, Project, Sample, utcnow
from vistudio.db.duplicates import DuplicateGroupCache, DuplicateHash
from vistudio.db.library import LibraryFile, LibraryRoot
from vistudio.errors import InvalidInput, NotFound
from vistudio.ingest import dedup
from vistudio.ingest.near_dups import Rank
from vistudio.jobs.worker import JobContext
from vistudio.services.duplicates.hashes import _safe_hash, compute_hashes
from vistudio.services.duplicates.params import GROUP_KEY, _chunks, check_level, check_threshold
from vistudio.studio import Studio

CACHED_THRESHOLDS = 4  # computed groups kept per project and level
EMBED_HINT = "run `vistudio embed {project}` to compute image embeddings, then look again"


@dataclass
class _Group:
    key: str
    level: str
    members: list[int]  # sample ids; file ids at the exact level
    keeper: int  # a sample id
    distances: dict[int, float] = field(default_factory=dict)  # member -> distance to the keeper
    keeper_file: int | None = None
    files: list[dict[str, Any]] = field(default_factory=list)  # exact level only


@dataclass
class _Computed:
    groups: list[_Group]
    extra: dict[str, Any]


def _keeper(s: Session, sample_ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """Keeper sort keys of samples (see ``dedup.keeper_rank``)."""
    ranks: dict[int, tuple[Any, ...]] = {}
    for chunk in _chunks(sample_ids):
        for sid, w, h, taken, imported in s.execute(
            select(Sample.id, Sample.width, Sample.height, Sample.taken_at, Sample.imported_at).where(
                Sample.id.in_(chunk)
            )
        ):
            ranks[sid] = dedup.keeper_rank(width=w, height=h, when=taken or imported, ident=sid)
    return ranks


def _exact(studio: Studio, s: Session, project_id: int) -> _Computed:
    shared = (
        select(LibraryFile.sample_id)
        .join(LibraryRoot, LibraryRoot.id == LibraryFile.root_id)
        .where(LibraryRoot.project_id == project_id, LibraryFile.sample_id.is_not(None))
        .group_by(LibraryFile.sample_id)
        .having(func.count() >= 2)
    )
    files: dict[int, list[dict[str, Any]]] = {}
    for fid, rel, root, size, mtime, sid in s.execute(
        select(
            LibraryFile.id,
            LibraryFile.path,
            LibraryRoot.path,
            LibraryFile.size,
            LibraryFile.mtime,
            LibraryFile.sample_id,
        )
        .join(LibraryRoot, LibraryRoot.id == LibraryFile.root_id)
        .where(LibraryRoot.project_id == project_id, LibraryFile.sample_id.in_(shared))
        .order_by(LibraryFile.id)
    ):
        if sid is None:
            continue
        files.setdefault(sid, []).append(
            {"file_id": fid, "path": str(Path(root) / rel), "size": size, "mtime": mtime}
        )
    groups = []
    for sid, fs in files.items():
        keeper = min(fs, key=lambda f: (f["mtime"], len(f["path"]), f["path"]))
        groups.append(
            _Group(
                key=dedup.group_key("exact", [f["file_id"] for f in fs]),
                level="exact",
                members=[f["file_id"] for f in fs],
                keeper=sid,
                distances={f["file_id"]: 0 for f in fs},
                keeper_file=keeper["file_id"],
                files=sorted(fs, key=lambda f: (f["file_id"] != keeper["file_id"], f["path"])),
            )
        )
    return _Computed(groups, {"import_duplicates": _import_duplicates(s, project_id)})


def _import_duplicates(s: Session, project_id: int, *, keep: int = 50) -> dict[str, Any]:
    """Identical files the imports of this project skipped (they became no sample of their own)."""
    count = 0
    items: list[dict[str, Any]] = []
    for job_id, result in s.execute(
        select(Job.id, Job.result)
        .where(Job.project_id == project_id, Job.kind == "import", Job.status == "succeeded")
        .order_by(Job.id)
    ):
        report = (result or {}).get("report") or {}
        count += int(report.get("duplicates") or 0)
        for item in report.get("duplicate_items") or []:
            if len(items) < keep and isinstance(item, dict):
                items.append({"job": job_id, **{k: item.get(k) for k in ("path", "same_as", "sha256")}})
    return {"count": count, "items": items}


def _perceptual_fingerprint(s: Session, project_id: int) -> str:
    """What the perceptual groups depend on: the samples (a removal, an addition, a reused id
    with a newer import date) and how many of them have thumbnail hashes."""
    row = s.execute(
        select(
            func.count(Sample.id),
            func.max(Sample.id),
            func.sum(Sample.id),
            func.max(Sample.imported_at),
            func.count(DuplicateHash.sample_id),
            func.sum(case((DuplicateHash.exact, 1), else_=0)),
        )
        .select_from(Sample)
        .outerjoin(DuplicateHash, DuplicateHash.sample_id == Sample.id)
        .where(Sample.project_id == project_id)
    ).one()
    # p2: groups formed around their keeper; groups cached as p1 chained and must be recomputed
    return "p2:" + ":".join(str(x) for x in row)


def _perceptual(s: Session, project_id: int, bits: int) -> list[_Group]:
    rows = s.execute(
        select(Sample.id, Sample.phash, DuplicateHash.variants)
        .outerjoin(DuplicateHash, DuplicateHash.sample_id == Sample.id)
        .where(Sample.project_id == project_id)
        .order_by(Sample.id)
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    variants = np.zeros((len(rows), len(dedup.DIHEDRAL)), dtype=np.uint64)
    stored = [i for i, r in enumerate(rows) if r[2] is not None]
    if stored:
        variants[stored] = dedup.unpack_variants([rows[i][2] for i in stored])
    missing = [i for i, r in enumerate(rows) if r[2] is None]
    if missing:
        variants[missing] = dedup.derived_variants([_safe_hash(rows[i][1]) for i in missing])
    found = dedup.perceptual_groups(variants, max_distance=bits, rank=_ranker(s, ids))
    groups = []
    for g in found:  # the keeper first: every member is within ``bits`` of it
        members = [int(ids[i]) for i in g]
        distances: dict[int, float] = {
            m: int(d)
            for m, d in zip(members, [0, *dedup.distances_to(variants, int(g[0]), g[1:])], strict=True)
        }
        members.sort()
        groups.append(
            _Group(dedup.group_key("perceptual", members), "perceptual", members, int(ids[g[0]]), distances)
        )
    return groups


def _ranker(s: Session, ids: npt.NDArray[np.int64]) -> Rank:
    """The keeper sort keys of rows (indices into ``ids``), for the grouping to pick centres by."""

    def rank(rows: npt.NDArray[np.int64]) -> list[tuple[Any, ...]]:
        sample_ids = [int(ids[r]) for r in rows]
        ranks = _keeper(s, sample_ids)
        return [ranks[sid] for sid in sample_ids]

    return rank


def _project_vectors(studio: Studio, project_id: int) -> Any:
    from vistudio.services import embeddings

    fn = getattr(embeddings, "project_vectors", None)
    return None if fn is None else fn(studio, project_id)


def _semantic(
    s: Session, sample_ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32], similarity: float
) -> list[_Group]:
    from vistudio.ml.embed.dedup import similarity_groups

    found = similarity_groups(vectors, threshold=similarity, rank=_ranker(s, sample_ids))
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    groups = []
    for g in found:  # the keeper first: every member reaches ``similarity`` with it
        members = [int(sample_ids[x]) for x in g]
        cos = unit[g] @ unit[int(g[0])]
        distances = {m: round(float(max(0.0, 1.0 - c)), 4) for m, c in zip(members, cos, strict=True)}
        members.sort()
        groups.append(
            _Group(
                dedup.group_key("semantic", members), "semantic", members, int(sample_ids[g[0]]), distances
            )
        )
    return groups


def _vectors(
    studio: Studio, s: Session, project_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, Any]] | None:
    """The project's embeddings (of samples still in it), or None when it has none."""
    found = _project_vectors(studio, project_id)
    if found is None or len(found[0]) == 0:
        return None
    sample_ids = np.asarray(found[0], dtype=np.int64)
    vectors = np.asarray(found[1], dtype=np.float32)
    # vectors of samples removed since they were computed do not count
    alive = np.fromiter(s.scalars(select(Sample.id).where(Sample.project_id == project_id)), dtype=np.int64)
    keep = np.isin(sample_ids, alive)
    return sample_ids[keep], vectors[keep], dict(found[2] or {})


def _cached(s: Session, project_id: int, level: str, threshold: str, fingerprint: str) -> list[_Group] | None:
    row = s.scalar(
        select(DuplicateGroupCache).where(
            DuplicateGroupCache.project_id == project_id,
            DuplicateGroupCache.level == level,
            DuplicateGroupCache.threshold == threshold,
        )
    )
    if row is None or row.fingerprint != fingerprint:
        return None
    return [
        _Group(
            g["key"], level, g["members"], g["keeper"], dict(zip(g["members"], g["distances"], strict=True))
        )
        for g in row.groups
    ]


def _store(
    studio: Studio, project_id: int, level: str, threshold: str, fingerprint: str, groups: list[_Group]
) -> None:
    """Keep computed groups for the next request (the few latest thresholds of each level)."""
    payload = [
        {
            "key": g.key,
            "members": g.members,
            "keeper": g.keeper,
            "distances": [g.distances[m] for m in g.members],
        }
        for g in groups
    ]
    with studio.sessions.begin() as s:
        s.execute(
            delete(DuplicateGroupCache).where(
                DuplicateGroupCache.project_id == project_id,
                DuplicateGroupCache.level == level,
                DuplicateGroupCache.threshold == threshold,
            )
        )
        s.add(
            DuplicateGroupCache(
                project_id=project_id,
                level=level,
                threshold=threshold,
                fingerprint=fingerprint,
                groups=payload,
                computed_at=utcnow(),
            )
        )
        s.flush()
        stale = s.scalars(
            select(DuplicateGroupCache.id)
            .where(DuplicateGroupCache.project_id == project_id, DuplicateGroupCache.level == level)
            .order_by(DuplicateGroupCache.computed_at.desc(), DuplicateGroupCache.id.desc())
            .offset(CACHED_THRESHOLDS)
        ).all()
        if stale:
            s.execute(delete(DuplicateGroupCache).where(DuplicateGroupCache.id.in_(stale)))


def _compute(studio: Studio, project_id: int, name: str, level: str, threshold: Any) -> _Computed:
    """The groups of a level, largest first; perceptual and semantic ones come from the cache
    while what they were computed from is unchanged."""
    extra: dict[str, Any] = {}
    if level == "exact":
        with studio.sessions() as s:
            out = _exact(studio, s, project_id)
        out.groups.sort(key=lambda g: (-len(g.members), min(g.members)))
        return out
    text = f"{threshold:g}"
    groups: list[_Group] | None
    if level == "perceptual":
        with studio.sessions() as s:
            fingerprint = _perceptual_fingerprint(s, project_id)
            groups = _cached(s, project_id, level, text, fingerprint)
            if groups is None:
                groups = _perceptual(s, project_id, int(threshold))
                fresh = True
            else:
                fresh = False
    else:
        with studio.sessions() as s:
            found = _vectors(studio, s, project_id)
            if found is None:
                message = "This project has no image embeddings yet: " + EMBED_HINT.format(project=name)
                return _Computed([], {"available": False, "message": message})
            sample_ids, vectors, model = found
            extra = {"available": True, "model": model}
            digest = hashlib.sha1(sample_ids.tobytes())
            digest.update(np.ascontiguousarray(vectors).tobytes())  # ~0.3 s per 100,000 × 512
            digest.update(json.dumps(model, sort_keys=True, default=str).encode())
            fingerprint = "s2:" + digest.hexdigest()
            groups = _cached(s, project_id, level, text, fingerprint)
            fresh = groups is None
            if groups is None:
                groups = _semantic(s, sample_ids, vectors, float(threshold))
    if fresh:
        groups.sort(key=lambda g: (-len(g.members), min(g.members)))
        _store(studio, project_id, level, text, fingerprint, groups)
    return _Computed(groups, extra)


def _find_group(
    studio: Studio, project_id: int, name: str, key: str, level: str | None, threshold: float | None
) -> tuple[_Group, str, Any]:
    if not isinstance(key, str) or not GROUP_KEY.match(key):
        raise NotFound(f"no duplicate group {str(key)[:40]!r} (group ids look like p-1a2b3c4d5e6f)")
    implied = {"e": "exact", "p": "perceptual", "s": "semantic"}[key[0]]
    if level is not None and check_level(level) != implied:
        raise InvalidInput(f"group {key} is a {implied} group, not {level}")
    value = check_threshold(studio, implied, threshold)
    computed = _compute(studio, project_id, name, implied, value)
    for g in computed.groups:
        if g.key == key:
            return g, implied, value
    shown = "" if value is None else f" at threshold {value:g}"
    raise NotFound(
        f"no {implied} group {key} in project {name!r}{shown}: the groups may have changed "
        "(samples added or removed) or were listed with another threshold; list them again",
        details={"group": key, "level": implied, "threshold": value},
    )


def near_duplicate_groups(
    studio: Studio, *, project_id: int, ctx: JobContext | None = None
) -> list[tuple[int, list[int]]]:
    """The project's perceptual groups at the default threshold as ``(keeper, members)``, after
    hashing every sample's turns and mirrors: what an import or a scan reports, and the very
    groups the duplicates page counts (same function, same threshold, groups of >= 2)."""
    compute_hashes(studio, project_id=project_id, ctx=ctx)
    with studio.sessions() as s:
        name = s.scalar(select(Project.name).where(Project.id == project_id)) or str(project_id)
    computed = _compute(studio, project_id, name, "perceptual", check_threshold(studio, "perceptual", None))
    return [(g.keeper, list(g.members)) for g in computed.groups]
