"""Resuming an experiment: a stopped, failed or finished one continues from its last checkpoint.

The ``last`` checkpoint holds the whole training state (weights, optimiser, learning-rate
schedule, loop counters, RNG states, early-stopping and best/last bookkeeping; see
``ml/training/resume``), so the resumed run continues with the very next batch, as if it had never
stopped. ``epochs`` is the one config key a resume may change: a finished experiment can be given
more epochs (the frozen config records the new count; a cosine schedule is stretched over the new
total of steps from the step reached, and early stopping counts its patience afresh).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from vistudio.db.training import Checkpoint, Experiment
from vistudio.errors import BadRequest, Conflict, InvalidInput
from vistudio.jobs.queue import job_dict
from vistudio.services.experiments.lookup import checkpoint_path, find_experiment
from vistudio.services.experiments.views import ACTIVE, _reconcile, experiment_dict
from vistudio.services.projects import find_project

if TYPE_CHECKING:
    from vistudio.studio import Studio


def _check_state(studio: Studio, exp: Experiment, last: Checkpoint | None) -> None:
    """409 with the reason when the experiment has nothing to resume from."""
    from vistudio.ml.training.resume import check_training_state

    if last is None:
        raise Conflict(
            f"experiment {exp.name!r} has no last checkpoint to resume from: it stopped before its "
            "first training step; start a new experiment instead",
            details={"experiment": exp.name},
        )
    path = checkpoint_path(studio, last.sha256)
    if not path.is_file():
        raise Conflict(
            f"the last checkpoint of experiment {exp.name!r} is missing from the workspace "
            f"({path.name}); it cannot be resumed",
            details={"experiment": exp.name, "sha256": last.sha256},
        )
    try:
        check_training_state(path)  # memory-mapped: the tensors are not read in the request
    except InvalidInput as exc:
        raise Conflict(
            f"the last checkpoint of experiment {exp.name!r} cannot be resumed from: {exc.message}",
            details={"experiment": exp.name, "sha256": last.sha256},
        ) from None


def resume_experiment(
    studio: Studio, *, project: str | int, experiment: str | int, epochs: int | None = None
) -> dict[str, Any]:
    """Queue a training job that continues ``experiment`` from its last checkpoint.

    ``epochs``: the new total number of epochs (default: the config's); it must be more than the
    epochs already done. Refused (409) while the experiment is queued or running, when it has no
    resumable last checkpoint, or when it has no epoch left to train. Returns ``{"job", "experiment"}``.
    """
    from vistudio.ml.tasks import get_training
    from vistudio.ml.training.config import validate_config

    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)):
        raise BadRequest("epochs must be a whole number")
    with studio.sessions() as s:
        p = find_project(s, project)
        exp = find_experiment(s, p.id, experiment)
        project_id, project_name = p.id, p.name
    _reconcile(studio, [exp])
    if exp.status in ACTIVE:
        raise Conflict(f"experiment {exp.name!r} is {exp.status}: it is training already")
    with studio.sessions() as s:
        last = s.scalar(
            select(Checkpoint).where(Checkpoint.experiment_id == exp.id, Checkpoint.kind == "last")
        )
        if last is not None:
            s.expunge(last)
    _check_state(studio, exp, last)
    assert last is not None
    config = dict(exp.config)
    total = int(config.get("epochs") or 0) if epochs is None else epochs
    # the epoch the checkpoint is in: a stop part-way through epoch N+1 has N finished epochs
    if total <= last.epoch:
        done = f"has done {last.epoch} of its {config.get('epochs')} epochs"
        if epochs is None:
            raise Conflict(
                f"experiment {exp.name!r} {done}: nothing is left to train; give more epochs to continue",
                details={"epochs_done": last.epoch, "epochs": config.get("epochs")},
            )
        raise InvalidInput(
            f"epochs must be more than the {last.epoch} epochs experiment {exp.name!r} has done (got {epochs})",
            details={"epochs_done": last.epoch, "epochs": epochs},
        )
    config["epochs"] = total
    validate_config(get_training(exp.task).config_model, config)  # the range of epochs (a 400)
    with studio.sessions.begin() as s:
        row = s.get(Experiment, exp.id, with_for_update=True)
        if row is None or row.status in ACTIVE:  # resumed or started meanwhile
            raise Conflict(f"experiment {exp.name!r} is training already")
        previous = row.status
        row.config = config
        row.status = "queued"
        row.error = None
        row.finished_at = None
    job = studio.queue.enqueue(
        "train",
        {"experiment_id": exp.id, "resume": True, "from_step": last.step, "previous_status": previous},
        project_id=project_id,
    )
    with studio.sessions.begin() as s:
        row = s.get(Experiment, exp.id)
        assert row is not None
        row.job_id = job.id
        checkpoints = list(s.scalars(select(Checkpoint).where(Checkpoint.experiment_id == exp.id)))
        out = experiment_dict(studio, row, project=project_name, checkpoints=checkpoints)
    return {"job": job_dict(job), "experiment": out}
