"""The statistics of a regression project's targets: for each target the count, minimum, maximum,
mean, standard deviation (population) and a histogram of its values, over the project's images
with a usable ground-truth ``value`` annotation.

The project's number of targets is the most common number of values per image (ties: the smaller
count), the rule a split uses (``services.experiments.values``); images with no value, several
value annotations, another number of values or a value that is not a finite number are counted
in ``left_out`` by reason and not in the statistics.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select

from vistudio.db import Annotation, Sample
from vistudio.ml.inference.regression import HISTOGRAM_BINS, VALUE_KIND, describe, target_names, value_vector
from vistudio.services.experiments.values import REASONS
from vistudio.services.projects import find_project
from vistudio.studio import Studio


def target_statistics(studio: Studio, *, project: str | int, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """``{"targets": [{"name", "count", "min", "max", "mean", "std", "histogram": {"edges",
    "counts"}}], "images", "usable", "left_out": {reason: count}, "reasons"}``; no targets when
    no image has usable values."""
    with studio.sessions() as s:
        p = find_project(s, project)
        images = s.scalar(select(func.count()).select_from(Sample).where(Sample.project_id == p.id)) or 0
        rows = s.execute(
            select(Annotation.sample_id, Annotation.geometry)
            .join(Sample, Sample.id == Annotation.sample_id)
            .where(Sample.project_id == p.id, Annotation.kind == VALUE_KIND, Annotation.score.is_(None))
            .order_by(Annotation.sample_id, Annotation.id)
        ).all()
    by_sample: dict[int, list[Any]] = {}
    for sid, geometry in rows:
        by_sample.setdefault(sid, []).append(geometry)
    vectors: dict[int, list[float] | None] = {
        sid: value_vector(g[0]) if len(g) == 1 else None for sid, g in by_sample.items()
    }
    counts = Counter(len(v) for v in vectors.values() if v is not None)
    left = dict.fromkeys(REASONS, 0)
    left["no_value"] = images - len(by_sample)
    left["several_values"] = sum(1 for g in by_sample.values() if len(g) > 1)
    left["not_finite"] = sum(1 for sid, v in vectors.items() if v is None and len(by_sample[sid]) == 1)
    if not counts:
        return {"targets": [], "images": images, "usable": 0, "left_out": left, "reasons": REASONS}
    count = min(counts, key=lambda n: (-counts[n], n))
    usable = [v for v in vectors.values() if v is not None and len(v) == count]
    left["wrong_count"] = sum(1 for v in vectors.values() if v is not None and len(v) != count)
    targets = [
        {"name": name, **describe([v[t] for v in usable], bins)} for t, name in enumerate(target_names(count))
    ]
    return {"targets": targets, "images": images, "usable": len(usable), "left_out": left, "reasons": REASONS}
