"""Experiments: configure, train in the background (a job), list, compare, stop, delete.

The helpers at the top (finding an experiment, its checkpoints and the labelled items of a split)
are shared with ``services.evaluation`` and ``services.exports``.

Training runs in a child process (``ml/training/process.py``); the job handler here is its
parent: it records what the child reports (metric rows, job events, checkpoints into the artifact
store), heartbeats through the worker, and turns a cancel into a graceful stop. A retried job (its
worker died) restarts the experiment from epoch 0 with the same seed, after removing what the
interrupted attempt had recorded, so no step is ever recorded twice.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vistudio.db import Annotation, Job, JobEvent, LabelClass, Project, Sample, Split, SplitMember, utcnow
from vistudio.db.training import Checkpoint, EpochMetric, Experiment
from vistudio.errors import BadRequest, Conflict, Immutable, InvalidInput, ModelUnavailable, NotFound
from vistudio.jobs.queue import FINISHED, LeaseLost, job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.ml.weights import WeightsPolicy
from vistudio.registry import Registry
from vistudio.services.projects import find_project

if TYPE_CHECKING:
    from vistudio.ml.training.config import TrainConfig
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


# --- cleanup hooks --------------------------------------------------------------------------------

# Features that keep blobs per experiment (evaluation results, exported models) register a
# function here; deleting an experiment (or its project) calls each one inside the deleting
# transaction so that they release their references: fn(studio, session, experiment).
CleanupHook = Callable[["Studio", Session, Experiment], None]
CLEANUP: Registry[CleanupHook] = Registry("experiment cleanup hook")
register_cleanup = CLEANUP.register


def cleanup_hooks() -> list[CleanupHook]:
    """Every registered cleanup hook, after importing the modules that register one: a process
    that deletes a project (the CLI) need not have imported them for anything else."""
    import vistudio.services.exports  # noqa: F401

    return list(CLEANUP.entries.values())


def _release_checkpoints(studio: Studio, s: Session, experiment_id: int) -> int:
    rows = list(s.scalars(select(Checkpoint).where(Checkpoint.experiment_id == experiment_id)))
    for row in rows:
        studio.store.release(s, CHECKPOINT_KIND, row.sha256)
        s.delete(row)
    return len(rows)


def release_project_experiments(studio: Studio, session: Session, project_id: int) -> None:
    """Release every blob the project's experiments hold (called before a project is deleted)."""
    for exp in session.scalars(select(Experiment).where(Experiment.project_id == project_id)):
        _release_checkpoints(studio, session, exp.id)
        for hook in cleanup_hooks():
            hook(studio, session, exp)


# --- views ----------------------------------------------------------------------------------------

NAME_RE = re.compile(r"^[\w][\w.\-]{0,99}$")
ACTIVE = ("queued", "running")


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def checkpoint_dict(studio: Studio, row: Checkpoint) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "sha256": row.sha256,
        "size": row.size,
        "epoch": row.epoch,
        "step": row.step,
        "metrics": row.metrics,
        "path": str(checkpoint_path(studio, row.sha256)),
        "created_at": _iso(row.created_at),
    }


