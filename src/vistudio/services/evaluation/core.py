"""Evaluation of an experiment's checkpoint on subsets of its split (one per experiment; a job).

The job (kind ``evaluate``) runs the checkpoint over the labelled images of the chosen subsets with
the shared evaluation preprocessing, stores one ``EvalResult`` per image (prediction, confidence,
top-k, correct, subset) in batches, then computes the metrics over the pooled subsets and writes
readable files to ``<workspace>/exports/<project>/<experiment>-<id>/evaluation/``: ``results.parquet``,
``results.csv``, ``metrics.json`` and ``confusion_matrix.png``.

A rerun of the same job (a retry after a crash) resumes: images that already have a result are
skipped, so each image ends with exactly one row. Starting a new evaluation replaces the previous
one; ``reset`` deletes it (rows and files) at once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from vistudio.db import Project, Sample, utcnow
from vistudio.db.training import EvalResult, Evaluation, Experiment
from vistudio.errors import BadRequest, Conflict, InvalidInput, NotFound
from vistudio.jobs.queue import FINISHED, LeaseLost, job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.services.experiments import split_items, update_row
from vistudio.services.exports import checkpoint_file, experiment_dir, ready_checkpoint, resolve
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio

SUBSETS = ("train", "val", "test")
DEVICES = ("auto", "cpu", "cuda")
SORTS = ("confidence", "-confidence")
TOP_K = 5
MAX_BATCH = 1024
ACTIVE = ("queued", "running")
FOLDER = "evaluation"


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
    batch_size: int = 64,
    device: str = "auto",
) -> dict[str, Any]:
    """Check the request, replace any previous evaluation of the experiment, and queue the job.

    Returns ``{"job", "evaluation"}``. 409 when the experiment is still training, has no such
    checkpoint, or is being evaluated right now.
    """
    chosen = parse_subsets(subsets)
    if not 1 <= batch_size <= MAX_BATCH:
        raise BadRequest(f"batch size must be between 1 and {MAX_BATCH}, got {batch_size}")
    if device not in DEVICES:
        raise BadRequest(f"device must be one of {', '.join(DEVICES)}, got {device[:20]!r}")
    if device == "cuda":
        from vistudio.ml.inference.pytorch import resolve_device

        resolve_device(device)  # a clear 400 now rather than a failed job later
    with studio.sessions() as s:
        p, exp = resolve(s, project, experiment)
        ckpt = ready_checkpoint(s, exp, checkpoint)
        checkpoint_file(studio, ckpt)
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
    job = studio.queue.enqueue(
        "evaluate",
        {"evaluation_id": eval_id, "batch_size": batch_size, "device": device},
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
        summary = _evaluate(ctx, ev, exp, project)
    except JobCancelled:
        with studio.sessions.begin() as s:
            s.execute(delete(EvalResult).where(EvalResult.evaluation_id == ev.id))
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


def _evaluate(ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
    from vistudio.ml.checkpoint import load_checkpoint
    from vistudio.ml.inference.metrics import softmax, top_k
    from vistudio.ml.inference.pytorch import predict_batches, resolve_device

    studio = ctx.studio
    device = resolve_device(str(ctx.params.get("device", "auto")))
    batch_size = int(ctx.params.get("batch_size", 64))
    with studio.sessions() as s:
        if exp.split_id is None:
            raise PermanentJobError(f"the split of experiment {exp.name!r} was deleted")
        ckpt = ready_checkpoint(s, exp, ev.checkpoint_kind)
        items = split_items(studio, s, exp.split_id, list(ev.subsets), list(exp.classes))
        done = set(s.scalars(select(EvalResult.sample_id).where(EvalResult.evaluation_id == ev.id)))
    if ckpt.sha256 != ev.checkpoint_sha256:
        raise PermanentJobError(
            f"the {ev.checkpoint_kind} checkpoint changed since this evaluation was queued"
        )
    if not items:
        raise PermanentJobError(
            f"subsets {', '.join(ev.subsets)} of the split hold no single-label images of the experiment's classes"
        )
    ctx.progress(len(done), len(items), "loading the checkpoint", force=True)
    model, meta = load_checkpoint(checkpoint_file(studio, ckpt), device=device)
    classes = list(meta["classes"])
    if classes != list(exp.classes):
        raise PermanentJobError("the checkpoint's classes differ from the experiment's")
    k = min(TOP_K, len(classes))
    todo = [(it, it.path) for it in items if it.sample_id not in done]
    skipped: list[dict[str, Any]] = []
    count = len(done)
    ctx.progress(count, len(items), f"evaluating on {device.type}", force=True)

    def on_error(it: Any, reason: str) -> None:
        skipped.append({"sample_id": it.sample_id, "path": it.path, "reason": reason})

    for batch in predict_batches(
        model, todo, meta["preprocess"], batch_size=batch_size, device=device, on_error=on_error
    ):
        probs = softmax(batch.logits)
        idx, p = top_k(probs, k)
        rows = [
            {
                "evaluation_id": ev.id,
                "sample_id": it.sample_id,
                "subset": it.subset,
                "true_index": it.target,
                "pred_index": int(idx[r, 0]),
                "confidence": float(p[r, 0]),
                "topk": [[int(c), float(v)] for c, v in zip(idx[r], p[r], strict=True)],
                "correct": int(idx[r, 0]) == it.target,
            }
            for r, it in enumerate(batch.items)
        ]
        with studio.sessions.begin() as s:
            if s.get(Evaluation, ev.id) is None:  # reset while running
                raise JobCancelled()
            s.execute(insert(EvalResult), rows)
        count += len(rows)
        ctx.progress(count, len(items), f"evaluating on {device.type}")
        ctx.check_cancelled()
    ctx.progress(count, len(items), "computing metrics", force=True)
    return _finish(studio, ev, exp, project, classes, skipped)


def _finish(
    studio: Studio,
    ev: Evaluation,
    exp: Experiment,
    project: Project,
    classes: list[str],
    skipped: list[dict[str, Any]],
) -> dict[str, Any]:
    import numpy as np

    from vistudio.ml.inference.confusion import render_confusion_png
    from vistudio.ml.inference.metrics import classification_metrics, confusion_matrix

    with studio.sessions() as s:
        pairs = s.execute(
            select(EvalResult.true_index, EvalResult.pred_index).where(EvalResult.evaluation_id == ev.id)
        ).all()
    y_true = np.array([t for t, _ in pairs], dtype=np.int64)
    y_pred = np.array([p for _, p in pairs], dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    metrics = classification_metrics(cm, classes)
    metrics["skipped"] = len(skipped)
    metrics["skipped_items"] = [{k: v for k, v in x.items() if k != "path"} for x in skipped[:100]]
    folder = eval_dir(studio, ev, project, exp)
    folder.mkdir(parents=True, exist_ok=True)
    table = _result_table(studio, ev.id, classes)
    _write_parquet(folder / "results.parquet", table)
    atomic_write_bytes(folder / "results.csv", _csv(table))
    atomic_write_bytes(
        folder / "confusion_matrix.png",
        render_confusion_png(
            cm, classes, title=f"{exp.name} · {ev.checkpoint_kind} · {'+'.join(ev.subsets)}"
        ),
    )
    atomic_write_bytes(
        folder / "metrics.json",
        json.dumps(
            {"metrics": metrics, "confusion_matrix": cm.tolist(), "classes": classes, "subsets": ev.subsets},
            indent=2,
        ).encode(),
    )
    with studio.sessions.begin() as s:
        row = s.get(Evaluation, ev.id)
        if row is None:
            raise JobCancelled()
        row.metrics = metrics
        row.confusion = cm.tolist()
        row.classes = classes
        row.results_path = (
            row.results_path or (folder / "results.parquet").relative_to(studio.home).as_posix()
        )
        row.status, row.error, row.finished_at = "succeeded", None, utcnow()
    return get_evaluation(studio, project=project.id, experiment=exp.id)


def _result_table(studio: Studio, eval_id: int, classes: list[str]) -> list[dict[str, Any]]:
    with studio.sessions() as s:
        rows = s.execute(
            select(EvalResult, Sample.name, Sample.storage, Sample.path)
            .join(Sample, Sample.id == EvalResult.sample_id)
            .where(EvalResult.evaluation_id == eval_id)
            .order_by(EvalResult.sample_id)
        ).all()
    out = []
    for r, name, storage, path in rows:
        out.append(
            {
                "sample_id": r.sample_id,
                "name": name,
                "path": str(studio.home / path) if storage == "copy" else path,
                "subset": r.subset,
                "true": classes[r.true_index],
                "predicted": classes[r.pred_index],
                "confidence": r.confidence,
                "correct": bool(r.correct),
                "top_k": [{"label": classes[c], "probability": p} for c, p in r.topk],
            }
        )
    return out


def _write_parquet(dest: Path, table: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("sample_id", pa.int64()),
            ("name", pa.string()),
            ("path", pa.string()),
            ("subset", pa.string()),
            ("true", pa.string()),
            ("predicted", pa.string()),
            ("confidence", pa.float64()),
            ("correct", pa.bool_()),
            ("top_k", pa.list_(pa.struct([("label", pa.string()), ("probability", pa.float64())]))),
        ]
    )
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(table, schema=schema), buf)
    atomic_write_bytes(dest, buf.getvalue())


def _csv(table: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sample_id", "name", "path", "subset", "true", "predicted", "confidence", "correct", "top_k"])
    for r in table:
        top = ";".join(f"{t['label']}:{t['probability']:.6f}" for t in r["top_k"])
        w.writerow(
            [
                r["sample_id"],
                r["name"],
                r["path"],
                r["subset"],
                r["true"],
                r["predicted"],
                f"{r['confidence']:.6f}",
                "true" if r["correct"] else "false",
                top,
            ]
        )
    return buf.getvalue().encode("utf-8")


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
        "status": ev.status,
        "checkpoint": ev.checkpoint_kind,
        "checkpoint_sha256": ev.checkpoint_sha256,
        "subsets": ev.subsets,
        "batch_size": params.get("batch_size"),
        "device": params.get("device"),
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
    }


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


def _class_index(classes: list[str], name: str | None, what: str) -> int | None:
    if name is None or name == "":
        return None
    try:
        return classes.index(name)
    except ValueError:
        raise InvalidInput(
            f"unknown {what} class {name[:80]!r}", details={"classes": classes[:200]}
        ) from None


def result_dict(r: EvalResult, name: str, classes: list[str]) -> dict[str, Any]:
    return {
        "sample_id": r.sample_id,
        "name": name,
        "subset": r.subset,
        "true": classes[r.true_index],
        "true_index": r.true_index,
        "predicted": classes[r.pred_index],
        "pred_index": r.pred_index,
        "confidence": r.confidence,
        "correct": bool(r.correct),
        "top_k": [{"label": classes[c], "index": c, "probability": p} for c, p in r.topk],
        "thumbnail_url": f"/api/v1/samples/{r.sample_id}/thumbnail",
    }


def list_results(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int,
    subset: str | None = None,
    correct: bool | None = None,
    true: str | None = None,
    pred: str | None = None,
    sort: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """Per-image results, filtered by subset, correctness, true and predicted class; sorted by
    confidence (``confidence`` ascending, ``-confidence`` descending) or by sample; paginated."""
    if subset and subset not in SUBSETS:
        raise BadRequest(f"subset must be one of {', '.join(SUBSETS)}, got {subset[:20]!r}")
    if sort and sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {sort[:20]!r}")
    if offset < 0 or not 1 <= limit <= 500:
        raise BadRequest("offset must be ≥ 0 and limit between 1 and 500")
    with studio.sessions() as s:
        _, exp, ev = _find(s, project, experiment)
        classes = list(ev.classes or exp.classes)
        q = select(EvalResult, Sample.name).join(Sample, Sample.id == EvalResult.sample_id)
        q = q.where(EvalResult.evaluation_id == ev.id)
        if subset:
            q = q.where(EvalResult.subset == subset)
        if correct is not None:
            q = q.where(EvalResult.correct == correct)
        t, pr = _class_index(classes, true, "true"), _class_index(classes, pred, "predicted")
        if t is not None:
            q = q.where(EvalResult.true_index == t)
        if pr is not None:
            q = q.where(EvalResult.pred_index == pr)
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        order = {
            "confidence": (EvalResult.confidence.asc(), EvalResult.sample_id),
            "-confidence": (EvalResult.confidence.desc(), EvalResult.sample_id),
        }.get(sort or "", (EvalResult.sample_id,))
        rows = s.execute(q.order_by(*order).offset(offset).limit(limit)).all()
        return {
            "items": [result_dict(r, name, classes) for r, name in rows],
            "total": total,
            "offset": offset,
            "limit": limit,
        }


def get_result(
    studio: Studio, *, project: str | int, experiment: str | int, sample_id: int
) -> dict[str, Any]:
    with studio.sessions() as s:
        _, exp, ev = _find(s, project, experiment)
        row = s.execute(
            select(EvalResult, Sample.name)
            .join(Sample, Sample.id == EvalResult.sample_id)
            .where(EvalResult.evaluation_id == ev.id, EvalResult.sample_id == sample_id)
        ).first()
        if row is None:
            raise NotFound(f"sample {sample_id} has no result in this evaluation")
        return result_dict(row[0], row[1], list(ev.classes or exp.classes))


def confusion_png(studio: Studio, *, project: str | int, experiment: str | int) -> Path:
    """The confusion-matrix PNG of a finished evaluation (drawn again if its file went missing)."""
    from vistudio.ml.inference.confusion import render_confusion_png

    with studio.sessions() as s:
        p, exp, ev = _find(s, project, experiment)
    if ev.status != "succeeded":
        raise Conflict(f"the evaluation of {exp.name!r} is {ev.status}: no confusion matrix yet")
    path = eval_dir(studio, ev, p, exp) / "confusion_matrix.png"
    if not path.is_file():
        atomic_write_bytes(path, render_confusion_png(ev.confusion, list(ev.classes)))
    return path


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
            s.execute(delete(EvalResult).where(EvalResult.evaluation_id == ev.id))
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
    """``{experiment id: {"status", "accuracy", "checkpoint"}}`` for those that have an evaluation."""
    if not experiment_ids:
        return {}
    with studio.sessions() as s:
        rows = list(s.scalars(select(Evaluation).where(Evaluation.experiment_id.in_(experiment_ids))))
    return {
        r.experiment_id: {
            "status": r.status,
            "accuracy": (r.metrics or {}).get("accuracy"),
            "checkpoint": r.checkpoint_kind,
        }
        for r in rows
    }
