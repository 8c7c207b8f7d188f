"""Evaluation of anomaly detection experiments, in the classification results table: one
``EvalResult`` per image with ``true_index`` 0 (normal) or 1 (anomalous), ``pred_index`` the
decision (1: score ≥ threshold), ``confidence`` the **anomaly score** (0..1, the sigmoid of the
model's logit), ``topk`` ``[[defect class index, 1.0]]`` for an anomalous image (its defect type,
an index into the evaluation's ``classes``, the experiment's: normal first) and ``[]`` for a normal
one, ``correct`` whether the decision is right.

Metrics (``ml/inference/anomaly``): ``auroc`` (= Mann–Whitney U / (n₀n₁)), ``ap``, and at the
``threshold`` — given (``score_threshold``), else the one that maximises F1 or Youden's J on these
images (``threshold_by``: ``f1``, the default, or ``youden``), else, when the images hold no
anomaly, the checkpoint's validation threshold — ``f1``, ``precision``, ``recall`` = ``tpr``,
``fpr``, ``accuracy`` and the counts; the ROC and PR curves, the score histograms of normal and
anomalous images, and ``per_defect`` (per defect type: images, detected at the threshold, recall,
AUROC against the normal images). The decisions stored are those at the threshold, so the rows
reproduce the reported TPR and FPR exactly. Files: ``results.parquet``, ``results.csv``,
``metrics.json`` and ``confusion_matrix.png`` (normal/anomalous).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.orm import Session

from vistudio.db import Project, Sample, utcnow
from vistudio.db.training import EvalResult, Evaluation, Experiment
from vistudio.errors import BadRequest, InvalidInput, NotFound
from vistudio.jobs.worker import JobCancelled, JobContext
from vistudio.services.evaluation.core import EVALUATORS, eval_dir, get_evaluation, open_run
from vistudio.services.evaluation.tables import ColumnType, write_csv, write_parquet
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio

SORTS = ("score", "-score", "confidence", "-confidence")  # lowest score first, highest first
FILTERS = ("subset", "correct", "true", "pred", "sort")
ANOMALOUS = "anomalous"


def evaluate(ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
    from vistudio.ml.inference.anomaly import sigmoid
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
        requires=("anomaly",),
    )
    items, classes, device, meta = run.items, run.classes, run.device, run.meta
    todo = [(it, it.path) for it in items if it.sample_id not in run.done]
    count = len(run.done)
    for batch in predict_batches(
        run.model, todo, meta["preprocess"], batch_size=run.batch_size, device=device, on_error=run.on_error
    ):
        scores = sigmoid(batch.logits.reshape(-1))
        # the decision is set once the threshold is known (it depends on every score)
        rows = [
            {
                "evaluation_id": ev.id,
                "sample_id": it.sample_id,
                "subset": it.subset,
                "true_index": 0 if it.target == 0 else 1,
                "pred_index": 0,
                "confidence": float(scores[r]),
                "topk": [] if it.target == 0 else [[int(it.target), 1.0]],
                "correct": it.target == 0,
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
    fallback = (meta.get("details") or {}).get("threshold")
    return _finish(ctx, ev, exp, project, classes, run.skipped, fallback)


def _finish(
    ctx: JobContext,
    ev: Evaluation,
    exp: Experiment,
    project: Project,
    classes: list[str],
    skipped: list[dict[str, Any]],
    fallback: float | None,
) -> dict[str, Any]:
    import numpy as np

    from vistudio.ml.inference.anomaly import anomaly_metrics, auroc
    from vistudio.ml.inference.confusion import render_confusion_png

    studio = ctx.studio
    with studio.sessions() as s:
        rows = s.execute(
            select(EvalResult.true_index, EvalResult.confidence, EvalResult.topk)
            .where(EvalResult.evaluation_id == ev.id)
            .order_by(EvalResult.sample_id)
        ).all()
    y = np.array([t for t, _, _ in rows], dtype=np.int64)
    scores = np.array([c for _, c, _ in rows], dtype=np.float64)
    given = ctx.params.get("score_threshold")
    metrics = anomaly_metrics(
        y,
        scores,
        threshold_by=str(ctx.params.get("threshold_by") or "f1"),
        threshold=None if given is None else float(given),
        fallback_threshold=None if fallback is None else float(fallback),
    )
    threshold = float(metrics["threshold"])
    defects = np.array([int(k[0][0]) if k else 0 for _, _, k in rows], dtype=np.int64)
    per_defect: dict[str, Any] = {}
    for index, name in enumerate(classes[1:], start=1):
        mine = defects == index
        n = int(mine.sum())
        if not n:
            continue
        detected = int((scores[mine] >= threshold).sum())
        both = (defects == 0) | mine
        per_defect[name] = {
            "images": n,
            "detected": detected,
            "recall": detected / n,
            "auroc": auroc(y[both], scores[both]),
        }
    metrics["per_defect"] = per_defect
    metrics["normal_class"] = classes[0]
    metrics["skipped"] = len(skipped)
    metrics["skipped_items"] = [{k: v for k, v in x.items() if k != "path"} for x in skipped[:100]]
    cm = [[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]]
    with studio.sessions.begin() as s:  # the decisions at the threshold
        s.execute(
            update(EvalResult)
            .where(EvalResult.evaluation_id == ev.id)
            .values(pred_index=case((EvalResult.confidence >= threshold, 1), else_=0))
        )
        s.execute(
            update(EvalResult)
            .where(EvalResult.evaluation_id == ev.id)
            .values(correct=EvalResult.pred_index == EvalResult.true_index)
        )
    folder = eval_dir(studio, ev, project, exp)
    folder.mkdir(parents=True, exist_ok=True)
    table = _result_table(studio, ev.id, classes)
    write_parquet(folder / "results.parquet", table, RESULT_COLUMNS)
    write_csv(folder / "results.csv", [name for name, _ in RESULT_COLUMNS], _csv_rows(table))
    labels = [classes[0], ANOMALOUS]
    atomic_write_bytes(
        folder / "confusion_matrix.png",
        render_confusion_png(
            np.asarray(cm), labels, title=f"{exp.name} · {ev.checkpoint_kind} · {'+'.join(ev.subsets)}"
        ),
    )
    atomic_write_bytes(
        folder / "metrics.json",
        json.dumps(
            {"metrics": metrics, "confusion_matrix": cm, "classes": classes, "subsets": ev.subsets}, indent=2
        ).encode(),
    )
    with studio.sessions.begin() as s:
        row = s.get(Evaluation, ev.id)
        if row is None:
            raise JobCancelled()
        row.metrics = metrics
        row.confusion = cm
        row.classes = classes
        row.results_path = (
            row.results_path or (folder / "results.parquet").relative_to(studio.home).as_posix()
        )
        row.status, row.error, row.finished_at = "succeeded", None, utcnow()
    return get_evaluation(studio, project=project.id, experiment=exp.id)


def _names(r: EvalResult, classes: list[str]) -> tuple[str, str, str | None]:
    """``(true, predicted, defect type)`` of a row: the normal class's name or ``anomalous``."""
    true = classes[0] if r.true_index == 0 else ANOMALOUS
    predicted = classes[0] if r.pred_index == 0 else ANOMALOUS
    defect = classes[int(r.topk[0][0])] if r.topk and 0 < int(r.topk[0][0]) < len(classes) else None
    return true, predicted, defect


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
        true, _, defect = _names(r, classes)
        out.append(
            {
                "sample_id": r.sample_id,
                "name": name,
                "path": str(studio.photo_file(storage, path)),
                "subset": r.subset,
                "true": true,
                "defect": defect,
                "score": r.confidence,
                "anomalous": bool(r.pred_index),
                "correct": bool(r.correct),
            }
        )
    return out