def clock_text(seconds: float) -> str:
    """``83`` → ``"1:23"``, ``3723`` → ``"1:02:03"``: a time left, as a stopwatch shows it."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def speed_text(images_per_s: float) -> str:
    """``85.2`` → ``"85 img/s"``; below 10, one decimal (``"0.4 img/s"``, not ``"0 img/s"``)."""
    return f"{images_per_s:,.0f} img/s" if images_per_s >= 10 else f"{images_per_s:.1f} img/s"


def live_text(live: dict[str, Any]) -> str:
    """The training job's progress message: ``"epoch 1/10 · 85 img/s · ETA 1:23"`` (steps are the
    job's done/total). Short enough for the CLI's progress bar."""
    text = f"epoch {live['epoch']}/{live['epochs']}"
    if live.get("images_per_s"):
        text += f" · {speed_text(live['images_per_s'])}"
    if live.get("eta_s") is not None:
        text += f" · ETA {clock_text(live['eta_s'])}"
    return text


def _live(s: Session, job_id: int) -> dict[str, Any] | None:
    """The latest ``on_progress`` numbers of a training job (step, images/s, ETA…), if any yet."""
    # the newest progress event is among the last few: at most an epoch and two checkpoint
    # events follow one
    rows = s.scalars(
        select(JobEvent.data)
        .where(JobEvent.job_id == job_id, JobEvent.kind == "metrics")
        .order_by(JobEvent.id.desc())
        .limit(20)
    )
    for data in rows:
        if data.get("scope") == "progress" and isinstance(data.get("live"), dict):
            return dict(data["live"])
    return None


def experiment_warnings(task: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Warnings about a (frozen) config that runs but may not learn well; [] when it cannot be read."""
    from vistudio.ml.tasks import get_training
    from vistudio.ml.training.config import config_warnings

    try:
        return config_warnings(get_training(task).config_model.model_validate(config))
    except (BadRequest, ValueError):
        return []


def experiment_dict(
    studio: Studio,
    exp: Experiment,
    *,
    project: str | None = None,
    checkpoints: list[Checkpoint] | None = None,
    job: Job | None = None,
    live: dict[str, Any] | None = None,
    warnings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": exp.id,
        "name": exp.name,
        "project_id": exp.project_id,
        "task": exp.task,
        "status": exp.status,
        "split": exp.config.get("split"),
        "split_id": exp.split_id,
        "model": exp.config.get("model"),
        "config": exp.config,
        "classes": exp.classes,
        "epochs": exp.config.get("epochs"),
        "epochs_done": exp.epochs_done,
        "monitor": exp.config.get("monitor"),
        "best_metrics": exp.best_metrics,
        "final_metrics": exp.final_metrics,
        "error": exp.error,
        "job_id": exp.job_id,
        "created_at": _iso(exp.created_at),
        "started_at": _iso(exp.started_at),
        "finished_at": _iso(exp.finished_at),
    }
    if project is not None:
        d["project"] = project
    if checkpoints is not None:
        d["checkpoints"] = [checkpoint_dict(studio, c) for c in sorted(checkpoints, key=lambda c: c.kind)]
    if warnings is not None:
        d["warnings"] = warnings
    if job is not None:
        d["live"] = live
        d["job"] = {
            "id": job.id,
            "status": job.status,
            "attempts": job.attempts,
            "cancel_requested": job.cancel_requested,
            "progress": {
                "done": job.progress_done,
                "total": job.progress_total,
                "message": job.progress_message,
            },
        }
    return d


def model_catalog() -> dict[str, Any]:
    """The models that can be trained, with their weights metadata."""
    from vistudio.ml.models import MODELS

    items = [spec.describe() for spec in MODELS.entries.values()]
    return {"items": items, "total": len(items)}


def _reconcile(studio: Studio, experiments: list[Experiment]) -> None:
    """An experiment still marked queued/running whose job has finished (its worker died on its
    last attempt, the job was cancelled before it started…) takes the job's outcome."""
    stale = [e for e in experiments if e.status in ACTIVE]
    if not stale:
        return
    with studio.sessions() as s:
        jobs = {
            j.id: j for j in s.scalars(select(Job).where(Job.id.in_([e.job_id for e in stale if e.job_id])))
        }
    fixes: dict[int, tuple[str, str | None]] = {}
    for e in stale:
        job = jobs.get(e.job_id or -1)
        if job is None:
            fixes[e.id] = ("failed", "the training job was deleted")
        elif job.status in FINISHED and job.status != "succeeded":
            if job.status == "cancelled":
                fixes[e.id] = ("stopped", None)
            else:
                fixes[e.id] = (
                    "failed",
                    f"the training job is {job.status}: {(job.error or {}).get('message')}",
                )
    if not fixes:
        return
    with studio.sessions.begin() as s:
        for exp_id, (status, error) in fixes.items():
            row = s.get(Experiment, exp_id)
            if row is not None and row.status in ACTIVE:
                row.status = status
                row.error = error or row.error
                row.finished_at = row.finished_at or utcnow()
    for e in stale:
        if e.id in fixes:
            e.status, e.error = fixes[e.id][0], fixes[e.id][1] or e.error


