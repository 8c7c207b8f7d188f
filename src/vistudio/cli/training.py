"""``vistudio train`` (and ``train --resume``), ``vistudio experiments``, ``vistudio experiment …``
and ``vistudio models``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, err_console, key_column, state, table, wait_for_job
from vistudio.errors import BadRequest, JobFailed
from vistudio.text import plural

app = typer.Typer(help="One experiment: show, metrics, compare, stop, delete.", no_args_is_help=True)

# the metrics tables lead with when the task is not known (a classifier's)
SHOWN = ("val_accuracy", "val_f1_macro", "val_loss", "train_loss")


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))


def _shown(task: str | None) -> tuple[str, ...]:
    """The metrics a task's tables lead with (its display's summary: accuracy and F1 for a
    classifier, mAP for a detector); torch-free."""
    from vistudio.ml.tasks import TASKS

    spec = TASKS.entries.get(task or "")
    return spec.display.summary if spec is not None else SHOWN


def _project_task(ctx: typer.Context, project: str) -> str | None:
    from vistudio.services import projects

    task: str | None = projects.get_project(state(ctx).studio(), project).get("task")
    return task


def _summary(exp: dict[str, Any]) -> dict[str, Any]:
    """What ``train`` prints: the experiment's outcome and where its checkpoints are."""
    return {
        "id": exp["id"],
        "name": exp["name"],
        "project": exp.get("project"),
        "status": exp["status"],
        "split": exp["split"],
        "model": exp["model"],
        "epochs_done": exp["epochs_done"],
        "best_metrics": exp["best_metrics"],
        "final_metrics": exp["final_metrics"],
        "checkpoints": exp.get("checkpoints", []),
        "error": exp["error"],
        "live": exp.get("live"),
        "warnings": exp.get("warnings", []),
    }


def _live_line(live: dict[str, Any] | None, *, finished: bool) -> str | None:
    """``step 120/800 · epoch 1/10 · 85 img/s · ETA 1:23`` (``took 2:05`` once finished)."""
    from vistudio.services.experiments import clock_text, speed_text

    if not live:
        return None
    parts = [f"step {live['step']:,}/{live['total_steps']:,}", f"epoch {live['epoch']}/{live['epochs']}"]
    if live.get("images_per_s"):
        parts.append(speed_text(live["images_per_s"]))
    if finished and live.get("elapsed_s") is not None:
        parts.append(f"took {clock_text(live['elapsed_s'])}")
    elif not finished and live.get("eta_s") is not None:
        parts.append(f"ETA {clock_text(live['eta_s'])}")
    return " · ".join(parts)


def _print_warnings(warnings: list[dict[str, Any]]) -> None:
    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w['message'])}")


def _render_experiment(d: dict[str, Any]) -> None:
    e = d["experiment"]
    colour = {"succeeded": "green", "failed": "red", "stopped": "yellow"}.get(e["status"], "blue")
    console.print(
        f"experiment [bold]{e['name']}[/] ({e['model']}, split {e['split']}): [{colour}]{e['status']}[/]"
        f", {plural(e['epochs_done'], 'epoch')}"
    )
    line = _live_line(e.get("live"), finished=e["status"] not in ("queued", "running"))
    if line:
        console.print(line)
    _print_warnings(e.get("warnings") or [])
    best = {k: v for k, v in (e.get("best_metrics") or {}).items() if isinstance(v, float)}
    lead = [k for k in _shown(e.get("task")) if k in best]  # the task's headline metrics first
    best = {k: best[k] for k in [*lead, *(k for k in best if k not in lead)]}
    if best:
        t = table(key_column("metric"), "best", "final", title=f"best epoch {e['best_metrics'].get('epoch')}")
        for k, v in best.items():
            t.add_row(k, _num(v), _num((e.get("final_metrics") or {}).get(k)))
        console.print(t)
    for c in e.get("checkpoints") or []:
        console.print(f"{c['kind']} checkpoint (epoch {c['epoch']}, step {c['step']}): {escape(c['path'])}")
    if e.get("error"):
        console.print(f"[red]error:[/] {escape(e['error'].splitlines()[0])}")


