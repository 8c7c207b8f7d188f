"""Duplicate review in three layers, with one set of decisions.

- **exact**: files with identical bytes. Within a project the same bytes are one sample, so these
  groups are *files*: the paths of a photo library (``library_files``) that hold one sample. In a
  project without library folders there are none; the imports' reports count the identical
  files they skipped, and that count is given instead.
- **perceptual**: samples whose perceptual hashes are within ``threshold`` bits, allowing a
  rotation by 90°, 180° or 270° and mirror images (``vistudio.ingest.dedup``). The eight variant
  hashes of each sample come from its thumbnail, once (``duplicate_hashes``); samples not hashed
  yet use variants predicted from their stored hash until a ``duplicate_hashes`` job (or the
  request itself, for a few) has hashed them.
- **semantic**: samples whose image embeddings have a cosine similarity >= ``threshold``
  (``vistudio.ml.embed.dedup``), from ``services.embeddings.project_vectors``.

Each group has a suggested keeper (the largest resolution, then the earliest date) and an id
(``p-1a2b3c4d5e6f``) naming its level and exact members. A decision on a group is one of
``keep`` (mark it reviewed), ``hide`` (hide the others from browsing; undo shows them again) and
``remove`` (delete the others from the project: their annotations and tags go with them, their
blob references are released — originals on disk are never touched, and copies in the workspace
are only collected by the next garbage collection, so the removal can be undone until then).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from sqlalchemy import DateTime, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vistudio.db import Annotation, Job, LabelClass, Sample, SampleTag, Split, SplitMember, utcnow
from vistudio.db.duplicates import DuplicateDecision, DuplicateGroupCache, DuplicateHash, HiddenSample
from vistudio.db.library import LibraryFile, LibraryRoot
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.ingest import dedup
from vistudio.ingest.near_dups import parse_hash
from vistudio.ingest.pool import EXTENSIONS
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.services.projects import find_project
from vistudio.studio import Studio

LEVELS = ("exact", "perceptual", "semantic")
ACTIONS = ("keep", "hide", "remove")
STATUSES = ("all", "open", "reviewed")
DEFAULT_SIMILARITY = 0.95
MIN_SIMILARITY = 0.8  # below this, unrelated photos of one scene chain into huge groups
MAX_BITS = 16  # beyond 16 of 64 bits, unrelated images start to match
MAX_LIMIT = 200
INLINE_HASHES = 1000  # samples a request hashes itself (about a second); more go to a job
HASH_JOB = "duplicate_hashes"
HASH_BATCH = 256
IN_CHUNK = 500
CACHED_THRESHOLDS = 4  # computed groups kept per project and level
GROUP_KEY = re.compile(r"^[eps]-[0-9a-f]{12}$")
EMBED_HINT = "run `vistudio embed {project}` to compute image embeddings, then look again"


# --- parameters ------------------------------------------------------------------------------------


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise InvalidInput(f"unknown level {str(level)[:40]!r}; use one of {', '.join(LEVELS)}")
    return level


def check_threshold(studio: Studio, level: str, threshold: float | None) -> float | int | None:
    """The threshold to use at ``level``: bits (perceptual), cosine similarity (semantic), none (exact)."""
    check_level(level)
    if threshold is not None and (not isinstance(threshold, int | float) or not math.isfinite(threshold)):
        raise InvalidInput("the threshold must be a finite number")
    if level == "exact":
        if threshold not in (None, 0):
            raise InvalidInput("the exact level takes no threshold: its duplicates have identical bytes")
        return None
    if level == "perceptual":
        if threshold is None:
            return int(min(MAX_BITS, max(0, studio.settings.imports.near_duplicate_distance)))
        if float(threshold) != int(threshold) or not 0 <= threshold <= MAX_BITS:
            raise InvalidInput(
                f"the perceptual threshold is a whole number of bits between 0 and {MAX_BITS} "
                f"(got {threshold:g})"
            )
        return int(threshold)
    if threshold is None:
        return DEFAULT_SIMILARITY
    if not MIN_SIMILARITY <= threshold <= 1.0:
        raise InvalidInput(
            f"the semantic threshold is a cosine similarity between {MIN_SIMILARITY} and 1 (got {threshold:g})"
        )
    return float(threshold)


def _paging(offset: int, limit: int | None) -> None:
    """``limit`` None (every row) is for callers inside the process, like the CLI."""
    if not 0 <= offset <= 2**62 or (limit is not None and not 1 <= limit <= MAX_LIMIT):
        raise InvalidInput(f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def _chunks(values: list[int], n: int = IN_CHUNK) -> list[list[int]]:
    return [values[i : i + n] for i in range(0, len(values), n)]


# --- groups ------------------------------------------------------------------------------------------


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
    return "p1:" + ":".join(str(x) for x in row)


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
    found = dedup.perceptual_groups(variants, max_distance=bits)
    ranks = _keeper(s, [int(ids[i]) for g in found for i in g])
    groups = []
    for g in found:
        members = [int(ids[i]) for i in g]
        k = int(g[min(range(len(g)), key=lambda n: ranks[members[n]])])
        distances: dict[int, float] = {
            int(ids[i]): dedup.dihedral_distance(variants[i], variants[k]) for i in g
        }
        groups.append(
            _Group(dedup.group_key("perceptual", members), "perceptual", members, int(ids[k]), distances)
        )
    return groups


def _safe_hash(value: str | None) -> int:
    try:
        return parse_hash(value or "")
    except ValueError:
        return 0


def _project_vectors(studio: Studio, project_id: int) -> Any:
    from vistudio.services import embeddings

    fn = getattr(embeddings, "project_vectors", None)
    return None if fn is None else fn(studio, project_id)


def _semantic(
    s: Session, sample_ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32], similarity: float
) -> list[_Group]:
    from vistudio.ml.embed.dedup import similar_pairs

    i, j, _sim = similar_pairs(vectors, threshold=similarity)
    found = dedup.components(len(sample_ids), i, j)
    ranks = _keeper(s, [int(sample_ids[x]) for g in found for x in g])
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    groups = []
    for g in found:
        members = [int(sample_ids[x]) for x in g]
        k = int(g[min(range(len(g)), key=lambda n: ranks[members[n]])])
        cos = unit[g] @ unit[k]
        distances = {m: round(float(max(0.0, 1.0 - c)), 4) for m, c in zip(members, cos, strict=True)}
        groups.append(
            _Group(dedup.group_key("semantic", members), "semantic", members, int(sample_ids[k]), distances)
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
            fingerprint = "s1:" + digest.hexdigest()
            groups = _cached(s, project_id, level, text, fingerprint)
            fresh = groups is None
            if groups is None:
                groups = _semantic(s, sample_ids, vectors, float(threshold))
    if fresh:
        groups.sort(key=lambda g: (-len(g.members), min(g.members)))
        _store(studio, project_id, level, text, fingerprint, groups)
    return _Computed(groups, extra)


# --- presenting groups ---------------------------------------------------------------------------------


def _sample_entry(row: Sample) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "path": row.path,
        "storage": row.storage,
        "width": row.width,
        "height": row.height,
        "format": row.format,
        "bytes": row.bytes,
        "taken_at": _iso(row.taken_at),
        "imported_at": _iso(row.imported_at),
        "thumbnail_url": f"/api/v1/samples/{row.id}/thumbnail",
    }


def decision_dict(d: DuplicateDecision) -> dict[str, Any]:
    return {
        "id": d.id,
        "group": d.group_key,
        "level": d.level,
        "action": d.action,
        "keeper": d.keeper_id,
        "members": list(d.members or []),
        "affected": list(d.affected or []),
        "undoable": d.action != "remove" or bool(d.snapshot),
        "decided_at": _iso(d.decided_at),
        # what a removal took away, by name (the samples are gone: their rows are in the snapshot)
        "removed": [
            {"id": x["sample"]["id"], "name": x["sample"]["name"]}
            for x in ((d.snapshot or {}).get("samples") or [])[:20]
        ],
    }


def _present(
    s: Session, groups: list[_Group], decisions: dict[str, DuplicateDecision]
) -> list[dict[str, Any]]:
    """Full dicts of ``groups``: every member with what a reviewer compares."""
    sample_ids = sorted(
        {g.keeper for g in groups} | {m for g in groups if g.level != "exact" for m in g.members}
    )
    rows: dict[int, Sample] = {}
    hidden: set[int] = set()
    for chunk in _chunks(sample_ids):
        rows.update({r.id: r for r in s.scalars(select(Sample).where(Sample.id.in_(chunk)))})
        hidden.update(s.scalars(select(HiddenSample.sample_id).where(HiddenSample.sample_id.in_(chunk))))
    out = []
    for g in groups:
        entries: list[dict[str, Any]] = []
        if g.level == "exact":
            base = _sample_entry(rows[g.keeper]) if g.keeper in rows else {"id": g.keeper}
            for f in g.files:
                entries.append(
                    {
                        **base,
                        "file_id": f["file_id"],
                        "path": f["path"],
                        "name": Path(f["path"]).name,
                        "bytes": f["size"],
                        "mtime": _mtime_iso(f["mtime"]),
                        "distance": 0,
                        "keeper": f["file_id"] == g.keeper_file,
                        "hidden": g.keeper in hidden,
                    }
                )
        else:
            order = sorted(g.members, key=lambda m: (m != g.keeper, g.distances.get(m, 0), m))
            for m in order:
                if m not in rows:
                    continue
                entries.append(
                    {
                        **_sample_entry(rows[m]),
                        "distance": g.distances.get(m, 0),
                        "keeper": m == g.keeper,
                        "hidden": m in hidden,
                    }
                )
        decision = decisions.get(g.key)
        d: dict[str, Any] = {
            "id": g.key,
            "level": g.level,
            "size": len(g.members),
            "keeper": g.keeper,
            "distance": max(g.distances.values(), default=0),
            "samples": entries,
            "decision": decision_dict(decision) if decision else None,
        }
        if g.level == "exact":
            d["keeper_file"] = g.keeper_file
        out.append(d)
    return out


def _decisions(s: Session, project_id: int) -> dict[str, DuplicateDecision]:
    return {
        d.group_key: d
        for d in s.scalars(select(DuplicateDecision).where(DuplicateDecision.project_id == project_id))
    }


def list_groups(
    studio: Studio,
    *,
    project: str | int,
    level: str = "perceptual",
    threshold: float | None = None,
    status: str = "all",
    offset: int = 0,
    limit: int | None = 50,
    hash_inline: int | None = None,
) -> dict[str, Any]:
    """One page of a level's duplicate groups, largest first, with counts and level notes.

    At the perceptual level, samples not hashed yet are hashed here when they are few
    (``hash_inline``, default ``INLINE_HASHES``); otherwise a ``duplicate_hashes`` job is queued
    (``hashing.job``) and their variants are predicted from their stored hash meanwhile.
    """
    check_level(level)
    value = check_threshold(studio, level, threshold)
    if status not in STATUSES:
        raise InvalidInput(f"unknown status {str(status)[:40]!r}; use one of {', '.join(STATUSES)}")
    _paging(offset, limit)
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    job = None
    pending = 0
    if level == "perceptual":
        pending = count_unhashed(studio, project_id=project_id)
        if 0 < pending <= (INLINE_HASHES if hash_inline is None else hash_inline):
            compute_hashes(studio, project_id=project_id)
            pending = 0
        elif pending:
            job = start_hashing(studio, project=project_id)
    computed = _compute(studio, project_id, name, level, value)
    with studio.sessions() as s:
        decisions = _decisions(s, project_id)
        groups = computed.groups
        reviewed = sum(g.key in decisions for g in groups)
        if status == "open":
            groups = [g for g in groups if g.key not in decisions]
        elif status == "reviewed":
            groups = [g for g in groups if g.key in decisions]
        items = _present(s, groups[offset : None if limit is None else offset + limit], decisions)
    extra = computed.extra
    if level == "perceptual":
        extra["hashing"] = {"pending": pending, "job": job}
    return {
        "project": name,
        "level": level,
        "threshold": value,
        "status": status,
        "items": items,
        "total": len(groups),
        "offset": offset,
        "limit": limit,
        "counts": {
            "groups": len(computed.groups),
            "open": len(computed.groups) - reviewed,
            "reviewed": reviewed,
            "duplicates": sum(len(g.members) - 1 for g in computed.groups),
        },
        **extra,
    }


# --- decisions ----------------------------------------------------------------------------------------------


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


def get_group(
    studio: Studio, *, project: str | int, group: str, threshold: float | None = None
) -> dict[str, Any]:
    """One group by id (found again at its level and ``threshold``), with its decision."""
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    g, _, _ = _find_group(studio, project_id, name, group, None, threshold)
    with studio.sessions() as s:
        return _present(s, [g], _decisions(s, project_id))[0]


def decide(
    studio: Studio,
    *,
    project: str | int,
    group: str,
    action: str,
    level: str | None = None,
    threshold: float | None = None,
    keeper: int | None = None,
) -> dict[str, Any]:
    """Apply ``keep``, ``hide`` or ``remove`` to a group (found again by its id at its level and
    ``threshold``). ``keeper`` overrides the suggested keeper. Returns the decision and the group.
    """
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {str(action)[:40]!r}; use one of {', '.join(ACTIONS)}")
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    g, level, _ = _find_group(studio, project_id, name, group, level, threshold)
    if level == "exact":
        if action != "keep":
            raise InvalidInput(
                "exact duplicates are files with identical bytes behind one sample: there is nothing "
                "to hide or remove in the project, and vistudio never deletes your files. Mark the "
                "group reviewed with 'keep', and delete the extra copies yourself if you want."
            )
        if keeper not in (None, g.keeper):
            raise InvalidInput(f"the keeper of an exact group is its sample, {g.keeper}")
    elif keeper is not None:
        if keeper not in g.members:
            raise InvalidInput(f"sample {keeper} is not in group {g.key}", details={"members": g.members})
        g.keeper = keeper
    others = [] if level == "exact" else [m for m in g.members if m != g.keeper]
    with studio.sessions.begin() as s:
        existing = s.scalar(
            select(DuplicateDecision).where(
                DuplicateDecision.project_id == project_id, DuplicateDecision.group_key == g.key
            )
        )
        if existing is not None:
            raise Conflict(
                f"group {g.key} was already reviewed ({existing.action}); undo that decision first",
                details={"decision": decision_dict(existing)},
            )
        wanted = [g.keeper, *others]
        present = {
            sid
            for chunk in _chunks(wanted)
            for sid in s.scalars(
                select(Sample.id).where(Sample.id.in_(chunk), Sample.project_id == project_id)
            )
        }
        if len(present) != len(set(wanted)):
            raise Conflict(f"group {g.key} changed while it was reviewed; list the groups again")
        decision = DuplicateDecision(
            project_id=project_id,
            group_key=g.key,
            level=level,
            action=action,
            keeper_id=g.keeper,
            members=list(g.members),
            affected=[],
            decided_at=utcnow(),
        )
        s.add(decision)
        s.flush()
        before = _present(s, [g], {})[0] if action == "remove" else None
        if action == "hide":
            decision.affected = _hide(s, project_id, decision.id, others)
        elif action == "remove":
            decision.snapshot = _remove(studio, s, project_id, others)
            decision.affected = others
        s.flush()
        out = decision_dict(decision)
        # a removed group is shown as it was (its samples are gone now)
        shown = {**before, "decision": out} if before else _present(s, [g], {g.key: decision})[0]
    return {"decision": out, "group": shown, "project": name}


def _hide(s: Session, project_id: int, decision_id: int, sample_ids: list[int]) -> list[int]:
    already = {
        sid
        for chunk in _chunks(sample_ids)
        for sid in s.scalars(select(HiddenSample.sample_id).where(HiddenSample.sample_id.in_(chunk)))
    }
    new = [sid for sid in sample_ids if sid not in already]
    for sid in new:
        s.add(HiddenSample(sample_id=sid, project_id=project_id, decision_id=decision_id, hidden_at=utcnow()))
    return new


def _mtime_iso(mtime: float | None) -> str | None:
    """A file's modification time for display; one no calendar can show (year 10000…) is None."""
    if not mtime:
        return None
    try:
        return _iso(datetime.fromtimestamp(mtime, UTC).replace(tzinfo=None))
    except (ValueError, OverflowError, OSError):
        return None


