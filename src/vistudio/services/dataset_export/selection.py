"""What an export reads from the database: the selected samples, their ground truth, their subsets.

The selection is the grid's (``services.samples.matching_query``, the one definition of "the
samples matching the filters"), or a dataset version's members. Everything is read in a few
queries however many samples there are: the samples, then all their ground-truth annotations
(predictions have a score and are never exported) with class names, their subsets when exporting
by split, and the project's classes.

A version's export has the labels and objects the version had: the current ones, with those of
every sample edited since the version's watermark taken back (``versions.labels_as_of``,
``annotations.objects_as_of``). Members deleted since are not exported (their files are gone);
``missing`` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vistudio.db import Annotation, LabelClass, Project, Sample, SplitMember
from vistudio.db.versions import DatasetVersion
from vistudio.errors import InvalidInput
from vistudio.ingest.writers import ExportAnnotation, ExportSample
from vistudio.services.samples import matching_query, resolve_split
from vistudio.services.versions import current_labels, decode_members, labels_as_of

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
    "bbox": str,  # west,south,east,north: photos taken there (services/geo.py)
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
    """Where a sample's file is (``Studio.photo_file`` finds it when it is written: a copy in a
    bucket is fetched then, not when the selection is made), and what it must hash to."""

    storage: str
    path: str
    sha256: str

    @property
    def trusted(self) -> bool:
        """A content-addressed copy in the workspace (checked when it was imported)."""
        return self.storage == "copy"


@dataclass
class Selection:
    samples: list[ExportSample]
    sources: dict[int, Source]
    classes: list[str]
    missing: int = 0  # members of the version deleted since


def load_selection(
    s: Session,
    *,
    project: Project,
    filters: dict[str, Any],
    by_split: str | None,
    version: DatasetVersion | None = None,
) -> Selection:
    """The selected samples (ordered by name, then id: suffixes for names that collide are given
    in that order), their files, and the project's classes in their order; with ``version`` its
    members with the ground truth they had then (``filters`` are not applied)."""
    stmt = matching_query(s, project, **({} if version is not None else filters))
    members = set(decode_members(version.members)) if version is not None else None
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
        if members is not None and sid not in members:
            continue
        samples[sid] = ExportSample(name=name, width=width, height=height, format=fmt or "", key=sid)
        sources[sid] = Source(storage=storage, path=path, sha256=sha)
    if samples:
        ids = stmt.with_only_columns(Sample.id).order_by(None)
        annotations = s.execute(
            select(Annotation.sample_id, Annotation.kind, LabelClass.name, Annotation.geometry)
            .outerjoin(LabelClass, LabelClass.id == Annotation.class_id)
            .where(Annotation.sample_id.in_(ids), Annotation.score.is_(None))
            .order_by(Annotation.sample_id, Annotation.id)
        )
        then = _as_of(s, project, version, list(samples)) if version is not None else {}
        for sid, kind, cname, geometry in annotations:
            sample = samples.get(sid)
            replaced = then[sid][0] if sid in then else frozenset()
            if sample is not None and kind not in replaced:
                sample.annotations.append(ExportAnnotation(kind=kind, class_name=cname, geometry=geometry))
        for sid, (_, items) in then.items():
            samples[sid].annotations.extend(items)
        if by_split is not None:
            split_id = resolve_split(s, project.id, by_split, None)
            assert split_id is not None
            subsets = s.execute(
                select(SplitMember.sample_id, SplitMember.subset).where(
                    SplitMember.split_id == split_id, SplitMember.sample_id.in_(ids)
                )
            )
            for sid, subset in subsets:
                if sid in samples:
                    samples[sid].subset = subset
    classes = list(
        s.scalars(
            select(LabelClass.name).where(LabelClass.project_id == project.id).order_by(LabelClass.ordinal)
        )
    )
    missing = len(members) - len(samples) if members is not None else 0
    return Selection(list(samples.values()), sources, classes, missing)


def _as_of(
    s: Session, project: Project, version: DatasetVersion, ids: list[int]
) -> dict[int, tuple[frozenset[str], list[ExportAnnotation]]]:
    """Each sample edited since ``version``: the annotation kinds the edits replaced and the
    annotations of those kinds as the version had them, in their order (``label`` from label
    edits, the task's editable kinds from annotation edits)."""
    from vistudio.services.annotations import editable_kinds, objects_as_of

    out: dict[int, tuple[frozenset[str], list[ExportAnnotation]]] = {}
    now = current_labels(s, ids, project.id)
    for sid, names in labels_as_of(s, project.id, version.watermark, now).items():
        if names != now.get(sid):
            out[sid] = (frozenset({"label"}), [ExportAnnotation(kind="label", class_name=n) for n in names])
    kinds = frozenset(editable_kinds(project.task))
    wanted = set(ids)
    for sid, objects in objects_as_of(s, project.id, version.watermark).items():
        if sid in wanted:
            replaced, items = out.get(sid, (frozenset(), []))
            items = items + [
                ExportAnnotation(kind=o["kind"], class_name=o["class"], geometry=o["geometry"])
                for o in objects
            ]
            out[sid] = (replaced | kinds, items)
    return out