def _config_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadRequest(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise BadRequest(f"config file {path} is not valid JSON/YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"config file {path} must hold a mapping of config keys")
    return data


def train(
    ctx: typer.Context,
    project: str,
    model: Annotated[str | None, typer.Option(help="a model of the catalog (vistudio models)")] = None,
    split: Annotated[str | None, typer.Option(help="split name (default: the newest)")] = None,
    epochs: Annotated[int | None, typer.Option(help="default 10")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="default 32")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate, default 0.001")] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="input side in pixels, default 224")
    ] = None,
    pretrained: Annotated[
        bool | None,
        typer.Option(
            "--pretrained/--no-pretrained",
            help="ImageNet weights from the local cache (default: no); for a detector, its backbone's",
        ),
    ] = None,
    pretrained_weights: Annotated[
        str | None,
        typer.Option(
            "--pretrained-weights",
            help="detectors: none | backbone (ImageNet backbone) | coco (the whole detector trained on COCO)",
        ),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="start from a weights file (a state dict)")] = None,
    freeze_backbone: Annotated[
        bool | None,
        typer.Option(
            "--freeze-backbone/--no-freeze-backbone",
            help="train only the new head (default: off; on for the DINOv3 models)",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="experiment name (default: MODEL-N)")] = None,
    seed: Annotated[int | None, typer.Option(help="default 42")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    devices: Annotated[
        int | None,
        typer.Option(help="train with N processes (Lightning DDP): N GPUs, or N CPU processes (gloo)"),
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="auto | ddp (auto: DDP when --devices > 1)")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | 32 | bf16 | 16")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adamw | sgd")] = None,
    scheduler: Annotated[str | None, typer.Option(help="cosine | step | none")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay")] = None,
    label_smoothing: Annotated[float | None, typer.Option("--label-smoothing")] = None,
    class_weights: Annotated[
        str | None, typer.Option("--class-weights", help="none | balanced (for imbalanced classes)")
    ] = None,
    loss: Annotated[str | None, typer.Option(help="regression: mse | l1 | huber (default mse)")] = None,
    augment: Annotated[
        bool | None, typer.Option("--augment/--no-augment", help="all train-time augmentation on/off")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="early-stopping patience in epochs")] = None,
    no_early_stopping: Annotated[bool, typer.Option("--no-early-stopping")] = False,
    num_workers: Annotated[int | None, typer.Option("--num-workers", help="data loader processes")] = None,
    score_threshold: Annotated[
        float | None, typer.Option("--score-threshold", help="detectors: drop detections scoring below")
    ] = None,
    nms_iou: Annotated[
        float | None, typer.Option("--nms-iou", help="detectors: IoU above which NMS drops the weaker box")
    ] = None,
    detections_per_image: Annotated[
        int | None, typer.Option("--detections-per-image", help="detectors: at most this many per image")
    ] = None,
    trainable_backbone_layers: Annotated[
        int | None,
        typer.Option("--trainable-backbone-layers", help="detectors: how many backbone stages train (0-6)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="a JSON/YAML file of config keys (options override it)")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="EXPERIMENT",
            help="continue a stopped, failed or finished experiment from its last checkpoint "
            "(only --epochs may change: the new total)",
        ),
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the training and print its job")] = False,
) -> None:
    """Train a model on a project's split, or --resume an experiment; waits with a progress bar
    unless --no-wait."""
    from vistudio.services import experiments

    if resume is not None:
        frozen = {
            k: v
            for k, v in ctx.params.items()
            if k not in ("project", "resume", "epochs", "no_wait") and v not in (None, False)
        }
        if frozen:
            names = ", ".join("--" + k.replace("_", "-") for k in sorted(frozen))
            raise BadRequest(
                f"with --resume only --epochs may be given: the experiment's config is frozen (got {names})",
                details={"options": sorted(frozen)},
            )
        studio = state(ctx).studio()
        resumed = experiments.resume_experiment(studio, project=project, experiment=resume, epochs=epochs)
        _wait_and_emit(ctx, project, resumed, no_wait=no_wait, verb="resumed")
        return
    if pretrained_weights is not None and weights is not None:
        raise BadRequest("give either --weights (a file) or --pretrained-weights, not both")
    cfg: dict[str, Any] = _config_file(config) if config else {}
    options: dict[str, Any] = {
        "model": model,
        "split": split,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "image_size": image_size,
        "pretrained": str(weights.expanduser().resolve()) if weights else pretrained,
        "seed": seed,
        "device": device,
        "devices": devices,
        "strategy": strategy,
        "precision": precision,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "weight_decay": weight_decay,
        "label_smoothing": label_smoothing,
        "class_weights": class_weights,
        "loss": loss,
        "patience": patience,
        "num_workers": num_workers,
        "score_threshold": score_threshold,
        "nms_iou": nms_iou,
        "detections_per_image": detections_per_image,
        "trainable_backbone_layers": trainable_backbone_layers,
    }
    if pretrained_weights is not None:
        choice = pretrained_weights.strip().lower()
        if choice not in ("none", "backbone", "coco"):
            raise BadRequest(
                f"--pretrained-weights must be none, backbone or coco (got {pretrained_weights[:40]!r}); "
                "a weights file is --weights"
            )
        # none/backbone are what --no-pretrained/--pretrained say, for a classifier too
        options["pretrained"] = {"none": False, "backbone": True}.get(choice, choice)
    cfg.update({k: v for k, v in options.items() if v is not None})
    if freeze_backbone is not None:
        cfg["freeze_backbone"] = freeze_backbone
    if no_early_stopping:
        cfg["early_stopping"] = False
    if augment is False:
        cfg["augment"] = {"crop": False, "flip": False, "rotate": False, "color": False}
    elif augment:
        cfg["augment"] = {**cfg.get("augment", {}), "crop": True, "flip": True}
    studio = state(ctx).studio()
    started = experiments.start_experiment(studio, project=project, config=cfg, name=name)
    if not state(ctx).json:  # before the wait: a doomed setting is worth stopping for at once
        _print_warnings(started["warnings"])
    _wait_and_emit(ctx, project, started, no_wait=no_wait, verb="queued")


