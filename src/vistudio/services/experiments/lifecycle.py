"""Starting an experiment (its config frozen, its training job queued), renaming, stopping and
deleting it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vistudio.db import LabelClass, Split, utcnow
from vistudio.db.training import Experiment
from vistudio.errors import BadRequest, Conflict, Immutable, InvalidInput, NotFound
from vistudio.jobs.queue import job_dict
from vistudio.ml.weights import WeightsPolicy
from vistudio.services.experiments.cleanup import _release_checkpoints, cleanup_hooks
from vistudio.services.experiments.config import check_name, validate_experiment_config
from vistudio.services.experiments.lookup import find_experiment, split_items
from vistudio.services.experiments.queries import get_experiment
from vistudio.services.experiments.values import split_target_names
from vistudio.services.experiments.views import ACTIVE, _reconcile, experiment_dict
from vistudio.services.projects import find_project
from vistudio.services.versions import version_for_training

if TYPE_CHECKING:
    from vistudio.studio import Studio


_NUMBERS = {1: "one", 2: "two", 3: "three"}


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


def start_experiment(
    studio: Studio, *, project: str | int, config: dict[str, Any] | None = None, name: str | None = None
) -> dict[str, Any]:
    """Validate the config, freeze it into a new experiment and queue its training job.

    The split is ``config["split"]`` or the project's newest one; classes are the project's class
    names, sorted (as the task's ``model_classes`` arranges them), frozen as the model's output order. Returns ``{"job", "experiment", "warnings"}``:
    warnings (an image size too small for the model…) do not stop the training.
    """
    with studio.sessions() as s:
        p = find_project(s, project)
        task = p.task
    cfg = validate_experiment_config(task, config, weights=WeightsPolicy.from_settings(studio.settings))
    from vistudio.ml.tasks import get_training
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
        project_classes = sorted(s.scalars(select(LabelClass.name).where(LabelClass.project_id == p.id)))
        task_cls = get_training(task)
        # the model's classes (semantic segmentation puts a background class first): what the
        # experiment freezes, what class_weights weigh; min_classes counts the project's own
        classes = task_cls.model_classes(project_classes)
        if not classes:  # a task without classes (regression): its outputs are the split's targets
            classes = split_target_names(s, split.id)
        if len(project_classes) < task_cls.min_classes:
            need = _NUMBERS.get(task_cls.min_classes, str(task_cls.min_classes))
            raise BadRequest(
                f"project {p.name!r} needs at least {need} class{'es' if task_cls.min_classes > 1 else ''} "
                f"to train a {task_cls.model_noun}"
            )
        weights = getattr(cfg, "class_weights", None)
        if isinstance(weights, list) and len(weights) != len(classes):
            raise InvalidInput(
                f"class_weights has {len(weights)} values but project {p.name!r} has {len(classes)} "
                f"classes; give one weight per class, in this order: {', '.join(classes)[:500]}",
                details={"classes": classes[:1000]},
            )
        items = {sub: split_items(studio, s, split.id, [sub], classes, task=task) for sub in ("train", "val")}
        if not items["train"]:
            raise BadRequest(f"split {split.name!r} has no labelled training images")
        if not items["val"]:
            raise BadRequest(
                f"split {split.name!r} has no labelled validation images; create a split with a val ratio above 0"
            )
        problem = task_cls.targets_problem([it.target for it in items["train"]])
        problem = problem or task_cls.val_targets_problem([it.target for it in items["val"]])
        if problem:
            raise BadRequest(f"split {split.name!r}: {problem}", details={"split": split.name})
        warnings += task_cls.targets_warnings([it.target for sub in ("train", "val") for it in items[sub]])
        exp_name = check_name(name) if name else _free_name(s, p.id, cfg.model)
        project_id, project_name, split_id, split_name = p.id, p.name, split.id, split.name
    frozen = cfg.model_copy(update={"split": split_name}).model_dump(mode="json")
    version_id = _training_version(studio, project_id, exp_name)
    try:
        with studio.sessions.begin() as s:
            exp = Experiment(
                project_id=project_id,
                split_id=split_id,
                version_id=version_id,
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


def _training_version(studio: Studio, project_id: int, experiment: str) -> int:
    """The dataset version a starting experiment trains on (made now unless the newest one is
    still current); once more if another start made a version with the same number meanwhile."""
    for attempt in range(2):
        try:
            with studio.sessions.begin() as s:
                p = find_project(s, project_id)
                return version_for_training(s, p, actor=f"experiment {experiment}").id
        except IntegrityError:
            if attempt:
                raise Conflict("a dataset version was being made at the same moment; start again") from None
    raise AssertionError("unreachable")


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
