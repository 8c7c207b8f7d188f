"""Dataset versions: name a state of a project's samples and labels, list, compare, and read the
labels a version had (experiments train and evaluate on their version, whatever was edited since).

See ``vistudio.db.versions``: a version is its members and a watermark in the edit history; the
labels at a watermark are the current labels with every later label change taken back (the
``before`` of the earliest later change of each sample).
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import func, select

from vistudio.db import Annotation, LabelClass, Sample
from vistudio.db.changes import Change, ChangeEntry
from vistudio.db.versions import DatasetVersion
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.services.projects import find_project
from vistudio.studio import Studio

_NAME = re.compile(r"^[\w][\w .:+-]{0,99}$")


def encode_members(ids: Iterable[int]) -> bytes:
    arr = np.asarray(sorted(ids), dtype="<i8")
    return zlib.compress(np.diff(arr, prepend=0).astype("<i8").tobytes(), 6)


def decode_members(blob: bytes) -> list[int]:
    return np.cumsum(np.frombuffer(zlib.decompress(blob), dtype="<i8")).tolist()


def watermark(s: Any, project_id: int) -> int:
    """The project's newest change id (0 before the first edit)."""
    return int(s.scalar(select(func.max(Change.id)).where(Change.project_id == project_id)) or 0)


def current_labels(s: Any, sample_ids: Iterable[int] | None, project_id: int) -> dict[int, list[str]]:
    """Ground-truth labels (sorted class names) of the project's samples now (all when None)."""
    stmt = (
        select(Annotation.sample_id, LabelClass.name)
        .join(LabelClass, LabelClass.id == Annotation.class_id)
        .where(LabelClass.project_id == project_id, Annotation.kind == "label", Annotation.score.is_(None))
    )
    wanted = None if sample_ids is None else set(sample_ids)
    out: dict[int, set[str]] = {i: set() for i in wanted} if wanted is not None else {}
    for sid, name in s.execute(stmt):
        if wanted is None or sid in wanted:
            out.setdefault(sid, set()).add(name)
    return {sid: sorted(names) for sid, names in out.items()}


def labels_as_of(s: Any, project_id: int, as_of: int, labels: dict[int, list[str]]) -> dict[int, list[str]]:
    """``labels`` (the current ones, by sample) as they were at change ``as_of``: each sample
    changed by a later label edit gets the ``before`` of the earliest such edit."""
    rows = s.execute(
        select(ChangeEntry.sample_id, ChangeEntry.before)
        .join(Change, Change.id == ChangeEntry.change_id)
        .where(Change.project_id == project_id, Change.kind == "labels", Change.id > as_of)
        .order_by(ChangeEntry.change_id.desc())
    )
    out = dict(labels)
    for sid, before in rows:  # newest first: the earliest later edit is assigned last
        if sid in out:
            out[sid] = sorted(before)
    return out


def labels_changed_since(s: Any, project_id: int, as_of: int, sample_ids: Iterable[int] | None = None) -> int:
    """How many samples (of ``sample_ids`` when given) have other labels now than at ``as_of``."""
    ids = None if sample_ids is None else list(sample_ids)
    now = current_labels(s, ids, project_id)
    then = labels_as_of(s, project_id, as_of, now)
    return sum(1 for sid in now if now[sid] != then[sid])


def _version_dict(v: DatasetVersion, *, latest_watermark: int | None = None) -> dict[str, Any]:
    out = {
        "id": v.id,
        "number": v.number,
        "name": v.name,
        "watermark": v.watermark,
        "samples": v.samples,
        "classes": v.classes,
        "auto": v.auto,
        "actor": v.actor,
        "created_at": v.created_at.isoformat(),
    }
    if latest_watermark is not None:
        out["edited_since"] = latest_watermark > v.watermark
    return out


def _make(s: Any, p: Any, *, name: str | None, actor: str, auto: bool) -> DatasetVersion:
    members = sorted(s.scalars(select(Sample.id).where(Sample.project_id == p.id)))
    mark = watermark(s, p.id)
    number = (
        int(s.scalar(select(func.max(DatasetVersion.number)).where(DatasetVersion.project_id == p.id)) or 0)
        + 1
    )
    name = (name or "").strip() or f"v{number}"
    if not _NAME.match(name):
        raise InvalidInput(
            "a version name is 1 to 100 letters, digits, spaces or . : + - _, starting with a letter or digit"
        )
    if s.scalar(
        select(DatasetVersion.id).where(DatasetVersion.project_id == p.id, DatasetVersion.name == name)
    ):
        raise Conflict(f"version {name!r} already exists in {p.name!r}")
    counts: Counter[str] = Counter()
    for names in current_labels(s, None, p.id).values():
        counts.update(names)
    v = DatasetVersion(
        project_id=p.id,
        number=number,
        name=name,
        watermark=mark,
        members=encode_members(members),
        samples=len(members),
        classes=dict(sorted(counts.items())),
        auto=auto,
        actor=actor[:200],
    )
    s.add(v)
    s.flush()
    return v