def _wait_and_emit(
    ctx: typer.Context, project: str, started: dict[str, Any], *, no_wait: bool, verb: str
) -> None:
    """``--no-wait``: print the queued job; else wait for it and print the experiment's outcome."""
    from vistudio.services import experiments

    if no_wait:
        emit(
            ctx,
            started,
            lambda d: console.print(
                f"{verb} experiment {d['experiment']['name']} (job {d['job']['id']}); "
                f"follow it with: vistudio experiment show {project!r} {d['experiment']['name']!r}"
            ),
        )
        return
    studio = state(ctx).studio()
    exp_name = started["experiment"]["name"]
    final = wait_for_job(ctx, started["job"]["id"])
    exp = experiments.get_experiment(studio, project=project, experiment=started["experiment"]["id"])
    if final["status"] not in ("succeeded", "cancelled") or exp["status"] == "failed":
        message = (
            exp.get("error") or (final.get("error") or {}).get("message") or final["status"]
        ).splitlines()[0]
        raise JobFailed(
            f"training of {exp_name} {exp['status']}: {message}",
            details={"job": final["id"], "experiment": exp_name, "error": exp.get("error")},
        )
    emit(ctx, {"experiment": _summary(exp)}, _render_experiment)


def list_experiments(
    ctx: typer.Context,
    project: str,
    status: Annotated[str | None, typer.Option(help="e.g. running or succeeded,stopped")] = None,
    offset: int = 0,
    limit: int = 50,
) -> None:
    """A project's experiments with their status and best metrics."""
    from vistudio.services import experiments

    out = experiments.list_experiments(
        state(ctx).studio(), project=project, status=status, offset=offset, limit=limit
    )

    def render(d: dict[str, Any]) -> None:
        shown = _shown(d["items"][0]["task"] if d["items"] else _project_task(ctx, project))
        t = table(key_column("name"), "model", "status", "epochs", *shown)
        for e in d["items"]:
            best = e["best_metrics"]
            t.add_row(
                e["name"],
                e["model"],
                e["status"],
                f"{e['epochs_done']}/{e['epochs']}",
                *(_num(best.get(k)) for k in shown),
            )
        console.print(t)
        if not d["items"]:
            console.print(f"no experiments yet: vistudio train {project!r} --model resnet18")

    emit(ctx, out, render)


@app.command("show")
def show(ctx: typer.Context, project: str, experiment: str) -> None:
    """One experiment: config, status, best and final metrics, checkpoints."""
    from vistudio.services import experiments

    exp = experiments.get_experiment(state(ctx).studio(), project=project, experiment=experiment)
    emit(ctx, {"experiment": exp}, _render_experiment)