RESULT_COLUMNS: tuple[tuple[str, ColumnType], ...] = (
    ("sample_id", "int64"),
    ("name", "string"),
    ("path", "string"),
    ("subset", "string"),
    ("true", "string"),
    ("defect", "string"),
    ("score", "float64"),
    ("anomalous", "bool"),
    ("correct", "bool"),
)


def _csv_rows(table: list[dict[str, Any]]) -> Iterator[list[Any]]:
    for r in table:
        yield [
            r["sample_id"],
            r["name"],
            r["path"],
            r["subset"],
            r["true"],
            r["defect"] or "",
            repr(float(r["score"])),
            "true" if r["anomalous"] else "false",
            "true" if r["correct"] else "false",
        ]


def result_dict(r: EvalResult, name: str, classes: list[str]) -> dict[str, Any]:
    true, predicted, defect = _names(r, classes)
    return {
        "sample_id": r.sample_id,
        "name": name,
        "subset": r.subset,
        "true": true,
        "true_index": r.true_index,
        "defect": defect,
        "predicted": predicted,
        "pred_index": r.pred_index,
        "score": r.confidence,
        "anomalous": bool(r.pred_index),
        "confidence": r.confidence,
        "correct": bool(r.correct),
        "thumbnail_url": f"/api/v1/samples/{r.sample_id}/thumbnail",
    }


