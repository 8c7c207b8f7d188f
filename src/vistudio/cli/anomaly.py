"""The anomaly detection half of ``vistudio evaluate``, ``evaluation results`` and ``predict`` (the
commands are in ``cli/evaluation``): AUROC, AP and the figures at the decision threshold, the
defect types, per-image anomaly scores, and ``predict`` with an exported anomaly model
(``{"score", "anomalous"}`` per image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from vistudio.cli.output import common_folder, console, emit, key_column, table
from vistudio.errors import InvalidInput

SOURCES = {
    "given": "given",
    "f1": "best F1 on these images",
    "youden": "best Youden's J on these images",
    "fallback": "the checkpoint's validation threshold: these images hold no anomaly",
    "default": "0.5: nothing to choose it from",
}


def _n(v: Any) -> str:
    return "—" if not isinstance(v, int | float) or isinstance(v, bool) else f"{v:.4f}"


def render_metrics(ev: dict[str, Any], m: dict[str, Any]) -> None:
    """The scores' metrics, the decisions at the threshold, then one row per defect type."""
    t = table(key_column("metric"), "value")
    for key, title in (("auroc", "AUROC"), ("ap", "average precision")):
        t.add_row(title, _n(m.get(key)))
    t.add_row("threshold", f"{_n(m.get('threshold'))} ({SOURCES.get(str(m.get('threshold_source')), '')})")
    for key, title in (("f1", "F1"), ("precision", "precision"), ("tpr", "TPR (recall)"), ("fpr", "FPR")):
        t.add_row(title, _n(m.get(key)))
    t.add_row(
        "images", f"{m.get('samples', 0)} ({m.get('normal', 0)} normal, {m.get('anomalous', 0)} anomalous)"
    )
    t.add_row("TP · FP · FN · TN", f"{m.get('tp')} · {m.get('fp')} · {m.get('fn')} · {m.get('tn')}")
    console.print(t)
    per = m.get("per_defect") or {}
    if per:
        pt = table(key_column("defect"), "images", "detected", "recall", "AUROC", title="per defect type")
        for name, row in per.items():
            pt.add_row(
                escape(name), str(row["images"]), str(row["detected"]), _n(row["recall"]), _n(row["auroc"])
            )
        console.print(pt)
    if ev.get("results_path"):
        console.print(f"results: {escape(ev['results_path'])}")


def render_results(d: dict[str, Any]) -> None:
    """``evaluation results`` of an anomaly detection experiment."""
    t = table(
        "sample", "name", "subset", "true", "defect", "score", "decision", "", title=f"{d['total']} results"
    )
    for r in d["items"]:
        t.add_row(
            str(r["sample_id"]),
            escape(r["name"]),
            r["subset"],
            escape(r["true"]),
            escape(r["defect"] or ""),
            f"{r['score']:.4f}",
            "anomalous" if r["anomalous"] else "normal",
            "✓" if r["correct"] else "✗",
        )
    console.print(t)


def predict_scores(
    ctx: typer.Context, model: Path, images: list[Path], *, batch_size: int, threshold: float | None
) -> None:
    """``predict`` with an exported anomaly model: ``{"model", "predictions": [{"path", "score",
    "anomalous"}], "errors"}``; the decision at the file's threshold unless given another."""
    from vistudio.ml.inference.onnx import collect_images
    from vistudio.ml.inference.onnx_anomaly import OnnxAnomalyScorer

    scorer = OnnxAnomalyScorer(model)
    files, errors = collect_images(images)
    predictions, bad = scorer.predict_files(files, batch_size=batch_size, threshold=threshold)
    errors.extend(bad)
    if not predictions:
        raise InvalidInput(
            "no image could be read" + (f": {errors[0]['path']}: {errors[0]['reason']}" if errors else ""),
            details={"errors": errors[:100]},
        )
    out = {
        "model": {
            "path": str(model),
            "name": scorer.model,
            "task": scorer.task,
            "classes": scorer.classes,
            "threshold": threshold if threshold is not None else scorer.threshold,
            "threshold_source": "given" if threshold is not None else scorer.threshold_source,
        },
        "predictions": predictions,
        "errors": errors,
    }

    def render(d: dict[str, Any]) -> None:
        folder, names = common_folder([p["path"] for p in d["predictions"]])
        if folder:
            console.print(f"images in {escape(folder)}")
        console.print(f"threshold {d['model']['threshold']:.4f} ({d['model']['threshold_source']})")
        t = table(key_column("image"), "score", "decision")
        for p, name in zip(d["predictions"], names, strict=True):
            t.add_row(escape(name), f"{p['score']:.4f}", "anomalous" if p["anomalous"] else "normal")
        console.print(t)
        for e in d["errors"]:
            console.print(f"[red]skipped[/] {escape(e['path'])}: {escape(e['reason'])}")

    emit(ctx, out, render)
