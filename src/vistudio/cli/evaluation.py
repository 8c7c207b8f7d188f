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
PATH_KEYS = ("results_path", "csv_path", "confusion_png_path", "path", "metadata_path")


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
    t = table(key_column("metric"), "value")
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_f1", "weighted_f1"):
        t.add_row(key, f"{m[key]:.4f}")
    t.add_row("images", str(m["samples"]))
    console.print(t)
    classes = ev["classes"]
    cm = table("true \\ predicted", *classes, title="confusion matrix")
    for name, row in zip(classes, ev["confusion_matrix"], strict=True):
        cm.add_row(escape(name), *(str(v) for v in row))
    console.print(cm)
    if ev.get("results_path"):
        console.print(f"results: {escape(ev['results_path'])}")


def evaluate(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name or id")],
    experiment: Annotated[str, typer.Argument(help="experiment name or id")],
    subsets: Annotated[str, typer.Option(help="split subsets, comma-separated: train,val,test")] = "test",
    checkpoint: Annotated[str, typer.Option(help="best | last")] = "best",
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per batch")] = 64,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and return")] = False,
) -> None:
    """Evaluate an experiment's checkpoint on split subsets (replaces its previous evaluation)."""
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
    sort: Annotated[
        str | None, typer.Option(help="confidence (lowest first) | -confidence (highest first)")
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
        sort=sort,
        offset=offset,
        limit=limit,
    )

    def render(d: dict[str, Any]) -> None:
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
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and return")] = False,
) -> None:
    """Export an experiment's checkpoint to ONNX or TorchScript, validated against PyTorch."""
    from vistudio.services import exports

    studio = state(ctx).studio()
    started = exports.start_export(
        studio, project=project, experiment=experiment, format=fmt, checkpoint=checkpoint, opset=opset
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
        console.print(
            f"validated on {plural(v['images'], 'image')} ({v['source']}): max |Δlogit| {v['max_abs_diff']:.2e}, "
            f"top-1 agreement {v['top1_agreement']:.0%}"
        )

    emit(ctx, {"export": _absolute(ctx, out)}, render)


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
) -> None:
    """Classify images with an exported ONNX model (ONNX Runtime only, the model's own preprocessing).

    Unreadable files are listed under "errors" and the others go on; no workspace is needed.
    """
    from vistudio.ml.inference.onnx import OnnxClassifier, collect_images

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


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("evaluate")(evaluate)
    app.add_typer(evaluation_app, name="evaluation")
    app.command("export")(export)
    app.command("exports")(exports_list)
    app.command("predict")(predict)
