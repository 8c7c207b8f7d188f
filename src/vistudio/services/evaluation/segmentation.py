"""Evaluation of semantic segmentation experiments.

The job runs the segmenter over every image of the chosen subsets, in batches, with the shared
evaluation preprocessing (``ml/inference/pytorch.predict_batches``), and turns each image's logits
into its predicted label map exactly as training's validation does
(``ml/tasks/semantic_segmentation.predict_label_map``: bilinear upsampling to the image's own size,
then the argmax). The ground truth is the stored target's label map
(``ml/tasks/semantic_segmentation.label_map``, at the labels of the experiment's dataset version or
the current ones). Each image gets one ``SegmentationResult``: its pixel confusion histogram
(ignored pixels, 255, left out), its IoU (the mean over the classes present in its ground truth or
prediction) and pixel accuracy, and its two label PNGs.

When every image has its row, the metrics come from the **sum of the histograms** over the pooled
subsets (``ml/inference/segmentation_metrics``, MMSegmentation's definitions): ``miou`` (the
classes absent from both labels and predictions left out), ``pixel_accuracy``,
``mean_class_accuracy``, ``dice`` and per class ``per_class_iou`` / ``per_class_dice`` /
``per_class_accuracy`` (``None`` where a class has no value), plus the same headline numbers per
subset (``by_subset``). A per-image IoU is for ranking images only: the mean of per-image IoUs is
not the dataset's mIoU. A crash mid-run resumes: images that have a row are skipped and the
histogram is rebuilt from the rows.

Files in the evaluation folder: ``predictions/<sample id>-<name>.png`` and
``ground_truth/<sample id>-<name>.png`` (8-bit palette PNGs whose values are the class indices,
255 ignored: ``ml/inference/label_images``), ``results.parquet`` and ``results.csv`` (one row per
image, the PNGs relative to the folder), ``metrics.json`` and ``confusion_matrix.png`` (pixels).
The Evaluate page lays RGBA renderings of the PNGs over each image (:func:`result_layer`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from vistudio.db import LabelClass, Project, Sample, utcnow
from vistudio.db.training import Evaluation, Experiment, SegmentationResult
from vistudio.errors import BadRequest, InvalidInput, NotFound
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.services.evaluation.core import (
    EVALUATORS,
    SUBSETS,
    eval_dir,
    evaluator_for,
    get_evaluation,
    open_run,
)
from vistudio.services.evaluation.tables import ColumnType, write_csv, write_parquet
from vistudio.services.exports import resolve
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio

SORTS = ("iou", "-iou", "pixel_accuracy", "-pixel_accuracy")
FILTERS = ("subset", "present", "sort")
LAYERS = ("prediction", "truth", "error")
PREDICTIONS = "predictions"
GROUND_TRUTH = "ground_truth"
# a tile asks for its layer at about its own size; the detail at the image's size, up to this
MAX_LAYER_SIDE = 4096


# --- histograms ------------------------------------------------------------------------------------------


def sparse_histogram(hist: npt.NDArray[np.int64]) -> list[list[int]]:
    """The non-zero cells of a ``(K, K)`` histogram as ``[[true, predicted, pixels], …]``."""
    t, p = np.nonzero(hist)
    return [[int(a), int(b), int(hist[a, b])] for a, b in zip(t.tolist(), p.tolist(), strict=True)]


def dense_histogram(cells: Sequence[Sequence[int]], num_classes: int) -> npt.NDArray[np.int64]:
    """The ``(K, K)`` histogram of :func:`sparse_histogram`'s cells."""
    hist = np.zeros((num_classes, num_classes), np.int64)
    for t, p, n in cells:
        hist[int(t), int(p)] += int(n)
    return hist


def present_classes(hist: npt.NDArray[np.int64]) -> list[int]:
    """The classes with a pixel in the ground truth or the prediction (ignored pixels apart)."""
    return [int(k) for k in np.nonzero(hist.sum(axis=0) + hist.sum(axis=1))[0]]


def _present_text(classes: list[int]) -> str:
    # ",0,3," : a class filter is one LIKE '%,3,%' on every database
    return "," + "".join(f"{k}," for k in classes)


def hex_colour(c: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*c)


def model_colours(s: Session, project_id: int, classes: list[str]) -> list[tuple[int, int, int]]:
    """Each model class's colour as the project's dataset pages draw its regions."""
    from vistudio.ml.inference.label_images import class_colours

    page = list(
        s.scalars(
            select(LabelClass.name)
            .where(LabelClass.project_id == project_id)
            .order_by(LabelClass.ordinal, LabelClass.id)
        )
    )
    return class_colours(classes, page)