@app.command("metrics")
def metrics(
    ctx: typer.Context,
    project: str,
    experiment: str,
    name: Annotated[list[str] | None, typer.Option("--name", help="a metric (repeatable)")] = None,
) -> None:
    """Per-epoch (and per-step) metric series."""
    from vistudio.services import experiments

    out = experiments.experiment_metrics(
        state(ctx).studio(), project=project, experiment=experiment, names=name
    )

    def render(d: dict[str, Any]) -> None:
        series = d["series"]
        keys = (
            name
            or [k for k in _shown(_project_task(ctx, project)) if k in series]
            or [k for k in series if not k.endswith("_step") and k != "lr"]
        )
        epoch_level = {k: series[k] for k in keys if k in series}
        t = table("epoch", *epoch_level)
        rows: dict[int, dict[str, float]] = {}
        for k, v in epoch_level.items():
            for ep, val in zip(v["epoch"], v["value"], strict=True):
                rows.setdefault(ep, {})[k] = val
        for ep in sorted(rows):
            t.add_row(str(ep), *(_num(rows[ep].get(k)) for k in epoch_level))
        console.print(t)

    emit(ctx, out, render)


@app.command("compare")
def compare(
    ctx: typer.Context,
    project: str,
    experiment: Annotated[list[str], typer.Argument(help="two or more experiments")],
) -> None:
    """Best metrics of several experiments side by side (every metric and the curves with --json)."""
    from vistudio.services import experiments

    out = experiments.compare_experiments(state(ctx).studio(), project=project, experiments=experiment)

    def render(d: dict[str, Any]) -> None:
        task = d["experiments"][0].get("task") if d["experiments"] else None
        names = [n for n in _shown(task) if any(n in row["best"] for row in d["table"])]
        t = table(key_column("experiment"), "model", "status", "best epoch", *names)
        for row in d["table"]:
            t.add_row(
                row["experiment"],
                row["model"],
                row["status"],
                _num(row["best_epoch"]),
                *(_num(row["best"].get(n)) for n in names),
            )
        console.print(t)

    emit(ctx, out, render)


@app.command("stop")
def stop(ctx: typer.Context, project: str, experiment: str) -> None:
    """Stop a training gracefully (its last checkpoint is kept)."""
    from vistudio.services import experiments

    exp = experiments.stop_experiment(state(ctx).studio(), project=project, experiment=experiment)
    emit(
        ctx,
        {"experiment": exp},
        lambda d: console.print(
            f"experiment {d['experiment']['name']}: "
            + (
                "stopped"
                if d["experiment"]["status"] == "stopped"
                else "stopping (after the batch in flight)"
            )
        ),
    )


@app.command("delete")
def delete(
    ctx: typer.Context,
    project: str,
    experiment: str,
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
) -> None:
    """Delete an experiment, its metrics and checkpoints."""
    from vistudio.services import experiments

    if not yes and (state(ctx).json or not typer.confirm(f"Delete experiment {experiment!r}?")):
        raise BadRequest("not deleted: confirm with --yes")
    out = experiments.delete_experiment(state(ctx).studio(), project=project, experiment=experiment)
    emit(
        ctx,
        out,
        lambda d: console.print(
            f"deleted experiment {d['deleted']} ({plural(d['checkpoints'], 'checkpoint')})"
        ),
    )


def _cached(model: dict[str, Any]) -> str:
    """``yes``/``no``; for a detector, per kind of weights (``backbone yes, coco no``)."""
    per_kind = model.get("weights_cached")
    if isinstance(per_kind, dict):
        return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in per_kind.items())
    return "yes" if model.get("pretrained_cached") else "no"


def models(
    ctx: typer.Context,
    task: Annotated[
        str | None,
        typer.Option(help="the models of this task: classification, detection, instance_segmentation…"),
    ] = None,
) -> None:
    """The model catalog (of one task; default: classification)."""
    from vistudio.services import experiments

    def render(d: dict[str, Any]) -> None:
        t = table(key_column("name"), "family", "params (M)", "default size", "pretrained weights cached")
        for m in d["items"]:
            t.add_row(
                m["name"],
                m["family"],
                str(m["params_millions"]),
                str(m["default_image_size"]),
                _cached(m),
            )
        console.print(t)

    emit(ctx, experiments.model_catalog(task), render)


def register(root: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    root.command("train")(train)
    root.command("experiments")(list_experiments)
    root.command("models")(models)
    root.add_typer(app, name="experiment")