# --- create / start -------------------------------------------------------------------------------


def _latest_split(s: Session, project_id: int) -> Split | None:
    return s.scalar(
        select(Split).where(Split.project_id == project_id).order_by(Split.created_at.desc(), Split.id.desc())
    )


def _free_name(s: Session, project_id: int, model: str) -> str:
    taken = set(s.scalars(select(Experiment.name).where(Experiment.project_id == project_id)))
    n = len(taken) + 1
    while f"{model}-{n}" in taken:
        n += 1
    return f"{model}-{n}"


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_RE.match(name):
        raise InvalidInput(
            "an experiment name is 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            details={"name": name[:200]},
        )
    return name


def validate_experiment_config(
    task: str, raw: dict[str, Any] | None, *, weights: WeightsPolicy | None = None
) -> TrainConfig:
    """The task's config model applied to ``raw`` plus what can be checked before training:
    model name, monitored metric, device and precision, pretrained weights present or downloadable
    under ``weights`` (the workspace's model policy; default: the environment's)."""
    from vistudio.ml.models import check_pretrained_available, get_model_spec, weights_file_exists
    from vistudio.ml.tasks import get_training
    from vistudio.ml.training.config import validate_config
    from vistudio.ml.training.trainer import resolve_accelerator, resolve_monitor, resolve_precision

    task_cls = get_training(task)
    config = validate_config(task_cls.config_model, raw)
    spec = get_model_spec(config.model)
    monitor, _ = resolve_monitor(task_cls, config)
    accelerator = resolve_accelerator(config.device)
    resolve_precision(config.precision, accelerator)
    if config.pretrained is True:
        check_pretrained_available(spec, weights)
    if isinstance(config.pretrained, str) and not weights_file_exists(Path(config.pretrained).expanduser()):
        raise ModelUnavailable(
            f"pretrained weights file not found: {config.pretrained[:300]}", details={"model": spec.name}
        )
    return config.model_copy(update={"monitor": monitor})


