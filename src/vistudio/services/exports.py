"""Model exports: ONNX or TorchScript files of an experiment's checkpoint, validated against PyTorch.

An export is a job (kind ``export``). It rebuilds the model from the checkpoint, writes the file
with its metadata embedded, runs the same real images of the split (up to ``PARITY_IMAGES`` test
images, through :mod:`vistudio.ml.preprocess`) through the exported file and through eager PyTorch,
and records the largest logit/probability difference and the top-1 agreement. The file lands at
``<workspace>/exports/<project>/<experiment>-<id>/<name>.onnx|.pt`` beside ``<name>.json`` (metadata
and validation), and is also kept as an artifact blob (kind ``export``). The path is stored on the
export's row: renaming the experiment later moves nothing.

Detectors (detection, instance segmentation) export to ONNX only, the whole torchvision model with
its post-processing, one image per call (:mod:`vistudio.ml.export.detection`). Their check runs
the split's images (decoded as evaluation decodes them) through PyTorch and ONNX Runtime and
matches the detections box by box (same class, IoU ≥ 0.99, |Δscore| < 1e-3, masks IoU ≥ 0.99);
a mismatch fails the export and says where.

Oriented detectors (rotated boxes) export to ONNX only too, up to their decoded candidates — a
prepared ``(B, 3, S, S)`` batch in, every location's rotated box and scores out —, since rotated
NMS is no ONNX operator: the runner (:mod:`vistudio.ml.inference.onnx_oriented`) prepares the
batch and selects the detections with the very NumPy functions the PyTorch model runs
(:mod:`vistudio.ml.export.oriented`). Their check matches the detections one by one like the other
detectors', by rotated IoU (≥ 0.99, |Δscore| < 1e-3).

Segmenters (semantic segmentation) export to ONNX or TorchScript like classifiers — the network
alone, preprocessed ``(N, 3, S, S)`` batch in, ``(N, K, S, S)`` logits out —; the label map is made
after the runtime by the evaluation's own upsampling and argmax (:mod:`vistudio.ml.export.segmentation`
says why). Their check compares the logits and the label maps at each image's own size: the share
of pixels labelled differently fails the export above ``PIXEL_TOLERANCE``.

Regressors export to ONNX or TorchScript with the training z-score undone inside the graph (output
``values`` in the targets' units, :mod:`vistudio.ml.export.regression`); their check fails the
export when a value differs from PyTorch's by more than 1e-3 of its target's standard deviation.

A detector's export also records the **score threshold** to use with it: the one asked for, else
the confidence that maximises F1 in the experiment's finished evaluation of the same checkpoint,
else the training configuration's. It is stored in the file's metadata (``score_threshold`` and
``score_threshold_source``: ``given``, ``evaluation`` or ``training``) and ``vistudio predict``
and the ``detect_onnx`` stage keep the detections that score at least it unless told otherwise.
The graph's own post-processing keeps everything down to the lower of that threshold and the
training configuration's (``graph_score_threshold``), so a lower threshold can still be chosen at
prediction time. An oriented detector's file records that lower one as ``selection_score_threshold``
(its selection runs outside the graph, so predict may go under it too).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vistudio.db import Project, utcnow
from vistudio.db.training import Checkpoint, Evaluation, Experiment, ModelExport
from vistudio.errors import BadRequest, Conflict, NotFound
from vistudio.jobs.queue import FINISHED, LeaseLost, job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.ml.export import DEFAULT_OPSET, FORMATS, MAX_OPSET, MIN_OPSET
from vistudio.ml.inference.onnx_anomaly import anomaly_props, is_anomaly_task
from vistudio.ml.inference.onnx_oriented import is_oriented_task
from vistudio.ml.inference.regression import is_regression_task, regression_props
from vistudio.ml.tasks import get_task
from vistudio.pipelines.saver import safe_name
from vistudio.services.experiments import (
    checkpoint_path,
    experiment_items,
    find_experiment,
    register_cleanup,
    update_row,
)
from vistudio.services.projects import find_project
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.storage.blobs import sha256_file
from vistudio.studio import Studio

EXPORT_KIND = "export"  # artifact kind of exported model blobs
CHECKPOINT_KINDS = ("best", "last")
ACTIVE_EXPERIMENT = ("draft", "queued", "running")
PARITY_IMAGES = 64
# the formats a detector (a model of a task whose targets are objects) can be exported to
DETECTOR_FORMATS: tuple[str, ...] = ("onnx",)


def is_detector(task: str) -> bool:
    """Whether models of ``task`` are exported as detectors (the task's targets are objects)."""
    try:
        return get_task(task).is_detector
    except (KeyError, TypeError):  # a task this version does not know: not a detector
        return False


def is_segmenter(task: str) -> bool:
    """Whether models of ``task`` label every pixel (a ``dense`` task: semantic segmentation)."""
    try:
        return get_task(task).dense
    except (KeyError, TypeError):  # a task this version does not know
        return False


def formats_for(task: str) -> tuple[str, ...]:
    """The formats a model of ``task`` can be exported to."""
    return DETECTOR_FORMATS if is_detector(task) else tuple(FORMATS)


def check_score_threshold(value: Any) -> float | None:
    """``value`` as a score threshold (a number in [0, 1]), None when not given; else a 400."""
    if value is None:
        return None
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise BadRequest(
            f"score_threshold must be a number between 0 and 1, got {str(value)[:40]!r}",
            details={"score_threshold": str(value)[:40]},
        )
    return number


def export_score_threshold(
    session: Session, exp: Experiment, ckpt: Checkpoint, given: float | None
) -> tuple[float, str]:
    """The score threshold a detector's export records, and where it comes from: ``given``; else
    ``evaluation`` (the confidence that maximises F1 in the experiment's finished evaluation of
    the same checkpoint); else ``training`` (the experiment's configuration)."""
    if given is not None:
        return given, "given"
    ev = session.scalar(select(Evaluation).where(Evaluation.experiment_id == exp.id))
    if ev is not None and ev.status == "succeeded" and ev.checkpoint_sha256 == ckpt.sha256:
        best = (ev.metrics or {}).get("best_f1_threshold")
        if isinstance(best, int | float) and 0.0 <= float(best) <= 1.0:
            return float(best), "evaluation"
    return float((exp.config or {}).get("score_threshold", 0.05)), "training"


# --- shared with services.evaluation --------------------------------------------------------------


def experiment_dir(studio: Studio, project: Project, exp: Experiment) -> Path:
    """``<workspace>/exports/<project>/<experiment>-<id>/``: readable names, made safe for any
    filesystem; the experiment's id keeps two experiments whose safe names agree ("a b", "a-b",
    two non-Latin names) apart. Callers store the path they write to, so a rename moves nothing."""
    return studio.home / "exports" / safe_name(project.name, 100) / f"{safe_name(exp.name, 100)}-{exp.id}"


def resolve(session: Session, project: str | int, experiment: str | int) -> tuple[Project, Experiment]:
    """The project (name or id) and its experiment (name or id)."""
    p = find_project(session, project)
    ref = str(experiment)
    if ref.isdigit() and not (ref.isascii() and len(ref) <= 18):
        # not a database id (too long, or non-ASCII digits like "²"): look it up by name only
        row = session.scalar(select(Experiment).where(Experiment.project_id == p.id, Experiment.name == ref))
        if row is None:
            raise NotFound(f"experiment {ref[:80]!r} not found in this project")
        return p, row
    return p, find_experiment(session, p.id, experiment)


def ready_checkpoint(session: Session, exp: Experiment, kind: str) -> Checkpoint:
    """The experiment's ``kind`` checkpoint, or a 409 saying why it cannot be used yet."""
    if kind not in CHECKPOINT_KINDS:
        raise BadRequest(f"checkpoint must be 'best' or 'last', got {kind[:40]!r}")
    if exp.status in ACTIVE_EXPERIMENT:
        raise Conflict(
            f"experiment {exp.name!r} is {exp.status}: wait until its training has finished "
            "(or stop it) before evaluating or exporting it",
            details={"experiment": exp.name, "status": exp.status},
        )
    rows = {c.kind: c for c in session.scalars(select(Checkpoint).where(Checkpoint.experiment_id == exp.id))}
    if not rows:
        raise Conflict(
            f"experiment {exp.name!r} has no checkpoint (its training saved none)",
            details={"experiment": exp.name, "status": exp.status},
        )
    if kind not in rows:
        raise Conflict(
            f"experiment {exp.name!r} has no {kind} checkpoint; it has: {', '.join(sorted(rows))}",
            details={"experiment": exp.name, "checkpoints": sorted(rows)},
        )
    return rows[kind]


def checkpoint_file(studio: Studio, ckpt: Checkpoint) -> Path:
    path = checkpoint_path(studio, ckpt.sha256)
    if not path.is_file():
        raise Conflict(
            f"the {ckpt.kind} checkpoint file is missing from the workspace ({path.name}); "
            "run `vistudio doctor`",
            details={"sha256": ckpt.sha256},
        )
    return path


def checkpoints_of(studio: Studio, experiment_id: int) -> list[dict[str, Any]]:
    """The experiment's checkpoints whose files exist (for pickers)."""
    with studio.sessions() as s:
        rows = list(
            s.scalars(
                select(Checkpoint).where(Checkpoint.experiment_id == experiment_id).order_by(Checkpoint.kind)
            )
        )
    return [
        {"kind": c.kind, "epoch": c.epoch, "step": c.step, "metrics": c.metrics, "size": c.size}
        for c in rows
        if checkpoint_path(studio, c.sha256).is_file()
    ]


def finished_experiments(studio: Studio, project: str | int) -> list[dict[str, Any]]:
    """Experiments that finished training and kept at least one checkpoint, newest first."""
    with studio.sessions() as s:
        p = find_project(s, project)
        with_ckpt = select(Checkpoint.experiment_id).distinct()
        rows = list(
            s.scalars(
                select(Experiment)
                .where(
                    Experiment.project_id == p.id,
                    Experiment.status.not_in(ACTIVE_EXPERIMENT),
                    Experiment.id.in_(with_ckpt),
                )
                .order_by(Experiment.created_at.desc(), Experiment.id.desc())
            )
        )
    return [
        {
            "id": e.id,
            "name": e.name,
            "status": e.status,
            "model": (e.config or {}).get("model"),
            "classes": len(e.classes or []),
            "best_metrics": e.best_metrics,
            "finished_at": e.finished_at.isoformat() + "Z" if e.finished_at else None,
        }
        for e in rows
    ]


# --- exports ----------------------------------------------------------------------------------------


def export_dict(row: ModelExport, *, project: str, experiment: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "project": project,
        "experiment": experiment,
        "experiment_id": row.experiment_id,
        "format": row.format,
        "checkpoint": row.checkpoint_kind,
        "options": row.options,
        "status": row.status,
        "job_id": row.job_id,
        "path": row.path,
        "metadata_path": str(Path(row.path).with_suffix(".json")) if row.path else None,
        "filename": Path(row.path).name if row.path else None,
        "sha256": row.sha256,
        "size": row.size,
        "validation": row.validation,
        "error": row.error,
        "download_url": f"/api/v1/exports/{row.id}/download",
        "created_at": row.created_at.isoformat() + "Z",
        "finished_at": row.finished_at.isoformat() + "Z" if row.finished_at else None,
    }


def default_score_threshold(
    studio: Studio, *, project: str | int, experiment: str | int, checkpoint: str = "best"
) -> dict[str, Any] | None:
    """The score threshold an export of the experiment's ``checkpoint`` records when none is
    given, ``{"value", "source"}``; None for a model that is not a detector or a checkpoint that
    cannot be exported yet."""
    with studio.sessions() as s:
        _, exp = resolve(s, project, experiment)
        if not is_detector(exp.task):
            return None
        try:
            ckpt = ready_checkpoint(s, exp, checkpoint)
        except (BadRequest, Conflict):
            return None
        value, source = export_score_threshold(s, exp, ckpt, None)
    return {"value": value, "source": source}


def start_export(
    studio: Studio,
    *,
    project: str,
    experiment: str,
    format: str = "onnx",
    checkpoint: str = "best",
    opset: int = DEFAULT_OPSET,
    score_threshold: float | None = None,
) -> dict[str, Any]:
    """Check the request and queue the export job; returns ``{"job", "export"}``. A detector's
    export records ``score_threshold`` (see the module's docstring for its default)."""
    given = check_score_threshold(score_threshold)
    if format not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}, got {format[:40]!r}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadRequest(f"opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    with studio.sessions() as s:
        p, exp = resolve(s, project, experiment)
        ckpt = ready_checkpoint(s, exp, checkpoint)
        checkpoint_file(studio, ckpt)
        exp_id, exp_name, pname = exp.id, exp.name, p.name
        detector = is_detector(exp.task)
        if detector and format not in DETECTOR_FORMATS:
            raise BadRequest(
                f"{exp.task.replace('_', ' ')} models export to {', '.join(DETECTOR_FORMATS)} "
                f"only, not {format}",
                details={"task": exp.task, "formats": list(DETECTOR_FORMATS)},
            )
        if not detector and given is not None:
            raise BadRequest(
                f"a score threshold is for models that find objects; {exp.task.replace('_', ' ')} "
                "models have none",
                details={"task": exp.task},
            )
        threshold = export_score_threshold(s, exp, ckpt, given) if detector else None
    options: dict[str, Any] = {"opset": opset} if format == "onnx" else {}
    if threshold is not None:
        options |= {"score_threshold": threshold[0], "score_threshold_source": threshold[1]}
    with studio.sessions.begin() as s:
        row = ModelExport(
            experiment_id=exp_id,
            checkpoint_kind=checkpoint,
            format=format,
            options=options,
            status="queued",
            created_at=utcnow(),
        )
        s.add(row)
        s.flush()
        export_id = row.id
    job = studio.queue.enqueue("export", {"export_id": export_id}, project_id=p.id, max_attempts=2)
    with studio.sessions.begin() as s:
        queued = s.get(ModelExport, export_id)
        if queued is None:  # deleted in the meantime: the job will find nothing and stop
            raise NotFound(f"export {export_id} was deleted")
        queued.job_id = job.id
        s.flush()
        out = export_dict(queued, project=pname, experiment=exp_name)
    return {"job": job_dict(job), "export": out}


def export_path(studio: Studio, row: ModelExport, exp: Experiment, project: Project) -> Path:
    """Where the export's file goes: a readable name that ends with the export's id, so that two
    exports of the same checkpoint and format (even running at once) never share a file."""
    if row.path:  # decided by an earlier attempt
        return studio.home / row.path
    opts = f"-opset{row.options.get('opset')}" if row.format == "onnx" else "-torchscript"
    name = safe_name(f"{exp.name}-{row.checkpoint_kind}{opts}", 120)
    return experiment_dir(studio, project, exp) / f"{name}-{row.id}.{FORMATS[row.format]}"


def _parity_items(studio: Studio, exp: Experiment) -> list[str]:
    """Up to PARITY_IMAGES real images of the split: test first, then val, then train."""
    if exp.split_id is None:
        return []
    paths: list[str] = []
    with studio.sessions() as s:
        for subset in ("test", "val", "train"):
            for it in experiment_items(studio, s, exp, [subset]):
                if Path(it.path).is_file():
                    paths.append(it.path)
                if len(paths) >= PARITY_IMAGES:
                    return paths
    return paths


def _parity_inputs(
    studio: Studio, exp: Experiment, read: Callable[[str], Any], noise: Callable[[Any], list[Any]]
) -> tuple[list[Any], str]:
    """What an export is checked on, and where it comes from: the split's images
    (:func:`_parity_items`) as ``read`` makes them (an unreadable one is simply not used), or,
    when none can be read, seeded noise from ``noise(rng)`` rather than no check at all."""
    import numpy as np

    inputs = []
    for path in _parity_items(studio, exp):
        try:
            inputs.append(read(path))
        except Exception:  # an unreadable image is simply not used for the check
            continue
    if inputs:
        return inputs, "split images"
    return noise(np.random.default_rng(0)), "random inputs (the split has no readable images)"


def _image_inputs(studio: Studio, exp: Experiment, pre: dict[str, Any]) -> tuple[list[Any], str]:
    """A classifier's (or regressor's, anomaly model's) check inputs: preprocessed arrays."""
    import numpy as np

    from vistudio.ml.preprocess import eval_array, open_rgb

    size = (int(pre["input_size"][0]), int(pre["input_size"][1]))
    return _parity_inputs(
        studio,
        exp,
        lambda path: eval_array(open_rgb(path, draft_size=max(size)), pre),
        lambda rng: list(rng.standard_normal((8, 3, *size)).astype(np.float32)),
    )


def _detector_inputs(studio: Studio, exp: Experiment, image_size: int) -> tuple[list[Any], str]:
    """A detector's check inputs: (3, H, W) images in 0..1, each as its runner reads it."""
    import numpy as np

    from vistudio.ml.inference.onnx import detection_input

    return _parity_inputs(
        studio,
        exp,
        lambda path: detection_input(path, image_size)[0],
        lambda rng: [rng.random((3, image_size, image_size - 8 * i), dtype=np.float32) for i in range(4)],
    )


@job_handler("export")
def run_export(ctx: JobContext) -> dict[str, Any]:
    studio = ctx.studio
    export_id = ctx.params.get("export_id")
    with studio.sessions() as s:
        row = s.get(ModelExport, export_id) if export_id else None
        if row is None or row.job_id not in (None, ctx.job_id):
            raise PermanentJobError("this export was deleted before it ran")
        exp = s.get(Experiment, row.experiment_id)
        assert exp is not None
        project = s.get(Project, exp.project_id)
        assert project is not None
        ckpt = ready_checkpoint(s, exp, row.checkpoint_kind)
        s.expunge_all()
    dest = export_path(studio, row, exp, project)
    rel = dest.relative_to(studio.home).as_posix()
    update_row(studio, ModelExport, row.id, status="running", error=None, job_id=ctx.job_id, path=rel)
    try:
        result = _export(ctx, row, exp, project, ckpt, dest)
    except LeaseLost:  # another worker runs it now, into the same file: leave it alone
        raise
    except BaseException as exc:
        # a failed or cancelled export leaves no half-written or unvalidated file behind
        for leftover in (dest, dest.with_suffix(".json")):
            leftover.unlink(missing_ok=True)
        if isinstance(exc, JobCancelled):
            update_row(studio, ModelExport, row.id, status="cancelled", finished_at=utcnow())
        elif isinstance(exc, Exception):
            message = (getattr(exc, "message", None) or str(exc))[:2000]
            update_row(studio, ModelExport, row.id, status="failed", error=message)
        raise
    return {"export": result}


def _export(
    ctx: JobContext, row: ModelExport, exp: Experiment, project: Project, ckpt: Checkpoint, dest: Path
) -> dict[str, Any]:
    from vistudio.ml.checkpoint import load_checkpoint
    from vistudio.ml.inference.onnx import metadata_props

    studio = ctx.studio
    ctx.progress(0, 4, "loading the checkpoint", force=True)
    model, meta = load_checkpoint(checkpoint_file(studio, ckpt), device="cpu")
    pre = meta["preprocess"]
    size = (int(pre["input_size"][0]), int(pre["input_size"][1]))
    task = meta.get("task", "classification")
    extra: dict[str, Any] = {
        "project": project.name,
        "experiment": exp.name,
        "checkpoint": ckpt.kind,
        "checkpoint_sha256": ckpt.sha256,
        "epoch": str(ckpt.epoch),
        "exported_at": utcnow().isoformat() + "Z",
        "exporter": "vistudio",
    }
    if is_oriented_task(task):
        extra |= _oriented_props(meta, row.options)
    elif is_detector(task):
        extra |= _detector_props(meta, row.options)
    elif is_regression_task(task):
        extra |= regression_props(meta)
    elif is_anomaly_task(task):
        threshold, source = _anomaly_threshold(studio, exp, ckpt, meta)
        extra |= anomaly_props(meta, threshold=threshold, source=source)
    elif is_segmenter(task):
        from vistudio.ml.export.segmentation import segmenter_props
        from vistudio.services.evaluation.segmentation import model_colours

        with studio.sessions() as s:  # the evaluation's palette, so that predict writes the same PNGs
            colours = model_colours(s, project.id, list(meta["classes"]))
        extra |= segmenter_props(meta, colours=colours)
    props = metadata_props(
        model=meta["model"], classes=list(meta["classes"]), preprocess=pre, task=task, extra=extra
    )
    ctx.check_cancelled()
    if is_oriented_task(task):
        if row.format not in DETECTOR_FORMATS:
            raise PermanentJobError(f"{task.replace('_', ' ')} models export to ONNX only")
        validation = _export_oriented(ctx, row, exp, model, meta, props, dest)
    elif is_detector(task):
        if row.format not in DETECTOR_FORMATS:
            raise PermanentJobError(f"{task.replace('_', ' ')} models export to ONNX only")
        validation = _export_detector(ctx, row, exp, model, meta, props, dest)
    elif is_segmenter(task):
        validation = _export_segmenter(ctx, row, exp, model, pre, size, props, dest)
    elif is_regression_task(task):
        validation = _export_regressor(ctx, row, exp, model, meta, props, dest)
    elif is_anomaly_task(task):
        validation = _export_anomaly(ctx, row, exp, model, meta, props, dest)
    else:
        validation = _export_classifier(ctx, row, exp, model, pre, size, props, dest)
    return _store(ctx, row, exp, project, props, validation, dest)


def graph_score_threshold(meta: dict[str, Any], options: dict[str, Any]) -> float:
    """The score threshold of the exported graph's own post-processing: the lower of the training
    configuration's and the one the export records (so that predict can still go lower)."""
    trained = float((meta.get("config") or {}).get("score_threshold", 0.05))
    recorded = options.get("score_threshold")
    return trained if recorded is None else min(trained, float(recorded))


def _detector_props(meta: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """What a detector's file says about its inputs, outputs and post-processing."""
    from vistudio.ml.export.detection import INPUT_NAME, output_names

    config = meta.get("config") or {}
    masks = get_task(meta.get("task", "detection")).masks
    graph = graph_score_threshold(meta, options)
    recorded = options.get("score_threshold")
    return {
        "input_name": INPUT_NAME,
        "input_layout": "CHW",  # one image per call, any height and width, RGB 0..1
        "output_name": ",".join(output_names(masks)),
        "output_names": output_names(masks),
        "batch": "1",
        # what predict keeps by default; the graph itself keeps down to graph_score_threshold
        "score_threshold": str(float(recorded) if recorded is not None else graph),
        "score_threshold_source": str(options.get("score_threshold_source") or "training"),
        "graph_score_threshold": str(graph),
        "nms_iou": str(float(config.get("nms_iou", 0.5))),
        "detections_per_image": str(int(config.get("detections_per_image", 100))),
    }


def _export_detector(
    ctx: JobContext,
    row: ModelExport,
    exp: Experiment,
    model: Any,
    meta: dict[str, Any],
    props: dict[str, str],
    dest: Path,
) -> dict[str, Any]:

    from vistudio.ml.export import detection as det_export
    from vistudio.ml.inference.onnx import OnnxDetector

    studio = ctx.studio
    image_size = int(max(meta["preprocess"]["input_size"]))
    graph_threshold = graph_score_threshold(meta, row.options)
    det_export.set_score_threshold(model, graph_threshold)
    ctx.progress(1, 4, "exporting to onnx", force=True)
    det_export.export_detector_onnx(
        model, dest, image_size=image_size, props=props, opset=int(row.options.get("opset", 17))
    )
    ctx.check_cancelled()
    ctx.progress(2, 4, "validating against PyTorch", force=True)
    images, source = _detector_inputs(studio, exp, image_size)
    runner = OnnxDetector(dest)
    pairs = []
    for arr in images:
        ctx.check_cancelled()
        pairs.append((det_export.pytorch_detections(model, arr), runner.detect(arr)))
    config = meta.get("config") or {}
    validation = {
        **det_export.detection_parity(
            pairs,
            score_threshold=graph_threshold,
            detections_per_image=int(config.get("detections_per_image", 100)),
        ),
        "source": source,
        "against": "PyTorch (eager, CPU)",
        "runtime": "onnxruntime (CPU)",
    }
    if not validation["passed"]:
        first = validation["fault_examples"][0]
        raise PermanentJobError(
            f"the exported detector disagrees with PyTorch on {validation['faults']} detection(s) of "
            f"{validation['images']} image(s) (first: image {first['image']}, {first['side']} side, "
            f"score {first['score']:.4f}, {first['why']}); tolerances: box IoU ≥ {det_export.BOX_IOU}, "
            f"|Δscore| < {det_export.SCORE_TOL}, mask IoU ≥ {det_export.MASK_IOU}"
        )
    return validation


def _oriented_props(meta: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """What an oriented detector's file says about its input, outputs and selection: the recorded
    score threshold (predict's default) and the one the export is checked at (the graph threshold
    of the other detectors: the lower of it and the training configuration's)."""
    from vistudio.ml.export.oriented import oriented_props

    selection = graph_score_threshold(meta, options)
    recorded = options.get("score_threshold")
    return oriented_props(
        meta,
        score_threshold=float(recorded) if recorded is not None else selection,
        source=str(options.get("score_threshold_source") or "training"),
        selection_threshold=selection,
    )


def _export_oriented(
    ctx: JobContext,
    row: ModelExport,
    exp: Experiment,
    model: Any,
    meta: dict[str, Any],
    props: dict[str, str],
    dest: Path,
) -> dict[str, Any]:
    """An oriented detector's file (its decoded candidates; the selection runs in NumPy, see
    :mod:`vistudio.ml.export.oriented`), checked against eager PyTorch detection by detection on
    the split's images decoded as evaluation decodes them (seeded noise when none is readable),
    both sides selecting at the file's ``selection_score_threshold``; a failed check fails the job."""

    from vistudio.ml.export import oriented as obb_export
    from vistudio.ml.inference.onnx_oriented import OnnxOrientedDetector

    image_size = int(max(meta["preprocess"]["input_size"]))
    selection = float(props["selection_score_threshold"])
    model.score_threshold = selection
    ctx.progress(1, 4, "exporting to onnx", force=True)
    obb_export.export_oriented_onnx(
        model, dest, image_size=image_size, props=props, opset=int(row.options.get("opset", 17))
    )
    ctx.check_cancelled()
    ctx.progress(2, 4, "validating against PyTorch", force=True)
    images, source = _detector_inputs(ctx.studio, exp, image_size)
    runner = OnnxOrientedDetector(dest)
    pairs = []
    for arr in images:
        ctx.check_cancelled()
        pairs.append(
            (obb_export.pytorch_detections(model, arr), runner.detect(arr, score_threshold=selection))
        )
    validation = {
        **obb_export.oriented_parity(pairs, score_threshold=selection),
        "source": source,
        "against": "PyTorch (eager, CPU)",
        "runtime": "onnxruntime (CPU)",
    }
    if not validation["passed"]:
        first = validation["fault_examples"][0]
        raise PermanentJobError(
            f"the exported oriented detector disagrees with PyTorch on {validation['faults']} detection(s) "
            f"of {validation['images']} image(s) (first: image {first['image']}, {first['side']} side, "
            f"score {first['score']:.4f}, {first['why']}); tolerances: rotated box IoU ≥ "
            f"{obb_export.BOX_IOU}, |Δscore| < {obb_export.SCORE_TOL}"
        )
    return validation


def _export_regressor(
    ctx: JobContext,
    row: ModelExport,
    exp: Experiment,
    model: Any,
    meta: dict[str, Any],
    props: dict[str, str],
    dest: Path,
) -> dict[str, Any]:
    """A regressor's file (its values in the targets' units), checked against PyTorch on the
    split's images (:func:`vistudio.ml.export.regression.export_regressor`); a failed check fails
    the job."""

    from vistudio.ml.export.regression import ParityFailed, export_regressor

    pre = meta["preprocess"]
    size = (int(pre["input_size"][0]), int(pre["input_size"][1]))
    ctx.progress(1, 4, f"exporting to {row.format} and validating against PyTorch", force=True)
    arrays, source = _image_inputs(ctx.studio, exp, pre)
    try:
        validation = export_regressor(
            model,
            dest,
            format=row.format,
            input_size=size,
            props=props,
            opset=int(row.options.get("opset", 17)),
            images=arrays,
            target_std=meta["target_std"],
        )
    except ParityFailed as exc:
        raise PermanentJobError(exc.message) from None
    runtime = "onnxruntime (CPU)" if row.format == "onnx" else "torch.jit (CPU)"
    return {**validation, "source": source, "against": "PyTorch (eager, CPU)", "runtime": runtime}


def _anomaly_threshold(
    studio: Studio, exp: Experiment, ckpt: Checkpoint, meta: dict[str, Any]
) -> tuple[float, str]:
    """The decision threshold an anomaly model's file records, and where it comes from: the
    finished evaluation of this same checkpoint, else the training's validation threshold (best
    F1, saved with the checkpoint), else 0.5."""
    with studio.sessions() as s:
        ev = s.scalar(select(Evaluation).where(Evaluation.experiment_id == exp.id))
        if ev is not None and ev.status == "succeeded" and ev.checkpoint_sha256 == ckpt.sha256:
            m = ev.metrics or {}
            if isinstance(m.get("threshold"), int | float):
                how = str(m.get("threshold_source", ""))
                return float(m["threshold"]), f"evaluation ({how} on {'+'.join(ev.subsets)})"
    trained = (meta.get("details") or {}).get("threshold")
    if isinstance(trained, int | float):
        return float(trained), "validation (best F1 during training)"
    return 0.5, "default"


def _export_anomaly(
    ctx: JobContext,
    row: ModelExport,
    exp: Experiment,
    model: Any,
    meta: dict[str, Any],
    props: dict[str, str],
    dest: Path,
) -> dict[str, Any]:
    """An anomaly model's file (one score per image, its sigmoid inside the graph), checked
    against PyTorch on the split's images (:func:`vistudio.ml.export.anomaly.export_scorer`)."""

    from vistudio.ml.export.anomaly import ParityFailed, export_scorer

    pre = meta["preprocess"]
    size = (int(pre["input_size"][0]), int(pre["input_size"][1]))
    ctx.progress(1, 4, f"exporting to {row.format} and validating against PyTorch", force=True)
    arrays, source = _image_inputs(ctx.studio, exp, pre)
    try:
        validation = export_scorer(
            model,
            dest,
            format=row.format,
            input_size=size,
            props=props,
            opset=int(row.options.get("opset", 17)),
            images=arrays,
            threshold=float(props["threshold"]),
        )
    except ParityFailed as exc:
        raise PermanentJobError(exc.message) from None
    runtime = "onnxruntime (CPU)" if row.format == "onnx" else "torch.jit (CPU)"
    return {**validation, "source": source, "against": "PyTorch (eager, CPU)", "runtime": runtime}


def _export_segmenter(
    ctx: JobContext,
    row: ModelExport,
    exp: Experiment,
    model: Any,
    pre: dict[str, Any],
    size: tuple[int, int],
    props: dict[str, str],
    dest: Path,
) -> dict[str, Any]:
    """A segmenter's file, checked against PyTorch on the split's images (see
    :func:`vistudio.ml.export.segmentation.export_segmenter`); a failed check fails the job."""
    from vistudio.ml.export.segmentation import ParityFailed, export_segmenter

    ctx.progress(1, 4, f"exporting to {row.format}", force=True)
    try:
        return export_segmenter(
            model,
            dest,
            fmt=row.format,
            input_size=size,
            preprocess=pre,
            props=props,
            opset=int(row.options.get("opset", 17)),
            images=_parity_items(ctx.studio, exp),
            check_cancelled=ctx.check_cancelled,
            on_validating=lambda: ctx.progress(2, 4, "validating against PyTorch", force=True),
        )
    except ParityFailed as exc:
        raise PermanentJobError(str(exc)) from None


def _export_classifier(
    ctx: JobContext,
    row: ModelExport,
    exp: Experiment,
    model: Any,
    pre: dict[str, Any],
    size: tuple[int, int],
    props: dict[str, str],
    dest: Path,
) -> dict[str, Any]:
    import numpy as np

    from vistudio.ml.export.models import (
        export_onnx,
        export_torchscript,
        onnx_logits,
        parity,
        torchscript_logits,
    )
    from vistudio.ml.inference.pytorch import eager_logits

    studio = ctx.studio
    ctx.progress(1, 4, f"exporting to {row.format}", force=True)
    if row.format == "onnx":
        export_onnx(model, dest, input_size=size, props=props, opset=int(row.options.get("opset", 17)))
    else:
        export_torchscript(model, dest, input_size=size, props=props)
    ctx.check_cancelled()
    ctx.progress(2, 4, "validating against PyTorch", force=True)
    arrays, source = _image_inputs(studio, exp, pre)
    batch = np.stack(arrays)
    reference = np.concatenate([eager_logits(model, batch[i : i + 32]) for i in range(0, len(batch), 32)])
    run = onnx_logits if row.format == "onnx" else torchscript_logits
    exported = np.concatenate([run(dest, batch[i : i + 32]) for i in range(0, len(batch), 32)])
    return {
        **parity(reference, exported),
        "source": source,
        "against": "PyTorch (eager, CPU)",
        "runtime": "onnxruntime (CPU)" if row.format == "onnx" else "torch.jit (CPU)",
    }


def _store(
    ctx: JobContext,
    row: ModelExport,
    exp: Experiment,
    project: Project,
    props: dict[str, str],
    validation: dict[str, Any],
    dest: Path,
) -> dict[str, Any]:
    """Keep the validated file as a blob, write its sidecar, record it on the export's row."""
    studio = ctx.studio
    filename = dest.name
    ctx.progress(3, 4, "storing", force=True)
    sha = studio.store.write_file(EXPORT_KIND, dest, ext=FORMATS[row.format])
    size_bytes = dest.stat().st_size
    rel = dest.relative_to(studio.home).as_posix()
    side = {
        "format": row.format,
        "file": filename,
        "sha256": sha,
        "size": size_bytes,
        "options": row.options,
        "metadata": {k: _maybe_json(v) for k, v in props.items()},
        "validation": validation,
    }
    atomic_write_bytes(dest.with_suffix(".json"), json.dumps(side, indent=2, sort_keys=True).encode())
    with studio.sessions.begin() as s:
        current = s.get(ModelExport, row.id)
        if current is None:  # deleted while it ran: run_export removes the files
            raise JobCancelled()
        if current.sha256 != sha:  # a retried job does not take a second reference
            if current.sha256:
                studio.store.release(s, EXPORT_KIND, current.sha256)
            studio.store.acquire(s, EXPORT_KIND, sha, size=size_bytes, ext=FORMATS[row.format])
        current.sha256, current.size, current.path = sha, size_bytes, rel
        current.validation = validation
        current.status, current.error, current.finished_at = "succeeded", None, utcnow()
        s.flush()
        out = export_dict(current, project=project.name, experiment=exp.name)
    ctx.progress(4, 4, "done", force=True)
    return out


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


# --- queries ----------------------------------------------------------------------------------------


def list_exports(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        q = select(ModelExport, Experiment.name).join(Experiment, Experiment.id == ModelExport.experiment_id)
        q = q.where(Experiment.project_id == p.id)
        if experiment is not None:
            q = q.where(Experiment.id == find_experiment(s, p.id, experiment).id)
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = s.execute(q.order_by(ModelExport.id.desc()).offset(offset).limit(limit)).all()
        return {"items": [export_dict(r, project=p.name, experiment=n) for r, n in rows], "total": total}


def _owned(s: Session, export_id: int, project: str | int | None) -> tuple[ModelExport, Experiment, Project]:
    """The export with its experiment and project; 404 if it is not ``project``'s (when given)."""
    row = s.get(ModelExport, export_id)
    exp = s.get(Experiment, row.experiment_id) if row is not None else None
    owner = s.get(Project, exp.project_id) if exp is not None else None
    if (
        row is None
        or exp is None
        or owner is None
        or (project is not None and owner.id != find_project(s, project).id)
    ):
        raise NotFound(f"export {export_id} not found")
    return row, exp, owner


def get_export(studio: Studio, export_id: int, *, project: str | int | None = None) -> dict[str, Any]:
    with studio.sessions() as s:
        row, exp, owner = _owned(s, export_id, project)
        out = export_dict(row, project=owner.name, experiment=exp.name)
    out["job"] = None
    if out["job_id"]:  # after the session: on SQLite every session holds the write lock
        with contextlib.suppress(NotFound):
            out["job"] = job_dict(studio.queue.get(out["job_id"]))
    return out


def export_download_url(studio: Studio, export_id: int) -> str | None:
    """A short-lived URL of the exported blob when blobs live in a remote store; None: serve
    ``export_file``. The same checks as ``export_file`` (404, 409) come first."""
    if not studio.store.remote:
        return None
    with studio.sessions() as s:
        row = s.get(ModelExport, export_id)
        if row is None:
            raise NotFound(f"export {export_id} not found")
        if row.status != "succeeded" or not row.path or not row.sha256:
            raise Conflict(f"export {export_id} is {row.status}: there is no file to download yet")
        sha, ext, name = row.sha256, FORMATS[row.format], Path(row.path).name
    if not studio.store.exists(EXPORT_KIND, sha, ext):
        return None  # the readable copy may still be there: export_file decides
    return studio.store.download_url(
        EXPORT_KIND, sha, ext, filename=name, media_type="application/octet-stream"
    )


def export_file(studio: Studio, export_id: int) -> tuple[Path, str]:
    """The exported file (its readable copy, else its blob) and the file name to download it as."""
    with studio.sessions() as s:
        row = s.get(ModelExport, export_id)
        if row is None:
            raise NotFound(f"export {export_id} not found")
        if row.status != "succeeded" or not row.path or not row.sha256:
            raise Conflict(f"export {export_id} is {row.status}: there is no file to download yet")
        readable = studio.home / row.path
        name = Path(row.path).name
        blob = studio.store.path(EXPORT_KIND, row.sha256, FORMATS[row.format])
        if blob.is_file():  # the blob is named by its content: it is the file that was validated
            return blob, name
        if readable.is_file() and sha256_file(readable) == row.sha256:
            return readable, name
        raise NotFound(f"the file of export {export_id} is missing from the workspace")


def delete_export(studio: Studio, export_id: int, *, project: str | int | None = None) -> dict[str, Any]:
    """Delete an export: its row, its readable files and its blob reference (the blob goes when
    nothing references it). A running export is cancelled first."""
    with studio.sessions.begin() as s:
        row, _, _ = _owned(s, export_id, project)
        job_id, path, sha, fmt = row.job_id, row.path, row.sha256, row.format
        if sha:
            studio.store.release(s, EXPORT_KIND, sha)
        s.delete(row)
    if job_id:
        job = studio.queue.get(job_id)
        if job.status not in FINISHED:
            studio.queue.cancel(job_id)
    if path:
        for p in (studio.home / path, (studio.home / path).with_suffix(".json")):
            if p.is_file():
                studio.store.remove_file(p)
    with studio.sessions.begin() as s:
        removed = studio.store.gc(s)
    return {"deleted": export_id, "format": fmt, "blobs_removed": removed}


@register_cleanup("evaluation-and-exports")
def release_experiment_files(studio: Studio, session: Session, exp: Experiment) -> None:
    """When an experiment (or its project) is deleted: release its export blobs and remove the
    readable files of its exports and of its evaluation (their rows go by cascade)."""
    for row in session.scalars(select(ModelExport).where(ModelExport.experiment_id == exp.id)):
        if row.sha256:
            studio.store.release(session, EXPORT_KIND, row.sha256)
        if row.path:
            for p in (studio.home / row.path, (studio.home / row.path).with_suffix(".json")):
                if p.is_file():
                    studio.store.remove_file(p)
    project = session.get(Project, exp.project_id)
    for results in session.scalars(select(Evaluation.results_path).where(Evaluation.experiment_id == exp.id)):
        if results:
            folder: Path | None = (studio.home / results).parent
        else:  # a row from before the folder was stored
            folder = experiment_dir(studio, project, exp) / "evaluation" if project is not None else None
        if folder is not None and folder.is_dir():
            studio.store.remove_file(folder)
