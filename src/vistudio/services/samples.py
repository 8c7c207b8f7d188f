"""Browse samples: filtered, sorted, paginated lists and the detail of one sample."""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, exists, func, select, true
from sqlalchemy.orm import aliased

from vistudio.db import Annotation, LabelClass, Project, Sample, SampleTag, Split, SplitMember
from vistudio.db.duplicates import HiddenSample
from vistudio.db.faces import Face
from vistudio.db.videos import Video
from vistudio.errors import InvalidInput, NotFound
from vistudio.ingest.geometry import rle_counts
from vistudio.ml.tasks import get_task, task_names
from vistudio.services.geo import BBox, bbox_condition, parse_bbox
from vistudio.services.places import place_dict
from vistudio.services.projects import find_project
from vistudio.studio import Studio

SORTS = {
    "name": Sample.name,
    "taken_at": Sample.taken_at,
    "imported_at": Sample.imported_at,
    "bytes": Sample.bytes,
    "dup_group": Sample.dup_group,  # near-duplicates side by side
    "id": Sample.id,
}
MAX_LIMIT = 500

# COCO's object sizes by area in pixels of the image's own size: small < 32², medium < 96², large.
OBJECT_SIZES: dict[str, tuple[float, float]] = {
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, math.inf),
}
MAX_OBJECTS = 1_000_000
# a page of the photos of people in more photos than this walks the project's photos in the
# page's order, looking each up in the people's faces, and stops when the page is full; a page of
# fewer starts from their photos (each looked up by id, then sorted)
PEOPLE_WALK_MIN = 20_000


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def sample_dict(s: Sample, labels: list[str], people: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """A sample as the API lists it; ``people``: its faces and the people among them."""
    return {
        "id": s.id,
        "project_id": s.project_id,
        "sha256": s.sha256,
        "name": s.name,
        "width": s.width,
        "height": s.height,
        "format": s.format,
        "bytes": s.bytes,
        "storage": s.storage,
        "taken_at": _iso(s.taken_at),
        "camera": " ".join(x for x in (s.camera_make, s.camera_model) if x) or None,
        "labels": labels,
        "faces": people[0],
        "people": people[1],
        "dup_group": s.dup_group,
        "imported_at": _iso(s.imported_at),
        "file_time": _iso(s.file_time),  # the file's modification time: the timeline's fallback date
        "place": place_dict(s),  # city, region, country from GPS (services/places.py)
        "thumbnail_url": f"/api/v1/samples/{s.id}/thumbnail",
        "video_id": s.video_id,  # a keyframe of a library video, at video_time seconds
        "video_time": s.video_time,
    }


def filtered_query(
    project_id: int,
    *,
    label: str | None,
    tag: str | None,
    split: int | None,
    subset: str | None,
    has_annotations: bool | None,
    taken_from: datetime | None,
    taken_to: datetime | None,
    dup_group: int | None,
    duplicates_only: bool,
    q: str | None,
    include_hidden: bool = True,
    objects: ColumnElement[bool] | None = None,
    people: Sequence[int] = (),
    people_first: bool = True,
    keyframes: bool = True,
    bbox: BBox | None = None,
) -> Select[Any]:
    """The samples of a project that pass the filters; ``bbox``: photos whose GPS position lies
    in that area (services/geo.py); ``keyframes`` False: of each library video
    only its poster keyframe (the grid's tile of the video; services/videos.py); ``objects`` is a condition from
    :func:`object_condition` (number, class and size of the objects); ``people``: photos showing
    every one of these people (ids; the one with the fewest faces first is fastest).
    ``people_first`` says how the database finds those, never which: by default it starts from
    the people's photos (their (person, photo) index entries, then each photo by id: the
    project's indexes are not used for ``project_id``); False walks the project's photos (in
    the order of an index that serves the sort) and looks each up in the people's faces — for a
    page of people in many photos, which stops as soon as it is full."""
    people = tuple(dict.fromkeys(people))
    first = bool(people) and people_first
    # "+ 0": not the (project, …) indexes, so the database starts from the people's photos
    stmt = select(Sample).where((Sample.project_id + 0 if first else Sample.project_id) == project_id)
    if first:
        stmt = stmt.where(Sample.id.in_(people_photos(people)))
    for person in people if not first else ():
        stmt = stmt.where(_has_face(person, Sample.id))
    if objects is not None:
        stmt = stmt.where(objects)
    if not include_hidden:  # hidden by a duplicate review ("hide others"): out of browsing
        hidden = select(HiddenSample.sample_id).where(HiddenSample.project_id == project_id)
        stmt = stmt.where(Sample.id.not_in(hidden))
    if not keyframes:
        posters = select(Video.poster_sample_id).where(Video.project_id == project_id)
        stmt = stmt.where(Sample.video_id.is_(None) | Sample.id.in_(posters))
    # IN (subquery) rather than a correlated EXISTS: SQLite then walks the small indexed side
    # once instead of probing it for every sample (seconds → milliseconds at 100,000 samples).
    if label is not None:
        class_ids = select(LabelClass.id).where(LabelClass.project_id == project_id, LabelClass.name == label)
        stmt = stmt.where(
            Sample.id.in_(select(Annotation.sample_id).where(Annotation.class_id.in_(class_ids)))
        )
    if tag is not None:
        stmt = stmt.where(Sample.id.in_(select(SampleTag.sample_id).where(SampleTag.tag == tag)))
    if split is not None:
        members = select(SplitMember.sample_id).where(SplitMember.split_id == split)
        if subset:
            members = members.where(SplitMember.subset == subset)
        stmt = stmt.where(Sample.id.in_(members))
    if has_annotations is not None:
        has = exists().where(Annotation.sample_id == Sample.id)
        stmt = stmt.where(has if has_annotations else ~has)
    if taken_from is not None:
        stmt = stmt.where(Sample.taken_at >= taken_from)
    if taken_to is not None:
        stmt = stmt.where(Sample.taken_at <= taken_to)
    if dup_group is not None:
        stmt = stmt.where(Sample.dup_group == dup_group)
    elif duplicates_only:
        stmt = stmt.where(Sample.dup_group.is_not(None))
    if q:
        stmt = stmt.where(Sample.name.contains(q, autoescape=True))
    if bbox is not None:
        stmt = stmt.where(bbox_condition(bbox))  # within ±90°/±180° (parse_bbox): valid positions
    return stmt


def people_photos(people: Sequence[int]) -> Select[Any]:
    """The ids of the photos showing every one of ``people``: the first person's photos (their
    (person, photo) index entries, in photo order) in which each other person has a face too —
    read from the index alone, as many entries as the first person has faces (pass the smallest
    first)."""
    first, *others = people
    face = aliased(Face)
    stmt = select(face.sample_id).where(face.person_id == first).distinct()
    for person in others:
        stmt = stmt.where(_has_face(person, face.sample_id))
    return stmt


def _has_face(person: int, sample_id: Any) -> ColumnElement[bool]:
    """The person has a face in that photo: one look-up in the (person, photo) index (it selects
    the id, which the index holds, so that no face row is read)."""
    return select(Face.id).where(Face.person_id == person, Face.sample_id == sample_id).exists()


def fewest_faces_first(s: Any, people: Sequence[int]) -> tuple[int, ...]:
    """The people (each once) ordered by how many faces they have, fewest first: the order in
    which :func:`people_photos` reads the least. One count over their index entries, once per
    session."""
    people = tuple(dict.fromkeys(people))
    if len(people) < 2:
        return people
    known: dict[tuple[int, ...], tuple[int, ...]] = s.info.setdefault("fewest_faces_first", {})
    if people not in known:
        sizes = dict(
            s.execute(
                select(Face.person_id, func.count())
                .where(Face.person_id.in_(people))
                .group_by(Face.person_id)
            ).all()
        )
        known[people] = tuple(sorted(people, key=lambda p: sizes.get(p, 0)))
    return known[people]


def polygon_area(points: Sequence[Sequence[float]]) -> float:
    """Area of one ring (shoelace formula), in the units of its coordinates."""
    n = len(points)
    if n < 3:
        return 0.0
    twice = 0.0
    for i in range(n):
        x0, y0 = points[i][0], points[i][1]
        x1, y1 = points[(i + 1) % n][0], points[(i + 1) % n][1]
        twice += x0 * y1 - x1 * y0
    return abs(twice) / 2


def object_area(
    kind: str, geometry: dict[str, Any] | None, width: int | None, height: int | None
) -> float | None:
    """An object's area in pixels of its sample's own size (COCO's ``area``: the box for a box, the
    mask for a polygon or an RLE mask); None when the geometry cannot say."""
    if not isinstance(geometry, dict):
        return None
    w, h = float(width or 0), float(height or 0)
    try:
        if kind == "box":
            return float(geometry["w"]) * float(geometry["h"]) * w * h
        if kind == "polygon":
            rings = geometry["polygons"]
            if not (isinstance(rings, list) and all(isinstance(r, list) for r in rings)):
                return None
            return sum(polygon_area(ring) for ring in rings) * w * h
        if kind == "rotated_box":
            return polygon_area(geometry["points"]) * w * h
        if kind == "mask_rle":
            rows, cols = (int(v) for v in geometry["size"])
            counts = rle_counts(geometry["counts"])
            if sum(counts) != rows * cols or min(counts, default=0) < 0:
                return None  # not a mask of its declared size
            return float(sum(counts[1::2]))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return None


def _count(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OBJECTS:
        raise InvalidInput(f"{what} must be a whole number from 0 to {MAX_OBJECTS:,}")
    return value


def object_condition(
    s: Any,
    project: Any,
    *,
    label: str | None,
    min_objects: int | None,
    max_objects: int | None,
    object_size: str | None,
) -> ColumnElement[bool] | None:
    """The samples whose objects (of class ``label`` and size ``object_size`` when given) number
    from ``min_objects`` to ``max_objects``; at least one when only a class or a size is given.
    None when no object filter is set."""
    low, high = _count(min_objects, "min_objects"), _count(max_objects, "max_objects")
    if object_size is not None and object_size not in OBJECT_SIZES:
        raise InvalidInput(f"unknown object size {object_size!r}; use one of {', '.join(OBJECT_SIZES)}")
    if low is None and high is None and object_size is None:
        return None
    # the task's objects are what "number of objects" and "object size" count (an instance
    # segmentation object is its mask: its imported box is the same object)
    kinds = get_task(project.task).object_kinds
    if not kinds:
        with_objects = [t for t in task_names() if get_task(t).has_objects]
        raise InvalidInput(
            f"object filters apply to projects with objects ({', '.join(with_objects)}), "
            f"not to {project.task} projects"
        )
    if low is not None and high is not None and low > high:
        raise InvalidInput(f"min_objects ({low}) is more than max_objects ({high})")
    if low is None:  # "at most N" includes none; a class or a size alone asks for one at least
        low = 0 if high is not None else 1
    if low == 0 and high is None:
        return true()  # "zero or more" objects: every sample
    objects = (
        select(Annotation.sample_id)
        .join(Sample, Sample.id == Annotation.sample_id)
        .where(
            Sample.project_id == project.id,
            Annotation.kind.in_(kinds),
            Annotation.score.is_(None),  # ground truth: a prediction is not an object of the image
        )
    )
    if label is not None:
        objects = objects.where(Annotation.class_id.in_(_class_ids(project.id, label)))
    if object_size is not None and kinds == ("box",):
        lo, hi = OBJECT_SIZES[object_size]
        area = (
            Annotation.geometry["w"].as_float()
            * Annotation.geometry["h"].as_float()
            * Sample.width
            * Sample.height
        )
        objects = objects.where(area >= lo)
        if math.isfinite(hi):
            objects = objects.where(area < hi)
    elif object_size is not None:
        # mask areas need the geometry decoded: count the objects of that size here
        lo, hi = OBJECT_SIZES[object_size]
        rows = s.execute(
            objects.with_only_columns(
                Annotation.sample_id, Annotation.kind, Annotation.geometry, Sample.width, Sample.height
            )
        )
        per_sample: Counter[int] = Counter()
        for sid, kind, geometry, width, height in rows:
            area = object_area(kind, geometry, width, height)
            if area is not None and lo <= area < hi:
                per_sample[sid] += 1
        if low >= 1:
            keep = [sid for sid, n in per_sample.items() if n >= low and (high is None or n <= high)]
            return Sample.id.in_(_literal_ids(keep))
        return Sample.id.not_in(_literal_ids([sid for sid, n in per_sample.items() if n > (high or 0)]))
    counted = objects.group_by(Annotation.sample_id)
    if low >= 1:
        having = func.count() >= low if high is None else func.count().between(low, high)
        return Sample.id.in_(counted.having(having))
    # no lower bound: the samples without more than ``high`` objects, those with none included
    return Sample.id.not_in(counted.having(func.count() > (high or 0)))


def _literal_ids(ids: list[int]) -> Any:
    """A list of row ids written into the SQL itself: a bound parameter each would hit SQLite's
    limit on parameters for a large project."""
    return bindparam("object_ids", sorted(ids), expanding=True, literal_execute=True, unique=True)


def _class_ids(project_id: int, label: str) -> Select[Any]:
    return select(LabelClass.id).where(LabelClass.project_id == project_id, LabelClass.name == label)


def annotations_for(s: Any, sample_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each sample's annotations (kind, class, geometry, score: None for ground truth, the
    confidence of a prediction), for drawing them over its thumbnail."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in sample_ids}
    if not sample_ids:
        return out
    rows = s.execute(
        select(Annotation, LabelClass.name)
        .outerjoin(LabelClass, LabelClass.id == Annotation.class_id)
        .where(Annotation.sample_id.in_(sample_ids))
        .order_by(Annotation.sample_id, Annotation.id)
    )
    for a, cname in rows:
        out[a.sample_id].append(_annotation_dict(a, cname))
    return out


def _annotation_dict(a: Annotation, cname: str | None) -> dict[str, Any]:
    return {"id": a.id, "kind": a.kind, "class": cname, "geometry": a.geometry, "score": a.score}


def resolve_split(s: Any, project_id: int, split: str | None, subset: str | None) -> int | None:
    if split is None and subset is None:
        return None
    stmt = select(Split).where(Split.project_id == project_id)
    row = (
        s.scalar(stmt.where(Split.name == split))
        if split
        else s.scalar(stmt.order_by(Split.created_at.desc(), Split.id.desc()).limit(1))
    )
    if row is None:
        raise NotFound(f"split {split!r} not found" if split else "the project has no split yet")
    return int(row.id)


def people_counts(s: Any, sample_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Each photo's faces and the people among them that the People pages show (hidden people
    left out): ``{sample id: (faces, people)}``, (0, 0) for a photo without faces."""
    from vistudio.db.faces import Face, Person

    out = dict.fromkeys(sample_ids, (0, 0))
    if not sample_ids:
        return out
    shown = and_(Face.person_id.is_not(None), Person.hidden.is_(False))
    rows = s.execute(
        select(
            Face.sample_id,
            func.count(Face.id),
            func.count(func.distinct(case((shown, Face.person_id), else_=None))),
        )
        .outerjoin(Person, Person.id == Face.person_id)
        .where(Face.sample_id.in_(sample_ids))
        .group_by(Face.sample_id)
    )
    for sid, faces, people in rows:
        out[sid] = (int(faces), int(people))
    return out


def labels_for(s: Any, sample_ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {i: [] for i in sample_ids}
    if not sample_ids:
        return out
    rows = s.execute(
        select(Annotation.sample_id, LabelClass.name)
        .join(LabelClass, LabelClass.id == Annotation.class_id)
        .where(Annotation.sample_id.in_(sample_ids))
        .distinct()
        .order_by(Annotation.sample_id, LabelClass.name)
    )
    for sid, name in rows:
        out[sid].append(name)
    return out


def matching_query(
    s: Any,
    p: Any,
    *,
    label: str | None = None,
    tag: str | None = None,
    split: str | None = None,
    subset: str | None = None,
    has_annotations: bool | None = None,
    taken_from: datetime | None = None,
    taken_to: datetime | None = None,
    dup_group: int | None = None,
    duplicates_only: bool = False,
    q: str | None = None,
    include_hidden: bool = False,
    min_objects: int | None = None,
    max_objects: int | None = None,
    object_size: str | None = None,
    person: str | Sequence[str] | None = None,
    people_first: bool = True,
    keyframes: bool = False,
    bbox: str | Sequence[float] | None = None,
) -> Select[Any]:
    """The samples of project ``p`` that the grid's filters select (see :func:`list_samples`): the
    one definition of "the samples matching the current filter", for pages and bulk edits alike.
    ``person``: photos of that person (an id or a name), or of all these people together;
    ``people_first``: see :func:`filtered_query` (how, never which). ``bbox``: photos with a GPS
    position in ``"west,south,east,north"`` (west > east: across the antimeridian)."""
    split_id = resolve_split(s, p.id, split, subset)
    if label is not None and s.scalar(_class_ids(p.id, label)) is None:
        raise NotFound(f"class {label!r} not found in project {p.name!r}")
    objects = object_condition(
        s, p, label=label, min_objects=min_objects, max_objects=max_objects, object_size=object_size
    )
    people = fewest_faces_first(s, person_ids(s, p.id, person))
    return filtered_query(
        p.id,
        label=label if objects is None else None,  # the object filter counts that class
        tag=tag,
        split=split_id,
        subset=subset,
        has_annotations=has_annotations,
        taken_from=taken_from,
        taken_to=taken_to,
        dup_group=dup_group,
        duplicates_only=duplicates_only,
        q=q,
        include_hidden=include_hidden,
        objects=objects,
        people=people,
        people_first=people_first,
        keyframes=keyframes,  # a video is one tile: its poster
        bbox=parse_bbox(bbox) if bbox is not None and bbox != "" else None,
    )


# each of matching_query's filters and its value when it is not set
_FILTER_DEFAULTS: dict[str, Any] = {
    name: param.default
    for name, param in inspect.signature(matching_query).parameters.items()
    if param.kind is inspect.Parameter.KEYWORD_ONLY and name != "people_first"
}


def person_ids(s: Any, project_id: int, person: str | Sequence[str] | None) -> tuple[int, ...]:
    """The ids of the people a filter names (ids or names; 404 for one the project lacks)."""
    if person is None or person == "":
        return ()
    from vistudio.services.people import find_person

    refs = [person] if isinstance(person, str) else list(person)
    return tuple(find_person(s, project_id, ref).id for ref in refs if ref != "")


def list_samples(
    studio: Studio,
    *,
    project: str | int,
    sort: str = "name",
    order: str = "asc",
    offset: int = 0,
    limit: int = 60,
    with_annotations: bool = False,
    **filters: Any,
) -> dict[str, Any]:
    """One page of a project's samples; ``filters`` are :func:`matching_query`'s. ``label``: samples
    with an annotation of that class (404 for a class the project does not have). ``min_objects`` /
    ``max_objects`` / ``object_size`` (detection-like projects): samples whose objects — of class
    ``label`` when given, of that COCO size (small, medium, large) when given — number within the
    bounds. ``with_annotations`` adds each item's annotations, for drawing them."""
    if sort not in SORTS:
        raise InvalidInput(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    if order not in ("asc", "desc"):
        raise InvalidInput("order is 'asc' or 'desc'")
    if not 0 <= offset <= 2**62 or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")
    with studio.sessions() as s:
        p = find_project(s, project)
        people = fewest_faces_first(s, person_ids(s, p.id, filters.get("person")))
        theirs, many = 0, False
        if people:
            # how many photos show them (from their faces alone): the total when nothing else
            # filters, and whether a page should walk the photos in order or start from theirs
            include_hidden = bool(filters.get("include_hidden", False))
            theirs = _people_total(s, p.id, people, include_hidden=include_hidden)
            many = theirs > PEOPLE_WALK_MIN
        stmt = matching_query(s, p, **{**filters, "people_first": not many})
        if people and _only_people(filters):
            total = theirs
        else:
            total = (
                s.scalar(select(func.count()).select_from(stmt.with_only_columns(Sample.id).subquery())) or 0
            )
        col = SORTS[sort]
        # id breaks ties so pages never overlap or skip rows
        ordering: tuple[Any, ...] = (
            (col.asc(), Sample.id.asc()) if order == "asc" else (col.desc(), Sample.id.desc())
        )
        if sort == "taken_at":
            rows = _dated_then_undated(s, stmt, ordering, offset=offset, limit=limit)
        else:
            rows = list(s.scalars(stmt.order_by(*ordering).offset(offset).limit(limit)))
        labels = labels_for(s, [r.id for r in rows])
        counts = people_counts(s, [r.id for r in rows])
        items = [sample_dict(r, labels[r.id], counts[r.id]) for r in rows]
        if with_annotations:
            anns = annotations_for(s, [r.id for r in rows])
            for item in items:
                item["annotations"] = anns[item["id"]]
        return {
            "items": items,
            "total": total,
            "offset": offset,
            "limit": limit,
        }


def _only_people(filters: dict[str, Any]) -> bool:
    """Whether the grid's filters are the people (and the hidden samples rule) alone."""
    return all(
        filters.get(name, default) == default
        for name, default in _FILTER_DEFAULTS.items()
        if name not in ("person", "include_hidden")
    )


def _people_total(s: Any, project_id: int, people: Sequence[int], *, include_hidden: bool) -> int:
    """How many of the project's photos show every one of ``people`` (smallest first), hidden
    samples left out unless ``include_hidden``: ``count(*)`` of :func:`filtered_query` with no
    other filter, read from the faces' (person, photo) index alone. The same number: a person's
    faces are all in photos of the person's project, and a photo's faces go with it."""
    photos = people_photos(people).subquery()
    stmt = select(func.count()).select_from(photos)
    if not include_hidden:
        hidden = select(HiddenSample.sample_id).where(HiddenSample.project_id == project_id)
        stmt = stmt.where(photos.c.sample_id.not_in(hidden))
    return int(s.scalar(stmt) or 0)


def _dated_then_undated(
    s: Any, stmt: Select[Any], ordering: tuple[Any, ...], *, offset: int, limit: int
) -> list[Sample]:
    """Undated photos go last in both directions. Sorting on ``taken_at IS NULL`` would defeat the
    (project, taken_at, id) index, so the dated and undated parts are paged separately. The dated
    photos are counted only when the page goes past them (a page of dated photos needs no count)."""
    dated = stmt.where(Sample.taken_at.is_not(None))
    rows = list(s.scalars(dated.order_by(*ordering).offset(offset).limit(limit)))
    if len(rows) < limit:
        if rows:  # the dated photos end on this page
            n_dated = offset + len(rows)
        else:
            n_dated = (
                s.scalar(select(func.count()).select_from(dated.with_only_columns(Sample.id).subquery())) or 0
            )
        undated = stmt.where(Sample.taken_at.is_(None)).order_by(Sample.id)
        rows += s.scalars(undated.offset(max(0, offset - n_dated)).limit(limit - len(rows)))
    return rows


def get_sample(studio: Studio, sample_id: int) -> dict[str, Any]:
    with studio.sessions() as s:
        row = s.get(Sample, sample_id)
        if row is None:
            raise NotFound(f"sample {sample_id} not found")
        labels = labels_for(s, [row.id])[row.id]
        anns = s.execute(
            select(Annotation, LabelClass.name)
            .outerjoin(LabelClass, LabelClass.id == Annotation.class_id)
            .where(Annotation.sample_id == row.id)
            .order_by(Annotation.id)
        ).all()
        memberships = s.execute(
            select(Split.name, SplitMember.subset)
            .join(Split, Split.id == SplitMember.split_id)
            .where(SplitMember.sample_id == row.id)
            .order_by(Split.name)
        ).all()
        tags = list(
            s.scalars(select(SampleTag.tag).where(SampleTag.sample_id == row.id).order_by(SampleTag.tag))
        )
        d = sample_dict(row, labels, people_counts(s, [row.id])[row.id])
        d.update(
            {
                "camera_make": row.camera_make,
                "camera_model": row.camera_model,
                "lens": row.lens,
                "gps": {"lat": row.gps_lat, "lon": row.gps_lon} if row.gps_lat is not None else None,
                "orientation": row.orientation,
                "phash": row.phash,
                "exif": row.exif,
                "path": row.path,
                "tags": tags,
                "splits": {name: subset for name, subset in memberships},
                "original_url": f"/api/v1/samples/{row.id}/original",
                "annotations": [_annotation_dict(a, cname) for a, cname in anns],
            }
        )
        from vistudio.services.annotations import editable_kinds, revision

        project = s.get(Project, row.project_id)
        kinds = editable_kinds(project.task) if project is not None else ()
        # as services.annotations.object_state: class-less regions (ignored pixels) are not objects
        truth = [
            a
            for a in d["annotations"]
            if a["kind"] in kinds and a["score"] is None and a["class"] is not None
        ]
        d["objects_revision"] = revision(truth)  # what the annotation editor sends back with a save
        from vistudio.ml.captions import resolve_name
        from vistudio.services.captions import read_captions

        shown = read_captions(s, sample_id, model=resolve_name(studio.settings.captions.model))
    d["caption"], d["caption_source"] = shown["caption"], shown["source"]
    return d


MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "HEIF": "image/heif",
}


def sample_download_url(studio: Studio, sample_id: int, *, thumbnail: bool) -> str | None:
    """A short-lived URL of a sample's thumbnail or copied original when blobs live in a remote
    store (clients download from it directly); None: serve ``sample_file`` instead."""
    if not studio.store.remote:
        return None
    with studio.sessions() as s:
        row = s.get(Sample, sample_id)
        if row is None:
            raise NotFound(f"sample {sample_id} not found")
        if not thumbnail and row.storage != "copy":
            return None  # a referenced original is the user's own file, on this machine
        sha, fmt = row.sha256, row.format
        ext = "" if thumbnail else Path(row.path).suffix.lstrip(".")
    kind = "thumbnail" if thumbnail else "original"
    if not studio.store.exists(kind, sha, ext):
        raise NotFound(f"the {kind} of sample {sample_id} is missing from the blob store")
    media = "image/webp" if thumbnail else MEDIA_TYPES.get(fmt, "application/octet-stream")
    return studio.store.download_url(kind, sha, ext, media_type=media)


def sample_file(studio: Studio, sample_id: int, *, thumbnail: bool) -> tuple[Path, str]:
    """The file behind a sample's original or thumbnail, with its media type."""
    with studio.sessions() as s:
        row = s.get(Sample, sample_id)
        if row is None:
            raise NotFound(f"sample {sample_id} not found")
        if thumbnail:
            thumb = studio.store.path("thumbnail", row.sha256)
            if not thumb.is_file():
                raise NotFound(f"the thumbnail of sample {sample_id} is missing from the workspace")
            return thumb, "image/webp"
        path = studio.photo_file(row.storage, row.path)
        media = MEDIA_TYPES.get(row.format, "application/octet-stream")
        if not path.is_file():
            raise NotFound(f"the original of sample {sample_id} is missing: {path}")
        return path, media


def class_counts(studio: Studio, *, project: str | int) -> dict[str, int]:
    """Number of samples per class name (a sample counts once per class it carries)."""
    with studio.sessions() as s:
        p = find_project(s, project)
        rows = s.execute(
            select(LabelClass.name, func.count(func.distinct(Annotation.sample_id)))
            .join(Annotation, and_(Annotation.class_id == LabelClass.id), isouter=True)
            .where(LabelClass.project_id == p.id)
            .group_by(LabelClass.id)
            .order_by(LabelClass.ordinal)
        )
        return {name: int(n) for name, n in rows}


def tag_counts(studio: Studio, *, project: str | int, limit: int = 500) -> dict[str, int]:
    """Number of samples per tag, most used first."""
    with studio.sessions() as s:
        p = find_project(s, project)
        n = func.count(SampleTag.sample_id)
        rows = s.execute(
            select(SampleTag.tag, n)
            .join(Sample, Sample.id == SampleTag.sample_id)
            .where(Sample.project_id == p.id)
            .group_by(SampleTag.tag)
            .order_by(n.desc(), SampleTag.tag)
            .limit(limit)
        )
        return {tag: int(count) for tag, count in rows}
