"""Edit a sample's objects (boxes, polygons, rotated boxes, masks): the annotation editor's save.

A save replaces the sample's ground-truth objects with the list the editor sends, as one change in
the edit history (kind ``annotations``; before and after are the object lists), so it undoes and
redoes like tag and label edits, and dataset versions keep the objects they had. The editor sends
the ``revision`` of the objects it loaded: if they changed meanwhile the save is refused (409 with
the current objects and revision) rather than overwriting someone else's work.

Geometry is checked as import checks it (``vistudio.ingest.types``: coordinates normalised to the
image, RLE in pixels): inside the image, positive size, finite numbers, rings of 3 to 10,000
points that do not cross themselves, RLE of the image's size.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from sqlalchemy import delete, func, insert, select

from vistudio.db import Annotation, LabelClass, Sample
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.ingest.geometry import ring_problem
from vistudio.ml.tasks import get_task
from vistudio.services.projects import find_project
from vistudio.studio import Studio

EDITABLE = ("box", "polygon", "rotated_box", "mask_rle")
MAX_OBJECTS = 5_000  # per image
MAX_POINTS = 10_000  # per ring
SLACK = 1e-6  # coordinates this far outside 0..1 are rounding, clipped


def editable_kinds(task: str) -> tuple[str, ...]:
    return tuple(k for k in get_task(task).annotation_kinds if k in EDITABLE)


def _key(a: dict[str, Any]) -> str:
    return json.dumps(a, sort_keys=True)


def canonical(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects as ``{"kind", "class", "geometry"}`` in a fixed order, so that two lists of the same
    objects compare equal whatever order they came in."""
    plain = [{"kind": a["kind"], "class": a["class"], "geometry": a["geometry"]} for a in objects]
    return sorted(plain, key=_key)


def revision(objects: list[dict[str, Any]]) -> str:
    """A short digest of a sample's objects: what the editor loaded, to detect a stale save."""
    return hashlib.sha256(json.dumps(canonical(objects), sort_keys=True).encode()).hexdigest()[:16]