def _truth_filter(classes: list[str], name: str | None) -> tuple[str, int] | None:
    """``true=``: the normal class's name or ``anomalous`` (the label), or a defect type."""
    if name is None or name == "":
        return None
    if name == classes[0]:
        return ("label", 0)
    if name == ANOMALOUS:
        return ("label", 1)
    if name in classes[1:]:
        return ("defect", classes.index(name))
    raise InvalidInput(
        f"unknown class {name[:80]!r}: give {classes[0]!r}, {ANOMALOUS!r} or a defect type",
        details={"classes": [*classes[:200], ANOMALOUS]},
    )


class AnomalyEvaluator:
    row_model = EvalResult
    thresholds = False  # no IoU; the decision threshold is its own (decision_threshold)
    decision_threshold = True
    default_batch_size = 64

    def run(self, ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
        return evaluate(ctx, ev, exp, project)

    def extra(self, ev: Evaluation, folder: str, done: bool) -> dict[str, Any]:
        classes = list(ev.classes or [])
        return {
            "metrics_path": f"{folder}/metrics.json" if done else None,
            "confusion_labels": [classes[0], ANOMALOUS] if classes else [],
        }

    def summary(self, ev: Evaluation) -> dict[str, Any]:
        m = ev.metrics or {}
        return {"auroc": m.get("auroc"), "ap": m.get("ap")}

    def list_results(
        self, s: Session, ev: Evaluation, classes: list[str], filters: dict[str, Any], offset: int, limit: int
    ) -> dict[str, Any]:
        """Filtered by subset, correctness, truth (``true``: the normal class, ``anomalous`` or a
        defect type) and decision (``pred``: the normal class or ``anomalous``); sorted by the
        anomaly score (``score`` lowest first, ``-score`` highest first; ``confidence`` the same)
        or by sample."""
        unknown = sorted(set(filters) - set(FILTERS))
        if unknown:
            raise BadRequest(f"{', '.join(unknown)} filters do not apply to anomaly detection evaluations")
        subset, correct, sort = filters.get("subset"), filters.get("correct"), filters.get("sort")
        if sort and sort not in SORTS:
            raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {str(sort)[:20]!r}")
        q = select(EvalResult, Sample.name).join(Sample, Sample.id == EvalResult.sample_id)
        q = q.where(EvalResult.evaluation_id == ev.id)
        if subset:
            q = q.where(EvalResult.subset == subset)
        if correct is not None:
            q = q.where(EvalResult.correct == correct)
        truth = _truth_filter(classes, filters.get("true"))
        if truth is not None and truth[0] == "label":
            q = q.where(EvalResult.true_index == truth[1])
        pred = _truth_filter(classes, filters.get("pred"))
        if pred is not None and pred[0] != "label":
            raise InvalidInput(f"pred is {classes[0]!r} or {ANOMALOUS!r}: the model does not name defects")
        if pred is not None:
            q = q.where(EvalResult.pred_index == pred[1])
        if truth is not None and truth[0] == "defect":
            # the defect type is in the row's topk ([[index, 1.0]]): filtered here, not in SQL
            every = s.execute(q.order_by(*_order(sort))).all()
            rows = [(r, n) for r, n in every if _names(r, classes)[2] == filters["true"]]
            return {
                "items": [result_dict(r, n, classes) for r, n in rows[offset : offset + limit]],
                "total": len(rows),
                "offset": offset,
                "limit": limit,
            }
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        page = s.execute(q.order_by(*_order(sort)).offset(offset).limit(limit)).all()
        return {
            "items": [result_dict(r, n, classes) for r, n in page],
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


def _order(sort: str | None) -> tuple[Any, ...]:
    if sort in ("score", "confidence"):
        return (EvalResult.confidence.asc(), EvalResult.sample_id)
    if sort in ("-score", "-confidence"):
        return (EvalResult.confidence.desc(), EvalResult.sample_id)
    return (EvalResult.sample_id,)


EVALUATORS.add("anomaly_detection", AnomalyEvaluator())
