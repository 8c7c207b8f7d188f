"""Splits: stratified, seeded, previewable, and immutable once saved."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from vistudio.db import Annotation, LabelClass, Sample, Split, SplitMember
from vistudio.errors import Conflict, Immutable, InvalidInput, NotFound
from vistudio.services.projects import find_project
from vistudio.studio import Studio

SUBSETS = ("train", "val", "test")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
UNLABELLED = "(unlabelled)"
NAME_RE = re.compile(r"^[\w][\w.\-]{0,63}$")


def parse_ratios(ratios: str | list[float] | tuple[float, ...] | dict[str, float]) -> dict[str, float]:
    """'0.8,0.1,0.1' or a list or {subset: ratio} → {subset: ratio}, validated to sum to 1."""
    if isinstance(ratios, dict):
        unknown = set(ratios) - set(SUBSETS)
        if unknown:
            raise InvalidInput(f"unknown subsets {sorted(unknown)}; use {', '.join(SUBSETS)}")
        values = [float(ratios.get(k, 0.0)) for k in SUBSETS]
    else:
        try:
            values = [float(x) for x in (ratios.split(",") if isinstance(ratios, str) else ratios)]
        except ValueError:
            raise InvalidInput(f"ratios must be numbers like 0.8,0.1,0.1 (got {ratios!r})") from None
    if not 2 <= len(values) <= 3:
        raise InvalidInput("give two (train, val) or three (train, val, test) ratios")
    if any(v < 0 or v != v for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise InvalidInput(f"ratios must be non-negative and sum to 1 (got {values})")
    if values[0] <= 0:
        raise InvalidInput("the train ratio must be above 0")
    return {k: v for k, v in zip(SUBSETS, values, strict=False) if v > 0 or k != "test"}


def assign_subsets(
    sample_classes: dict[int, list[str]], ratios: dict[str, float], seed: int
) -> dict[int, str]:
    """Stratified assignment of sample ids to subsets.

    Each sample is stratified by its rarest class (so multi-label samples keep rare classes
    spread over subsets); within a stratum the order is a seeded shuffle and seats are handed
    out by largest remainder, with the global shortfall of each subset breaking ties so that
    many tiny strata still add up to the requested ratios.
    """
    freq = Counter(c for classes in sample_classes.values() for c in set(classes))
    strata: dict[str, list[int]] = defaultdict(list)
    for sid in sorted(sample_classes):
        classes = sample_classes[sid]
        key = min(classes, key=lambda c: (freq[c], c)) if classes else UNLABELLED
        strata[key].append(sid)
    rng = random.Random(seed)
    names = list(ratios)
    assigned: Counter[str] = Counter()
    done = 0
    out: dict[int, str] = {}
    for key in sorted(strata):
        ids = strata[key]
        rng.shuffle(ids)
        n = len(ids)
        exact = {k: ratios[k] * n for k in names}
        counts = {k: int(exact[k]) for k in names}
        after = done + n
        shortfall = {k: ratios[k] * after - assigned[k] - counts[k] for k in names}
        for _ in range(n - sum(counts.values())):
            k = max(names, key=lambda k: (exact[k] - counts[k] + shortfall[k], -names.index(k)))
            counts[k] += 1
            shortfall[k] -= 1
        pos = 0
        for k in names:
            for sid in ids[pos : pos + counts[k]]:
                out[sid] = k
            pos += counts[k]
            assigned[k] += counts[k]
        done = after
    return out


def _sample_classes(s: Any, project_id: int) -> dict[int, list[str]]:
    ids = s.scalars(select(Sample.id).where(Sample.project_id == project_id))
    out: dict[int, list[str]] = {i: [] for i in ids}
    rows = s.execute(
        select(Annotation.sample_id, LabelClass.name)
        .join(LabelClass, LabelClass.id == Annotation.class_id)
        .where(LabelClass.project_id == project_id)
        .distinct()
    )
    for sid, name in rows:
        out[sid].append(name)
    return out


def summarise(
    assignment: dict[int, str], sample_classes: dict[int, list[str]], subsets: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {k: {"total": 0, "per_class": {}} for k in subsets}
    for sid, subset in assignment.items():
        entry = out[subset]
        entry["total"] += 1
        for c in sample_classes.get(sid) or [UNLABELLED]:
            entry["per_class"][c] = entry["per_class"].get(c, 0) + 1
    for entry in out.values():
        entry["per_class"] = dict(sorted(entry["per_class"].items()))
    return out


def _check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidInput(
            "a split name is 1-64 letters, digits, '.', '_' or '-'", details={"name": name[:100]}
        )
    return name


def preview_split(
    studio: Studio, *, project: str | int, ratios: Any = DEFAULT_RATIOS, seed: int = 42, name: str = "default"
) -> dict[str, Any]:
    r = parse_ratios(ratios)
    with studio.sessions() as s:
        p = find_project(s, project)
        classes = _sample_classes(s, p.id)
    if not classes:
        raise InvalidInput(f"project {p.name!r} has no samples to split")
    assignment = assign_subsets(classes, r, seed)
    return {
        "name": _check_name(name),
        "ratios": r,
        "seed": seed,
        "locked": False,
        "total": len(assignment),
        "subsets": summarise(assignment, classes, list(r)),
    }


def create_split(
    studio: Studio, *, project: str | int, name: str = "default", ratios: Any = DEFAULT_RATIOS, seed: int = 42
) -> dict[str, Any]:
    r = parse_ratios(ratios)
    _check_name(name)
    try:
        with studio.sessions.begin() as s:
            p = find_project(s, project)
            if s.scalar(select(Split.id).where(Split.project_id == p.id, Split.name == name)) is not None:
                raise Immutable(
                    f"split {name!r} already exists in {p.name!r}; saved splits are immutable, pick another name"
                )
            classes = _sample_classes(s, p.id)
            if not classes:
                raise InvalidInput(f"project {p.name!r} has no samples to split")
            assignment = assign_subsets(classes, r, seed)
            summary = summarise(assignment, classes, list(r))
            split = Split(project_id=p.id, name=name, ratios=r, seed=seed, locked=True, summary=summary)
            s.add(split)
            s.flush()
            rows = [
                {"split_id": split.id, "sample_id": sid, "subset": sub} for sid, sub in assignment.items()
            ]
            for i in range(0, len(rows), 5000):
                s.execute(insert(SplitMember), rows[i : i + 5000])
            return split_dict(split)
    except IntegrityError:
        raise Conflict(f"split {name!r} already exists") from None


def split_dict(split: Split) -> dict[str, Any]:
    return {
        "id": split.id,
        "project_id": split.project_id,
        "name": split.name,
        "ratios": split.ratios,
        "seed": split.seed,
        "locked": split.locked,
        "total": sum(v["total"] for v in split.summary.values()),
        "subsets": split.summary,
        "created_at": split.created_at.isoformat() + "Z",
    }


def _find_split(s: Any, project_id: int, name: str) -> Split:
    split = s.scalar(select(Split).where(Split.project_id == project_id, Split.name == name))
    if split is None:
        raise NotFound(f"split {name!r} not found")
    return split


def list_splits(studio: Studio, *, project: str | int) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        rows = list(
            s.scalars(select(Split).where(Split.project_id == p.id).order_by(Split.created_at, Split.id))
        )
        return {"items": [split_dict(x) for x in rows], "total": len(rows)}


def get_split(studio: Studio, *, project: str | int, name: str) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        return split_dict(_find_split(s, p.id, name))


def refuse_change(studio: Studio, *, project: str | int, name: str) -> None:
    """Saved splits never change; any attempt is a 409 that names the way out."""
    with studio.sessions() as s:
        p = find_project(s, project)
        _find_split(s, p.id, name)
    raise Immutable(f"split {name!r} is locked: saved splits are immutable; create a new split instead")


def delete_split(studio: Studio, *, project: str | int, name: str) -> dict[str, Any]:
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        split = _find_split(s, p.id, name)
        n = s.scalar(select(func.count()).where(SplitMember.split_id == split.id)) or 0
        s.execute(delete(Split).where(Split.id == split.id))
        return {"deleted": name, "members": n}
