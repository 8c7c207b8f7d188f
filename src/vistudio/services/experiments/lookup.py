"""Finding an experiment, its checkpoints and the labelled images of a split; shared with
``services.evaluation`` and ``services.exports``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vistudio.db import Annotation, LabelClass, Sample, SplitMember
from vistudio.db.training import Checkpoint, Experiment
from vistudio.errors import BadRequest, NotFound
from vistudio.ml.tasks import get_task

if TYPE_CHECKING:
    from vistudio.studio import Studio


CHECKPOINT_KIND = "checkpoint"  # artifact kind of checkpoint blobs (artifacts/ab/<sha256>.pt)
CHECKPOINT_EXT = "pt"


def find_experiment(session: Session, project_id: int, ref: str | int) -> Experiment:
    """An experiment of the project by name, or by id (an int or a string of digits)."""
    stmt = select(Experiment).where(Experiment.project_id == project_id)
    row = session.scalar(stmt.where(Experiment.name == str(ref)))
    text = str(ref)
    if row is None and text.isascii() and text.isdigit() and len(text) < 19:
        row = session.scalar(stmt.where(Experiment.id == int(ref)))
    if row is None:
        raise NotFound(f"experiment {ref!r} not found in this project")
    return row


def find_checkpoint(session: Session, experiment: Experiment, kind: str) -> Checkpoint:
    if kind not in ("best", "last"):
        raise BadRequest(f"checkpoint must be 'best' or 'last', got {kind!r}")
    row = session.scalar(
        select(Checkpoint).where(Checkpoint.experiment_id == experiment.id, Checkpoint.kind == kind)
    )
    if row is None:
        raise NotFound(f"experiment {experiment.name!r} has no {kind} checkpoint")
    return row


def update_row(studio: Studio, model: type[Any], row_id: int, **values: Any) -> None:
    """Set columns of one row in its own transaction; a row deleted meanwhile is left alone."""
    with studio.sessions.begin() as s:
        row = s.get(model, row_id)
        if row is not None:
            for k, v in values.items():
                setattr(row, k, v)


def checkpoint_path(studio: Studio, sha256: str) -> Path:
    return studio.store.path(CHECKPOINT_KIND, sha256, CHECKPOINT_EXT)


@dataclass(frozen=True)
class LabelledItem:
    """One image of a split subset with its target in the experiment's class order.

    Classification: the class index. Detection, instance and semantic segmentation: a JSON-able dict
    ``{"width", "height", "objects": [{"class", "box", "iscrowd", "mask"}]}`` (see
    :func:`split_items`)."""

    sample_id: int
    path: str
    target: Any
    subset: str


def split_items(
    studio: Studio,
    session: Session,
    split_id: int,
    subsets: list[str],
    classes: list[str],
    task: str = "classification",
    as_of: int | None = None,
) -> list[LabelledItem]:
    """The images of ``subsets`` of a split with their targets, ordered by sample id; with
    ``as_of`` (a dataset version's watermark) the labels as they were then, not now.

    Classification: single-label images only; images without a label, with several labels, or
    with a label outside ``classes`` are left out (a classification target must be one known class).

    Detection and instance segmentation: every image of the subsets (an image without objects is
    a negative), its target ``{"width": W, "height": H, "objects": [...]}`` where each object is
    ``{"class": index, "box": [x, y, w, h], "iscrowd": bool, "mask": None | {"polygons": ...} |
    {"size": [h, w], "counts": ...}}``: box and polygons normalised to 0..1 of the displayed image,
    RLE in pixels. Detection objects come from ``box`` annotations, instance and semantic
    segmentation objects from ``polygon`` and ``mask_rle`` annotations (the box computed from the
    mask), oriented detection objects from ``rotated_box`` annotations with ``"points"`` added (the
    four corners, normalised; ``box`` is their bounds; one without width or height is kept for the
    task to skip and count). ``iscrowd`` is set for COCO crowd regions and VOC difficult objects. Annotations of a
    class outside ``classes`` or with unusable geometry (no area, not finite) are left out.

    Semantic segmentation (a ``dense`` task) also keeps the class-less ignored regions (an
    imported PNG mask's 255 pixels: a ``mask_rle`` without a class, ``iscrowd`` in its geometry)
    as objects of class -1; other tasks leave class-less annotations out.

    Regression: the images with exactly one ground-truth ``value`` annotation of ``len(classes)``
    finite numbers (``classes`` empty: the split's most common count), the target that list of
    floats; the others are left out (``services.experiments.values``; ``as_of`` does not apply:
    values have no edit history).
    """
    spec = get_task(task)
    if spec.has_objects:
        return _object_items(
            studio, session, split_id, subsets, classes, spec.object_kinds, as_of, class_less=spec.dense
        )
    if "value" in spec.annotation_kinds:  # regression: the values (see services.experiments.values)
        from vistudio.services.experiments.values import value_items

        return value_items(studio, session, split_id, subsets, classes)
    index = {name: i for i, name in enumerate(classes)}
    rows = session.execute(
        select(Sample.id, Sample.storage, Sample.path, SplitMember.subset, LabelClass.name)
        .join(SplitMember, SplitMember.sample_id == Sample.id)
        .join(Annotation, Annotation.sample_id == Sample.id)
        .join(LabelClass, LabelClass.id == Annotation.class_id)
        .where(
            SplitMember.split_id == split_id,
            SplitMember.subset.in_(subsets),
            Annotation.kind == "label",
            Annotation.score.is_(None),
        )
        .order_by(Sample.id)
    ).all()
    labels: dict[int, set[str]] = {}
    info: dict[int, tuple[str, str]] = {}
    for sid, storage, path, subset, label in rows:
        labels.setdefault(sid, set()).add(label)
        full = str(studio.photo_file(storage, path))
        info[sid] = (full, subset)
    if as_of is not None:
        labels = _labels_then(studio, session, split_id, subsets, as_of, labels, info)
    out = []
    for sid, names in sorted(labels.items()):
        if len(names) != 1:
            continue
        (name,) = names
        if name in index:
            out.append(LabelledItem(sid, info[sid][0], index[name], info[sid][1]))
    return out


def _labels_then(
    studio: Studio,
    session: Session,
    split_id: int,
    subsets: list[str],
    as_of: int,
    labels: dict[int, set[str]],
    info: dict[int, tuple[str, str]],
) -> dict[int, set[str]]:
    """The split's labels at watermark ``as_of``: a sample unlabelled now may have had a label."""
    from vistudio.db import Split
    from vistudio.services.versions import labels_as_of

    split = session.get(Split, split_id)
    if split is None:
        return labels
    members = session.execute(
        select(Sample.id, Sample.storage, Sample.path, SplitMember.subset)
        .join(SplitMember, SplitMember.sample_id == Sample.id)
        .where(SplitMember.split_id == split_id, SplitMember.subset.in_(subsets))
    ).all()
    for sid, storage, path, subset in members:
        info.setdefault(sid, (str(studio.photo_file(storage, path)), subset))
    now = {sid: sorted(labels.get(sid, ())) for sid, *_ in members}
    then = labels_as_of(session, split.project_id, as_of, now)
    return {sid: set(names) for sid, names in then.items() if names}


def experiment_items(
    studio: Studio, session: Session, exp: Experiment, subsets: list[str], *, current_labels: bool = False
) -> list[LabelledItem]:
    """The images of ``subsets`` of the experiment's split with the labels of its dataset version
    (the current labels with ``current_labels``, or when it has no version)."""
    from vistudio.db.versions import DatasetVersion

    if exp.split_id is None:
        return []
    as_of = None
    if exp.version_id is not None and not current_labels:
        version = session.get(DatasetVersion, exp.version_id)
        as_of = version.watermark if version is not None else None
    return split_items(studio, session, exp.split_id, subsets, list(exp.classes), task=exp.task, as_of=as_of)


def _object_items(
    studio: Studio,
    session: Session,
    split_id: int,
    subsets: list[str],
    classes: list[str],
    kinds: tuple[str, ...],
    as_of: int | None = None,
    *,
    class_less: bool = False,
) -> list[LabelledItem]:
    """The object targets of a split (see :func:`split_items`); ``class_less``: class-less ignored
    regions are objects too (class -1)."""
    from vistudio.ml.inference.detection_metrics import is_ignored_region

    index = {name: i for i, name in enumerate(classes)}
    samples = session.execute(
        select(Sample.id, Sample.storage, Sample.path, Sample.width, Sample.height, SplitMember.subset)
        .join(SplitMember, SplitMember.sample_id == Sample.id)
        .where(SplitMember.split_id == split_id, SplitMember.subset.in_(subsets))
        .order_by(Sample.id)
    ).all()
    stmt = select(Annotation.sample_id, Annotation.kind, Annotation.geometry, LabelClass.name).join(
        SplitMember, SplitMember.sample_id == Annotation.sample_id
    )
    # an outer join keeps the class-less annotations (their class name is None)
    on_class = LabelClass.id == Annotation.class_id
    stmt = stmt.outerjoin(LabelClass, on_class) if class_less else stmt.join(LabelClass, on_class)
    anns: Sequence[Any] = session.execute(
        stmt.where(
            SplitMember.split_id == split_id,
            SplitMember.subset.in_(subsets),
            Annotation.kind.in_(kinds),
            Annotation.score.is_(None),
        ).order_by(Annotation.sample_id, Annotation.id)
    ).all()
    if as_of is not None and samples:  # the objects of the samples edited since, as they were then
        from vistudio.db import Split
        from vistudio.services.annotations import objects_as_of

        split = session.get(Split, split_id)
        then = objects_as_of(session, split.project_id, as_of) if split is not None else {}
        members = {row[0] for row in samples}
        # class-less ignored regions are no part of the edit history (an edit lists objects of
        # classes): they are kept as they are now
        anns = [a for a in anns if a[0] not in then or a[3] is None] + [
            (sid, o["kind"], o["geometry"], o["class"])
            for sid, objs in then.items()
            if sid in members
            for o in objs
            if o["kind"] in kinds
        ]
    objects: dict[int, list[dict[str, Any]]] = {}
    for sid, kind, geometry, name in anns:
        if not isinstance(geometry, dict):
            continue
        if name is None:  # class-less: only an ignored region, only where asked for
            if not (class_less and is_ignored_region(geometry)):
                continue
            k = -1
        elif name in index:
            k = index[name]
        else:
            continue
        obj = object_target(kind, geometry)
        if obj is not None:
            objects.setdefault(sid, []).append({"class": k, **obj})
    out = []
    for sid, storage, path, width, height, subset in samples:
        full = str(studio.photo_file(storage, path))
        target = {"width": int(width), "height": int(height), "objects": objects.get(sid, [])}
        out.append(LabelledItem(sid, full, target, subset))
    return out


def _finite(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _clipped_box(x0: float, y0: float, x1: float, y1: float) -> list[float] | None:
    """``[x, y, w, h]`` of a corner box clipped to the image (0..1), None when nothing is left."""
    x0, y0 = max(0.0, min(1.0, x0)), max(0.0, min(1.0, y0))
    x1, y1 = max(0.0, min(1.0, x1)), max(0.0, min(1.0, y1))
    if x1 <= x0 or y1 <= y0:
        return None
    return [x0, y0, x1 - x0, y1 - y0]


def object_target(kind: str, geometry: dict[str, Any]) -> dict[str, Any] | None:
    """One annotation's geometry → ``{"box", "iscrowd", "mask"}`` of a training target (the object
    of a ``split_items`` target without its class), or None if unusable."""
    from vistudio.ml.inference.detection_metrics import is_ignored_region

    crowd = is_ignored_region(geometry)
    if kind == "box":
        x, y, w, h = (geometry.get(k) for k in ("x", "y", "w", "h"))
        if not _finite(x, y, w, h):
            return None
        box = _clipped_box(float(x), float(y), float(x) + float(w), float(y) + float(h))  # type: ignore[arg-type]
        return None if box is None else {"box": box, "iscrowd": crowd, "mask": None}
    if kind == "polygon":
        rings = geometry.get("polygons")
        if not isinstance(rings, list):
            return None
        kept = [
            [[float(p[0]), float(p[1])] for p in ring]
            for ring in rings
            if isinstance(ring, list)
            and len(ring) >= 3
            and all(isinstance(p, list | tuple) and len(p) == 2 and _finite(*p) for p in ring)
        ]
        if not kept:
            return None
        xs = [p[0] for ring in kept for p in ring]
        ys = [p[1] for ring in kept for p in ring]
        box = _clipped_box(min(xs), min(ys), max(xs), max(ys))
        return None if box is None else {"box": box, "iscrowd": crowd, "mask": {"polygons": kept}}
    if kind == "rotated_box":
        # the corners as stored (a box without width or height too: the task decides and says
        # what it skips); ``box`` is their axis-aligned bounds, clipped to the image
        pts = geometry.get("points")
        if not (
            isinstance(pts, list)
            and len(pts) == 4
            and all(isinstance(p, list | tuple) and len(p) == 2 and _finite(*p) for p in pts)
        ):
            return None
        points = [[float(p[0]), float(p[1])] for p in pts]
        x0, y0 = (max(0.0, min(1.0, min(p[i] for p in points))) for i in (0, 1))
        x1, y1 = (max(0.0, min(1.0, max(p[i] for p in points))) for i in (0, 1))
        return {"box": [x0, y0, x1 - x0, y1 - y0], "iscrowd": crowd, "mask": None, "points": points}
    if kind == "mask_rle":
        size, counts = geometry.get("size"), geometry.get("counts")
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            and isinstance(counts, str | list)
        ):
            return None
        try:
            from faster_coco_eval.core import mask as mask_utils

            rle = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
            if isinstance(counts, list):
                rle = mask_utils.frPyObjects(rle, size[0], size[1])
            bx, by, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
        except Exception:  # a malformed RLE string: not an object
            return None
        h, w = size
        box = _clipped_box(bx / w, by / h, (bx + bw) / w, (by + bh) / h)
        mask = {"size": list(size), "counts": counts}
        return None if box is None else {"box": box, "iscrowd": crowd, "mask": mask}
    return None
