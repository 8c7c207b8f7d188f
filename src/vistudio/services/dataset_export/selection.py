"""What an export reads from the database: the selected samples, their ground truth, their subsets.

The selection is the grid's (``services.samples.matching_query``, the one definition of "the
samples matching the filters"). Everything is read in a few queries however many samples there
are: the samples, then all their ground-truth annotations (predictions have a score and are never
exported) with class names, their subsets when exporting by split, and the project's classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vistudio.db import Annotation, LabelClass, Project, Sample, SplitMember
from vistudio.errors import InvalidInput
from vistudio.ingest.writers import ExportAnnotation, ExportSample
from vistudio.services.samples import matching_query, resolve_split

# matching_query's filters, with the type each takes (dates arrive as ISO text from JSON)
FILTERS: dict[str, type] = {
    "label": str,
    "tag": str,
    "split": str,
    "subset": str,
    "has_annotations": bool,
    "taken_from": datetime,
    "taken_to": datetime,
    "dup_group": int,
    "duplicates_only": bool,
    "q": str,
    "min_objects": int,
    "max_objects": int,
    "object_size": str,
}


def check_filters(raw: dict[str, Any] | None) -> dict[str, Any]:
    """The filters as ``matching_query`` takes them; unknown keys and wrong types are a 422."""
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key not in FILTERS:
            raise InvalidInput(
                f"unknown filter {str(key)[:40]!r}; filters are: {', '.join(FILTERS)}",
                details={"filters": list(FILTERS)},
            )
        if value is None:
            continue
        kind = FILTERS[key]
        if kind is datetime and isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(f"filter {key}: not a date: {value[:40]!r}") from None
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)  # stored dates are naive UTC
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise InvalidInput(f"filter {key}: expected {kind.__name__}, got {type(value).__name__}")
        out[key] = value
    return out


def filters_json(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters as job parameters (JSON): dates as ISO text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items()}


@dataclass(frozen=True)
class Source:
    """Where a sample's file is, and what it must hash to."""

    path: Path
    sha256: str
    trusted: bool  # a content-addressed copy in the workspace (checked when it was imported)


def load_selection(
    s: Session, *, home: Path, project: Project, filters: dict[str, Any], by_split: str | None
) -> tuple[list[ExportSample], dict[int, Source], list[str]]:
    """The selected samples (ordered by name, then id: suffixes for names that collide are given
    in that order), their files, and the project's classes in their order."""
    stmt = matching_query(s, project, **filters)
    rows = s.execute(
        stmt.with_only_columns(
            Sample.id,
            Sample.name,
            Sample.width,
            Sample.height,
            Sample.format,
            Sample.storage,
            Sample.path,
            Sample.sha256,
        ).order_by(Sample.name, Sample.id)
    ).all()
    samples: dict[int, ExportSample] = {}
    sources: dict[int, Source] = {}
    for sid, name, width, height, fmt, storage, path, sha in rows:
        samples[sid] = ExportSample(name=name, width=width, height=height, format=fmt or "", key=sid)
        copy = storage == "copy"
        sources[sid] = Source(path=home / path if copy else Path(path), sha256=sha, trusted=copy)
    if samples:
        ids = stmt.with_only_columns(Sample.id).order_by(None)
        annotations = s.execute(
            select(Annotation.sample_id, Annotation.kind, LabelClass.name, Annotation.geometry)
            .outerjoin(LabelClass, LabelClass.id == Annotation.class_id)
            .where(Annotation.sample_id.in_(ids), Annotation.score.is_(None))
            .order_by(Annotation.sample_id, Annotation.id)
        )
        for sid, kind, cname, geometry in annotations:
            sample = samples.get(sid)
            if sample is not None:
                sample.annotations.append(ExportAnnotation(kind=kind, class_name=cname, geometry=geometry))
        if by_split is not None:
            split_id = resolve_split(s, project.id, by_split, None)
            assert split_id is not None
            members = s.execute(
                select(SplitMember.sample_id, SplitMember.subset).where(
                    SplitMember.split_id == split_id, SplitMember.sample_id.in_(ids)
                )
            )
            for sid, subset in members:
                if sid in samples:
                    samples[sid].subset = subset
    classes = list(
        s.scalars(
            select(LabelClass.name).where(LabelClass.project_id == project.id).order_by(LabelClass.ordinal)
        )
    )
    return list(samples.values()), sources, classes
