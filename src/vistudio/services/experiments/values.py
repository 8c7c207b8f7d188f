"""The value targets of a regression split (``split_items`` of the ``regression`` task).

An image is a regression example when it has exactly one ground-truth ``value`` annotation (score
null) whose values are all finite numbers and as many as the experiment's targets; its target is
that list of floats. Every other image of the subsets is left out, and :func:`value_census` says
why (no value, several value annotations, another number of values, a value that is not a finite
number), for the messages that explain an empty subset.

The number of targets is the experiment's (its ``classes`` are the targets' names); before an
experiment exists (``classes`` empty) it is the most common number of values among the split's
images — all its subsets, so that train, val and test agree — and ties go to the smaller count.

Dataset versions: values are not edited in the annotation editor and are kept out of its history,
so a value is always the one imported last; ``as_of`` (a version's watermark) changes nothing here.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vistudio.db import Annotation, Sample, SplitMember
from vistudio.ml.inference.regression import VALUE_KIND, target_names, value_vector

if TYPE_CHECKING:
    from vistudio.services.experiments.lookup import LabelledItem
    from vistudio.studio import Studio

# why an image of a regression split is not an example
REASONS = {
    "no_value": "no value",
    "several_values": "more than one value annotation",
    "wrong_count": "another number of values than the targets",
    "not_finite": "a value that is not a finite number",
}


def _values_by_sample(session: Session, split_id: int, subsets: list[str] | None) -> dict[int, list[Any]]:
    """The geometries of the ground-truth value annotations of the split's images, by sample."""
    stmt = (
        select(Annotation.sample_id, Annotation.geometry)
        .join(SplitMember, SplitMember.sample_id == Annotation.sample_id)
        .where(SplitMember.split_id == split_id, Annotation.kind == VALUE_KIND, Annotation.score.is_(None))
        .order_by(Annotation.sample_id, Annotation.id)
    )
    if subsets is not None:
        stmt = stmt.where(SplitMember.subset.in_(subsets))
    out: dict[int, list[Any]] = {}
    for sid, geometry in session.execute(stmt):
        out.setdefault(sid, []).append(geometry)
    return out


def split_target_count(session: Session, split_id: int) -> int | None:
    """The most common number of finite values per image over the whole split (None: no image
    has usable values)."""
    counts: Counter[int] = Counter()
    for geometries in _values_by_sample(session, split_id, None).values():
        values = value_vector(geometries[0]) if len(geometries) == 1 else None
        if values is not None:
            counts[len(values)] += 1
    if not counts:
        return None
    return min(counts, key=lambda n: (-counts[n], n))


def split_target_names(session: Session, split_id: int) -> list[str]:
    """The names of the split's targets (``target`` or ``target_1 …``), [] when it has none."""
    count = split_target_count(session, split_id)
    return target_names(count) if count else []


def value_census(session: Session, split_id: int, subsets: list[str], count: int) -> dict[str, int]:
    """How many images of ``subsets`` are examples (``usable``) and how many are left out, by
    reason (the keys of :data:`REASONS`)."""
    members = session.scalars(
        select(SplitMember.sample_id).where(SplitMember.split_id == split_id, SplitMember.subset.in_(subsets))
    ).all()
    values = _values_by_sample(session, split_id, subsets)
    out = Counter({"usable": 0, **dict.fromkeys(REASONS, 0)})
    for sid in members:
        out[_why(values.get(sid, []), count) or "usable"] += 1
    return dict(out)


def _why(geometries: list[Any], count: int) -> str | None:
    if not geometries:
        return "no_value"
    if len(geometries) > 1:
        return "several_values"
    values = value_vector(geometries[0])
    if values is None:
        return "not_finite"
    return None if len(values) == count else "wrong_count"


def census_text(census: dict[str, int]) -> str:
    """``"3 images left out: 2 with no value, 1 with …"`` ("" when none was left out)."""
    parts = [f"{census[k]} with {words}" for k, words in REASONS.items() if census.get(k)]
    total = sum(census.get(k, 0) for k in REASONS)
    if not total:
        return ""
    return f"{total} image{'s' if total != 1 else ''} left out: " + ", ".join(parts)


def value_items(
    studio: Studio, session: Session, split_id: int, subsets: list[str], classes: list[str]
) -> list[LabelledItem]:
    """The regression examples of ``subsets`` (see the module's docstring), by sample id: targets
    are lists of ``len(classes)`` floats (``classes`` empty: the split's own number of targets)."""
    from vistudio.services.experiments.lookup import LabelledItem

    count = len(classes) or split_target_count(session, split_id)
    if not count:
        return []
    values = _values_by_sample(session, split_id, subsets)
    rows = session.execute(
        select(Sample.id, Sample.storage, Sample.path, SplitMember.subset)
        .join(SplitMember, SplitMember.sample_id == Sample.id)
        .where(SplitMember.split_id == split_id, SplitMember.subset.in_(subsets))
        .order_by(Sample.id)
    ).all()
    out = []
    for sid, storage, path, subset in rows:
        if _why(values.get(sid, []), count) is None:
            target = value_vector(values[sid][0])
            full = str(studio.photo_file(storage, path))
            out.append(LabelledItem(sid, full, target, subset))
    return out
