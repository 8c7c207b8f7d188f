"""API: evaluations (one per experiment) and model exports."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from vistudio.api.deps import Id, Limit, Offset, StudioDep
from vistudio.api.deps import client_actor as edit_actor
from vistudio.ml.export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from vistudio.services import edits, evaluation, exports

router = APIRouter(tags=["evaluation"])
ProjectRef = Annotated[str, Path(min_length=1, max_length=200, description="project name or id")]
ExperimentRef = Annotated[str, Path(min_length=1, max_length=200, description="experiment name or id")]
ClassName = Annotated[str | None, Query(max_length=200)]


Subset = Literal["train", "val", "test"]


def _test_subset() -> list[Subset]:
    return ["test"]


class EvaluateRequest(BaseModel):
    project: str = Field(min_length=1, max_length=200)
    experiment: str = Field(min_length=1, max_length=200)
    checkpoint: Literal["best", "last"] = "best"
    subsets: list[Subset] = Field(default_factory=_test_subset, min_length=1, max_length=3)
    # default: the task's (64 for classifiers, 8 for detectors)
    batch_size: int | None = Field(default=None, ge=1, le=evaluation.MAX_BATCH)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # detection and instance segmentation only
    iou: float | None = Field(default=None, gt=0, lt=1, description="matching IoU (default 0.5)")
    score_threshold: float | None = Field(
        default=None, ge=0, le=1, description="score from which predictions count (default: best F1)"
    )
    labels: Literal["version", "current"] = Field(
        default="version",
        description="the ground truth: the experiment's dataset version (default) or the labels as they are now",
    )
    # anomaly detection only: what the decision threshold maximises when score_threshold is not given
    threshold_by: Literal["f1", "youden"] | None = None


class ExportRequest(BaseModel):
    project: str = Field(min_length=1, max_length=200)
    experiment: str = Field(min_length=1, max_length=200)
    format: Literal["onnx", "torchscript"] = "onnx"
    checkpoint: Literal["best", "last"] = "best"
    opset: int = Field(default=DEFAULT_OPSET, ge=MIN_OPSET, le=MAX_OPSET)
    # detectors: the threshold predict uses with the file (checked by the service: 400 outside [0, 1])
    score_threshold: float | None = None


@router.post("/evaluations", status_code=202)
def start_evaluation(studio: StudioDep, body: EvaluateRequest) -> dict[str, Any]:
    """Queue the evaluation of an experiment's checkpoint (replacing any previous evaluation)."""
    return evaluation.start_evaluation(
        studio,
        project=body.project,
        experiment=body.experiment,
        checkpoint=body.checkpoint,
        subsets=list(body.subsets),
        batch_size=body.batch_size,
        device=body.device,
        iou=body.iou,
        score_threshold=body.score_threshold,
        labels=body.labels,
        threshold_by=body.threshold_by,
    )


@router.get("/evaluations/{project}/{experiment}")
def get_evaluation(studio: StudioDep, project: ProjectRef, experiment: ExperimentRef) -> dict[str, Any]:
    return {"evaluation": evaluation.get_evaluation(studio, project=project, experiment=experiment)}


class TagResults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    add: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=100)
    remove: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=100)
    subset: Literal["train", "val", "test"] | None = None
    correct: bool | None = None
    true: str | None = Field(None, max_length=200)
    pred: str | None = Field(None, max_length=200)
    outcome: Literal["tp", "fp", "fn"] | None = None
    present: str | None = Field(None, max_length=200)


@router.post("/evaluations/{project}/{experiment}/tag")
def tag_results(
    studio: StudioDep, project: ProjectRef, experiment: ExperimentRef, body: TagResults, request: Request
) -> dict[str, Any]:
    """Tag every image of the results that pass the filters (those of ``GET …/results``), as one
    undoable change — e.g. all the mistakes, to review them in the Dataset tab."""
    filters = body.model_dump(exclude={"add", "remove"}, exclude_none=True)
    return edits.tag_results(
        studio,
        project=project,
        experiment=experiment,
        filters=filters,
        add=body.add,
        remove=body.remove,
        actor=edit_actor(request),
    )