def _json_value(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _remove(studio: Studio, s: Session, project_id: int, sample_ids: list[int]) -> dict[str, Any]:
    """Delete samples from the project, releasing their blobs; returns what an undo needs."""
    if not sample_ids:
        return {"samples": []}
    chunks = _chunks(sample_ids)  # a large group must not go past the database's parameter limit
    in_splits = [
        row
        for chunk in chunks
        for row in s.execute(
            select(SplitMember.sample_id, Split.name)
            .join(Split, Split.id == SplitMember.split_id)
            .where(SplitMember.sample_id.in_(chunk))
        )
    ]
    if in_splits:
        names = sorted({n for _, n in in_splits})
        raise Conflict(
            f"{len({sid for sid, _ in in_splits})} of these samples belong to saved split(s) "
            f"{', '.join(names)}, which never change: hide them instead",
            details={"splits": names, "samples": sorted({sid for sid, _ in in_splits})},
        )
    columns = [c.key for c in Sample.__table__.columns]
    rows = [r for chunk in chunks for r in s.scalars(select(Sample).where(Sample.id.in_(chunk)))]
    anns: dict[int, list[dict[str, Any]]] = {}
    tags: dict[int, list[str]] = {}
    files: dict[int | None, list[int]] = {}
    hidden: dict[int, int | None] = {}
    for chunk in chunks:
        for a in s.scalars(select(Annotation).where(Annotation.sample_id.in_(chunk)).order_by(Annotation.id)):
            anns.setdefault(a.sample_id, []).append(
                {"kind": a.kind, "class_id": a.class_id, "geometry": a.geometry, "score": a.score}
            )
        for sid, tag in s.execute(
            select(SampleTag.sample_id, SampleTag.tag).where(SampleTag.sample_id.in_(chunk))
        ):
            tags.setdefault(sid, []).append(tag)
        for fid, linked in s.execute(
            select(LibraryFile.id, LibraryFile.sample_id).where(LibraryFile.sample_id.in_(chunk))
        ):
            files.setdefault(linked, []).append(fid)
        hidden.update(
            s.execute(
                select(HiddenSample.sample_id, HiddenSample.decision_id).where(
                    HiddenSample.sample_id.in_(chunk)
                )
            ).all()
        )
    snapshot = []
    for r in rows:
        snapshot.append(
            {
                "sample": {c: _json_value(getattr(r, c)) for c in columns},
                "annotations": anns.get(r.id, []),
                "tags": tags.get(r.id, []),
                "library_files": files.get(r.id, []),
                "hidden": r.id in hidden,
                "hidden_by": hidden.get(r.id),
            }
        )
        studio.store.release(s, "thumbnail", r.sha256)
        if r.storage == "copy":
            studio.store.release(s, "original", r.sha256)
    for chunk in _chunks(sample_ids):
        # a library scan must not bring a removed file back: it is the user's decision
        s.execute(update(LibraryFile).where(LibraryFile.sample_id.in_(chunk)).values(excluded=True))
        s.execute(delete(Sample).where(Sample.id.in_(chunk)))
    return {"samples": snapshot}


def undo(studio: Studio, *, project: str | int, decision: int) -> dict[str, Any]:
    """Take a decision back: unhide what it hid, restore what it removed (while the removed
    samples' blobs are still in the workspace)."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        d = s.get(DuplicateDecision, decision) if 0 < decision < 2**63 else None
        if d is None or d.project_id != p.id:
            raise NotFound(f"no duplicate decision {decision} in project {p.name!r}")
        restored: list[int] = []
        lost: list[dict[str, Any]] = []
        if d.action == "hide":
            s.execute(delete(HiddenSample).where(HiddenSample.decision_id == d.id))
        elif d.action == "remove":
            snapshot = (d.snapshot or {}).get("samples", [])
            restored, lost = _restore(studio, s, p.id, snapshot)
            # library photos go back to the library even when their samples cannot be restored:
            # the next scan reads their files afresh
            if lost and not restored and not any(item.get("library_files") for item in snapshot):
                raise Conflict(
                    "this removal cannot be undone any more: "
                    + "; ".join(f"sample {x['id']}: {x['reason']}" for x in lost[:5]),
                    details={"not_restored": lost},
                )
        out = decision_dict(d)
        s.delete(d)
        project_id = p.id
    embedding = None
    if restored:  # their vectors went with them: search finds them again once re-embedded
        from vistudio.services.embeddings import embed_new_samples

        embedding = embed_new_samples(studio, project_id)
    return {
        "undone": out,
        "restored": restored,
        "not_restored": lost,
        "project": p.name,
        "embedding": embedding,
    }


def _restore(
    studio: Studio, s: Session, project_id: int, snapshot: list[dict[str, Any]]
) -> tuple[list[int], list[dict[str, Any]]]:
    restored: list[int] = []
    lost: list[dict[str, Any]] = []
    datetimes = {c.key for c in Sample.__table__.columns if isinstance(c.type, DateTime)}
    classes = set(s.scalars(select(LabelClass.id).where(LabelClass.project_id == project_id)))
    for item in snapshot:
        if item.get("library_files"):
            # whatever becomes of the sample, its files are the library's again: a file that
            # cannot be linked back here is read afresh by the next scan
            s.execute(
                update(LibraryFile).where(LibraryFile.id.in_(item["library_files"])).values(excluded=False)
            )
        row = dict(item["sample"])
        old_id, sha = int(row["id"]), str(row["sha256"])
        thumb = studio.store.path("thumbnail", sha)
        ext = EXTENSIONS.get(row.get("format") or "", "bin")
        original = studio.store.path("original", sha, ext) if row.get("storage") == "copy" else None
        if s.scalar(select(Sample.id).where(Sample.project_id == project_id, Sample.sha256 == sha)):
            lost.append({"id": old_id, "reason": "the same image is in the project again"})
            continue
        if not thumb.is_file() and original is None:
            _redraw_thumbnail(studio, Path(str(row.get("path"))), sha)
        if not thumb.is_file() or (original is not None and not original.is_file()):
            lost.append({"id": old_id, "reason": "its copy in the workspace was collected since"})
            continue
        for c in datetimes:
            if row.get(c):
                row[c] = datetime.fromisoformat(row[c])
        if s.get(Sample, old_id) is not None:
            row.pop("id")
        sample = Sample(**row)
        s.add(sample)
        s.flush()
        studio.store.acquire(s, "thumbnail", sha, size=thumb.stat().st_size)
        if original is not None:
            studio.store.acquire(s, "original", sha, size=original.stat().st_size, ext=ext)
        for a in item.get("annotations", []):
            class_id = a.get("class_id") if a.get("class_id") in classes else None
            s.add(
                Annotation(
                    sample_id=sample.id,
                    kind=a["kind"],
                    class_id=class_id,
                    geometry=a.get("geometry"),
                    score=a.get("score"),
                )
            )
        for tag in item.get("tags", []):
            s.add(SampleTag(sample_id=sample.id, tag=tag))
        if item.get("library_files"):
            s.execute(
                update(LibraryFile)
                .where(
                    LibraryFile.id.in_(item["library_files"]),
                    LibraryFile.sample_id.is_(None),
                    LibraryFile.sha256 == sha,
                )
                .values(sample_id=sample.id)
            )
        if item.get("hidden"):
            by = item.get("hidden_by")
            by = by if by is not None and s.get(DuplicateDecision, by) is not None else None
            s.add(
                HiddenSample(sample_id=sample.id, project_id=project_id, decision_id=by, hidden_at=utcnow())
            )
        restored.append(sample.id)
    return restored, lost


def _redraw_thumbnail(studio: Studio, original: Path, sha: str) -> None:
    """A photo stored by reference whose thumbnail was collected since its removal: draw the
    thumbnail again from the user's file, if that file still holds the same image."""
    from vistudio.ingest.pool import probe_and_store
    from vistudio.storage.blobs import sha256_file

    try:
        if original.is_file() and sha256_file(original) == sha:
            probe_and_store(original, mode="reference", store=studio.store, known=frozenset({sha}))
    except OSError:
        pass  # not readable: the undo reports this sample as not restored


def list_decisions(
    studio: Studio, *, project: str | int, action: str | None = None, offset: int = 0, limit: int = 50
) -> dict[str, Any]:
    """The project's decisions, newest first (``action``: only those)."""
    _paging(offset, limit)
    if action is not None and action not in ACTIONS:
        raise InvalidInput(f"unknown action {str(action)[:40]!r}; use one of {', '.join(ACTIONS)}")
    with studio.sessions() as s:
        p = find_project(s, project)
        stmt = select(DuplicateDecision).where(DuplicateDecision.project_id == p.id)
        if action is not None:
            stmt = stmt.where(DuplicateDecision.action == action)
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(stmt.order_by(DuplicateDecision.id.desc()).offset(offset).limit(limit))
        return {"items": [decision_dict(d) for d in rows], "total": total, "offset": offset, "limit": limit}


def hidden_ids(project_id: int) -> Any:
    """A SELECT of the project's hidden sample ids, for browsing and search to leave out."""
    return select(HiddenSample.sample_id).where(HiddenSample.project_id == project_id)


# --- dihedral hashes -----------------------------------------------------------------------------------


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
