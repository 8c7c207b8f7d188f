"""Evaluation of classification experiments: one ``EvalResult`` per image (prediction, confidence,
top-k, correct, subset); accuracy, per-class precision/recall/F1 and the confusion matrix; files
``results.parquet``, ``results.csv``, ``metrics.json`` and ``confusion_matrix.png``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from vistudio.db import Project, Sample, utcnow
from vistudio.db.training import EvalResult, Evaluation, Experiment
from vistudio.errors import BadRequest, InvalidInput, NotFound
from vistudio.jobs.worker import JobCancelled, JobContext
from vistudio.services.evaluation.core import EVALUATORS, TOP_K, eval_dir, get_evaluation, open_run
from vistudio.services.evaluation.tables import ColumnType, write_csv, write_parquet
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio

SORTS = ("confidence", "-confidence")
FILTERS = ("subset", "correct", "true", "pred", "sort")


def evaluate(ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
    from vistudio.ml.inference.metrics import softmax, top_k
    from vistudio.ml.inference.pytorch import predict_batches

    studio = ctx.studio
    run = open_run(
        ctx,
        ev,
        exp,
        row_model=EvalResult,
        empty=lambda: (
            f"subsets {', '.join(ev.subsets)} of the split hold no single-label images "
            "of the experiment's classes"
        ),
    )
    items, classes, device = run.items, run.classes, run.device
    k = min(TOP_K, len(classes))
    todo = [(it, it.path) for it in items if it.sample_id not in run.done]
    count = len(run.done)
    for batch in predict_batches(
        run.model,
        todo,
        run.meta["preprocess"],
        batch_size=run.batch_size,
        device=device,
        on_error=run.on_error,
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
    return _finish(studio, ev, exp, project, classes, run.skipped)


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
    write_parquet(folder / "results.parquet", table, RESULT_COLUMNS)
    write_csv(folder / "results.csv", [name for name, _ in RESULT_COLUMNS], _csv_rows(table))
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
                "path": str(studio.photo_file(storage, path)),
                "subset": r.subset,
                "true": classes[r.true_index],
                "predicted": classes[r.pred_index],
                "confidence": r.confidence,
                "correct": bool(r.correct),
                "top_k": [{"label": classes[c], "probability": p} for c, p in r.topk],
            }
        )
    return out


RESULT_COLUMNS: tuple[tuple[str, ColumnType], ...] = (
    ("sample_id", "int64"),
    ("name", "string"),
    ("path", "string"),
    ("subset", "string"),
    ("true", "string"),
    ("predicted", "string"),
    ("confidence", "float64"),
    ("correct", "bool"),
    ("top_k", lambda pa: pa.list_(pa.struct([("label", pa.string()), ("probability", pa.float64())]))),
)


def _csv_rows(table: list[dict[str, Any]]) -> Iterator[list[Any]]:
    for r in table:
        top = ";".join(f"{t['label']}:{t['probability']:.6f}" for t in r["top_k"])
        yield [
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


class ClassificationEvaluator:
    row_model = EvalResult
    thresholds = False
    default_batch_size = 64

    def run(self, ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
        return evaluate(ctx, ev, exp, project)

    def extra(self, ev: Evaluation, folder: str, done: bool) -> dict[str, Any]:
        return {}

    def summary(self, ev: Evaluation) -> dict[str, Any]:
        return {"accuracy": (ev.metrics or {}).get("accuracy")}

    def list_results(
        self, s: Session, ev: Evaluation, classes: list[str], filters: dict[str, Any], offset: int, limit: int
    ) -> dict[str, Any]:
        """Filtered by subset, correctness, true and predicted class; sorted by confidence
        (``confidence`` ascending, ``-confidence`` descending) or by sample."""
        unknown = sorted(set(filters) - set(FILTERS))
        if unknown:
            raise BadRequest(f"{', '.join(unknown)} filters do not apply to classification evaluations")
        subset, correct, sort = filters.get("subset"), filters.get("correct"), filters.get("sort")
        if sort and sort not in SORTS:
            raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {str(sort)[:20]!r}")
        q = select(EvalResult, Sample.name).join(Sample, Sample.id == EvalResult.sample_id)
        q = q.where(EvalResult.evaluation_id == ev.id)
        if subset:
            q = q.where(EvalResult.subset == subset)
        if correct is not None:
            q = q.where(EvalResult.correct == correct)
        t = _class_index(classes, filters.get("true"), "true")
        pr = _class_index(classes, filters.get("pred"), "predicted")
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

    def get_result(self, s: Session, ev: Evaluation, classes: list[str], sample_id: int) -> dict[str, Any]:
        row = s.execute(
            select(EvalResult, Sample.name)
            .join(Sample, Sample.id == EvalResult.sample_id)
            .where(EvalResult.evaluation_id == ev.id, EvalResult.sample_id == sample_id)
        ).first()
        if row is None:
            raise NotFound(f"sample {sample_id} has no result in this evaluation")
        return result_dict(row[0], row[1], classes)


EVALUATORS.add("classification", ClassificationEvaluator())
