"""CLI: ``vistudio evaluate``, ``vistudio evaluation …``, ``vistudio export``, ``vistudio exports``
and ``vistudio predict``.

Paths in this command's JSON are absolute (the CLI runs beside its workspace); the API gives them
relative to the workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import common_folder, console, emit, key_column, state, table, wait_for_success
from vistudio.errors import InvalidInput
from vistudio.ml.export import DEFAULT_OPSET
from vistudio.text import plural

# the evaluation and exports services are imported inside the commands (start-up time): their job
# handlers and experiment-cleanup hook register wherever they are needed (jobs.registry.load_handlers,
# services.experiments.cleanup_hooks), not because this module happened to be imported

evaluation_app = typer.Typer(help="An experiment's evaluation: show, results, reset.", no_args_is_help=True)
PATH_KEYS = (
    "results_path",
    "csv_path",
    "confusion_png_path",
    "path",
    "metadata_path",
    "predictions_path",
    "images_path",
    "metrics_path",
    "pr_curves_png_path",
    "f1_curve_png_path",
    "predictions_dir",
    "ground_truth_dir",
)


def _absolute(ctx: typer.Context, d: dict[str, Any]) -> dict[str, Any]:
    home = state(ctx).studio().home
    return {k: (str(home / v) if k in PATH_KEYS and v else v) for k, v in d.items()}


def _brief_job(job: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: job[k] for k in ("id", "kind", "status", "error")} if job else None


def _evaluation_out(ctx: typer.Context, ev: dict[str, Any]) -> dict[str, Any]:
    out = _absolute(ctx, ev)
    out["job"] = _brief_job(ev.get("job"))
    return out


def _render_evaluation(d: dict[str, Any]) -> None:
    ev = d["evaluation"]
    m = ev.get("metrics") or {}
    console.print(
        f"[bold]{ev['experiment']}[/] · {ev['checkpoint']} checkpoint · {', '.join(ev['subsets'])} · "
        f"{ev['status']}"
    )
    if not m:
        return
    if "r2" in m:  # regression: errors in the targets' units, no confusion matrix
        from vistudio.cli.regression import render_metrics

        render_metrics(ev, m)
        return
    if "auroc" in m:  # anomaly detection: scores, the threshold, the defect types
        from vistudio.cli.anomaly import render_metrics as render_anomaly

        render_anomaly(ev, m)
        return
    if "miou" in m:  # semantic segmentation: pixel scores, per-class IoU
        _render_segmentation(ev, m)
        return
    if "map50_area" in m:  # oriented detection: DOTA mAP50, per class, no confusion matrix yet
        _render_oriented(m)
        if ev.get("results_path"):
            console.print(f"results: {escape(ev['results_path'])}")
        return
    if "map" in m:
        _render_detection(ev, m)
    else:
        t = table(key_column("metric"), "value")
        for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_f1", "weighted_f1"):
            t.add_row(key, f"{m[key]:.4f}")
        t.add_row("images", str(m["samples"]))
        console.print(t)
    classes = ev.get("confusion_labels") or ev["classes"]
    cm = table("true \\ predicted", *(escape(c) for c in classes), title="confusion matrix")
    for name, row in zip(classes, ev["confusion_matrix"], strict=True):
        cm.add_row(escape(name), *(str(v) for v in row))
    console.print(cm)
    if ev.get("results_path"):
        console.print(f"results: {escape(ev['results_path'])}")


def _number(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def _render_oriented(m: dict[str, Any]) -> None:
    console.print(
        f"mAP50 (DOTA, 11-point) {_number(m['map50'])} · mAP50 (area) {_number(m['map50_area'])} · "
        f"at IoU {m['iou']:g} and score ≥ {m['score_threshold']:.3f} "
        f"({m['score_threshold_source'].replace('_', ' ')}): precision {m['precision']:.3f} · "
        f"recall {m['recall']:.3f} · F1 {m['f1']:.3f} · TP {m['tp']} · FP {m['fp']} · FN {m['fn']}"
    )
    pc = table(
        key_column("class"), "objects", "AP50", "AP50 (area)", "precision", "recall", "F1", title="per class"
    )
    for name, c in m["per_class"].items():
        pc.add_row(
            escape(name),
            str(c["objects"]),
            _number(c["ap50"]),
            _number(c["ap50_area"]),
            f"{c['precision']:.3f}",
            f"{c['recall']:.3f}",
            f"{c['f1']:.3f}",
        )
    console.print(pc)


def _render_detection(ev: dict[str, Any], m: dict[str, Any]) -> None:
    prefixes = ["", "mask_"] if "mask_map" in m else [""]
    t = table(key_column("metric"), *("box" if not p else "mask" for p in prefixes))
    for key in (
        "map",
        "map50",
        "map75",
        "map_small",
        "map_medium",
        "map_large",
        "mar_1",
        "mar_10",
        "mar_100",
        "mar_small",
        "mar_medium",
        "mar_large",
    ):
        t.add_row(key, *(_number(m.get(p + key)) for p in prefixes))
    console.print(t)
    console.print(
        f"at IoU {m['iou']:g} and score ≥ {m['score_threshold']:.3f} ({m['score_threshold_source'].replace('_', ' ')}): "
        f"precision {m['precision']:.3f} · recall {m['recall']:.3f} · F1 {m['f1']:.3f} · "
        f"TP {m['tp']} · FP {m['fp']} · FN {m['fn']} · best F1 {m['best_f1']:.3f} at {m['best_f1_threshold']:.3f}"
    )
    pc = table(
        key_column("class"),
        "objects",
        "AP",
        "AP50",
        *(["mask AP", "mask AP50"] if len(prefixes) > 1 else []),
        "precision",
        "recall",
        "F1",
        title="per class",
    )
    for name, c in m["per_class"].items():
        masks = [_number(c.get("mask_ap")), _number(c.get("mask_ap50"))] if len(prefixes) > 1 else []
        pc.add_row(
            escape(name),
            str(c["objects"]),
            _number(c["ap"]),
            _number(c["ap50"]),
            *masks,
            f"{c['precision']:.3f}",
            f"{c['recall']:.3f}",
            f"{c['f1']:.3f}",
        )
    console.print(pc)


def _render_segmentation(ev: dict[str, Any], m: dict[str, Any]) -> None:
    """Semantic segmentation: the dataset-wide scores, then each class's IoU, Dice, accuracy and
    pixels (the pixel confusion matrix is in the JSON and ``confusion_matrix.png``)."""
    t = table(key_column("metric"), "value")
    for key in ("miou", "pixel_accuracy", "mean_class_accuracy", "dice"):
        t.add_row(key, _number(m.get(key)))
    t.add_row("images", str(m["images"]))
    t.add_row("labelled pixels", f"{m['pixels']:,}")
    if m.get("skipped"):
        t.add_row("unreadable, skipped", str(m["skipped"]))
    console.print(t)
    pc = table(key_column("class"), "IoU", "Dice", "accuracy", "pixels", "predicted", title="per class")
    for name in ev["classes"]:
        iou = m["per_class_iou"].get(name)
        pc.add_row(
            escape(name),
            "absent" if iou is None else f"{iou:.4f}",
            _number(m["per_class_dice"].get(name)),
            _number(m["per_class_accuracy"].get(name)),
            f"{m['per_class_pixels'].get(name, 0):,}",
            f"{m['per_class_predicted'].get(name, 0):,}",
        )
    console.print(pc)
    console.print(
        "mIoU: the mean over classes of the dataset-wide IoU (classes absent from labels and "
        "predictions left out); per-image IoU only ranks the images"
    )
    if ev.get("results_path"):
        console.print(f"results: {escape(ev['results_path'])}")


def evaluate(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name or id")],
    experiment: Annotated[str, typer.Argument(help="experiment name or id")],
    subsets: Annotated[str, typer.Option(help="split subsets, comma-separated: train,val,test")] = "test",
    checkpoint: Annotated[str, typer.Option(help="best | last")] = "best",
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="images per batch (default: 64 for classifiers, 8 for detectors)"),
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    iou: Annotated[
        float | None, typer.Option(help="detection: IoU a prediction needs to match an object (default 0.5)")
    ] = None,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            "--score-threshold",
            help="detection: score from which predictions count (default: the confidence of the best F1); "
            "anomaly detection: the anomaly score from which an image is anomalous",
        ),
    ] = None,
    labels: Annotated[
        str,
        typer.Option(
            help="version: the labels of the experiment's dataset version; current: as they are now"
        ),
    ] = "version",
    threshold_by: Annotated[
        str | None,
        typer.Option(
            "--threshold-by",
            help="anomaly detection: f1 | youden, the criterion the decision threshold maximises "
            "(default f1; or give --score-threshold)",
        ),
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and return")] = False,
) -> None:
    """Evaluate an experiment's checkpoint on split subsets (replaces its previous evaluation).

    Anomaly detection: AUROC, average precision, and F1, TPR and FPR at the decision threshold
    (--score-threshold, or the one that maximises --threshold-by), ROC and PR curves.

    Detection and instance segmentation: COCO mAP (boxes, and masks), per-class AP, and at the
    IoU and score threshold the per-image TP/FP/FN, the confusion matrix and precision/recall/F1.
    Regression: MAE, MSE, RMSE and R² in the targets' units, averaged and per target.
    Semantic segmentation: mIoU, pixel accuracy, mean class accuracy, Dice and per-class IoU over
    the pixels of all the images, and each image's predicted label PNG."""
    from vistudio.services import evaluation

    studio = state(ctx).studio()
    started = evaluation.start_evaluation(
        studio,
        project=project,
        experiment=experiment,
        checkpoint=checkpoint,
        subsets=subsets,
        batch_size=batch_size,
        device=device,
        iou=iou,
        score_threshold=score_threshold,
        labels=labels,
        threshold_by=threshold_by,
    )
    if no_wait:
        emit(
            ctx,
            {"job": started["job"], "evaluation": _evaluation_out(ctx, started["evaluation"])},
            lambda d: console.print(f"queued evaluation job {d['job']['id']}"),
        )
        return
    wait_for_success(ctx, started["job"]["id"], "evaluation")
    ev = evaluation.get_evaluation(studio, project=project, experiment=experiment)
    emit(ctx, {"evaluation": _evaluation_out(ctx, ev)}, _render_evaluation)