@router.get("/evaluations/{project}/{experiment}/results")
def list_results(
    studio: StudioDep,
    project: ProjectRef,
    experiment: ExperimentRef,
    subset: Literal["train", "val", "test"] | None = None,
    correct: bool | None = None,
    true: ClassName = None,
    pred: ClassName = None,
    outcome: Literal["tp", "fp", "fn"] | None = None,
    present: ClassName = None,
    sort: Literal[
        "confidence",
        "-confidence",
        "score",
        "-score",
        "fn",
        "fp",
        "ap",
        "iou",
        "-iou",
        "pixel_accuracy",
        "-pixel_accuracy",
        "abs_error",
        "-abs_error",
    ]
    | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Per-image results. Classification: filter by subset, correctness, true and predicted class;
    sort by confidence. Detection: filter by subset and ``outcome`` (images with at least one TP,
    FP or FN at the evaluation's threshold); sort by ``fn`` / ``fp`` (most first) or ``ap``
    (lowest first). Each detection item holds its predictions and ground truth with their outcome.
    Semantic segmentation: filter by subset and ``present`` (a class in the image's ground truth or
    prediction); sort by ``iou`` (lowest first, the default), ``-iou``, ``pixel_accuracy`` or
    ``-pixel_accuracy``; each item holds its per-class IoU and the URLs of its mask layers.
    Regression: filter by subset; sort by ``abs_error`` (the image's mean absolute error over its
    targets, smallest first) or ``-abs_error`` (largest first); each item holds its true and
    predicted values (``truth``, ``prediction``: one per target, in the targets' units)."""
    return evaluation.list_results(
        studio,
        project=project,
        experiment=experiment,
        subset=subset,
        correct=correct,
        true=true,
        pred=pred,
        outcome=outcome,
        present=present,
        sort=sort,
        offset=offset,
        limit=limit,
    )


@router.get("/evaluations/{project}/{experiment}/results/{sample_id}")
def get_result(
    studio: StudioDep, project: ProjectRef, experiment: ExperimentRef, sample_id: Id
) -> dict[str, Any]:
    return {
        "result": evaluation.get_result(studio, project=project, experiment=experiment, sample_id=sample_id)
    }


@router.get(
    "/evaluations/{project}/{experiment}/results/{sample_id}/{layer}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def result_layer(
    studio: StudioDep,
    project: ProjectRef,
    experiment: ExperimentRef,
    sample_id: Id,
    layer: Literal["prediction", "truth", "error"],
    size: Annotated[int | None, Query(ge=16, le=4096, description="longer side at most (tiles)")] = None,
) -> Response:
    """Semantic segmentation: one image's mask layer as an RGBA PNG to lay over the image —
    ``prediction`` or ``truth`` (class colours of the dataset overlays, background transparent,
    ignored pixels hatched grey) or ``error`` (pixels predicted wrong, red)."""
    png = evaluation.segmentation.result_layer(
        studio, project=project, experiment=experiment, sample_id=sample_id, layer=layer, size=size
    )
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/evaluations/{project}/{experiment}/confusion.png", response_class=FileResponse)
def confusion_png(studio: StudioDep, project: ProjectRef, experiment: ExperimentRef) -> FileResponse:
    path = evaluation.confusion_png(studio, project=project, experiment=experiment)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.delete("/evaluations/{project}/{experiment}")
def reset_evaluation(studio: StudioDep, project: ProjectRef, experiment: ExperimentRef) -> dict[str, Any]:
    """Delete the evaluation at once: its results, its files, and its job if it still runs."""
    return evaluation.reset_evaluation(studio, project=project, experiment=experiment)


@router.post("/exports", status_code=202)
def start_export(studio: StudioDep, body: ExportRequest) -> dict[str, Any]:
    """Queue an ONNX or TorchScript export of an experiment's checkpoint, validated against PyTorch."""
    return exports.start_export(
        studio,
        project=body.project,
        experiment=body.experiment,
        format=body.format,
        checkpoint=body.checkpoint,
        opset=body.opset,
        score_threshold=body.score_threshold,
    )


@router.get("/exports")
def list_exports(
    studio: StudioDep,
    project: Annotated[str, Query(min_length=1, max_length=200)],
    experiment: Annotated[str | None, Query(max_length=200)] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    return exports.list_exports(
        studio, project=project, experiment=experiment or None, offset=offset, limit=limit
    )


@router.get("/exports/{export_id}")
def get_export(studio: StudioDep, export_id: Id) -> dict[str, Any]:
    return {"export": exports.get_export(studio, export_id)}


@router.get("/exports/{export_id}/download", response_class=FileResponse)
def download_export(studio: StudioDep, export_id: Id) -> Response:
    url = exports.export_download_url(studio, export_id)
    if url is not None:  # blobs in S3: the client downloads from a short-lived URL
        return RedirectResponse(url, status_code=307)
    path, filename = exports.export_file(studio, export_id)
    return FileResponse(path, media_type="application/octet-stream", filename=filename)


@router.delete("/exports/{export_id}")
def delete_export(studio: StudioDep, export_id: Id) -> dict[str, Any]:
    return exports.delete_export(studio, export_id)
