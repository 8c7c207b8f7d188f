"""Evaluation of detection and instance segmentation experiments.

The job runs the detector over every image of the chosen subsets (an image without objects is a
negative) and stores one ``DetectionResult`` per image: its predictions (boxes in the sample's
pixels, masks as COCO RLE) and ground truth, each with its matching at the evaluation's IoU
(``ml/inference/detection_matching``: a prediction ``tp`` / ``fp`` (with the reason) /
``ignored``, an object ``tp`` / ``fn`` / ``ignored`` with the score of the prediction that found
it). Instance segmentation is matched by masks, detection by boxes.

When every image has its row, the metrics are computed over the pooled subsets:

- the 12 COCO statistics for boxes (``map``, ``map50``, ``map75``, ``map_small``, ``map_medium``,
  ``map_large``, ``mar_1``, ``mar_10``, ``mar_100``, ``mar_small``, ``mar_medium``,
  ``mar_large``) and, for instance segmentation, for masks (the same names with ``mask_``), equal
  to pycocotools' ``COCOeval``; per-class AP and AP50 (``mask_ap``, ``mask_ap50``). Undefined
  values (pycocotools' -1: no ground truth to measure them) are null;
- at the score threshold (given, or by default the confidence that maximises F1 over all
  classes): per-image TP/FP/FN, the (N+1)×(N+1) confusion matrix (background last), per-class
  and overall precision, recall and F1;
- the precision–recall curve of each class (101 recall points, COCO interpolation, at the
  evaluation's IoU) and the F1-vs-confidence curve.

Files in the evaluation folder: ``predictions.json`` (COCO results format: ``image_id`` = the
sample id, ``category_id`` = class index + 1, ``bbox`` ``[x, y, w, h]`` in the sample's pixels,
``score``, ``segmentation`` RLE for masks), ``images.json`` (image id → sample sha256, file name,
size and subset; the categories), ``results.parquet`` and ``results.csv`` (one row per image),
``metrics.json``, ``confusion_matrix.png``, ``pr_curves.png`` and ``f1_curve.png``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from vistudio.db import Project, Sample, utcnow
from vistudio.db.training import DetectionResult, Evaluation, Experiment
from vistudio.errors import BadRequest, NotFound
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.services.evaluation.core import DEFAULT_IOU, EVALUATORS, eval_dir, get_evaluation, open_run
from vistudio.services.evaluation.tables import write_csv, write_parquet
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio

OUTCOMES = ("tp", "fp", "fn")
SORTS = ("fn", "fp", "ap")
FILTERS = ("subset", "outcome", "sort")
# COCO statistic (detection_metrics.STAT_NAMES) → the name in the evaluation's metrics
METRIC_NAMES = {
    "ap": "map",
    "ap50": "map50",
    "ap75": "map75",
    "ap_small": "map_small",
    "ap_medium": "map_medium",
    "ap_large": "map_large",
    "ar1": "mar_1",
    "ar10": "mar_10",
    "ar100": "mar_100",
    "ar_small": "mar_small",
    "ar_medium": "mar_medium",
    "ar_large": "mar_large",
}
FILES = {
    "predictions_path": "predictions.json",
    "images_path": "images.json",
    "metrics_path": "metrics.json",
    "pr_curves_png_path": "pr_curves.png",
    "f1_curve_png_path": "f1_curve.png",
}


def _defined(v: float) -> float | None:
    return None if v == -1.0 else float(v)


# --- ground truth and predictions as the matching needs them ----------------------------------------


def truth_json(target: dict[str, Any], classes: list[str]) -> list[dict[str, Any]]:
    """A stored target's objects as the result's truths (box corners in the sample's pixels)."""
    w, h = int(target["width"]), int(target["height"])
    out = []
    for o in target["objects"]:
        x, y, bw, bh = (float(v) for v in o["box"])
        d: dict[str, Any] = {
            "class_index": int(o["class"]),
            "label": classes[int(o["class"])],
            "box": [x * w, y * h, (x + bw) * w, (y + bh) * h],
            "iscrowd": bool(o.get("iscrowd")),
        }
        if o.get("mask") is not None:
            d["mask"] = o["mask"]
        out.append(d)
    return out


def _truths(truths: list[dict[str, Any]], width: int, height: int, masks: bool) -> Any:
    from vistudio.ml.inference.detection_matching import Truths, object_rle

    return Truths.from_lists(
        [t["class_index"] for t in truths],
        [t["box"] for t in truths],
        [t["iscrowd"] for t in truths],
        [object_rle(t.get("mask"), t["box"], width=width, height=height) for t in truths] if masks else None,
    )


def _detections(preds: list[dict[str, Any]], masks: bool) -> Any:
    import numpy as np

    from vistudio.ml.inference.detections import Detections

    return Detections(
        np.array([p["box"] for p in preds], np.float64).reshape(-1, 4),
        np.array([p["class_index"] for p in preds], np.int64),
        np.array([p["score"] for p in preds], np.float32),
        [p["mask"] for p in preds] if masks else None,
    )


def _match(
    preds: list[dict[str, Any]],
    truths: list[dict[str, Any]],
    width: int,
    height: int,
    iou: float,
    masks: bool,
) -> Any:
    from vistudio.ml.inference.detection_matching import match_image

    return match_image(
        _truths(truths, width, height, masks), _detections(preds, masks), iou_threshold=iou, use_masks=masks
    )


def _annotate(
    preds: list[dict[str, Any]], truths: list[dict[str, Any]], m: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The predictions and truths with their matching fields."""
    pj, tj = m.to_json()
    return [{**p, **x} for p, x in zip(preds, pj, strict=True)], [
        {**t, **x} for t, x in zip(truths, tj, strict=True)
    ]


# --- the job ---------------------------------------------------------------------------------------------


class DetectionEvaluator:
    row_model = DetectionResult
    thresholds = True
    default_batch_size = 8

    def __init__(self, *, masks: bool) -> None:
        self.masks = masks

    def run(self, ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
        from vistudio.ml.inference.pytorch import detect_batches

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
        items, classes, device = run.items, run.classes, run.device
        todo = [
            (it, it.path, (int(it.target["width"]), int(it.target["height"])))
            for it in items
            if it.sample_id not in run.done
        ]
        matches: dict[int, Any] = {}  # sample id → its matching at ``iou``, kept for the metrics
        count = len(run.done)
        for batch in detect_batches(
            run.model,
            todo,
            run.meta["preprocess"],
            batch_size=run.batch_size,
            device=device,
            on_error=run.on_error,
        ):
            rows = []
            for it, det in zip(batch.items, batch.detections, strict=True):
                w, h = int(it.target["width"]), int(it.target["height"])
                preds = det.to_list(classes)
                truths = truth_json(it.target, classes)
                m = matches[it.sample_id] = _match(preds, truths, w, h, iou, self.masks)
                preds, truths = _annotate(preds, truths, m)
                counts = m.counts(0.0)
                rows.append(
                    {
                        "evaluation_id": ev.id,
                        "sample_id": it.sample_id,
                        "subset": it.subset,
                        "width": w,
                        "height": h,
                        "predictions": preds,
                        "truths": truths,
                        "tp": counts["tp"],
                        "fp": counts["fp"],
                        "fn": counts["fn"],
                        "ap": m.average_precision(),
                    }
                )
            with studio.sessions.begin() as s:
                if s.get(Evaluation, ev.id) is None:  # reset while running
                    raise JobCancelled()
                s.execute(insert(DetectionResult), rows)
            count += len(rows)
            ctx.progress(count, len(items), f"evaluating on {device.type}")
            ctx.check_cancelled()
        ctx.progress(count, len(items), "computing metrics", force=True)
        threshold = ctx.params.get("score_threshold")
        return self.finish(
            studio,
            ev,
            exp,
            project,
            classes,
            run.skipped,
            iou,
            None if threshold is None else float(threshold),
            matches,
        )

    def finish(
        self,
        studio: Studio,
        ev: Evaluation,
        exp: Experiment,
        project: Project,
        classes: list[str],
        skipped: list[dict[str, Any]],
        iou: float,
        score_threshold: float | None,
        matches_at_iou: dict[int, Any] | None = None,
    ) -> dict[str, Any]:
        """Metrics, per-image counts at the threshold, files; the evaluation marked succeeded.

        ``matches_at_iou``: sample id → its matching at ``iou``, as the run just made it; the
        other images (done by an earlier attempt of the job) are matched again from their row."""
        from vistudio.ml.inference.confusion import render_confusion_png
        from vistudio.ml.inference.detection_matching import best_f1, summarise

        with studio.sessions() as s:
            rows = s.execute(
                select(
                    DetectionResult.id,
                    DetectionResult.sample_id,
                    DetectionResult.width,
                    DetectionResult.height,
                    DetectionResult.predictions,
                    DetectionResult.truths,
                )
                .where(DetectionResult.evaluation_id == ev.id)
                .order_by(DetectionResult.sample_id)
            ).all()
        if not rows:
            raise PermanentJobError("no image of the subsets could be read: nothing to evaluate")
        n = len(classes)
        known = matches_at_iou or {}
        matches = [
            known[sid] if sid in known else _match(p, t, w, h, iou, self.masks) for _, sid, w, h, p, t in rows
        ]
        source = "given"
        if score_threshold is None:  # best F1 does not depend on the threshold
            score_threshold, source = best_f1(matches, n)["threshold"], "best_f1"
        summary = summarise(matches, n, iou_threshold=iou, score_threshold=score_threshold)
        metrics = self._coco(rows, n, classes)
        for k, name in enumerate(classes):
            metrics["per_class"][name].update(summary.per_class[k])
        metrics.update(
            {
                "iou": iou,
                "score_threshold": score_threshold,
                "score_threshold_source": source,
                "best_f1_threshold": summary.best_f1["threshold"],
                "best_f1": summary.best_f1["f1"],
                **summary.totals,
                "images": len(rows),
                "predictions": sum(len(p) for *_, p, _ in rows),
                "skipped": len(skipped),
                "skipped_items": [{k: v for k, v in x.items() if k != "path"} for x in skipped[:100]],
            }
        )
        curves = {
            "pr": [{"class": name, **c} for name, c in zip(classes, summary.pr_curves, strict=True)],
            "f1": {**summary.f1_curve, "best": summary.best_f1},
        }
        updates = []
        for (row_id, *_), m in zip(rows, matches, strict=True):
            c = m.counts(score_threshold)
            updates.append({"row_id": row_id, "tp": c["tp"], "fp": c["fp"], "fn": c["fn"]})
        with studio.sessions.begin() as s:
            s.connection().execute(
                update(DetectionResult)
                .where(DetectionResult.id == bindparam("row_id"))
                .values({"tp": bindparam("tp"), "fp": bindparam("fp"), "fn": bindparam("fn")}),
                updates,
            )
        cm = summary.confusion
        folder = eval_dir(studio, ev, project, exp)
        folder.mkdir(parents=True, exist_ok=True)
        self._write_files(studio, folder, ev, exp, classes, rows, metrics, curves, cm.tolist())
        title = f"{exp.name} · {ev.checkpoint_kind} · {'+'.join(ev.subsets)}"
        atomic_write_bytes(
            folder / "confusion_matrix.png",
            render_confusion_png(
                cm, [*classes, "background"], title=f"{title} · IoU {iou:g} · score ≥ {score_threshold:.2f}"
            ),
        )
        self._write_curves(folder, title, curves, iou)
        with studio.sessions.begin() as s:
            row = s.get(Evaluation, ev.id)
            if row is None:
                raise JobCancelled()
            row.metrics = {**metrics, "curves": curves}
            row.confusion = cm.tolist()
            row.classes = classes
            row.results_path = (
                row.results_path or (folder / "results.parquet").relative_to(studio.home).as_posix()
            )
            row.status, row.error, row.finished_at = "succeeded", None, utcnow()
        return get_evaluation(studio, project=project.id, experiment=exp.id)

    def _coco(self, rows: Sequence[Any], n: int, classes: list[str]) -> dict[str, Any]:
        from vistudio.ml.inference.detection_matching import object_rle
        from vistudio.ml.inference.detection_metrics import (
            PredictedBox,
            PredictedMask,
            TruthBox,
            TruthImage,
            TruthMask,
            coco_box_metrics,
            coco_mask_metrics,
        )
        from vistudio.ml.inference.detections import rle_area

        def xywh(b: list[float]) -> tuple[float, float, float, float]:
            return (b[0], b[1], b[2] - b[0], b[3] - b[1])

        box_truths: list[TruthImage] = []
        mask_truths: list[TruthImage] = []
        box_preds: dict[int, list[PredictedBox]] = {}
        mask_preds: dict[int, list[PredictedMask]] = {}
        for _, sid, w, h, preds, truths in rows:
            rles = (
                [object_rle(t.get("mask"), t["box"], width=w, height=h) for t in truths] if self.masks else []
            )
            # instance segmentation: an object's area (small / medium / large) is its mask's, as
            # pycocotools reads it from a COCO file's ``area`` for box evaluation too
            areas: list[float | None] = (
                [float(a) for a in rle_area(rles)] if self.masks else [None] * len(truths)
            )
            box_truths.append(
                TruthImage(
                    sid,
                    w,
                    h,
                    [
                        TruthBox(t["class_index"], xywh(t["box"]), t["iscrowd"], area)
                        for t, area in zip(truths, areas, strict=True)
                    ],
                )
            )
            box_preds[sid] = [PredictedBox(p["class_index"], xywh(p["box"]), p["score"]) for p in preds]
            if self.masks:
                mask_truths.append(
                    TruthImage(
                        sid,
                        w,
                        h,
                        [
                            TruthMask(t["class_index"], rle, t["iscrowd"])
                            for t, rle in zip(truths, rles, strict=True)
                        ],
                    )
                )
                mask_preds[sid] = [PredictedMask(p["class_index"], p["mask"], p["score"]) for p in preds]
        parts = [("", coco_box_metrics(truths=box_truths, predictions=box_preds, class_ids=range(n)))]
        if self.masks:
            parts.append(
                ("mask_", coco_mask_metrics(truths=mask_truths, predictions=mask_preds, class_ids=range(n)))
            )
        metrics: dict[str, Any] = {"per_class": {name: {} for name in classes}}
        for prefix, m in parts:
            for stat, name in METRIC_NAMES.items():
                metrics[f"{prefix}{name}"] = _defined(getattr(m, stat))
            for k, name in enumerate(classes):
                c = m.per_class.get(k)
                metrics["per_class"][name][f"{prefix}ap"] = _defined(c.ap) if c else None
                metrics["per_class"][name][f"{prefix}ap50"] = _defined(c.ap50) if c else None
        return metrics

    def _write_files(
        self,
        studio: Studio,
        folder: Path,
        ev: Evaluation,
        exp: Experiment,
        classes: list[str],
        rows: Sequence[Any],
        metrics: dict[str, Any],
        curves: dict[str, Any],
        cm: list[list[int]],
    ) -> None:
        with studio.sessions() as s:
            info = {
                sid: (name, sha, storage, path)
                for sid, name, sha, storage, path in s.execute(
                    select(Sample.id, Sample.name, Sample.sha256, Sample.storage, Sample.path)
                    .join(DetectionResult, DetectionResult.sample_id == Sample.id)
                    .where(DetectionResult.evaluation_id == ev.id)
                ).all()
            }
            table = list(
                s.scalars(
                    select(DetectionResult)
                    .where(DetectionResult.evaluation_id == ev.id)
                    .order_by(DetectionResult.sample_id)
                )
            )
            results = []
            images = []
            records = []
            for r in table:
                name, sha, storage, path = info[r.sample_id]
                images.append(
                    {
                        "id": r.sample_id,
                        "file_name": name,
                        "sha256": sha,
                        "width": r.width,
                        "height": r.height,
                        "subset": r.subset,
                    }
                )
                for p in r.predictions:
                    x1, y1, x2, y2 = p["box"]
                    entry: dict[str, Any] = {
                        "image_id": r.sample_id,
                        "category_id": p["class_index"] + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": p["score"],
                    }
                    if p.get("mask") is not None:
                        entry["segmentation"] = p["mask"]
                    results.append(entry)
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
        categories = [{"id": k + 1, "name": c} for k, c in enumerate(classes)]
        atomic_write_bytes(folder / "predictions.json", json.dumps(results).encode())
        atomic_write_bytes(
            folder / "images.json",
            json.dumps({"images": images, "categories": categories}, indent=1).encode(),
        )
        write_parquet(folder / "results.parquet", records, PARQUET_COLUMNS)
        write_csv(folder / "results.csv", CSV_COLUMNS, _csv_rows(records))
        atomic_write_bytes(
            folder / "metrics.json",
            json.dumps(
                {
                    "task": exp.task,
                    "metrics": metrics,
                    "confusion_matrix": cm,
                    "confusion_labels": [*classes, "background"],
                    "classes": classes,
                    "subsets": ev.subsets,
                    "pr_curves": curves["pr"],
                    "f1_curve": curves["f1"],
                },
                indent=2,
            ).encode(),
        )

    def _write_curves(self, folder: Path, title: str, curves: dict[str, Any], iou: float) -> None:
        from vistudio.ml.inference.curves import render_curves_png

        pr = [
            {
                "name": c["class"],
                "x": c["recall"],
                "y": c["precision"],
                "note": "no objects" if c["ap"] is None else f"AP {c['ap']:.3f}",
            }
            for c in curves["pr"]
        ]
        atomic_write_bytes(
            folder / "pr_curves.png",
            render_curves_png(pr, title=f"{title} · IoU {iou:g}", x_label="recall", y_label="precision"),
        )
        f1 = curves["f1"]
        best = f1["best"]
        atomic_write_bytes(
            folder / "f1_curve.png",
            render_curves_png(
                [
                    {"name": "F1", "x": f1["confidence"], "y": f1["f1"], "note": f"best {best['f1']:.3f}"},
                    {"name": "precision", "x": f1["confidence"], "y": f1["precision"]},
                    {"name": "recall", "x": f1["confidence"], "y": f1["recall"]},
                ],
                title=f"{title} · best F1 at {best['threshold']:.3f}",
                x_label="confidence",
                y_label="value",
                marker=(best["threshold"], best["f1"]),
            ),
        )

    # --- queries ---------------------------------------------------------------------------------------

    def extra(self, ev: Evaluation, folder: str, done: bool) -> dict[str, Any]:
        metrics = dict(ev.metrics or {})
        curves = metrics.pop("curves", None) or {}
        out: dict[str, Any] = {
            "metrics": metrics,
            "confusion_labels": [*(ev.classes or []), "background"] if ev.confusion else [],
            "pr_curves": curves.get("pr"),
            "f1_curve": curves.get("f1"),
            "best_f1_threshold": metrics.get("best_f1_threshold"),
        }
        if "iou" in metrics:
            out["iou"] = metrics["iou"]
            out["score_threshold"] = metrics["score_threshold"]
        for key, name in FILES.items():
            out[key] = f"{folder}/{name}" if done else None
        return out

    def summary(self, ev: Evaluation) -> dict[str, Any]:
        m = ev.metrics or {}
        out = {"map": m.get("map"), "map50": m.get("map50")}
        if self.masks:
            out.update(mask_map=m.get("mask_map"), mask_map50=m.get("mask_map50"))
        return out

    def list_results(
        self, s: Session, ev: Evaluation, classes: list[str], filters: dict[str, Any], offset: int, limit: int
    ) -> dict[str, Any]:
        """Filtered by subset and ``outcome`` (images with at least one TP, FP or FN at the
        evaluation's threshold); sorted by ``fn`` or ``fp`` (most first) or ``ap`` (lowest first,
        images without ground truth last), else by sample."""
        unknown = sorted(set(filters) - set(FILTERS))
        if unknown:
            raise BadRequest(f"{', '.join(unknown)} filters do not apply to detection evaluations")
        outcome, sort, subset = filters.get("outcome"), filters.get("sort"), filters.get("subset")
        if outcome and outcome not in OUTCOMES:
            raise BadRequest(f"outcome must be one of {', '.join(OUTCOMES)}, got {str(outcome)[:20]!r}")
        if sort and sort not in SORTS:
            raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {str(sort)[:20]!r}")
        R = DetectionResult
        q = select(R, Sample.name).join(Sample, Sample.id == R.sample_id).where(R.evaluation_id == ev.id)
        if subset:
            q = q.where(R.subset == subset)
        if outcome:
            q = q.where(getattr(R, outcome) > 0)
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        order = {
            "fn": (R.fn.desc(), R.sample_id),
            "fp": (R.fp.desc(), R.sample_id),
            "ap": (R.ap.is_(None), R.ap.asc(), R.sample_id),
        }.get(sort or "", (R.sample_id,))
        rows = s.execute(q.order_by(*order).offset(offset).limit(limit)).all()
        return {
            "items": [detection_result_dict(r, name) for r, name in rows],
            "total": total,
            "offset": offset,
            "limit": limit,
        }

    def get_result(self, s: Session, ev: Evaluation, classes: list[str], sample_id: int) -> dict[str, Any]:
        row = s.execute(
            select(DetectionResult, Sample.name)
            .join(Sample, Sample.id == DetectionResult.sample_id)
            .where(DetectionResult.evaluation_id == ev.id, DetectionResult.sample_id == sample_id)
        ).first()
        if row is None:
            raise NotFound(f"sample {sample_id} has no result in this evaluation")
        return detection_result_dict(row[0], row[1])


def detection_result_dict(r: DetectionResult, name: str) -> dict[str, Any]:
    return {
        "sample_id": r.sample_id,
        "name": name,
        "subset": r.subset,
        "width": r.width,
        "height": r.height,
        "tp": r.tp,
        "fp": r.fp,
        "fn": r.fn,
        "ap": r.ap,
        "thumbnail_url": f"/api/v1/samples/{r.sample_id}/thumbnail",
        "predictions": r.predictions,
        "truths": r.truths,
    }


PARQUET_COLUMNS = (
    ("sample_id", "int64"),
    ("name", "string"),
    ("path", "string"),
    ("subset", "string"),
    ("width", "int64"),
    ("height", "int64"),
    ("tp", "int64"),
    ("fp", "int64"),
    ("fn", "int64"),
    ("ap", "float64"),
    ("predictions", "string"),
    ("truths", "string"),
)


CSV_COLUMNS = ("sample_id", "name", "path", "subset", "width", "height", "tp", "fp", "fn", "ap")


def _csv_rows(table: list[dict[str, Any]]) -> Iterator[list[Any]]:
    for r in table:
        yield ["" if r[k] is None else (f"{r[k]:.6f}" if k == "ap" else r[k]) for k in CSV_COLUMNS]


EVALUATORS.add("detection", DetectionEvaluator(masks=False))
EVALUATORS.add("instance_segmentation", DetectionEvaluator(masks=True))