@evaluation_app.command("show")
def show(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name or id")],
    experiment: Annotated[str, typer.Argument(help="experiment name or id")],
) -> None:
    """The evaluation: metrics, confusion matrix, files."""
    from vistudio.services import evaluation

    ev = evaluation.get_evaluation(state(ctx).studio(), project=project, experiment=experiment)
    emit(ctx, {"evaluation": _evaluation_out(ctx, ev)}, _render_evaluation)


@evaluation_app.command("tag")
def tag_results(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name or id")],
    experiment: Annotated[str, typer.Argument(help="experiment name or id")],
    add: Annotated[list[str] | None, typer.Option("--add", help="tag to add (repeatable)")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="tag to remove (repeatable)")] = None,
    subset: Annotated[str | None, typer.Option(help="train | val | test")] = None,
    wrong: Annotated[bool, typer.Option("--wrong", help="only mistakes")] = False,
    right: Annotated[bool, typer.Option("--correct", help="only correct predictions")] = False,
    true: Annotated[str | None, typer.Option("--true", help="true class name")] = None,
    pred: Annotated[str | None, typer.Option("--pred", help="predicted class name")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="detection: images with at least one tp | fp | fn")
    ] = None,
    present: Annotated[
        str | None,
        typer.Option(help="semantic segmentation: images with this class in the ground truth or prediction"),
    ] = None,
) -> None:
    """Tag every image of the evaluation's results that passes the filters (e.g. --wrong), as one
    undoable change → {"changed", "change_id"}."""
    from vistudio.services import edits

    if wrong and right:
        raise InvalidInput("--wrong and --correct exclude each other")
    filters = {"subset": subset, "correct": False if wrong else True if right else None, "true": true}
    filters |= {"pred": pred, "outcome": outcome, "present": present}
    out = edits.tag_results(
        state(ctx).studio(),
        project=project,
        experiment=experiment,
        filters=filters,
        add=add or [],
        remove=remove or [],
        actor=edits.cli_actor(),
    )
    emit(ctx, out, lambda d: console.print(f"{d['changed']} images tagged (change {d['change_id']})"))