def start_experiment(
    studio: Studio, *, project: str | int, config: dict[str, Any] | None = None, name: str | None = None
) -> dict[str, Any]:
    """Validate the config, freeze it into a new experiment and queue its training job.

    The split is ``config["split"]`` or the project's newest one; classes are the project's class
    names, sorted, frozen as the model's output order. Returns ``{"job", "experiment", "warnings"}``:
    warnings (an image size too small for the model…) do not stop the training.
    """
    with studio.sessions() as s:
        p = find_project(s, project)
        task = p.task
    cfg = validate_experiment_config(task, config, weights=WeightsPolicy.from_settings(studio.settings))
    from vistudio.ml.training.config import config_warnings

    warnings = config_warnings(cfg)
    with studio.sessions() as s:
        p = find_project(s, project)
        if cfg.split:
            split = s.scalar(select(Split).where(Split.project_id == p.id, Split.name == cfg.split))
            if split is None:
                raise NotFound(f"split {cfg.split!r} not found in project {p.name!r}")
        else:
            split = _latest_split(s, p.id)
            if split is None:
                raise BadRequest(
                    f"project {p.name!r} has no split yet: create one first "
                    f"(vistudio split create {p.name!r}, or the Split tab)",
                    details={"project": p.name},
                )
        classes = sorted(s.scalars(select(LabelClass.name).where(LabelClass.project_id == p.id)))
        if len(classes) < 2:
            raise BadRequest(f"project {p.name!r} needs at least two classes to train a classifier")
        weights = getattr(cfg, "class_weights", None)
        if isinstance(weights, list) and len(weights) != len(classes):
            raise InvalidInput(
                f"class_weights has {len(weights)} values but project {p.name!r} has {len(classes)} "
                f"classes; give one weight per class, in this order: {', '.join(classes)[:500]}",
                details={"classes": classes[:1000]},
            )
        counts = {sub: len(split_items(studio, s, split.id, [sub], classes)) for sub in ("train", "val")}
        if not counts["train"]:
            raise BadRequest(f"split {split.name!r} has no labelled training images")
        if not counts["val"]:
            raise BadRequest(
                f"split {split.name!r} has no labelled validation images; create a split with a val ratio above 0"
            )
        exp_name = check_name(name) if name else _free_name(s, p.id, cfg.model)
        project_id, project_name, split_id, split_name = p.id, p.name, split.id, split.name
    frozen = cfg.model_copy(update={"split": split_name}).model_dump(mode="json")
    try:
        with studio.sessions.begin() as s:
            exp = Experiment(
                project_id=project_id,
                split_id=split_id,
                name=exp_name,
                task=task,
                config=frozen,
                classes=classes,
                status="queued",
                created_at=utcnow(),
            )
            s.add(exp)
            s.flush()
            exp_id = exp.id
    except IntegrityError:
        raise Conflict(f"an experiment named {exp_name!r} already exists in {project_name!r}") from None
    job = studio.queue.enqueue("train", {"experiment_id": exp_id}, project_id=project_id)
    with studio.sessions.begin() as s:
        row = s.get(Experiment, exp_id)
        assert row is not None
        row.job_id = job.id
        out = experiment_dict(studio, row, project=project_name, checkpoints=[], warnings=warnings)
    return {"job": job_dict(job), "experiment": out, "warnings": warnings}


# --- queries --------------------------------------------------------------------------------------


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
    _reconcile(studio, [exp])
    return experiment_dict(
        studio,
        exp,
        project=name,
        checkpoints=checkpoints,
        job=job,
        live=live,
        warnings=experiment_warnings(exp.task, exp.config),
    )


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


# --- changes --------------------------------------------------------------------------------------