def _sample_names(s: Session, ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        out.update((i, n) for i, n in s.execute(select(Sample.id, Sample.name).where(Sample.id.in_(chunk))))
    return out


def _file_name(sample_id: int, name: str) -> str:
    """``<sample id>-<the image's file stem>.png``: unique, and readable in a file browser."""
    from vistudio.pipelines.saver import safe_name

    return f"{sample_id}-{safe_name(Path(name).stem, 60)}.png"


# --- the job ---------------------------------------------------------------------------------------------


class SegmentationEvaluator:
    row_model = SegmentationResult
    thresholds = False
    default_batch_size = 8

    def run(self, ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
        from vistudio.ml.inference.label_images import encode_label_png, label_palette
        from vistudio.ml.inference.pytorch import predict_batches
        from vistudio.ml.inference.segmentation_metrics import confusion_histogram, segmentation_scores
        from vistudio.ml.tasks.semantic_segmentation import label_map, predict_label_map

        studio = ctx.studio
        run = open_run(
            ctx,
            ev,
            exp,
            row_model=SegmentationResult,
            default_batch_size=self.default_batch_size,
            same_task=True,
        )
        items, classes, device, on_error = run.items, run.classes, run.device, run.on_error
        todo = [(it, it.path) for it in items if it.sample_id not in run.done]
        with studio.sessions() as s:
            colours = model_colours(s, project.id, classes)
            names = _sample_names(s, [it.sample_id for it, _ in todo])
        k = len(classes)
        palette = label_palette(colours)
        folder = eval_dir(studio, ev, project, exp)
        count = len(run.done)
        for batch in predict_batches(
            run.model,
            todo,
            run.meta["preprocess"],
            batch_size=run.batch_size,
            device=device,
            on_error=on_error,
        ):
            rows = []
            written: list[Path] = []
            for it, logits in zip(batch.items, batch.logits, strict=True):
                w, h = int(it.target["width"]), int(it.target["height"])
                try:
                    truth = label_map(it.target, w, h)
                except ValueError as exc:  # a stored target that cannot be drawn (damaged geometry)
                    on_error(it, f"its labels cannot be drawn: {exc}"[:300])
                    continue
                pred = predict_label_map(logits, w, h)
                hist = confusion_histogram(truth, pred, k)
                scores = segmentation_scores(hist)
                name = _file_name(it.sample_id, names.get(it.sample_id) or it.path)
                paths = (folder / PREDICTIONS / name, folder / GROUND_TRUTH / name)
                for dest, label in zip(paths, (pred, truth), strict=True):
                    atomic_write_bytes(dest, encode_label_png(label, palette))
                    written.append(dest)
                rows.append(
                    {
                        "evaluation_id": ev.id,
                        "sample_id": it.sample_id,
                        "subset": it.subset,
                        "width": w,
                        "height": h,
                        "iou": scores.miou,
                        "pixel_accuracy": scores.pixel_accuracy,
                        "pixels": scores.pixels,
                        "histogram": sparse_histogram(hist),
                        "classes": _present_text(present_classes(hist)),
                        "prediction_path": paths[0].relative_to(studio.home).as_posix(),
                        "truth_path": paths[1].relative_to(studio.home).as_posix(),
                    }
                )
            with studio.sessions.begin() as s:
                if s.get(Evaluation, ev.id) is None:  # reset while running: its folder is gone too
                    for path in written:
                        path.unlink(missing_ok=True)
                    raise JobCancelled()
                if rows:
                    s.execute(insert(SegmentationResult), rows)
            count += len(rows)
            ctx.progress(count, len(items), f"evaluating on {device.type}")
            ctx.check_cancelled()
        ctx.progress(count, len(items), "computing metrics", force=True)
        return self.finish(studio, ev, exp, project, classes, colours, run.skipped)

    def finish(
        self,
        studio: Studio,
        ev: Evaluation,
        exp: Experiment,
        project: Project,
        classes: list[str],
        colours: list[tuple[int, int, int]],
        skipped: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The metrics from the rows' histograms, the files; the evaluation marked succeeded."""
        from vistudio.ml.inference.confusion import render_confusion_png

        k = len(classes)
        with studio.sessions() as s:
            rows = s.execute(
                select(SegmentationResult.subset, SegmentationResult.histogram).where(
                    SegmentationResult.evaluation_id == ev.id
                )
            ).all()
        if not rows:
            raise PermanentJobError("no image of the subsets could be read: nothing to evaluate")
        by_subset: dict[str, npt.NDArray[np.int64]] = {}
        counts: dict[str, int] = {}
        for subset, cells in rows:
            h = by_subset.setdefault(subset, np.zeros((k, k), np.int64))
            h += dense_histogram(cells, k)
            counts[subset] = counts.get(subset, 0) + 1
        hist = np.zeros((k, k), np.int64)
        for part in by_subset.values():
            hist += part
        metrics = scores_dict(hist, classes)
        metrics["by_subset"] = {
            subset: {
                key: value
                for key, value in scores_dict(by_subset[subset], classes).items()
                if not key.startswith("per_class")
            }
            | {"images": counts[subset]}
            for subset in SUBSETS
            if subset in by_subset
        }
        metrics.update(
            {
                "images": len(rows),
                "class_colours": [hex_colour(c) for c in colours],
                "skipped": len(skipped),
                "skipped_items": [{k: v for k, v in x.items() if k != "path"} for x in skipped[:100]],
            }
        )
        folder = eval_dir(studio, ev, project, exp)
        folder.mkdir(parents=True, exist_ok=True)
        self._write_files(studio, folder, ev, exp, classes, metrics, hist)
        title = f"{exp.name} · {ev.checkpoint_kind} · {'+'.join(ev.subsets)} · pixels"
        atomic_write_bytes(folder / "confusion_matrix.png", render_confusion_png(hist, classes, title=title))
        with studio.sessions.begin() as s:
            row = s.get(Evaluation, ev.id)
            if row is None:
                raise JobCancelled()
            row.metrics = metrics
            row.confusion = hist.tolist()
            row.classes = classes
            row.results_path = (
                row.results_path or (folder / "results.parquet").relative_to(studio.home).as_posix()
            )
            row.status, row.error, row.finished_at = "succeeded", None, utcnow()
        return get_evaluation(studio, project=project.id, experiment=exp.id)

    def _write_files(
        self,
        studio: Studio,
        folder: Path,
        ev: Evaluation,
        exp: Experiment,
        classes: list[str],
        metrics: dict[str, Any],
        hist: npt.NDArray[np.int64],
    ) -> None:
        with studio.sessions() as s:
            table = s.execute(
                select(SegmentationResult, Sample.name, Sample.storage, Sample.path)
                .join(Sample, Sample.id == SegmentationResult.sample_id)
                .where(SegmentationResult.evaluation_id == ev.id)
                .order_by(SegmentationResult.sample_id)
            ).all()
        records = []
        for r, name, storage, path in table:
            records.append(
                {
                    "sample_id": r.sample_id,
                    "name": name,
                    "path": str(studio.photo_file(storage, path)),
                    "subset": r.subset,
                    "width": r.width,
                    "height": r.height,
                    "iou": r.iou,
                    "pixel_accuracy": r.pixel_accuracy,
                    "pixels": r.pixels,
                    "classes": [classes[i] for i in _classes_of(r)],
                    "prediction": _relative(studio, r.prediction_path, folder),
                    "ground_truth": _relative(studio, r.truth_path, folder),
                }
            )
        write_parquet(folder / "results.parquet", records, PARQUET_COLUMNS)
        write_csv(folder / "results.csv", CSV_COLUMNS, _csv_rows(records))
        atomic_write_bytes(
            folder / "metrics.json",
            json.dumps(
                {
                    "task": exp.task,
                    "metrics": metrics,
                    "confusion_matrix": hist.tolist(),
                    "classes": classes,
                    "subsets": ev.subsets,
                    "ignore_index": 255,
                },
                indent=2,
            ).encode(),
        )

    # --- queries ---------------------------------------------------------------------------------------

    def extra(self, ev: Evaluation, folder: str, done: bool) -> dict[str, Any]:
        metrics = ev.metrics or {}
        return {
            "confusion_labels": list(ev.classes or []) if ev.confusion else [],
            "class_colours": metrics.get("class_colours") or [],
            "metrics_path": f"{folder}/metrics.json" if done else None,
            "predictions_dir": f"{folder}/{PREDICTIONS}" if done else None,
            "ground_truth_dir": f"{folder}/{GROUND_TRUTH}" if done else None,
        }

    def summary(self, ev: Evaluation) -> dict[str, Any]:
        m = ev.metrics or {}
        return {"miou": m.get("miou"), "pixel_accuracy": m.get("pixel_accuracy")}

    def list_results(
        self, s: Session, ev: Evaluation, classes: list[str], filters: dict[str, Any], offset: int, limit: int
    ) -> dict[str, Any]:
        """Filtered by subset and ``present`` (images where that class is in the ground truth or
        the prediction); sorted by ``iou`` (lowest first, the default), ``-iou`` (highest first),
        ``pixel_accuracy`` or ``-pixel_accuracy``; images without a labelled pixel last."""
        unknown = sorted(set(filters) - set(FILTERS))
        if unknown:
            raise BadRequest(
                f"{', '.join(unknown)} filters do not apply to semantic segmentation evaluations"
            )
        subset, sort = filters.get("subset"), filters.get("sort") or "iou"
        if sort not in SORTS:
            raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {str(sort)[:20]!r}")
        R = SegmentationResult
        q = select(R, Sample.name).join(Sample, Sample.id == R.sample_id).where(R.evaluation_id == ev.id)
        if subset:
            q = q.where(R.subset == subset)
        present = filters.get("present")
        if present:
            if present not in classes:
                raise InvalidInput(f"unknown class {str(present)[:80]!r}", details={"classes": classes[:200]})
            q = q.where(R.classes.contains(f",{classes.index(present)},"))
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        column = R.iou if sort.lstrip("-") == "iou" else R.pixel_accuracy
        direction = column.desc() if sort.startswith("-") else column.asc()
        rows = s.execute(
            q.order_by(column.is_(None), direction, R.sample_id).offset(offset).limit(limit)
        ).all()
        exp = s.get_one(Experiment, ev.experiment_id)
        return {
            "items": [segmentation_result_dict(r, name, classes, exp) for r, name in rows],
            "total": total,
            "offset": offset,
            "limit": limit,
        }

    def get_result(self, s: Session, ev: Evaluation, classes: list[str], sample_id: int) -> dict[str, Any]:
        row = s.execute(
            select(SegmentationResult, Sample.name)
            .join(Sample, Sample.id == SegmentationResult.sample_id)
            .where(SegmentationResult.evaluation_id == ev.id, SegmentationResult.sample_id == sample_id)
        ).first()
        if row is None:
            raise NotFound(f"sample {sample_id} has no result in this evaluation")
        return segmentation_result_dict(row[0], row[1], classes, s.get_one(Experiment, ev.experiment_id))


def scores_dict(hist: npt.NDArray[np.int64], classes: list[str]) -> dict[str, Any]:
    """The evaluation's metrics of one histogram: the headline scores and, per class name, IoU,
    Dice, accuracy (recall) and the pixels labelled and predicted."""
    from vistudio.ml.inference.segmentation_metrics import segmentation_scores

    sc = segmentation_scores(hist)

    def named(values: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(classes, values, strict=True))

    return {
        "miou": sc.miou,
        "pixel_accuracy": sc.pixel_accuracy,
        "mean_class_accuracy": sc.mean_class_accuracy,
        "dice": sc.dice,
        "pixels": sc.pixels,
        "per_class_iou": named(sc.per_class_iou),
        "per_class_dice": named(sc.per_class_dice),
        "per_class_accuracy": named(sc.per_class_accuracy),
        "per_class_pixels": named([int(v) for v in hist.sum(axis=1)]),
        "per_class_predicted": named([int(v) for v in hist.sum(axis=0)]),
    }


def _classes_of(r: SegmentationResult) -> list[int]:
    return [int(x) for x in r.classes.strip(",").split(",") if x]


def _relative(studio: Studio, path: str, folder: Path) -> str:
    try:
        return (studio.home / path).relative_to(folder).as_posix()
    except ValueError:  # not under the folder (cannot happen for rows this module wrote)
        return path


def segmentation_result_dict(
    r: SegmentationResult, name: str, classes: list[str], exp: Experiment
) -> dict[str, Any]:
    """One image's result: its numbers, each present class's IoU and pixels in it, the paths of
    its label PNGs (relative to the workspace) and the URLs of its overlay layers."""
    hist = dense_histogram(r.histogram, len(classes))
    tp = np.diag(hist)
    truth, predicted = hist.sum(axis=1), hist.sum(axis=0)
    per_class = []
    for k in _classes_of(r):
        if k >= len(classes):
            continue
        union = int(truth[k] + predicted[k] - tp[k])
        per_class.append(
            {
                "class": classes[k],
                "index": k,
                "iou": float(tp[k] / union) if union else None,
                "truth_pixels": int(truth[k]),
                "predicted_pixels": int(predicted[k]),
                "correct_pixels": int(tp[k]),
            }
        )
    base = f"/api/v1/evaluations/{exp.project_id}/{exp.id}/results/{r.sample_id}"
    return {
        "sample_id": r.sample_id,
        "name": name,
        "subset": r.subset,
        "width": r.width,
        "height": r.height,
        "iou": r.iou,
        "pixel_accuracy": r.pixel_accuracy,
        "pixels": r.pixels,
        "classes": [c["class"] for c in per_class],
        "per_class": per_class,
        "prediction_path": r.prediction_path,
        "truth_path": r.truth_path,
        "thumbnail_url": f"/api/v1/samples/{r.sample_id}/thumbnail",
        "layers": {layer: f"{base}/{layer}.png?v={r.evaluation_id}" for layer in LAYERS},
    }


# --- overlay layers --------------------------------------------------------------------------------------


def result_layer(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int,
    sample_id: int,
    layer: str,
    size: int | None = None,
) -> bytes:
    """One image's overlay as an RGBA PNG: ``prediction`` (its predicted classes in their
    colours, the background transparent), ``truth`` (its ground truth; ignored pixels hatched
    grey) or ``error`` (the pixels predicted wrong in red). ``size``: the longer side at most
    that many pixels (the grid's tiles), else the image's own size."""
    from vistudio.ml.inference.label_images import (
        error_layer,
        prediction_layer,
        read_label_png,
        rgba_png,
        shrink,
        truth_layer,
    )

    if layer not in LAYERS:
        raise BadRequest(f"layer must be one of {', '.join(LAYERS)}, got {layer[:20]!r}")
    if size is not None and not 16 <= size <= MAX_LAYER_SIDE:
        raise BadRequest(f"size must be between 16 and {MAX_LAYER_SIDE}, got {size}")
    with studio.sessions() as s:
        p, exp = resolve(s, project, experiment)
        if not isinstance(evaluator_for(exp.task), SegmentationEvaluator):
            raise BadRequest(f"mask layers are for semantic segmentation evaluations, not {exp.task}")
        ev = s.scalar(select(Evaluation).where(Evaluation.experiment_id == exp.id))
        if ev is None:
            raise NotFound(f"experiment {exp.name!r} has not been evaluated")
        row = s.scalar(
            select(SegmentationResult).where(
                SegmentationResult.evaluation_id == ev.id, SegmentationResult.sample_id == sample_id
            )
        )
        if row is None:
            raise NotFound(f"sample {sample_id} has no result in this evaluation")
        stored = (ev.metrics or {}).get("class_colours")
        colours = (
            [_rgb(c) for c in stored] if stored else model_colours(s, p.id, list(ev.classes or exp.classes))
        )
        paths = {"prediction": row.prediction_path, "truth": row.truth_path}
    needed = {"prediction": ("prediction",), "truth": ("truth",), "error": ("prediction", "truth")}[layer]
    maps = {}
    for key in needed:
        path = studio.home / paths[key]
        try:
            maps[key] = shrink(read_label_png(path), min(size or MAX_LAYER_SIDE, MAX_LAYER_SIDE))
        except FileNotFoundError:
            raise NotFound(
                f"the {key} label image of sample {sample_id} is missing ({paths[key]}): evaluate again"
            ) from None
    if layer == "prediction":
        return rgba_png(prediction_layer(maps["prediction"], colours))
    if layer == "truth":
        return rgba_png(truth_layer(maps["truth"], colours))
    if maps["truth"].shape != maps["prediction"].shape:
        raise InvalidInput(f"the label images of sample {sample_id} differ in size: evaluate again")
    return rgba_png(error_layer(maps["truth"], maps["prediction"]))


def _rgb(text: str) -> tuple[int, int, int]:
    v = text.lstrip("#")
    return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)


PARQUET_COLUMNS: tuple[tuple[str, ColumnType], ...] = (
    ("sample_id", "int64"),
    ("name", "string"),
    ("path", "string"),
    ("subset", "string"),
    ("width", "int64"),
    ("height", "int64"),
    ("iou", "float64"),
    ("pixel_accuracy", "float64"),
    ("pixels", "int64"),
    ("classes", lambda pa: pa.list_(pa.string())),
    ("prediction", "string"),
    ("ground_truth", "string"),
)
CSV_COLUMNS = (
    "sample_id",
    "name",
    "path",
    "subset",
    "width",
    "height",
    "iou",
    "pixel_accuracy",
    "pixels",
    "classes",
    "prediction",
    "ground_truth",
)


def _csv_rows(table: list[dict[str, Any]]) -> Iterator[list[Any]]:
    for r in table:
        out = []
        for key in CSV_COLUMNS:
            v = r[key]
            if v is None:
                out.append("")
            elif key in ("iou", "pixel_accuracy"):
                out.append(f"{v:.6f}")
            elif key == "classes":
                out.append(";".join(v))
            else:
                out.append(v)
        yield out


EVALUATORS.add("semantic_segmentation", SegmentationEvaluator())