@evaluation_app.command("results")
def results(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name or id")],
    experiment: Annotated[str, typer.Argument(help="experiment name or id")],
    subset: Annotated[str | None, typer.Option(help="train | val | test")] = None,
    wrong: Annotated[bool, typer.Option("--wrong", help="only mistakes")] = False,
    right: Annotated[bool, typer.Option("--correct", help="only correct predictions")] = False,
    true: Annotated[str | None, typer.Option("--true", help="true class name")] = None,
    pred: Annotated[str | None, typer.Option("--pred", help="predicted class name")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="detection: images with at least one tp | fp | fn")
    ] = None,
    present: Annotated[
        str | None,
        typer.Option(help="semantic segmentation: images with this class in the ground truth or prediction"),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            help="confidence (lowest first) | -confidence (highest first); detection: fn | fp (most first) | ap (lowest first); regression: abs_error (smallest first) | -abs_error (largest first); anomaly detection: score (lowest first) | -score (highest first); semantic segmentation: iou (lowest first, the default) | -iou | pixel_accuracy | -pixel_accuracy"
        ),
    ] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Per-image results with filters, sorting and pagination → {"items", "total"}."""
    from vistudio.services import evaluation

    if wrong and right:
        raise InvalidInput("--wrong and --correct exclude each other")
    out = evaluation.list_results(
        state(ctx).studio(),
        project=project,
        experiment=experiment,
        subset=subset,
        correct=False if wrong else True if right else None,
        true=true,
        pred=pred,
        outcome=outcome,
        present=present,
        sort=sort,
        offset=offset,
        limit=limit,
    )

    def render(d: dict[str, Any]) -> None:
        if d["items"] and "tp" in d["items"][0]:
            render_boxes(d)
            return
        if d["items"] and "per_class" in d["items"][0]:
            render_regions(d)
            return
        if d["items"] and "abs_error" in d["items"][0]:
            from vistudio.cli.regression import render_results

            render_results(d)
            return
        if d["items"] and "score" in d["items"][0]:
            from vistudio.cli.anomaly import render_results as render_scores

            render_scores(d)
            return
        t = table(
            "sample", "name", "subset", "true", "predicted", "confidence", "", title=f"{d['total']} results"
        )
        for r in d["items"]:
            t.add_row(
                str(r["sample_id"]),
                r["name"],
                r["subset"],
                r["true"],
                r["predicted"],
                f"{r['confidence']:.3f}",
                "[green]✓[/]" if r["correct"] else "[red]✗[/]",
            )
        console.print(t)

    def render_boxes(d: dict[str, Any]) -> None:
        t = table(
            "sample",
            "name",
            "subset",
            "objects",
            "predictions",
            "TP",
            "FP",
            "FN",
            "AP",
            title=f"{d['total']} results",
        )
        for r in d["items"]:
            t.add_row(
                str(r["sample_id"]),
                escape(r["name"]),
                r["subset"],
                str(sum(1 for x in r["truths"] if not x["iscrowd"])),
                str(len(r["predictions"])),
                str(r["tp"]),
                f"[red]{r['fp']}[/]" if r["fp"] else "0",
                f"[red]{r['fn']}[/]" if r["fn"] else "0",
                "—" if r["ap"] is None else f"{r['ap']:.3f}",
            )
        console.print(t)

    def render_regions(d: dict[str, Any]) -> None:
        t = table(
            "sample", "name", "subset", "IoU", "pixel acc.", "classes (IoU)", title=f"{d['total']} results"
        )
        for r in d["items"]:
            per = ", ".join(
                f"{c['class']} {'—' if c['iou'] is None else format(c['iou'], '.2f')}" for c in r["per_class"]
            )
            t.add_row(
                str(r["sample_id"]),
                escape(r["name"]),
                r["subset"],
                _number(r["iou"]),
                _number(r["pixel_accuracy"]),
                escape(per),
            )
        console.print(t)

    emit(ctx, out, render)


@evaluation_app.command("reset")
def reset(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name or id")],
    experiment: Annotated[str, typer.Argument(help="experiment name or id")],
) -> None:
    """Delete the evaluation now: its results, its files, and its job if it still runs."""
    from vistudio.services import evaluation

    out = evaluation.reset_evaluation(state(ctx).studio(), project=project, experiment=experiment)
    emit(ctx, out, lambda d: console.print(f"evaluation of {d['experiment']} deleted"))


def export(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name or id")],
    experiment: Annotated[str, typer.Argument(help="experiment name or id")],
    fmt: Annotated[str, typer.Option("--format", help="onnx | torchscript")] = "onnx",
    checkpoint: Annotated[str, typer.Option(help="best | last")] = "best",
    opset: Annotated[int, typer.Option(help="ONNX opset")] = DEFAULT_OPSET,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            "--score-threshold",
            help="detectors: the score threshold predict uses with the file (default: the best-F1 "
            "confidence of the experiment's evaluation, else the training's)",
        ),
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and return")] = False,
) -> None:
    """Export an experiment's checkpoint to ONNX or TorchScript, validated against PyTorch."""
    from vistudio.services import exports

    studio = state(ctx).studio()
    started = exports.start_export(
        studio,
        project=project,
        experiment=experiment,
        format=fmt,
        checkpoint=checkpoint,
        opset=opset,
        score_threshold=score_threshold,
    )
    if no_wait:
        emit(
            ctx,
            {"job": started["job"], "export": _absolute(ctx, started["export"])},
            lambda d: console.print(f"queued export job {d['job']['id']}"),
        )
        return
    wait_for_success(ctx, started["job"]["id"], "export")
    out = exports.get_export(studio, started["export"]["id"])
    out["job"] = _brief_job(out.get("job"))

    def render(d: dict[str, Any]) -> None:
        e, v = d["export"], d["export"]["validation"]
        console.print(f"[bold]{e['format']}[/] export: {escape(e['path'])}")
        if "matched" in v:  # a detector: compared box by box
            worst = (
                f"; worst box IoU {v['min_box_iou']:.4f}, max |Δscore| {v['max_abs_score_diff']:.1e}"
                if v["matched"]
                else ""
            )
            masks = f", worst mask IoU {v['min_mask_iou']:.4f}" if v.get("min_mask_iou") is not None else ""
            console.print(
                f"validated on {plural(v['images'], 'image')} ({v['source']}): "
                f"{v['matched']} of {v['boxes_pytorch']} boxes matched{worst}{masks}"
            )
            opts = e.get("options") or {}
            if opts.get("score_threshold") is not None:
                console.print(
                    f"score threshold {opts['score_threshold']:.3f} "
                    f"({THRESHOLD_SOURCES.get(str(opts.get('score_threshold_source')), 'given')}): "
                    "predict keeps the detections scoring at least it unless told otherwise"
                )
            return
        if "max_std_diff" in v:  # a regressor: values in the targets' units
            from vistudio.cli.regression import render_validation

            render_validation(v)
            return
        if "pixel_disagreement" in v:  # a segmenter: logits, then label maps at the images' sizes
            console.print(
                f"validated on {plural(v['images'], 'image')} ({v['source']}): max |Δlogit| "
                f"{v['max_abs_diff']:.2e}; {v['pixels_differing']} of {v['pixels']} pixels labelled "
                f"differently ({v['pixel_disagreement']:.4%}), {v['images_identical']} identical label maps"
            )
            return
        console.print(
            f"validated on {plural(v['images'], 'image')} ({v['source']}): max |Δlogit| {v['max_abs_diff']:.2e}, "
            f"top-1 agreement {v['top1_agreement']:.0%}"
        )

    emit(ctx, {"export": _absolute(ctx, out)}, render)


