"""Finding an experiment, its checkpoints and the labelled images of a split; shared with
``services.evaluation`` and ``services.exports``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vistudio.db import Annotation, LabelClass, Sample, SplitMember
from vistudio.db.training import Checkpoint, Experiment
from vistudio.errors import BadRequest, NotFound

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
    """One image of a split subset with its class index (in the experiment's class order)."""

    sample_id: int
    path: str
    target: int
    subset: str


def split_items(
    studio: Studio, session: Session, split_id: int, subsets: list[str], classes: list[str]
) -> list[LabelledItem]:
    """The single-label images of ``subsets`` of a split, ordered by sample id.

    Images without a label, with several labels, or with a label outside ``classes`` are left out
    (a classification target must be one known class).
    """
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
        full = str(studio.home / path) if storage == "copy" else path
        info[sid] = (full, subset)
    out = []
    for sid, names in labels.items():
        if len(names) != 1:
            continue
        (name,) = names
        if name in index:
            out.append(LabelledItem(sid, info[sid][0], index[name], info[sid][1]))
    return out
