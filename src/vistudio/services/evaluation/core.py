"""Evaluation of an experiment's checkpoint on subsets of its split (one per experiment; a job).

The job (kind ``evaluate``) runs the checkpoint over the images of the chosen subsets, stores one
result row per image in batches, then computes the metrics over the pooled subsets and writes
readable files to ``<workspace>/exports/<project>/<experiment>-<id>/evaluation/``. What the rows
hold, which metrics and which files depend on the experiment's task: each task has an
:class:`Evaluator` in :data:`EVALUATORS` (classification in ``evaluation.classification``,
detection and instance segmentation in ``evaluation.detection``); this module is the part they
share — starting, running and resetting the job, finding and showing the evaluation.

A rerun of the same job (a retry after a crash) resumes: images that already have a result are
skipped, so each image ends with exactly one row. Starting a new evaluation replaces the previous
one; ``reset`` deletes it (rows and files) at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vistudio.db import Project, utcnow
from vistudio.db.training import Evaluation, Experiment
from vistudio.errors import BadRequest, Conflict, NotFound
from vistudio.jobs.queue import FINISHED, LeaseLost, job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.registry import Registry
from vistudio.services.experiments import experiment_items, update_row
from vistudio.services.exports import checkpoint_file, experiment_dir, ready_checkpoint, resolve
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio

SUBSETS = ("train", "val", "test")
DEVICES = ("auto", "cpu", "cuda")
TOP_K = 5
MAX_BATCH = 1024
ACTIVE = ("queued", "running")
FOLDER = "evaluation"
DEFAULT_IOU = 0.5
THRESHOLD_BY = ("f1", "youden")  # how an anomaly evaluation chooses its decision threshold


class Evaluator(Protocol):
    """What differs per task: the rows, the job's work, the per-image results and their filters."""

    # the table of per-image rows (with ``evaluation_id`` and ``sample_id`` columns)
    row_model: type[Any]
    # whether ``iou`` and ``score_threshold`` mean something for this task
    thresholds: bool
    # images per batch when the caller gives none (detectors hold far more per image)
    default_batch_size: int
    # an evaluator may also set ``decision_threshold = True`` (anomaly detection): it takes a
    # ``score_threshold`` or a ``threshold_by`` (see ``start_evaluation``) without an IoU

    def run(self, ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
        """Evaluate (skipping images that have a row), compute the metrics, write the files, mark
        the row succeeded; return :func:`get_evaluation`."""
        ...

    def extra(self, ev: Evaluation, folder: str, done: bool) -> dict[str, Any]:
        """Task-specific keys of the evaluation's dict (``folder``: relative to the workspace)."""
        ...

    def list_results(
        self, s: Session, ev: Evaluation, classes: list[str], filters: dict[str, Any], offset: int, limit: int
    ) -> dict[str, Any]: ...

    def get_result(
        self, s: Session, ev: Evaluation, classes: list[str], sample_id: int
    ) -> dict[str, Any]: ...

    def summary(self, ev: Evaluation) -> dict[str, Any]:
        """The headline numbers of the experiment list (e.g. ``accuracy`` or ``map50``)."""
        ...


EVALUATORS: Registry[Evaluator] = Registry("evaluator")


@dataclass
class Run:
    """What every evaluator starts from (see :func:`open_run`): the device and batch size asked
    for, the subsets' items, the samples that already have a row (a resumed job skips them), the
    loaded checkpoint and the images skipped so far with their reason."""

    device: Any
    batch_size: int
    items: list[Any]
    done: set[int]
    model: Any
    meta: dict[str, Any]
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def on_error(self, item: Any, reason: str) -> None:
        """An image that could not be read: skipped, and said in the report."""
        self.skipped.append({"sample_id": item.sample_id, "path": item.path, "reason": reason})


def open_run(
    ctx: JobContext,
    ev: Evaluation,
    exp: Experiment,
    *,
    row_model: type[Any],
    default_batch_size: int = 64,
    empty: Callable[[], str] | None = None,
    requires: tuple[str, ...] = (),
    mismatch: str = "the checkpoint's classes differ from the experiment's",
    same_task: bool = False,
) -> Run:
    """The start every evaluation job shares: the split still there, the checkpoint the one the
    evaluation was queued with, items to evaluate (else ``empty()``, or "hold no images"), then
    the checkpoint loaded and checked — its classes the experiment's, the ``requires`` keys in its
    metadata (else ``mismatch``) and, with ``same_task``, a model of the experiment's task."""
    from vistudio.ml.checkpoint import load_checkpoint
    from vistudio.ml.inference.pytorch import resolve_device

    studio = ctx.studio
    device = resolve_device(str(ctx.params.get("device", "auto")))
    batch_size = int(ctx.params.get("batch_size") or default_batch_size)
    with studio.sessions() as s:
        if exp.split_id is None:
            raise PermanentJobError(f"the split of experiment {exp.name!r} was deleted")
        ckpt = ready_checkpoint(s, exp, ev.checkpoint_kind)
        items = experiment_items(
            studio, s, exp, list(ev.subsets), current_labels=ctx.params.get("labels") == "current"
        )
        done = set(s.scalars(select(row_model.sample_id).where(row_model.evaluation_id == ev.id)))
    if ckpt.sha256 != ev.checkpoint_sha256:
        raise PermanentJobError(
            f"the {ev.checkpoint_kind} checkpoint changed since this evaluation was queued"
        )
    if not items:
        raise PermanentJobError(
            empty() if empty else f"subsets {', '.join(ev.subsets)} of the split hold no images"
        )
    ctx.progress(len(done), len(items), "loading the checkpoint", force=True)
    model, meta = load_checkpoint(checkpoint_file(studio, ckpt), device=device)
    if list(meta["classes"]) != list(exp.classes) or any(k not in meta for k in requires):
        raise PermanentJobError(mismatch)
    if same_task and meta.get("task") != exp.task:
        raise PermanentJobError(f"the checkpoint is a {meta.get('task')} model, not {exp.task}")
    ctx.progress(len(done), len(items), f"evaluating on {device.type}", force=True)
    return Run(device, batch_size, items, done, model, meta)


def evaluator_for(task: str) -> Evaluator:
    """The evaluator of a task; a task without one is a clear 400."""
    try:
        return EVALUATORS.get(task)
    except KeyError:
        raise BadRequest(
            f"evaluation is not available for {task} experiments",
            details={"task": task, "evaluable": EVALUATORS.names()},
        ) from None


def check_thresholds(iou: float | None, score_threshold: float | None) -> None:
    if iou is not None and not (0.0 < iou < 1.0):
        raise BadRequest(f"IoU threshold must be between 0 and 1 (exclusive), got {iou}")
    if score_threshold is not None and not (0.0 <= score_threshold <= 1.0):
        raise BadRequest(f"score threshold must be between 0 and 1, got {score_threshold}")


def parse_subsets(subsets: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"test,val"`` or a list → de-duplicated subsets in train/val/test order (default: test)."""
    if subsets is None or subsets == "" or subsets == []:
        return ["test"]
    items = subsets.split(",") if isinstance(subsets, str) else list(subsets)
    names = {str(x).strip() for x in items if str(x).strip()}
    unknown = sorted(names - set(SUBSETS))
    if unknown or not names:
        raise BadRequest(
            f"subsets must be among {', '.join(SUBSETS)}; got {', '.join(x[:20] for x in unknown[:5]) or 'none'}"
        )
    return [x for x in SUBSETS if x in names]


def eval_dir(studio: Studio, ev: Evaluation, p: Project, exp: Experiment) -> Path:
    """The evaluation's readable files: decided when it was started and stored on its row
    (``results_path``), so renaming the experiment or its project moves nothing. (A row from
    before that was stored has its folder named from the current names.)"""
    if ev.results_path:
        return (studio.home / ev.results_path).parent
    return experiment_dir(studio, p, exp) / FOLDER


# --- start, run ---------------------------------------------------------------------------------------


def start_evaluation(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int,
    checkpoint: str = "best",
    subsets: str | list[str] | tuple[str, ...] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    iou: float | None = None,
    score_threshold: float | None = None,
    labels: str = "version",
    threshold_by: str | None = None,
) -> dict[str, Any]:
    """Check the request, replace any previous evaluation of the experiment, and queue the job.

    Anomaly detection: ``score_threshold`` is the anomaly score from which an image counts as
    anomalous; without it the threshold that maximises ``threshold_by`` (``f1``, the default, or
    ``youden``: Youden's J) on the evaluated images.

    ``labels``: the ground truth — ``version``, the labels of the experiment's dataset version
    (what it trained on; edits made since do not change the result), or ``current``.

    ``iou`` (default 0.5) and ``score_threshold`` (default: the confidence that maximises F1)
    are the matching IoU and the score above which predictions count, for box tasks: per-image
    TP/FP/FN, the confusion matrix and per-class precision/recall/F1 use them (the COCO
    statistics do not). ``batch_size`` defaults to the task's (64 images for classifiers, 8 for
    detectors). Returns ``{"job", "evaluation"}``. 409 when the experiment is still
    training, has no such checkpoint, or is being evaluated right now.
    """
    chosen = parse_subsets(subsets)
    check_thresholds(iou, score_threshold)
    if batch_size is not None and not 1 <= batch_size <= MAX_BATCH:
        raise BadRequest(f"batch size must be between 1 and {MAX_BATCH}, got {batch_size}")
    if labels not in ("version", "current"):
        raise BadRequest(f"labels must be 'version' or 'current', got {labels[:20]!r}")
    if device not in DEVICES:
        raise BadRequest(f"device must be one of {', '.join(DEVICES)}, got {device[:20]!r}")
    if device == "cuda":
        from vistudio.ml.inference.pytorch import resolve_device

        resolve_device(device)  # a clear 400 now rather than a failed job later
    with studio.sessions() as s:
        p, exp = resolve(s, project, experiment)
        ckpt = ready_checkpoint(s, exp, checkpoint)
        checkpoint_file(studio, ckpt)
        evaluator = evaluator_for(exp.task)
        decides = bool(getattr(evaluator, "decision_threshold", False))
        if not evaluator.thresholds and (iou is not None or (score_threshold is not None and not decides)):
            raise BadRequest(f"IoU and score thresholds do not apply to {exp.task} experiments")
        if threshold_by is not None and not decides:
            raise BadRequest(f"threshold_by does not apply to {exp.task} experiments")
        if threshold_by is not None and score_threshold is not None:
            raise BadRequest("give a score threshold or threshold_by, not both")
        if threshold_by is not None and threshold_by not in THRESHOLD_BY:
            raise BadRequest(
                f"threshold_by must be one of {', '.join(THRESHOLD_BY)}, got {threshold_by[:20]!r}"
            )
        if batch_size is None:
            batch_size = evaluator.default_batch_size
        if exp.split_id is None:
            raise Conflict(
                f"the split of experiment {exp.name!r} was deleted: there is nothing to evaluate on"
            )
        old = s.scalar(select(Evaluation).where(Evaluation.experiment_id == exp.id))
        old_active = old is not None and old.status in ACTIVE
        old_job = old.job_id if old is not None else None
        pname, ename, exp_id, sha = p.name, exp.name, exp.id, ckpt.sha256
        results = (experiment_dir(studio, p, exp) / FOLDER / "results.parquet").relative_to(studio.home)
    if old_active and _job_active(studio, old_job):
        raise Conflict(
            f"experiment {ename!r} is being evaluated now (job {old_job}); "
            "wait for it or reset the evaluation first",
            details={"job": old_job},
        )
    _delete(studio, exp_id)
    with studio.sessions.begin() as s:
        ev = Evaluation(
            experiment_id=exp_id,
            checkpoint_kind=checkpoint,
            checkpoint_sha256=sha,
            subsets=chosen,
            status="queued",
            classes=[],
            results_path=results.as_posix(),
            created_at=utcnow(),
        )
        s.add(ev)
        s.flush()
        eval_id = ev.id
    params: dict[str, Any] = {
        "evaluation_id": eval_id,
        "batch_size": batch_size,
        "device": device,
        "labels": labels,
    }
    if evaluator.thresholds:
        params.update(iou=DEFAULT_IOU if iou is None else float(iou), score_threshold=score_threshold)
    elif decides:
        params.update(score_threshold=score_threshold, threshold_by=threshold_by or "f1")
    job = studio.queue.enqueue(
        "evaluate",
        params,
        project_id=p.id,
        max_attempts=2,
    )
    with studio.sessions.begin() as s:
        ev2 = s.get(Evaluation, eval_id)
        if ev2 is None:
            raise NotFound("the evaluation was reset while it was being queued")
        ev2.job_id = job.id
    return {"job": job_dict(job), "evaluation": get_evaluation(studio, project=pname, experiment=ename)}


def _job_active(studio: Studio, job_id: int | None) -> bool:
    if job_id is None:
        return True  # being queued right now
    try:
        return studio.queue.get(job_id).status not in FINISHED
    except NotFound:
        return False


@job_handler("evaluate")
def run_evaluation(ctx: JobContext) -> dict[str, Any]:
    studio = ctx.studio
    eval_id = ctx.params.get("evaluation_id")
    with studio.sessions() as s:
        ev = s.get(Evaluation, eval_id) if eval_id else None
        if ev is None or ev.job_id not in (None, ctx.job_id):
            raise PermanentJobError("this evaluation was reset or replaced before it ran")
        exp = s.get(Experiment, ev.experiment_id)
        assert exp is not None
        project = s.get(Project, exp.project_id)
        assert project is not None
        s.expunge_all()
    update_row(studio, Evaluation, ev.id, status="running", error=None, job_id=ctx.job_id)
    try:
        summary = evaluator_for(exp.task).run(ctx, ev, exp, project)
    except JobCancelled:
        with studio.sessions.begin() as s:
            _delete_rows(s, ev.id)
        update_row(studio, Evaluation, ev.id, status="cancelled", finished_at=utcnow())
        raise
    except LeaseLost:  # another worker runs it now: its row is theirs to update
        raise
    except Exception as exc:
        update_row(
            studio,
            Evaluation,
            ev.id,
            status="failed",
            error=(getattr(exc, "message", None) or str(exc))[:2000],
        )
        raise
    return {"evaluation": summary}


# --- queries --------------------------------------------------------------------------------------------


def _find(s: Session, project: str | int, experiment: str | int) -> tuple[Project, Experiment, Evaluation]:
    p, exp = resolve(s, project, experiment)
    ev = s.scalar(select(Evaluation).where(Evaluation.experiment_id == exp.id))
    if ev is None:
        raise NotFound(f"experiment {exp.name!r} has not been evaluated")
    return p, exp, ev


def evaluation_dict(
    studio: Studio, ev: Evaluation, p: Project, exp: Experiment, job: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The evaluation as the API shows it (``job``: its job's dict, fetched outside the session)."""
    folder = eval_dir(studio, ev, p, exp).relative_to(studio.home).as_posix()
    done = ev.status == "succeeded"
    params = (job or {}).get("params") or {}
    return {
        "id": ev.id,
        "project": p.name,
        "experiment": exp.name,
        "experiment_id": exp.id,
        "task": exp.task,
        "status": ev.status,
        "checkpoint": ev.checkpoint_kind,
        "checkpoint_sha256": ev.checkpoint_sha256,
        "subsets": ev.subsets,
        "batch_size": params.get("batch_size"),
        "device": params.get("device"),
        "labels": params.get("labels", "version"),
        "metrics": ev.metrics,
        "confusion_matrix": ev.confusion,
        "classes": ev.classes or list(exp.classes),
        "results_path": ev.results_path if done else None,
        "csv_path": f"{folder}/results.csv" if done else None,
        "confusion_png_path": f"{folder}/confusion_matrix.png" if done else None,
        "error": ev.error,
        "job_id": ev.job_id,
        "job": job,
        "created_at": ev.created_at.isoformat() + "Z",
        "finished_at": ev.finished_at.isoformat() + "Z" if ev.finished_at else None,
    } | _extra(ev, exp, folder, done, params)


def _extra(
    ev: Evaluation, exp: Experiment, folder: str, done: bool, params: dict[str, Any]
) -> dict[str, Any]:
    try:
        evaluator = EVALUATORS.get(exp.task)
    except KeyError:
        return {}
    out = evaluator.extra(ev, folder, done)
    if evaluator.thresholds:  # while it runs, the thresholds asked for are the job's
        out.setdefault("iou", params.get("iou"))
        out.setdefault("score_threshold", params.get("score_threshold"))
    return out


def get_evaluation(studio: Studio, *, project: str | int, experiment: str | int) -> dict[str, Any]:
    with studio.sessions() as s:
        p, exp, ev = _find(s, project, experiment)
    # one session at a time: on SQLite every session holds the write lock until it ends
    job = _job(studio, ev.job_id)
    return evaluation_dict(studio, ev, p, exp, job)


def _job(studio: Studio, job_id: int | None) -> dict[str, Any] | None:
    if job_id is None:
        return None
    try:
        return job_dict(studio.queue.get(job_id))
    except NotFound:
        return None


def find_evaluation(studio: Studio, *, project: str | int, experiment: str | int) -> dict[str, Any] | None:
    """The evaluation, or None when the experiment has none (unknown names are still 404)."""
    try:
        return get_evaluation(studio, project=project, experiment=experiment)
    except NotFound:
        with studio.sessions() as s:
            resolve(s, project, experiment)  # re-raise a 404 for an unknown project or experiment
        return None


def list_results(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int,
    subset: str | None = None,
    offset: int = 0,
    limit: int = 50,
    **filters: Any,
) -> dict[str, Any]:
    """Per-image results, filtered by subset and the task's own filters, sorted, paginated.

    Classification: ``correct``, ``true``, ``pred`` (class names), ``sort`` ``confidence`` |
    ``-confidence``. Detection and instance segmentation: ``outcome`` ``tp`` | ``fp`` | ``fn``
    (images with at least one), ``sort`` ``fn`` | ``fp`` (most first) | ``ap`` (lowest first).
    A filter of another task is a 400."""
    if subset and subset not in SUBSETS:
        raise BadRequest(f"subset must be one of {', '.join(SUBSETS)}, got {subset[:20]!r}")
    if offset < 0 or not 1 <= limit <= 500:
        raise BadRequest("offset must be ≥ 0 and limit between 1 and 500")
    with studio.sessions() as s:
        _, exp, ev = _find(s, project, experiment)
        classes = list(ev.classes or exp.classes)
        given = {k: v for k, v in filters.items() if v is not None}
        return evaluator_for(exp.task).list_results(
            s, ev, classes, {"subset": subset, **given}, offset, limit
        )


def get_result(
    studio: Studio, *, project: str | int, experiment: str | int, sample_id: int
) -> dict[str, Any]:
    with studio.sessions() as s:
        _, exp, ev = _find(s, project, experiment)
        return evaluator_for(exp.task).get_result(s, ev, list(ev.classes or exp.classes), sample_id)


def confusion_png(studio: Studio, *, project: str | int, experiment: str | int) -> Path:
    """The confusion-matrix PNG of a finished evaluation (drawn again if its file went missing)."""
    from vistudio.ml.inference.confusion import render_confusion_png

    with studio.sessions() as s:
        p, exp, ev = _find(s, project, experiment)
    if ev.status != "succeeded":
        raise Conflict(f"the evaluation of {exp.name!r} is {ev.status}: no confusion matrix yet")
    if not ev.confusion:  # regression has none
        raise BadRequest(
            f"a confusion matrix is not available for {exp.task.replace('_', ' ')} evaluations",
            details={"task": exp.task},
        )
    path = eval_dir(studio, ev, p, exp) / "confusion_matrix.png"
    if not path.is_file():
        names = list(ev.classes)
        if len(ev.confusion) == len(names) + 1:  # box tasks: the background row and column
            names.append("background")
        atomic_write_bytes(path, render_confusion_png(ev.confusion, names))
    return path


def _delete_rows(s: Session, eval_id: int) -> None:
    """Delete the per-image rows of an evaluation, whichever task's tables hold them."""
    for model in {e.row_model for e in EVALUATORS.entries.values()}:
        s.execute(delete(model).where(model.evaluation_id == eval_id))


def _delete(studio: Studio, experiment_id: int) -> bool:
    """Delete the experiment's evaluation (rows, then its folder); cancel its job if it runs."""
    folder = None
    with studio.sessions.begin() as s:
        ev = s.scalar(select(Evaluation).where(Evaluation.experiment_id == experiment_id))
        if ev is None:
            found = False
            job_id = None
        else:
            found, job_id = True, ev.job_id
            exp = s.get_one(Experiment, experiment_id)
            folder = eval_dir(studio, ev, s.get_one(Project, exp.project_id), exp)
            _delete_rows(s, ev.id)
            s.delete(ev)
    if job_id is not None and _job_active(studio, job_id):
        with contextlib.suppress(Conflict):  # it finished in the meantime
            studio.queue.cancel(job_id)
    if folder is not None and folder.is_dir():
        studio.store.remove_file(folder)
    return found


def reset_evaluation(studio: Studio, *, project: str | int, experiment: str | int) -> dict[str, Any]:
    """Delete the evaluation at once: its rows, its files, and its job if it is still running."""
    with studio.sessions() as s:
        p, exp = resolve(s, project, experiment)
        pname, ename, exp_id = p.name, exp.name, exp.id
    found = _delete(studio, exp_id)
    if not found:
        raise NotFound(f"experiment {ename!r} has not been evaluated")
    return {"reset": True, "project": pname, "experiment": ename}


def evaluation_summaries(studio: Studio, experiment_ids: list[int]) -> dict[int, dict[str, Any]]:
    """``{experiment id: {"status", "checkpoint", "task", …headline numbers}}`` for those that have
    an evaluation: ``accuracy`` for classification, ``map`` and ``map50`` for box tasks."""
    if not experiment_ids:
        return {}
    with studio.sessions() as s:
        rows = s.execute(
            select(Evaluation, Experiment.task)
            .join(Experiment, Experiment.id == Evaluation.experiment_id)
            .where(Evaluation.experiment_id.in_(experiment_ids))
        ).all()
    out = {}
    for r, task in rows:
        headline = EVALUATORS.get(task).summary(r) if task in EVALUATORS.entries else {}
        out[r.experiment_id] = {"status": r.status, "checkpoint": r.checkpoint_kind, "task": task, **headline}
    return out