def object_state(s: Any, ids: list[int], kinds: tuple[str, ...]) -> dict[int, list[dict[str, Any]]]:
    """Each sample's ground-truth objects of ``kinds``, canonical."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids or not kinds:
        return out
    rows = s.execute(
        select(Annotation.sample_id, Annotation.kind, LabelClass.name, Annotation.geometry)
        .join(LabelClass, LabelClass.id == Annotation.class_id)
        .where(Annotation.sample_id.in_(ids), Annotation.kind.in_(kinds), Annotation.score.is_(None))
    )
    for sid, kind, name, geometry in rows:
        out[sid].append({"kind": kind, "class": name, "geometry": geometry})
    return {sid: canonical(objs) for sid, objs in out.items()}


def apply_objects(s: Any, p: Any, wanted: dict[int, tuple[list[Any], list[Any]]]) -> None:
    """Give each sample its ``after`` objects (replacing its editable ground-truth objects).

    Regions without a class (a label image's ignored pixels, imported as a class-less crowd mask)
    are not objects: ``object_state`` does not list them, so a save keeps them as they are."""
    kinds = editable_kinds(p.task)
    class_ids = dict(
        s.execute(select(LabelClass.name, LabelClass.id).where(LabelClass.project_id == p.id)).all()
    )
    ids = list(wanted)
    s.execute(
        delete(Annotation).where(
            Annotation.sample_id.in_(ids),
            Annotation.kind.in_(kinds),
            Annotation.score.is_(None),
            Annotation.class_id.is_not(None),
        )
    )
    rows = [
        {"sample_id": sid, "kind": a["kind"], "class_id": class_ids[a["class"]], "geometry": a["geometry"]}
        for sid, (_, after) in wanted.items()
        for a in after
    ]
    if rows:
        s.execute(insert(Annotation), rows)


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _inside(value: Any, what: str) -> float:
    v = _number(value)
    if v is None:
        raise InvalidInput(f"{what} must be a finite number")
    if not -SLACK <= v <= 1 + SLACK:
        raise InvalidInput(f"{what} lies outside the image (coordinates are 0..1 of its width and height)")
    return min(1.0, max(0.0, v))


def _points(raw: Any, what: str, *, exactly: int | None = None) -> list[list[float]]:
    if not isinstance(raw, list) or not all(isinstance(p, list) and len(p) == 2 for p in raw):
        raise InvalidInput(f"{what} must be a list of [x, y] points")
    if exactly is not None and len(raw) != exactly:
        raise InvalidInput(f"{what} needs exactly {exactly} points")
    if not 3 <= len(raw) <= MAX_POINTS:
        raise InvalidInput(f"{what} needs 3 to {MAX_POINTS:,} points, not {len(raw):,}")
    pts = [[_inside(x, f"{what} x"), _inside(y, f"{what} y")] for x, y in raw]
    problem = ring_problem(pts)
    if problem:
        raise InvalidInput(f"{what}: {problem}")
    return pts


def _geometry(kind: str, g: Any, width: int, height: int, where: str) -> dict[str, Any]:
    """The checked, normalised geometry of one object (crowd flags kept)."""
    if not isinstance(g, dict):
        raise InvalidInput(f"{where}: geometry must be an object")
    extra = {"iscrowd": True} if g.get("iscrowd") is True else {}
    if kind == "box":
        x, y = _inside(g.get("x"), f"{where} x"), _inside(g.get("y"), f"{where} y")
        w, h = _number(g.get("w")), _number(g.get("h"))
        if w is None or h is None:
            raise InvalidInput(f"{where}: width and height must be finite numbers")
        if w <= 0 or h <= 0:
            raise InvalidInput(f"{where}: a box needs a positive width and height")
        if x + w > 1 + SLACK or y + h > 1 + SLACK:
            raise InvalidInput(f"{where}: the box lies outside the image")
        return {"x": x, "y": y, "w": min(w, 1 - x), "h": min(h, 1 - y), **extra}
    if kind == "polygon":
        rings = g.get("polygons")
        if not isinstance(rings, list) or not 1 <= len(rings) <= 100:
            raise InvalidInput(f"{where}: a polygon needs 1 to 100 rings in 'polygons'")
        return {"polygons": [_points(r, f"{where} ring {i + 1}") for i, r in enumerate(rings)], **extra}
    if kind == "rotated_box":
        return {"points": _points(g.get("points"), f"{where} rotated box", exactly=4), **extra}
    size, counts = g.get("size"), g.get("counts")
    if size != [height, width]:
        raise InvalidInput(f"{where}: an RLE mask must have the image's size [{height}, {width}]")
    if not (isinstance(counts, str) and len(counts) <= 4 * width * height + 16) and not (
        isinstance(counts, list)
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
        and sum(counts) == width * height
    ):
        raise InvalidInput(f"{where}: malformed RLE counts")
    return {"size": size, "counts": counts, **extra}


def set_objects(
    studio: Studio,
    sample_id: int,
    objects: list[dict[str, Any]],
    *,
    expected_revision: str | None,
    create_classes: bool = False,
    actor: str = "api",
) -> dict[str, Any]:
    """Replace a sample's ground-truth objects: the change made (``change_id`` null when the list
    is the same), the objects and their new ``revision``."""
    from vistudio.services.edits import _edit

    if not isinstance(objects, list) or len(objects) > MAX_OBJECTS:
        raise InvalidInput(f"send at most {MAX_OBJECTS:,} objects")
    with studio.sessions.begin() as s:
        sample = s.get(Sample, sample_id)
        if sample is None:
            raise NotFound(f"sample {sample_id} not found")
        p = find_project(s, sample.project_id)
        kinds = editable_kinds(p.task)
        if not kinds:
            raise InvalidInput(f"{get_task(p.task).title} projects have no objects to draw")
        checked = []
        for i, obj in enumerate(objects):
            where = f"object {i + 1}"
            if not isinstance(obj, dict) or obj.get("kind") not in kinds:
                raise InvalidInput(f"{where}: kind must be one of {', '.join(kinds)}")
            name = obj.get("class")
            if not isinstance(name, str) or not name.strip() or len(name) > 200:
                raise InvalidInput(f"{where}: a class name (1 to 200 characters) is needed")
            geometry = _geometry(obj["kind"], obj.get("geometry"), sample.width, sample.height, where)
            checked.append({"kind": obj["kind"], "class": name.strip(), "geometry": geometry})
        known = set(s.scalars(select(LabelClass.name).where(LabelClass.project_id == p.id)))
        unknown = sorted({o["class"] for o in checked} - known)
        if unknown and not create_classes:
            raise InvalidInput(
                f"project {p.name!r} has no class {unknown[0]!r}; to create it on purpose, ask for it "
                "(create_classes)",
                details={"unknown_classes": unknown},
            )
        before = object_state(s, [sample_id], kinds)[sample_id]
        if expected_revision is not None and expected_revision != revision(before):
            raise Conflict(
                "the objects of this image changed since they were loaded; reload them",
                details={"current": before, "revision": revision(before)},
            )
        if unknown:
            top = s.scalar(select(func.max(LabelClass.ordinal)).where(LabelClass.project_id == p.id))
            for offset, name in enumerate(unknown, start=1):
                s.add(
                    LabelClass(project_id=p.id, name=name, ordinal=(top if top is not None else -1) + offset)
                )
            s.flush()
        after = canonical(checked)
        request: dict[str, Any] = {"sample": sample_id, "objects": len(after)}
        if unknown:
            request["created_classes"] = unknown
        change = _edit(s, p, "annotations", request, {sample_id: (before, after)}, actor=actor)
        return change | {"objects": after, "revision": revision(after), "created_classes": unknown}


def objects_as_of(s: Any, project_id: int, as_of: int) -> dict[int, list[dict[str, Any]]]:
    """The objects at change ``as_of`` of each sample an annotation edit changed since (the others
    are as they are now)."""
    from vistudio.db.changes import Change, ChangeEntry

    rows = s.execute(
        select(ChangeEntry.sample_id, ChangeEntry.before)
        .join(Change, Change.id == ChangeEntry.change_id)
        .where(Change.project_id == project_id, Change.kind == "annotations", Change.id > as_of)
        .order_by(ChangeEntry.change_id.desc())
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for sid, before in rows:  # newest first: the earliest later edit is assigned last
        out[sid] = before
    return out