# where an export's score threshold comes from, in words
THRESHOLD_SOURCES = {
    "given": "given",
    "evaluation": "best F1 of the evaluation",
    "training": "the training's",
}


def exports_list(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name or id")],
    experiment: Annotated[str | None, typer.Argument(help="experiment name or id")] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Exported models of a project (or of one experiment) → {"items", "total"}."""
    from vistudio.services import exports

    out = exports.list_exports(
        state(ctx).studio(), project=project, experiment=experiment, offset=offset, limit=limit
    )
    out["items"] = [_absolute(ctx, e) for e in out["items"]]

    def render(d: dict[str, Any]) -> None:
        t = table(key_column("id"), "experiment", "format", "checkpoint", "status", "top-1 agree", "path")
        for e in d["items"]:
            agree = (e["validation"] or {}).get("top1_agreement")
            t.add_row(
                str(e["id"]),
                e["experiment"],
                e["format"],
                e["checkpoint"],
                e["status"],
                "" if agree is None else f"{agree:.0%}",
                e["path"] or "",
            )
        console.print(t)

    emit(ctx, out, render)


def predict(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="an .onnx file exported by vistudio")],
    images: Annotated[list[Path], typer.Argument(help="image files or folders (searched recursively)")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=1000, help="classes to list per image")] = 5,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1024)] = 32,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            "--score-threshold",
            min=0.0,
            max=1.0,
            help="detectors: keep detections scoring at least this (default: the file's recorded threshold)",
        ),
    ] = None,
    save_overlays: Annotated[
        Path | None,
        typer.Option(
            "--save-overlays",
            help="detectors and segmenters: write each image with its detections or label map drawn into DIR",
        ),
    ] = None,
    label_maps: Annotated[
        Path | None,
        typer.Option(
            "--label-maps",
            help="semantic segmentation: where each image's label map goes, a palette PNG (default ./label-maps)",
        ),
    ] = None,
) -> None:
    """Classify images, find objects in them, label their pixels or predict their values with an
    exported ONNX model (ONNX Runtime, the model's own preprocessing).

    Unreadable files are listed under "errors" and the others go on; no workspace is needed.
    """
    from vistudio.ml.inference.onnx import OnnxClassifier, collect_images, is_detector_task, model_task
    from vistudio.ml.inference.onnx_segmentation import is_segmenter_task
    from vistudio.ml.inference.regression import is_regression_task

    task = model_task(model)
    if label_maps is not None and not is_segmenter_task(task):
        raise InvalidInput(
            f"--label-maps is for semantic segmentation models; this one is a {task[:60]} model"
        )
    if is_detector_task(task):
        _predict_detections(
            ctx, model, images, task=task, score_threshold=score_threshold, overlays=save_overlays
        )
        return
    if is_segmenter_task(task):
        from vistudio.cli.predict_segmentation import predict_segmentation

        if score_threshold is not None:
            raise InvalidInput("--score-threshold is for detection models; this one labels pixels")
        predict_segmentation(
            ctx, model, images, label_maps=label_maps, overlays=save_overlays, batch_size=batch_size
        )
        return
    from vistudio.ml.inference.onnx_anomaly import is_anomaly_task

    if is_anomaly_task(task):  # one score per image; --score-threshold: the decision's threshold
        from vistudio.cli.anomaly import predict_scores

        if save_overlays is not None:
            raise InvalidInput("--save-overlays is for detection and segmentation models")
        predict_scores(ctx, model, images, batch_size=batch_size, threshold=score_threshold)
        return
    if score_threshold is not None or save_overlays is not None:
        raise InvalidInput(
            "--score-threshold and --save-overlays are for detection models; this one "
            + ("predicts values" if is_regression_task(task) else "classifies")
        )
    if is_regression_task(task):
        from vistudio.cli.regression import predict_values

        predict_values(ctx, model, images, batch_size=batch_size)
        return
    clf = OnnxClassifier(model)
    files, errors = collect_images(images)
    predictions, bad = clf.predict_files(files, k=top_k, batch_size=batch_size)
    errors.extend(bad)
    if not predictions:
        raise InvalidInput(
            "no image could be classified"
            + (f": {errors[0]['path']}: {errors[0]['reason']}" if errors else ""),
            details={"errors": errors[:100]},
        )
    out = {
        "model": {"path": str(model), "name": clf.model, "classes": clf.classes},
        "predictions": [p.to_dict() for p in predictions],
        "errors": errors,
    }

    def render(d: dict[str, Any]) -> None:
        # the folder the images share is said once; rows show what tells them apart
        folder, names = common_folder([p["path"] for p in d["predictions"]])
        if folder:
            console.print(f"images in {escape(folder)}")
        t = table(key_column("image"), "label", "confidence", "top-k")
        for p, name in zip(d["predictions"], names, strict=True):
            top = ", ".join(f"{x['label']}: {x['probability']:.2f}" for x in p["top_k"][1:])
            t.add_row(escape(name), escape(p["label"]), f"{p['confidence']:.3f}", escape(top))
        console.print(t)
        for e in d["errors"]:
            console.print(f"[red]skipped[/] {escape(e['path'])}: {escape(e['reason'])}")

    emit(ctx, out, render)


def _overlay_name(path: str, taken: set[str]) -> str:
    """``<stem>.png``, with ``-2``, ``-3``… when two images share a stem."""
    from vistudio.pipelines.saver import safe_name

    stem = safe_name(Path(path).stem, 100)
    name, n = f"{stem}.png", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return name


def _predict_detections(
    ctx: typer.Context,
    model: Path,
    images: list[Path],
    *,
    task: str,
    score_threshold: float | None,
    overlays: Path | None,
) -> None:
    """``predict`` with a detector: boxes (and masks) per image, overlays on request; an oriented
    detector's detections are rotated boxes (``points``, ``rbox``, ``box``: see
    :mod:`vistudio.ml.inference.onnx_oriented`)."""
    from vistudio.ml.inference.onnx import OnnxDetector, collect_images
    from vistudio.ml.inference.onnx_oriented import OnnxOrientedDetector, draw_oriented, is_oriented_task
    from vistudio.ml.inference.overlays import draw_detections
    from vistudio.ml.preprocess import open_rgb
    from vistudio.storage.atomic import atomic_write_bytes

    oriented = is_oriented_task(task)
    det: OnnxDetector | OnnxOrientedDetector = (
        OnnxOrientedDetector(model) if oriented else OnnxDetector(model)
    )
    draw: Any = draw_oriented if oriented else draw_detections
    if overlays is not None and overlays.exists() and not overlays.is_dir():
        raise InvalidInput(f"--save-overlays: {overlays} exists and is not a folder")
    files, errors = collect_images(images)
    predictions, bad = det.predict_files(files, score_threshold=score_threshold)
    errors.extend(bad)
    if not predictions:
        raise InvalidInput(
            "no image could be read" + (f": {errors[0]['path']}: {errors[0]['reason']}" if errors else ""),
            details={"errors": errors[:100]},
        )
    rows = [p.to_dict(det.classes) for p in predictions]
    if overlays is not None:
        import io

        overlays.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        for p, row in zip(predictions, rows, strict=True):
            img = open_rgb(p.path)  # the full image: the detections are in its pixels
            buf = io.BytesIO()
            draw(img, p.detections, det.classes).save(buf, "PNG")
            dest = overlays / _overlay_name(p.path, taken)
            atomic_write_bytes(dest, buf.getvalue())
            row["overlay"] = str(dest)
    out = {
        "model": {
            "path": str(model),
            "name": det.model,
            "task": det.task,
            "classes": det.classes,
            "score_threshold": score_threshold if score_threshold is not None else det.score_threshold,
            "score_threshold_source": "given" if score_threshold is not None else det.score_threshold_source,
        },
        "predictions": rows,
        "errors": errors,
    }

    def render(d: dict[str, Any]) -> None:
        folder, names = common_folder([p["path"] for p in d["predictions"]])
        if folder:
            console.print(f"images in {escape(folder)}")
        t = table(key_column("image"), "objects", "detections (best first)")
        for p, name in zip(d["predictions"], names, strict=True):
            found = ", ".join(f"{x['label']} {x['score']:.2f}" for x in p["detections"][:8])
            more = len(p["detections"]) - 8
            t.add_row(
                escape(name),
                str(len(p["detections"])),
                escape(found + (f", … {more} more" if more > 0 else "")),
            )
        console.print(t)
        if overlays is not None:
            console.print(f"overlays in {escape(str(overlays))}")
        for e in d["errors"]:
            console.print(f"[red]skipped[/] {escape(e['path'])}: {escape(e['reason'])}")

    emit(ctx, out, render)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("evaluate")(evaluate)
    app.add_typer(evaluation_app, name="evaluation")
    app.command("export")(export)
    app.command("exports")(exports_list)
    app.command("predict")(predict)
