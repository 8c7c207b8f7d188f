"""The regression half of ``vistudio evaluate``, ``evaluation results``, ``export`` and ``predict``
(the commands are in ``cli/evaluation``): tables of MAE, MSE, RMSE and R², per-image values and
errors, and ``predict`` with an exported regressor (``{"values": [...]}`` per image, in the
targets' units).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from vistudio.cli.output import common_folder, console, emit, key_column, table
from vistudio.errors import InvalidInput
from vistudio.text import plural


def number(v: Any) -> str:
    """A value in the targets' units: 4 significant decimals, exponents for the very big or small."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return "—"
    return f"{v:.6g}" if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3) else f"{v:.4f}"


def values_text(values: list[float]) -> str:
    return ", ".join(number(v) for v in values)


def render_metrics(ev: dict[str, Any], m: dict[str, Any]) -> None:
    """The averaged metrics, then one row per target when there are several."""
    t = table(key_column("metric"), "value")
    for key, title in (("mae", "MAE"), ("mse", "MSE"), ("rmse", "RMSE"), ("r2", "R²")):
        t.add_row(title, number(m.get(key)))
    t.add_row("images", str(m.get("samples", 0)))
    console.print(t)
    per = m.get("per_target") or {}
    if len(per) > 1:
        pt = table(key_column("target"), "MAE", "MSE", "RMSE", "R²", title="per target")
        for name, row in per.items():
            pt.add_row(escape(name), *(number(row.get(k)) for k in ("mae", "mse", "rmse", "r2")))
        console.print(pt)
    left = sum((m.get("left_out") or {}).values())
    if left:
        console.print(f"[yellow]{plural(left, 'image')} without usable values left out[/]")
    if ev.get("results_path"):
        console.print(f"results: {escape(ev['results_path'])}")


def render_results(d: dict[str, Any]) -> None:
    """``evaluation results`` of a regression experiment."""
    t = table("sample", "name", "subset", "true", "predicted", "abs error", title=f"{d['total']} results")
    for r in d["items"]:
        t.add_row(
            str(r["sample_id"]),
            escape(r["name"]),
            r["subset"],
            values_text(r["truth"]),
            values_text(r["prediction"]),
            number(r["abs_error"]),
        )
    console.print(t)


def render_validation(v: dict[str, Any]) -> None:
    """An exported regressor's check against PyTorch."""
    console.print(
        f"validated on {plural(v['images'], 'image')} ({v['source']}): max |Δvalue| "
        f"{number(v['max_abs_diff'])} ({v['max_std_diff']:.2e} target standard deviations)"
    )


def predict_values(ctx: typer.Context, model: Path, images: list[Path], *, batch_size: int) -> None:
    """``predict`` with an exported regressor: ``{"model", "predictions": [{"path", "values",
    "targets": {name: value}}], "errors"}``."""
    from vistudio.ml.inference.onnx import collect_images
    from vistudio.ml.inference.regression import OnnxRegressor

    reg = OnnxRegressor(model)
    files, errors = collect_images(images)
    predictions, bad = reg.predict_files(files, batch_size=batch_size)
    errors.extend(bad)
    if not predictions:
        raise InvalidInput(
            "no image could be read" + (f": {errors[0]['path']}: {errors[0]['reason']}" if errors else ""),
            details={"errors": errors[:100]},
        )
    out = {
        "model": {
            "path": str(model),
            "name": reg.model,
            "task": reg.task,
            "targets": reg.targets,
            "target_mean": reg.target_mean,
            "target_std": reg.target_std,
        },
        "predictions": [p.to_dict(reg.targets) for p in predictions],
        "errors": errors,
    }

    def render(d: dict[str, Any]) -> None:
        folder, names = common_folder([p["path"] for p in d["predictions"]])
        if folder:
            console.print(f"images in {escape(folder)}")
        t = table(key_column("image"), *(escape(n) for n in d["model"]["targets"]))
        for p, name in zip(d["predictions"], names, strict=True):
            t.add_row(escape(name), *(number(v) for v in p["values"]))
        console.print(t)
        for e in d["errors"]:
            console.print(f"[red]skipped[/] {escape(e['path'])}: {escape(e['reason'])}")

    emit(ctx, out, render)