def create_version(
    studio: Studio, *, project: str | int, name: str | None = None, actor: str = "api"
) -> dict[str, Any]:
    """Snapshot the project's samples and labels as they are now."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        return _version_dict(_make(s, p, name=name, actor=actor, auto=False))


def version_for_training(s: Any, p: Any, *, actor: str) -> DatasetVersion:
    """The version an experiment starting now trains on: the newest version when nothing was
    imported, removed or edited since it was made, else a new automatic one."""
    latest = s.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.project_id == p.id)
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    ).first()
    if latest is not None and latest.watermark == watermark(s, p.id):
        members = sorted(s.scalars(select(Sample.id).where(Sample.project_id == p.id)))
        if encode_members(members) == latest.members:
            return latest
    return _make(s, p, name=None, actor=actor, auto=True)


def find_version(s: Any, p: Any, ref: str | int) -> DatasetVersion:
    """Version ``ref`` (its name, number or ``v<number>``) of project ``p``; 404 if none."""
    text = str(ref).strip()
    stmt = select(DatasetVersion).where(DatasetVersion.project_id == p.id)
    v = s.scalars(stmt.where(DatasetVersion.name == text)).first()
    if v is None and re.fullmatch(r"v?\d{1,9}", text):
        v = s.scalars(stmt.where(DatasetVersion.number == int(text.lstrip("v")))).first()
    if v is None:
        raise NotFound(f"version {text!r} not found in project {p.name!r}")
    return v


def list_versions(studio: Studio, *, project: str | int, offset: int = 0, limit: int = 100) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        mark = watermark(s, p.id)
        stmt = select(DatasetVersion).where(DatasetVersion.project_id == p.id)
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(stmt.order_by(DatasetVersion.number.desc()).offset(offset).limit(limit))
        return {
            "items": [_version_dict(v, latest_watermark=mark) for v in rows],
            "total": total,
            "offset": offset,
            "limit": limit,
        }


def get_version(studio: Studio, *, project: str | int, version: str | int) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        return _version_dict(find_version(s, p, version), latest_watermark=watermark(s, p.id))


def version_labels(s: Any, v: DatasetVersion) -> dict[int, list[str]]:
    """The labels of every member of ``v`` as the version has them (members deleted since are
    absent)."""
    members = decode_members(v.members)
    return labels_as_of(s, v.project_id, v.watermark, current_labels(s, members, v.project_id))


def diff_versions(studio: Studio, *, project: str | int, a: str | int, b: str | int) -> dict[str, Any]:
    """What changed from version ``a`` to version ``b``: samples added and removed, samples whose
    labels differ, and per class how many samples gained or lost it."""
    with studio.sessions() as s:
        p = find_project(s, project)
        va, vb = find_version(s, p, a), find_version(s, p, b)
        ma, mb = set(decode_members(va.members)), set(decode_members(vb.members))
        la, lb = version_labels(s, va), version_labels(s, vb)
        gained: Counter[str] = Counter()
        lost: Counter[str] = Counter()
        changed: list[int] = []
        for sid in sorted(ma & mb):
            before, after = set(la.get(sid, [])), set(lb.get(sid, []))
            if before != after:
                changed.append(sid)
                gained.update(after - before)
                lost.update(before - after)
        added, removed = sorted(mb - ma), sorted(ma - mb)
        per_class = {c: {"gained": gained[c], "lost": lost[c]} for c in sorted(set(gained) | set(lost))}
        return {
            "a": _version_dict(va),
            "b": _version_dict(vb),
            "added": len(added),
            "removed": len(removed),
            "labels_changed": len(changed),
            "added_ids": added[:100],
            "removed_ids": removed[:100],
            "changed_ids": changed[:100],
            # the first relabelled samples with their labels in A and in B
            "changed_labels": [
                {"sample_id": i, "a": la.get(i, []), "b": lb.get(i, [])} for i in changed[:100]
            ],
            "per_class": per_class,
        }