def update_experiment(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int,
    name: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rename an experiment. Its config is frozen once it has started: changing it is a 409."""
    with studio.sessions() as s:
        p = find_project(s, project)
        exp = find_experiment(s, p.id, experiment)
    if config is not None:
        raise Immutable(
            f"experiment {exp.name!r} has started: its config is frozen; start a new experiment instead"
        )
    if name is None:
        return get_experiment(studio, project=project, experiment=exp.id)
    new = check_name(name)
    try:
        with studio.sessions.begin() as s:
            row = s.get(Experiment, exp.id)
            assert row is not None
            row.name = new
    except IntegrityError:
        raise Conflict(f"an experiment named {new!r} already exists") from None
    return get_experiment(studio, project=project, experiment=exp.id)


def stop_experiment(studio: Studio, *, project: str | int, experiment: str | int) -> dict[str, Any]:
    """Ask a training to stop: a queued one stops at once; a running one finishes its batch, saves
    its last checkpoint and ends ``stopped`` (within a heartbeat or two)."""
    with studio.sessions() as s:
        p = find_project(s, project)
        exp = find_experiment(s, p.id, experiment)
    _reconcile(studio, [exp])
    if exp.status not in ACTIVE:
        raise Conflict(f"experiment {exp.name!r} is {exp.status}: there is nothing to stop")
    if exp.job_id is not None:
        try:
            job = studio.queue.cancel(exp.job_id)
        except Conflict:
            job = studio.queue.get(exp.job_id)
        if job.status == "cancelled":
            with studio.sessions.begin() as s:
                row = s.get(Experiment, exp.id)
                if row is not None and row.status in ACTIVE:
                    row.status = "stopped"
                    row.finished_at = utcnow()
    return get_experiment(studio, project=project, experiment=exp.id)


def delete_experiment(studio: Studio, *, project: str | int, experiment: str | int) -> dict[str, Any]:
    """Delete an experiment with its metrics and checkpoints (blobs released); refused while it trains."""
    with studio.sessions() as s:
        p = find_project(s, project)
        exp = find_experiment(s, p.id, experiment)
    _reconcile(studio, [exp])
    with studio.sessions.begin() as s:
        row = s.get(Experiment, exp.id)
        if row is None:
            raise NotFound(f"experiment {experiment!r} not found")
        if row.status in ACTIVE:
            raise Conflict(f"experiment {row.name!r} is {row.status}; stop it before deleting it")
        released = _release_checkpoints(studio, s, row.id)
        for hook in cleanup_hooks():
            hook(studio, s, row)
        name = row.name
        s.delete(row)
    with studio.sessions.begin() as s:
        removed = studio.store.gc(s)
    return {"deleted": name, "checkpoints": released, "blobs_removed": removed}


# --- the training job -----------------------------------------------------------------------------

POLL_SECONDS = 0.25
STOP_GRACE_SECONDS = 300.0  # a stop waits this long for the batch in flight and the last checkpoint
MAX_CONFUSION_CLASSES = 100  # a larger per-epoch confusion matrix is not stored in the metrics row


def _reset_attempt(studio: Studio, exp_id: int) -> None:
    """Forget an interrupted attempt: its metric rows and checkpoints (blobs released)."""
    with studio.sessions.begin() as s:
        s.execute(delete(EpochMetric).where(EpochMetric.experiment_id == exp_id))
        released = _release_checkpoints(studio, s, exp_id)
    if released:
        with studio.sessions.begin() as s:
            studio.store.gc(s)


class _Recorder:
    """The parent's side: writes what the child reports into the database and the job's events."""

    def __init__(self, ctx: JobContext, exp_id: int, epochs: int, monitor: str) -> None:
        self.ctx = ctx
        self.studio = ctx.studio
        self.exp_id = exp_id
        self.epochs = epochs
        self.monitor = monitor
        self.total_steps: int | None = None
        self.live: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.pid: int | None = None

    def _event(self, data: dict[str, Any]) -> None:
        self.ctx.queue.event(
            self.ctx.job_id, "metrics", {"experiment_id": self.exp_id, "attempt": self.ctx.attempt, **data}
        )

    def _own(self, s: Session) -> None:
        """Inside a write transaction: this worker still holds the job. A worker whose lease
        expired must not write beside the retry that restarted the experiment."""
        held = s.scalar(
            select(Job.id).where(
                Job.id == self.ctx.job_id, Job.worker == self.ctx.worker, Job.status == "running"
            )
        )
        if held is None:
            self.ctx.lease_lost.set()
            raise LeaseLost(f"job {self.ctx.job_id} is no longer held by {self.ctx.worker}")

    def _rows(self, s: Session, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self._own(s)
        now = utcnow()
        s.add_all(
            EpochMetric(
                experiment_id=self.exp_id, epoch=epoch, step=step, name=k[:64], value=float(v), created_at=now
            )
            for k, v in metrics.items()
            if isinstance(v, int | float)
        )

    def handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "start":
            info = msg["info"]
            self.pid = msg["pid"]
            self.total_steps = info["total_steps"]
            self.ctx.log(
                f"training process {msg['pid']} started",
                pid=msg["pid"],
                **{k: v for k, v in info.items() if k != "preprocess"},
            )
            self._event(
                {
                    "scope": "start",
                    "total_steps": info["total_steps"],
                    "steps_per_epoch": info["steps_per_epoch"],
                    "epochs": info["epochs"],
                }
            )
            self.ctx.progress(0, self.total_steps, f"epoch 1/{self.epochs}", force=True)
        elif kind == "step":
            with self.studio.sessions.begin() as s:
                self._rows(s, msg["epoch"], msg["step"], msg["metrics"])
            self._event(
                {"scope": "step", "epoch": msg["epoch"], "step": msg["step"], "metrics": msg["metrics"]}
            )
        elif kind == "progress":
            self.live = msg["live"]
            self._event({"scope": "progress", "live": self.live})
            self.ctx.progress(self.live["step"], self.total_steps, live_text(self.live))
        elif kind == "epoch":
            self._epoch(msg)
        elif kind == "checkpoint":
            self._checkpoint(msg)
        elif kind == "done":
            self.result = msg["result"]
        elif kind == "error":
            self.error = msg["error"]

    def _epoch(self, msg: dict[str, Any]) -> None:
        epoch, step, metrics = msg["epoch"], msg["step"], msg["metrics"]
        details = dict(msg["details"])
        if len(details.get("confusion") or ()) > MAX_CONFUSION_CLASSES:
            details.pop("confusion")  # n² numbers: kept in the checkpoint file, not in every row update
        summary = {**metrics, "epoch": epoch, "step": step, **details}
        with self.studio.sessions.begin() as s:
            self._rows(s, epoch, step, metrics)
            exp = s.get(Experiment, self.exp_id)
            if exp is not None:
                exp.epochs_done = epoch
                exp.final_metrics = summary
                if msg["best"]:
                    exp.best_metrics = summary
        self._event({"scope": "epoch", "epoch": epoch, "step": step, "metrics": metrics, "best": msg["best"]})
        value = metrics.get(self.monitor)
        text = f"epoch {epoch}/{self.epochs}" + (
            f" · {self.monitor} {value:.3f}" if value is not None else ""
        )
        self.ctx.progress(step, self.total_steps, text, force=True)

    def _checkpoint(self, msg: dict[str, Any]) -> None:
        src = Path(msg["path"])
        store = self.studio.store
        sha = store.write_file(CHECKPOINT_KIND, src, ext=CHECKPOINT_EXT)
        size = src.stat().st_size
        released = False
        with self.studio.sessions.begin() as s:
            self._own(s)
            row = s.scalar(
                select(Checkpoint).where(
                    Checkpoint.experiment_id == self.exp_id, Checkpoint.kind == msg["kind"]
                )
            )
            if row is None:
                row = Checkpoint(
                    experiment_id=self.exp_id, kind=msg["kind"], sha256=sha, size=size, epoch=0, step=0
                )
                s.add(row)
                store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
            elif row.sha256 != sha:
                store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
                store.release(s, CHECKPOINT_KIND, row.sha256)
                released = True
            row.sha256, row.size = sha, size
            row.epoch, row.step, row.metrics = msg["epoch"], msg["step"], msg["metrics"]
            row.created_at = utcnow()
        if released:  # the replaced checkpoint's blob goes unless something else holds it
            with self.studio.sessions.begin() as s:
                store.gc(s)
        src.unlink(missing_ok=True)
        self._event({"scope": "checkpoint", "kind": msg["kind"], "epoch": msg["epoch"], "step": msg["step"]})


def _finish(studio: Studio, exp_id: int, status: str, *, error: str | None = None) -> dict[str, Any]:
    with studio.sessions.begin() as s:
        exp = s.get(Experiment, exp_id)
        if exp is None:
            raise PermanentJobError("the experiment was deleted while it trained")
        exp.status = status
        exp.error = error
        exp.finished_at = utcnow()
        checkpoints = list(s.scalars(select(Checkpoint).where(Checkpoint.experiment_id == exp_id)))
        project = s.get(Project, exp.project_id)
        return experiment_dict(
            studio, exp, project=project.name if project else None, checkpoints=checkpoints
        )


ERROR_CHARS = 4000


def _error_text(error: dict[str, Any]) -> str:
    """The error's message (its start) and the tail of its traceback, within ERROR_CHARS."""
    message = str(error.get("message") or "")[:1000]
    tail = (error.get("traceback") or "")[-(ERROR_CHARS - len(message) - 2) :]
    return f"{message}\n\n{tail}".strip()


@job_handler("train")
def run_training(ctx: JobContext) -> dict[str, Any]:
    """Train one experiment in a child process; see the module docstring."""
    from vistudio.ml.training.process import TrainingProcess
    from vistudio.ml.training.trainer import TrainSpec

    studio = ctx.studio
    exp_id = int(ctx.params["experiment_id"])
    for stale in studio.tmp.glob(f"train-{exp_id}-*"):  # an earlier attempt's working files
        shutil.rmtree(stale, ignore_errors=True)
    if ctx.cancel_requested.is_set():
        # stopped before its worker died: a retry would start over; keep what was saved instead
        _finish(studio, exp_id, "stopped")
        raise JobCancelled()
    _reset_attempt(studio, exp_id)
    with studio.sessions.begin() as s:
        exp = s.get(Experiment, exp_id)
        if exp is None:
            raise PermanentJobError("the experiment of this training job was deleted")
        if exp.split_id is None:
            exp.status, exp.error, exp.finished_at = "failed", "its split was deleted", utcnow()
            raise PermanentJobError("the experiment's split was deleted")
        exp.status = "running"
        exp.error = None
        exp.started_at = utcnow()
        exp.finished_at = None
        exp.epochs_done = 0
        exp.best_metrics = {}
        exp.final_metrics = {}
        project = s.get(Project, exp.project_id)
        items = split_items(studio, s, exp.split_id, ["train", "val"], exp.classes)
        config, classes, name, task = dict(exp.config), list(exp.classes), exp.name, exp.task
    workdir = studio.tmp / f"train-{exp_id}-job{ctx.job_id}-a{ctx.attempt}"
    spec = TrainSpec(
        task=task,
        config=config,
        classes=classes,
        train=[(it.path, it.target) for it in items if it.subset == "train"],
        val=[(it.path, it.target) for it in items if it.subset == "val"],
        workdir=str(workdir),
        meta={"experiment": name, "experiment_id": exp_id, "project": project.name if project else None},
    )
    rec = _Recorder(ctx, exp_id, int(config.get("epochs", 0)), str(config.get("monitor") or ""))
    proc = TrainingProcess(spec)
    stopping_since: float | None = None
    try:
        ctx.progress(0, None, "starting the training process", force=True)
        proc.start()
        while not proc.finished():
            for msg in proc.poll(POLL_SECONDS):
                rec.handle(msg)
            try:
                ctx.check_cancelled()
            except JobCancelled:
                if stopping_since is None:
                    stopping_since = time.monotonic()
                    proc.request_stop()
                    ctx.progress(0, None, "stopping: saving the last checkpoint", force=True)
                elif time.monotonic() - stopping_since > STOP_GRACE_SECONDS:
                    proc.kill()
    except LeaseLost:
        proc.kill()  # another worker owns the job now; it restarts the experiment
        raise
    except Exception as exc:
        proc.kill()
        _finish(studio, exp_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise PermanentJobError(f"training failed: {exc}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if rec.error is not None:
        _finish(studio, exp_id, "failed", error=_error_text(rec.error))
        raise PermanentJobError(f"training failed: {rec.error['message']}")
    if rec.result is None:
        code = proc.exitcode
        if stopping_since is not None:
            reason = "stopped, but the training process did not finish saving in time"
            _finish(studio, exp_id, "stopped", error=reason)
            raise JobCancelled()
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        hint = " (out of memory?)" if code == -9 else ""
        message = f"the training process died ({why}){hint}"
        _finish(studio, exp_id, "failed", error=message)
        raise PermanentJobError(message)
    # a stop asked for just as the training ended on its own still ends it "stopped": the user
    # sees the outcome they asked for, and the checkpoints are the same either way
    if (
        rec.result["status"] == "stopped"
        or stopping_since is not None
        or studio.queue.get(ctx.job_id).cancel_requested
    ):
        _finish(studio, exp_id, "stopped")
        raise JobCancelled()
    out = _finish(studio, exp_id, "succeeded")
    return {
        "experiment": out,
        "training": {k: rec.result[k] for k in ("status", "epochs", "step", "seconds")},
        "live": rec.live,
    }
