"""Evaluation of oriented detection experiments (rotated boxes).

The job runs the oriented detector over every image of the chosen subsets (an image without
objects is a negative) and stores one row per image in the detection results table
(``DetectionResult``): its predictions and ground truth in the sample's pixels, each with
``points`` (the four corners, DOTA order), ``rbox`` (cx, cy, w, h, θ; the angle convention of
``ml/inference/rotated``) and ``box`` (the axis-aligned bounds, x1, y1, x2, y2), and its matching
(``outcome``, as detection's results say it) at the evaluation's IoU, by polygon IoU and the DOTA devkit's rule: predictions in decreasing
score, each matched to the object of its class with the largest IoU; above the IoU threshold it is
``tp`` when that object was not found before, ``fp`` when it was, ``ignored`` when the object is
difficult; at or under it, ``fp``. Objects are ``tp`` (with ``matched_score``, the score of the
prediction that found them), ``fn`` or ``ignored`` (difficult). Rotated boxes without a width or a height are left out
of the ground truth and counted (``skipped_objects``).

Metrics over the pooled subsets: ``map50`` — the DOTA mAP at IoU 0.5 with the 11-point AP (the
DOTA devkit's and MMRotate's default), ``map50_area`` — the same with the area under the
precision-recall curve, both ``ml/inference/dota_metrics.dota_ap`` on the stored predictions;
``per_class`` (``ap50``, ``ap50_area``, ``objects``, and at the score threshold ``tp``, ``fp``,
``fn``, ``precision``, ``recall``, ``f1``); at the score threshold (given, or the confidence that
maximises F1 over all classes) per-image and total TP/FP/FN, precision, recall and F1, and the
(N+1)×(N+1) confusion matrix (:func:`confusion`, background last).

Files in the evaluation folder: ``predictions.json`` (``image_id`` = the sample id,
``category_id`` = class index + 1, ``poly`` the eight corner coordinates, ``rbox``, ``score``),
``results.parquet`` and ``results.csv`` (one row per image), ``metrics.json`` and
``confusion_matrix.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import bindparam, insert, select, update

from vistudio.db import Project, Sample, utcnow
from vistudio.db.training import DetectionResult, Evaluation, Experiment
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.ml.inference.rotated import match_image  # the matching, shared with detect_onnx
from vistudio.services.evaluation.core import DEFAULT_IOU, EVALUATORS, eval_dir, get_evaluation, open_run
from vistudio.services.evaluation.detection import (
    CSV_COLUMNS,
    PARQUET_COLUMNS,
    DetectionEvaluator,
    _csv_rows,
)
from vistudio.services.evaluation.tables import write_csv, write_parquet
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio

DOTA_IOU = 0.5  # map50 is always the DOTA mAP at IoU 0.5, whatever the matching IoU asked for


def _box_json(corners: np.ndarray) -> dict[str, Any]:
    from vistudio.ml.inference.rotated import cxcywha_from_corners

    c = np.asarray(corners, dtype=np.float64).reshape(4, 2)
    return {
        "points": [[float(x), float(y)] for x, y in c],
        "rbox": [float(v) for v in cxcywha_from_corners(c[None])[0]],
        "box": [float(c[:, 0].min()), float(c[:, 1].min()), float(c[:, 0].max()), float(c[:, 1].max())],
    }


def truth_json(target: dict[str, Any], classes: list[str]) -> tuple[list[dict[str, Any]], int]:
    """A stored target's usable objects as the result's truths (sample pixels), and how many of
    its objects were left out (no width or no height)."""
    from vistudio.ml.inference.rotated import rotated_object

    w, h = int(target["width"]), int(target["height"])
    out, skipped = [], 0
    for o in target["objects"]:
        found = rotated_object(o, w, h)
        if found is None:
            skipped += 1
            continue
        k = int(o["class"])
        out.append(
            {"class_index": k, "label": classes[k], **_box_json(found[0]), "iscrowd": bool(o["iscrowd"])}
        )
    return out, skipped


def _counts(preds: list[dict[str, Any]], truths: list[dict[str, Any]], threshold: float) -> dict[str, int]:
    """TP/FP/FN of one matched image counting only predictions scoring at least ``threshold``."""
    tp = sum(p["outcome"] == "tp" and p["score"] >= threshold for p in preds)
    fp = sum(p["outcome"] == "fp" and p["score"] >= threshold for p in preds)
    positives = sum(t["outcome"] != "ignored" for t in truths)
    return {"tp": tp, "fp": fp, "fn": positives - tp}


def curves(
    rows: list[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]], n: int, ap50: list[Any]
) -> dict[str, Any]:
    """The pages' charts of matched rows ``(sample id, predictions, truths)``: each class's
    precision–recall curve (interpolated precision at 101 recall points, labelled with its DOTA
    ``ap50``) and the pooled precision, recall and F1 against the confidence with the best F1
    (``{"pr": [...], "f1": {..., "best": {"threshold", "f1", "precision", "recall"}}}``)."""
    from vistudio.ml.inference.detection_matching import (
        RECALL_POINTS,
        f1_vs_confidence,
        interpolated_precision,
    )

    ranked = [
        (p["class_index"], p["score"], p["outcome"] == "tp")
        for _, ps, _ in rows
        for p in ps
        if p["outcome"] != "ignored"
    ]
    positives = np.zeros(n, np.int64)
    for _, _, ts in rows:
        for t in ts:
            if t["outcome"] != "ignored":
                positives[t["class_index"]] += 1
    pr = []
    for k in range(n):
        scores = np.array([s for c, s, _ in ranked if c == k], np.float64)
        hits = np.array([h for c, _, h in ranked if c == k], bool)
        q = interpolated_precision(hits[np.argsort(-scores, kind="mergesort")], int(positives[k]))
        pr.append(
            {
                "recall": [round(float(r), 2) for r in RECALL_POINTS],
                "precision": [round(float(v), 6) for v in q],
                "ap": ap50[k] if positives[k] else None,
            }
        )
    curve, best = f1_vs_confidence(
        np.array([s for _, s, _ in ranked], np.float64),
        np.array([h for _, _, h in ranked], bool),
        int(positives.sum()),
    )
    return {"pr": pr, "f1": {**curve, "best": best}}


def confusion(
    rows: list[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]],
    n: int,
    *,
    iou: float,
    score_threshold: float,
) -> np.ndarray:
    """The (N+1)×(N+1) confusion matrix (rows the true class, columns the predicted one, the
    background last) of matched rows ``(sample id, predictions, truths)`` at a score threshold,
    counted as detection's (``detection_matching.add_to_confusion``): true positives on the
    diagonal; a missed object and a false positive of another class over it at rotated IoU >
    ``iou`` (the matching's rule) pair up off the diagonal, best IoU first; the rest against the
    background. Difficult objects and predictions on them count nowhere."""
    from vistudio.ml.inference.detection_matching import add_to_confusion
    from vistudio.ml.inference.rotated import rotated_iou_matrix

    cm = np.zeros((n + 1, n + 1), np.int64)
    for _, preds, truths in rows:
        ious = (
            rotated_iou_matrix(
                np.array([p["points"] for p in preds]), np.array([t["points"] for t in truths])
            )
            if preds and truths
            else np.zeros((len(preds), len(truths)))
        )
        add_to_confusion(
            cm,
            pred_classes=np.array([p["class_index"] for p in preds], np.int64),
            pred_scores=np.array([p["score"] for p in preds], np.float64),
            pred_outcome=[p["outcome"] for p in preds],
            truth_classes=np.array([t["class_index"] for t in truths], np.int64),
            truth_ignored=np.array([t["outcome"] == "ignored" for t in truths], bool),
            matched_score=np.array(
                [np.nan if t["matched_score"] is None else t["matched_score"] for t in truths], np.float64
            ),
            ious=ious,
            overlaps=ious > iou,
            score_threshold=score_threshold,
        )
    return cm


def dota_metrics(
    rows: list[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]], n: int, *, method: str
) -> dict[str, Any]:
    """``dota_ap`` at IoU 0.5 of stored rows ``(sample id, predictions, truths)``."""
    from vistudio.ml.inference.dota_metrics import OrientedDetection, OrientedObject, dota_ap

    truths = [
        OrientedObject(sid, t["class_index"], t["points"], t["iscrowd"]) for sid, _, ts in rows for t in ts
    ]
    dets = [
        OrientedDetection(sid, p["class_index"], p["points"], p["score"]) for sid, ps, _ in rows for p in ps
    ]
    return dota_ap(dets, truths, num_classes=n, iou_threshold=DOTA_IOU, method=method)


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


class OrientedEvaluator(DetectionEvaluator):
    """Rows in the detection results table; the queries (``list_results``, ``get_result``) are
    detection's."""

    def __init__(self) -> None:
        super().__init__(masks=False)

    def run(self, ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
        import torch

        from vistudio.ml.oriented_detectors import to_sample_pixels
        from vistudio.ml.preprocess import open_rgb

        studio = ctx.studio
        iou = float(ctx.params.get("iou") or DEFAULT_IOU)
        run = open_run(
            ctx,
            ev,
            exp,
            row_model=DetectionResult,
            default_batch_size=self.default_batch_size,
            same_task=True,
        )
        items, classes, device, model, batch_size = (
            run.items,
            run.classes,
            run.device,
            run.model,
            run.batch_size,
        )
        skipped = run.skipped
        draft = max(run.meta["preprocess"]["input_size"])
        todo = [it for it in items if it.sample_id not in run.done]
        count = len(run.done)
        for start in range(0, len(todo), batch_size):
            batch: list[Any] = []
            images: list[torch.Tensor] = []
            for it in todo[start : start + batch_size]:
                try:
                    img = open_rgb(it.path, draft_size=draft)
                except Exception as exc:  # an unreadable image is reported, not fatal
                    skipped.append({"sample_id": it.sample_id, "path": it.path, "reason": str(exc)[:300]})
                    continue
                arr = np.asarray(img, dtype=np.float32) / 255
                images.append(torch.from_numpy(arr).permute(2, 0, 1).to(device))
                batch.append(it)
            outputs = []
            if images:
                with torch.no_grad():
                    outputs = model(images)
            rows = []
            for it, x, out in zip(batch, images, outputs, strict=True):
                w, h = int(it.target["width"]), int(it.target["height"])
                det = to_sample_pixels(
                    out, input_size=(int(x.shape[-1]), int(x.shape[-2])), original_size=(w, h)
                )
                preds = [
                    {"class_index": int(k), "label": classes[int(k)], "score": float(sc), **_box_json(c)}
                    for k, c, sc in zip(det["labels"], det["corners"], det["scores"], strict=True)
                ]
                truths, _ = truth_json(it.target, classes)
                match_image(preds, truths, iou)
                counts = _counts(preds, truths, 0.0)
                image_ap = dota_metrics([(it.sample_id, preds, truths)], len(classes), method="11point")[
                    "map"
                ]
                rows.append(
                    {
                        "evaluation_id": ev.id,
                        "sample_id": it.sample_id,
                        "subset": it.subset,
                        "width": w,
                        "height": h,
                        "predictions": preds,
                        "truths": truths,
                        **counts,
                        "ap": image_ap,
                    }
                )
            if rows:
                with studio.sessions.begin() as s:
                    if s.get(Evaluation, ev.id) is None:  # reset while running
                        raise JobCancelled()
                    s.execute(insert(DetectionResult), rows)
            count += len(rows)
            ctx.progress(count, len(items), f"evaluating on {device.type}")
            ctx.check_cancelled()
        skipped_objects = sum(truth_json(it.target, classes)[1] for it in items)
        ctx.progress(count, len(items), "computing metrics", force=True)
        threshold = ctx.params.get("score_threshold")
        return self.finish_oriented(
            studio,
            ev,
            exp,
            project,
            classes,
            skipped=skipped,
            skipped_objects=skipped_objects,
            iou=iou,
            score_threshold=None if threshold is None else float(threshold),
        )

    def finish_oriented(
        self,
        studio: Studio,
        ev: Evaluation,
        exp: Experiment,
        project: Project,
        classes: list[str],
        *,
        skipped: list[dict[str, Any]],
        skipped_objects: int,
        iou: float,
        score_threshold: float | None,
    ) -> dict[str, Any]:
        """Metrics, per-image counts and the confusion matrix at the threshold, files; the
        evaluation marked succeeded."""
        from vistudio.ml.inference.confusion import render_confusion_png

        with studio.sessions() as s:
            stored = s.execute(
                select(
                    DetectionResult.id,
                    DetectionResult.sample_id,
                    DetectionResult.predictions,
                    DetectionResult.truths,
                )
                .where(DetectionResult.evaluation_id == ev.id)
                .order_by(DetectionResult.sample_id)
            ).all()
        if not stored:
            raise PermanentJobError("no image of the subsets could be read: nothing to evaluate")
        n = len(classes)
        rows = [(sid, list(p), list(t)) for _, sid, p, t in stored]
        eleven = dota_metrics(rows, n, method="11point")
        area = dota_metrics(rows, n, method="area")
        charts = curves(rows, n, eleven["ap"])
        best = charts["f1"]["best"]
        source = "given"
        if score_threshold is None:
            score_threshold, source = best["threshold"], "best_f1"
        cm = confusion(rows, n, iou=iou, score_threshold=score_threshold)
        per_class: dict[str, dict[str, Any]] = {}
        for k, name in enumerate(classes):
            mine = [
                ([p for p in ps if p["class_index"] == k], [t for t in ts if t["class_index"] == k])
                for _, ps, ts in rows
            ]
            c = [_counts(p, t, score_threshold) for p, t in mine]
            tp, fp, fn = (sum(x[key] for x in c) for key in ("tp", "fp", "fn"))
            precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
            per_class[name] = {
                "ap50": eleven["ap"][k],
                "ap50_area": area["ap"][k],
                "objects": sum(not t["iscrowd"] for _, ts in mine for t in ts),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": precision,
                "recall": recall,
                "f1": _ratio(2 * precision * recall, precision + recall),
            }
        counts = [_counts(p, t, score_threshold) for _, p, t in rows]
        tp, fp, fn = (sum(x[key] for x in counts) for key in ("tp", "fp", "fn"))
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        metrics: dict[str, Any] = {
            "map50": eleven["map"],
            "map50_area": area["map"],
            "per_class": per_class,
            "curves": {
                "pr": [{"class": name, **c} for name, c in zip(classes, charts["pr"], strict=True)],
                "f1": charts["f1"],
            },
            "iou": iou,
            "score_threshold": score_threshold,
            "score_threshold_source": source,
            "best_f1_threshold": best["threshold"],
            "best_f1": best["f1"],
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "images": len(rows),
            "objects": sum(c["objects"] for c in per_class.values()),
            "predictions": sum(len(p) for _, p, _ in rows),
            "skipped": len(skipped),
            "skipped_items": [{k: v for k, v in x.items() if k != "path"} for x in skipped[:100]],
            "skipped_objects": skipped_objects,
        }
        updates = [{"row_id": row_id, **c} for (row_id, *_), c in zip(stored, counts, strict=True)]
        with studio.sessions.begin() as s:
            s.connection().execute(
                update(DetectionResult)
                .where(DetectionResult.id == bindparam("row_id"))
                .values({"tp": bindparam("tp"), "fp": bindparam("fp"), "fn": bindparam("fn")}),
                updates,
            )
        folder = eval_dir(studio, ev, project, exp)
        folder.mkdir(parents=True, exist_ok=True)
        self._write_oriented(studio, folder, ev, exp, classes, metrics, cm.tolist())
        atomic_write_bytes(
            folder / "confusion_matrix.png",
            render_confusion_png(
                cm,
                [*classes, "background"],
                title=f"{exp.name} · {ev.checkpoint_kind} · {'+'.join(ev.subsets)} · IoU {iou:g}"
                f" · score ≥ {score_threshold:.2f}",
            ),
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

    def _write_oriented(
        self,
        studio: Studio,
        folder: Path,
        ev: Evaluation,
        exp: Experiment,
        classes: list[str],
        metrics: dict[str, Any],
        cm: list[list[int]],
    ) -> None:
        with studio.sessions() as s:
            table = s.execute(
                select(DetectionResult, Sample.name, Sample.storage, Sample.path)
                .join(Sample, Sample.id == DetectionResult.sample_id)
                .where(DetectionResult.evaluation_id == ev.id)
                .order_by(DetectionResult.sample_id)
            ).all()
            results, records = [], []
            for r, name, storage, path in table:
                for p in r.predictions:
                    results.append(
                        {
                            "image_id": r.sample_id,
                            "category_id": p["class_index"] + 1,
                            "poly": [v for xy in p["points"] for v in xy],
                            "rbox": p["rbox"],
                            "score": p["score"],
                        }
                    )
                records.append(
                    {
                        "sample_id": r.sample_id,
                        "name": name,
                        "path": str(studio.photo_file(storage, path)),
                        "subset": r.subset,
                        "width": r.width,
                        "height": r.height,
                        "tp": r.tp,
                        "fp": r.fp,
                        "fn": r.fn,
                        "ap": r.ap,
                        "predictions": json.dumps(r.predictions),
                        "truths": json.dumps(r.truths),
                    }
                )
        atomic_write_bytes(folder / "predictions.json", json.dumps(results).encode())
        write_parquet(folder / "results.parquet", records, PARQUET_COLUMNS)
        write_csv(folder / "results.csv", CSV_COLUMNS, _csv_rows(records))
        categories = [{"id": k + 1, "name": c} for k, c in enumerate(classes)]
        atomic_write_bytes(
            folder / "metrics.json",
            json.dumps(
                {
                    "task": exp.task,
                    "metrics": metrics,
                    "confusion_matrix": cm,
                    "classes": classes,
                    "categories": categories,
                    "subsets": ev.subsets,
                },
                indent=2,
            ).encode(),
        )

    def extra(self, ev: Evaluation, folder: str, done: bool) -> dict[str, Any]:
        metrics = dict(ev.metrics or {})
        charts = metrics.pop("curves", None) or {}
        out: dict[str, Any] = {
            "metrics": metrics,
            "confusion_labels": [*(ev.classes or []), "background"] if ev.confusion else [],
            "pr_curves": charts.get("pr"),
            "f1_curve": charts.get("f1"),
            "best_f1_threshold": metrics.get("best_f1_threshold"),
            "predictions_path": f"{folder}/predictions.json" if done else None,
            "metrics_path": f"{folder}/metrics.json" if done else None,
        }
        if "iou" in metrics:
            out["iou"] = metrics["iou"]
            out["score_threshold"] = metrics["score_threshold"]
        return out

    def summary(self, ev: Evaluation) -> dict[str, Any]:
        m = ev.metrics or {}
        return {"map50": m.get("map50"), "map50_area": m.get("map50_area")}


EVALUATORS.add("oriented_detection", OrientedEvaluator())
