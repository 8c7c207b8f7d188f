"""Listing experiments, one experiment, its metric series, and several compared."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vistudio.db import Job
from vistudio.db.training import Checkpoint, EpochMetric, Experiment
from vistudio.errors import InvalidInput
from vistudio.services.experiments.config import experiment_warnings
from vistudio.services.experiments.live import _live
from vistudio.services.experiments.lookup import find_experiment
from vistudio.services.experiments.views import _reconcile, experiment_dict
from vistudio.services.projects import find_project

if TYPE_CHECKING:
    from vistudio.studio import Studio


def list_experiments(
    studio: Studio, *, project: str | int, status: str | None = None, offset: int = 0, limit: int = 50
) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        q = select(Experiment).where(Experiment.project_id == p.id)
        if status:
            q = q.where(Experiment.status.in_(status.split(",")))
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = list(
            s.scalars(
                q.order_by(Experiment.created_at.desc(), Experiment.id.desc()).offset(offset).limit(limit)
            )
        )
        name = p.name
    _reconcile(studio, rows)
    return {"items": [experiment_dict(studio, e, project=name) for e in rows], "total": total}


def get_experiment(studio: Studio, *, project: str | int, experiment: str | int) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        exp = find_experiment(s, p.id, experiment)
        checkpoints = list(s.scalars(select(Checkpoint).where(Checkpoint.experiment_id == exp.id)))
        job = s.get(Job, exp.job_id) if exp.job_id else None
        live = _live(s, job.id) if job is not None else None
        name = p.name
        version = _version(s, exp)
    _reconcile(studio, [exp])
    d = experiment_dict(
        studio,
        exp,
        project=name,
        checkpoints=checkpoints,
        job=job,
        live=live,
        warnings=experiment_warnings(exp.task, exp.config),
    )
    d["version"] = version
    return d


def _version(s: Session, exp: Experiment) -> dict[str, Any] | None:
    """The experiment's dataset version, with how many of its split's samples have other labels
    now (``labels_changed_since``: evaluating against the current labels would differ)."""
    from vistudio.db import SplitMember
    from vistudio.db.versions import DatasetVersion
    from vistudio.services.versions import labels_changed_since, watermark

    v = s.get(DatasetVersion, exp.version_id) if exp.version_id is not None else None
    if v is None:
        return None
    changed = 0
    if watermark(s, exp.project_id) > v.watermark and exp.split_id is not None:
        members = s.scalars(select(SplitMember.sample_id).where(SplitMember.split_id == exp.split_id))
        changed = labels_changed_since(s, exp.project_id, v.watermark, members)
    return {"id": v.id, "name": v.name, "number": v.number, "labels_changed_since": changed}


def _series(s: Session, experiment_id: int, names: list[str] | None) -> dict[str, dict[str, list[Any]]]:
    q = select(EpochMetric.name, EpochMetric.epoch, EpochMetric.step, EpochMetric.value).where(
        EpochMetric.experiment_id == experiment_id
    )
    if names:
        q = q.where(EpochMetric.name.in_(names))
    out: dict[str, dict[str, list[Any]]] = {}
    for name, epoch, step, value in s.execute(q.order_by(EpochMetric.name, EpochMetric.step, EpochMetric.id)):
        entry = out.setdefault(name, {"epoch": [], "step": [], "value": []})
        entry["epoch"].append(epoch)
        entry["step"].append(step)
        entry["value"].append(value)
    return out


def experiment_metrics(
    studio: Studio, *, project: str | int, experiment: str | int, names: list[str] | None = None
) -> dict[str, Any]:
    """Every recorded metric as a series: ``{name: {"epoch": [...], "step": [...], "value": [...]}}``.

    Epoch-level metrics (``train_loss``, ``val_accuracy``…) have one point per epoch at the step
    the epoch ended; ``train_loss_step`` and ``lr`` one point every ``log_every_n_steps`` steps."""
    with studio.sessions() as s:
        p = find_project(s, project)
        exp = find_experiment(s, p.id, experiment)
        return {
            "experiment": exp.name,
            "status": exp.status,
            "monitor": exp.config.get("monitor"),
            "series": _series(s, exp.id, names),
        }


def compare_experiments(
    studio: Studio, *, project: str | int, experiments: list[str], metrics: list[str] | None = None
) -> dict[str, Any]:
    """Several experiments side by side: their curves overlaid per metric and a table of their
    best metrics. ``metrics`` defaults to every epoch-level metric they have."""
    refs = list(dict.fromkeys(x for x in experiments if x))
    if not 2 <= len(refs) <= 20:
        raise InvalidInput("compare 2 to 20 experiments")
    with studio.sessions() as s:
        p = find_project(s, project)
        rows = [find_experiment(s, p.id, r) for r in refs]
        series = {e.name: _series(s, e.id, metrics) for e in rows}
        pname = p.name
    _reconcile(studio, rows)
    names = metrics or sorted(
        {n for per in series.values() for n in per if not n.endswith("_step") and n != "lr"}
    )
    curves = {n: {exp: per[n] for exp, per in series.items() if n in per} for n in names}
    table = []
    for e in rows:
        best = {k: v for k, v in e.best_metrics.items() if isinstance(v, int | float) and k in names}
        table.append(
            {
                "experiment": e.name,
                "status": e.status,
                "model": e.config.get("model"),
                "epochs_done": e.epochs_done,
                "best_epoch": e.best_metrics.get("epoch"),
                "best": best,
            }
        )
    return {
        "experiments": [experiment_dict(studio, e, project=pname) for e in rows],
        "metrics": names,
        "series": curves,
        "table": table,
    }
