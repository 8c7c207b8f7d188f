"""Experiments: start (a training job), list, get, metric series, compare, stop, resume, rename,
delete; and the model catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from vistudio.api.deps import Limit, Offset, StudioDep
from vistudio.api.routes.imports import _inside_roots
from vistudio.errors import InvalidInput
from vistudio.ml.tasks import get_task
from vistudio.services import experiments, projects
from vistudio.studio import Studio

router = APIRouter(prefix="/experiments", tags=["experiments"])
ProjectRef = Annotated[str, Query(min_length=1, max_length=200)]
ExperimentRef = Annotated[str, Field(min_length=1, max_length=200)]
MetricNames = Annotated[list[str] | None, Query(max_length=50)]


class ExperimentRequest(BaseModel):
    project: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200, description="default: MODEL-N")
    config: dict[str, Any] = Field(
        default_factory=dict,
        max_length=100,
        description="training config keys (see README → Training); unknown keys are a 400",
    )


class ResumeRequest(BaseModel):
    epochs: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="the new total of epochs (default: the config's); more than the epochs done",
    )


class ExperimentPatch(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    config: dict[str, Any] | None = Field(default=None, max_length=100, description="always refused: 409")


@router.get("/models")
def models(
    task: str | None = Query(
        default=None, max_length=64, description="the models of this task (default: classification)"
    ),
) -> dict[str, Any]:
    """The model catalog of a task: names, families, sizes, whether pretrained weights are cached locally."""
    return experiments.model_catalog(task)


@router.post("", status_code=202)
def start(studio: StudioDep, body: ExperimentRequest) -> dict[str, Any]:
    """Create an experiment with a frozen config and queue its training → ``{"job", "experiment"}``."""
    config = dict(body.config)
    weights = config.get("pretrained")
    if isinstance(weights, str):
        config["pretrained"] = _weights_file(studio, body.project, weights)
    return experiments.start_experiment(studio, project=body.project, config=config, name=body.name)


# what the detectors' and segmenters' ``pretrained`` names: weights, not a file
DETECTOR_WEIGHTS = ("none", "backbone", "coco", "full")


def _weights_file(studio: Studio, project: str, weights: str) -> str:
    """A string ``pretrained``: a weights file on the server, taken only from the import roots —
    except the words of :data:`DETECTOR_WEIGHTS` in a project whose task has objects (its
    detectors take those words and no file)."""
    task = projects.get_project(studio, project)["task"]
    if get_task(task).has_objects and weights.strip().lower() in DETECTOR_WEIGHTS:
        return weights
    path = Path(weights.strip())
    if "\x00" in weights or not path.is_absolute():
        raise InvalidInput(
            f"pretrained must be true, false or the absolute path of a weights file on the server "
            f"for a {task} project, not {weights[:100]!r}",
            details={"key": "pretrained"},
        )
    try:
        return str(_inside_roots(path, studio.settings.import_roots))
    except InvalidInput as exc:
        raise InvalidInput(
            "the pretrained weights file is outside the folders this server may read from "
            "(setting VISTUDIO_IMPORT_ROOTS)",
            details={"key": "pretrained", **exc.details},
        ) from exc


@router.get("")
def list_experiments(
    studio: StudioDep,
    project: ProjectRef,
    status: Annotated[str | None, Query(max_length=100, description="comma-separated statuses")] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    return experiments.list_experiments(studio, project=project, status=status, offset=offset, limit=limit)


@router.get("/compare")
def compare(
    studio: StudioDep,
    project: ProjectRef,
    experiments_: Annotated[
        list[Annotated[str, Query(max_length=200)]], Query(alias="experiments", min_length=2, max_length=20)
    ],
    metrics: MetricNames = None,
) -> dict[str, Any]:
    """Overlaid curves (one series per experiment and metric) and a table of best metrics."""
    return experiments.compare_experiments(studio, project=project, experiments=experiments_, metrics=metrics)


@router.get("/{project}/{experiment}")
def get_experiment(studio: StudioDep, project: str, experiment: str) -> dict[str, Any]:
    return {"experiment": experiments.get_experiment(studio, project=project, experiment=experiment)}


@router.patch("/{project}/{experiment}")
def update_experiment(
    studio: StudioDep, project: str, experiment: str, body: ExperimentPatch
) -> dict[str, Any]:
    """Rename; a config change is refused (409): configs are frozen when training starts."""
    return {
        "experiment": experiments.update_experiment(
            studio, project=project, experiment=experiment, name=body.name, config=body.config
        )
    }


@router.get("/{project}/{experiment}/metrics")
def metrics(studio: StudioDep, project: str, experiment: str, names: MetricNames = None) -> dict[str, Any]:
    """Metric series: ``{"series": {name: {"epoch": [...], "step": [...], "value": [...]}}}``."""
    return experiments.experiment_metrics(studio, project=project, experiment=experiment, names=names)


@router.post("/{project}/{experiment}/stop", status_code=202)
def stop(studio: StudioDep, project: str, experiment: str) -> dict[str, Any]:
    """Stop gracefully: the batch in flight finishes and the last checkpoint is saved."""
    return {"experiment": experiments.stop_experiment(studio, project=project, experiment=experiment)}


@router.post("/{project}/{experiment}/resume", status_code=202)
def resume(
    studio: StudioDep, project: str, experiment: str, body: ResumeRequest | None = None
) -> dict[str, Any]:
    """Continue a stopped, failed or finished experiment from its last checkpoint (weights,
    optimiser, schedule, position in the epoch, RNG states) → ``{"job", "experiment"}``; 409 while
    it trains or when it has nothing to resume from."""
    epochs = body.epochs if body is not None else None
    return experiments.resume_experiment(studio, project=project, experiment=experiment, epochs=epochs)


@router.delete("/{project}/{experiment}")
def delete(studio: StudioDep, project: str, experiment: str) -> dict[str, Any]:
    """Delete an experiment with its metrics and checkpoints; 409 while it trains."""
    return experiments.delete_experiment(studio, project=project, experiment=experiment)
